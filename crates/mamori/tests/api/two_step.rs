//! Two-step verification (ACC-6) as a holder and an organization see it: TOTP enrolment with
//! its secret, `otpauth://` URI and QR code; confirmation that answers ten recovery codes;
//! the log-in's `second_factor_required` challenge and `POST /api/v1/sessions/second-factor`;
//! one step of drift either side and never a replayed code; single-use and regenerable
//! recovery codes; challenges that expire, die after five wrong codes and work once;
//! switching off with the password and a code; the security notices at a loopback SMTP
//! receiver; and an organization that requires two-step verification (ORG-6).
//!
//! The codes are computed here by an implementation of our own (SHA-1, HMAC and RFC 4226
//! truncation below), checked against the RFC 6238 test vectors, never by the server's crate.
//! Time moves only by the manual clock.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::orgs::{invite, outbox_token};
use mamori_server::ManualClock;
use mamori_testkit::{
    ClockExt, GOOD_PASSWORD, SmtpReceiver, TEST_EPOCH, TestApp, TestDatabase, TestEngine,
    expect_problem, json_of, spawn_with, test_settings,
};
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

mamori_testkit::engine_tests!(
    enrolment_then_log_in_with_a_code,
    codes_drift_one_step_and_never_replay,
    recovery_codes_work_once_and_regenerate,
    challenges_expire_work_once_and_die_after_five_wrong_codes,
    switching_off_needs_the_password_and_a_code,
    notices_are_mailed_for_on_off_and_new_codes,
    an_organization_can_require_two_step,
);

pub const ADA: &str = "ada@example.com";
const BOB: &str = "bob@example.com";
const STEP_MS: i64 = 30_000;

// ---- An independent TOTP: SHA-1 (FIPS 180-4), HMAC (RFC 2104), HOTP (RFC 4226). ----

fn sha1(message: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut data = message.to_vec();
    let bit_length = (message.len() as u64) * 8;
    data.push(0x80);
    while data.len() % 64 != 56 {
        data.push(0);
    }
    data.extend_from_slice(&bit_length.to_be_bytes());
    for block in data.chunks(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, word) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let temp = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*word);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = temp;
        }
        for (state, value) in h.iter_mut().zip([a, b, c, d, e]) {
            *state = state.wrapping_add(value);
        }
    }
    let mut out = [0u8; 20];
    for (i, word) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&word.to_be_bytes());
    }
    out
}

fn hmac_sha1(key: &[u8], message: &[u8]) -> [u8; 20] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..20].copy_from_slice(&sha1(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    inner.extend_from_slice(message);
    let mut outer: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    outer.extend_from_slice(&sha1(&inner));
    sha1(&outer)
}

/// The RFC 4226 code of `counter`, with `digits` digits.
fn hotp(key: &[u8], counter: u64, digits: u32) -> String {
    let mac = hmac_sha1(key, &counter.to_be_bytes());
    let offset = usize::from(mac[19] & 0x0f);
    let binary = u32::from_be_bytes([
        mac[offset] & 0x7f,
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]);
    format!(
        "{:0width$}",
        binary % 10u32.pow(digits),
        width = digits as usize
    )
}

fn base32_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = Vec::new();
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for c in text.trim_end_matches('=').chars() {
        let value = ALPHABET.find(c.to_ascii_uppercase()).expect("base32") as u32;
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    out
}

/// A TOTP code for `secret` (base32) at the time step of `at_millis`, moved by `steps`.
pub fn totp(secret: &str, at_millis: i64, steps: i64) -> String {
    let step = at_millis.div_euclid(STEP_MS) + steps;
    hotp(&base32_decode(secret), step as u64, 6)
}

#[test]
fn the_test_totp_passes_the_rfc_6238_sha1_vectors() {
    let key = b"12345678901234567890";
    for (seconds, expected) in [
        (59_u64, "94287082"),
        (1_111_111_109, "07081804"),
        (1_111_111_111, "14050471"),
        (1_234_567_890, "89005924"),
        (2_000_000_000, "69279037"),
        (20_000_000_000, "65353130"),
    ] {
        assert_eq!(hotp(key, seconds / 30, 8), expected, "T = {seconds}");
    }
    // RFC 4226 appendix D, counters 0 and 9.
    assert_eq!(hotp(key, 0, 6), "755224");
    assert_eq!(hotp(key, 9, 6), "520489");
}

// ---- Helpers. ----

fn now_ms(app: &TestApp) -> i64 {
    app.clock.now_timestamp().as_millis()
}

/// Enrols and confirms TOTP for the holder of `token`; returns (secret, recovery codes).
/// Leaves the clock one step later, so the confirming code is not the next one asked for.
pub async fn enable_two_step(app: &TestApp, token: &str) -> (String, Vec<String>) {
    let enrolment = json_of(
        app.request(Method::POST, "/api/v1/me/two-step/totp", Some(token), None)
            .await,
        201,
    )
    .await;
    let secret = enrolment["secret"].as_str().unwrap().to_owned();
    let code = totp(&secret, now_ms(app), 0);
    let body = json_of(
        app.post(
            "/api/v1/me/two-step/totp/confirm",
            Some(token),
            &json!({ "code": code }),
        )
        .await,
        200,
    )
    .await;
    let codes: Vec<String> = body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|code| code.as_str().unwrap().to_owned())
        .collect();
    app.clock.advance_millis(STEP_MS);
    (secret, codes)
}

/// Logs in with the password, expecting the second step; returns the challenge.
pub async fn challenge_for(app: &TestApp, email: &str) -> String {
    let response = app
        .post(
            "/api/v1/sessions",
            None,
            &json!({ "email": email, "password": GOOD_PASSWORD }),
        )
        .await;
    assert!(
        response.headers().get("set-cookie").is_none(),
        "no session before the second step"
    );
    let problem = expect_problem(response, 401, "second_factor_required").await;
    assert!(problem.get("token").is_none(), "{problem}");
    let challenge = problem["challenge"].as_str().unwrap().to_owned();
    assert!(challenge.starts_with("mmc_"), "{challenge}");
    challenge
}

async fn second_factor(app: &TestApp, challenge: &str, code: &str) -> reqwest::Response {
    app.post(
        "/api/v1/sessions/second-factor",
        None,
        &json!({ "challenge": challenge, "code": code }),
    )
    .await
}

/// Finishes a log-in and checks the session works; returns its token.
async fn finish_log_in(app: &TestApp, challenge: &str, code: &str) -> String {
    let body = json_of(second_factor(app, challenge, code).await, 201).await;
    let token = body["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("mms_"));
    json_of(app.get("/api/v1/me", Some(&token)).await, 200).await;
    token
}

async fn two_step_status(app: &TestApp, token: &str) -> Value {
    json_of(app.get("/api/v1/me/two-step", Some(token)).await, 200).await
}

// ---- Tests. ----

async fn enrolment_then_log_in_with_a_code(engine: TestEngine) {
    let app = mamori_testkit::spawn_app(engine).await;
    let (account, token) = app.account_with_session(ADA).await;
    assert_eq!(two_step_status(&app, &token).await["enabled"], false);

    let enrolment = json_of(
        app.request(Method::POST, "/api/v1/me/two-step/totp", Some(&token), None)
            .await,
        201,
    )
    .await;
    let secret = enrolment["secret"].as_str().unwrap();
    assert_eq!(base32_decode(secret).len(), 20, "160-bit secret");
    let uri = enrolment["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    assert!(uri.contains(&format!("secret={secret}")), "{uri}");
    assert!(uri.contains("issuer=Mamori"), "{uri}");
    let svg = enrolment["qr_svg"].as_str().unwrap();
    assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"), "{svg}");
    assert!(svg.contains("<path d=\"M"), "the QR code has modules");

    // Not on until confirmed: the password alone still logs in.
    app.log_in(ADA, GOOD_PASSWORD).await;
    // A wrong code confirms nothing.
    let wrong = totp(secret, now_ms(&app), 5);
    expect_problem(
        app.post(
            "/api/v1/me/two-step/totp/confirm",
            Some(&token),
            &json!({ "code": wrong }),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(two_step_status(&app, &token).await["enabled"], false);

    let code = totp(secret, now_ms(&app), 0);
    let body = json_of(
        app.post(
            "/api/v1/me/two-step/totp/confirm",
            Some(&token),
            &json!({ "code": code }),
        )
        .await,
        200,
    )
    .await;
    let codes = body["recovery_codes"].as_array().unwrap();
    assert_eq!(codes.len(), 10);
    let mut distinct: Vec<&str> = codes.iter().map(|c| c.as_str().unwrap()).collect();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 10, "ten different codes");
    let status = two_step_status(&app, &token).await;
    assert_eq!(status["enabled"], true);
    assert_eq!(status["recovery_codes_left"], 10);
    // Enrolling again while on is refused.
    expect_problem(
        app.request(Method::POST, "/api/v1/me/two-step/totp", Some(&token), None)
            .await,
        409,
        "two_step_already_enabled",
    )
    .await;

    // The password now earns a challenge, and the challenge with a code a session.
    app.clock.advance_millis(STEP_MS);
    let challenge = challenge_for(&app, ADA).await;
    let session = json_of(
        second_factor(&app, &challenge, &totp(secret, now_ms(&app), 0)).await,
        201,
    )
    .await;
    assert_eq!(session["account_id"], account.id.as_str());
    let me = json_of(
        app.get("/api/v1/me", Some(session["token"].as_str().unwrap()))
            .await,
        200,
    )
    .await;
    assert_eq!(me["email"], ADA);
    // A wrong password is still just a wrong password: no challenge.
    let response = app
        .post(
            "/api/v1/sessions",
            None,
            &json!({ "email": ADA, "password": "not the password at all" }),
        )
        .await;
    let problem = expect_problem(response, 401, "invalid_credentials").await;
    assert!(problem.get("challenge").is_none());
}

async fn codes_drift_one_step_and_never_replay(engine: TestEngine) {
    let app = mamori_testkit::spawn_app(engine).await;
    let (_, token) = app.account_with_session(ADA).await;
    let (secret, _) = enable_two_step(&app, &token).await;

    // The confirming code's step was used: replaying it one step later fails.
    let confirm_code = totp(&secret, now_ms(&app), -1);
    let challenge = challenge_for(&app, ADA).await;
    expect_problem(
        second_factor(&app, &challenge, &confirm_code).await,
        401,
        "invalid_code",
    )
    .await;

    // One step behind is accepted.
    app.clock.advance_millis(5 * STEP_MS);
    let late = totp(&secret, now_ms(&app), -1);
    finish_log_in(&app, &challenge_for(&app, ADA).await, &late).await;
    // The same code again, in the same step: refused.
    let challenge = challenge_for(&app, ADA).await;
    expect_problem(
        second_factor(&app, &challenge, &late).await,
        401,
        "invalid_code",
    )
    .await;
    // Two steps behind is too old.
    app.clock.advance_millis(5 * STEP_MS);
    expect_problem(
        second_factor(&app, &challenge, &totp(&secret, now_ms(&app), -2)).await,
        401,
        "invalid_code",
    )
    .await;
    // Two steps ahead is too early; one step ahead is accepted.
    expect_problem(
        second_factor(&app, &challenge, &totp(&secret, now_ms(&app), 2)).await,
        401,
        "invalid_code",
    )
    .await;
    finish_log_in(&app, &challenge, &totp(&secret, now_ms(&app), 1)).await;
    // Once a later step was used, an earlier step's code is a replay too.
    let challenge = challenge_for(&app, ADA).await;
    expect_problem(
        second_factor(&app, &challenge, &totp(&secret, now_ms(&app), 0)).await,
        401,
        "invalid_code",
    )
    .await;
    app.clock.advance_millis(2 * STEP_MS);
    finish_log_in(&app, &challenge, &totp(&secret, now_ms(&app), 0)).await;
}

async fn recovery_codes_work_once_and_regenerate(engine: TestEngine) {
    let app = mamori_testkit::spawn_app(engine).await;
    let (_, token) = app.account_with_session(ADA).await;
    let (_, codes) = enable_two_step(&app, &token).await;

    // A recovery code finishes a log-in, typed in capitals with spaces too.
    let typed = format!(" {} ", codes[0].to_uppercase());
    finish_log_in(&app, &challenge_for(&app, ADA).await, &typed).await;
    assert_eq!(
        two_step_status(&app, &token).await["recovery_codes_left"],
        9
    );
    // Used once, it is gone.
    let challenge = challenge_for(&app, ADA).await;
    expect_problem(
        second_factor(&app, &challenge, &codes[0]).await,
        401,
        "invalid_code",
    )
    .await;
    // A made-up code of the right shape is just wrong.
    expect_problem(
        second_factor(&app, &challenge, "aaaaa-bbbbb").await,
        401,
        "invalid_code",
    )
    .await;

    // Regenerating needs the password; a wrong one changes nothing.
    let response = app
        .post(
            "/api/v1/me/two-step/recovery-codes",
            Some(&token),
            &json!({ "password": "wrong password here" }),
        )
        .await;
    let problem = expect_problem(response, 422, "validation_failed").await;
    assert_eq!(problem["errors"][0]["field"], "password");
    finish_log_in(&app, &challenge, &codes[1]).await;

    let body = json_of(
        app.post(
            "/api/v1/me/two-step/recovery-codes",
            Some(&token),
            &json!({ "password": GOOD_PASSWORD }),
        )
        .await,
        200,
    )
    .await;
    let fresh: Vec<String> = body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|code| code.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fresh.len(), 10);
    assert!(fresh.iter().all(|code| !codes.contains(code)));
    assert_eq!(
        two_step_status(&app, &token).await["recovery_codes_left"],
        10
    );
    // The old set died, unused codes included.
    let challenge = challenge_for(&app, ADA).await;
    expect_problem(
        second_factor(&app, &challenge, &codes[2]).await,
        401,
        "invalid_code",
    )
    .await;
    finish_log_in(&app, &challenge, &fresh[0]).await;
}

async fn challenges_expire_work_once_and_die_after_five_wrong_codes(engine: TestEngine) {
    let app = mamori_testkit::spawn_app(engine).await;
    let (_, token) = app.account_with_session(ADA).await;
    let (secret, _) = enable_two_step(&app, &token).await;

    // Garbage and unknown challenges.
    let code = totp(&secret, now_ms(&app), 0);
    for challenge in [
        "",
        "nonsense",
        "mmc_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        expect_problem(
            second_factor(&app, challenge, &code).await,
            401,
            "invalid_challenge",
        )
        .await;
    }
    // Malformed codes are 422 and cost the challenge nothing.
    let challenge = challenge_for(&app, ADA).await;
    for bad in ["", "12345", "1234567", "abcdef", "12 34 56 78"] {
        expect_problem(
            second_factor(&app, &challenge, bad).await,
            422,
            "validation_failed",
        )
        .await;
    }
    // Expired after five minutes.
    app.clock.advance_millis(5 * 60_000);
    let code = totp(&secret, now_ms(&app), 0);
    expect_problem(
        second_factor(&app, &challenge, &code).await,
        401,
        "invalid_challenge",
    )
    .await;
    // Just inside five minutes it works, once.
    let challenge = challenge_for(&app, ADA).await;
    app.clock.advance_millis(5 * 60_000 - 1);
    let code = totp(&secret, now_ms(&app), 0);
    finish_log_in(&app, &challenge, &code).await;
    app.clock.advance_millis(STEP_MS);
    expect_problem(
        second_factor(&app, &challenge, &totp(&secret, now_ms(&app), 0)).await,
        401,
        "invalid_challenge",
    )
    .await;

    // Five wrong codes end a challenge; even the right code is then refused.
    let challenge = challenge_for(&app, ADA).await;
    let right = totp(&secret, now_ms(&app), 0);
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    for _ in 0..5 {
        expect_problem(
            second_factor(&app, &challenge, wrong).await,
            401,
            "invalid_code",
        )
        .await;
    }
    expect_problem(
        second_factor(&app, &challenge, &right).await,
        401,
        "invalid_challenge",
    )
    .await;
    // A fresh log-in is unaffected.
    finish_log_in(&app, &challenge_for(&app, ADA).await, &right).await;
}

async fn switching_off_needs_the_password_and_a_code(engine: TestEngine) {
    let app = mamori_testkit::spawn_app(engine).await;
    let (_, token) = app.account_with_session(ADA).await;
    // Off already: nothing to switch off.
    expect_problem(
        app.request(
            Method::DELETE,
            "/api/v1/me/two-step/totp",
            Some(&token),
            Some(&json!({ "password": GOOD_PASSWORD, "code": "123456" })),
        )
        .await,
        409,
        "two_step_not_enabled",
    )
    .await;
    let (secret, _) = enable_two_step(&app, &token).await;
    let disable = |password: &str, code: &str| json!({ "password": password, "code": code });
    let code = totp(&secret, now_ms(&app), 0);
    let problem = expect_problem(
        app.request(
            Method::DELETE,
            "/api/v1/me/two-step/totp",
            Some(&token),
            Some(&disable("wrong password here", &code)),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "password");
    let wrong = totp(&secret, now_ms(&app), 3);
    let problem = expect_problem(
        app.request(
            Method::DELETE,
            "/api/v1/me/two-step/totp",
            Some(&token),
            Some(&disable(GOOD_PASSWORD, &wrong)),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "code");
    assert_eq!(two_step_status(&app, &token).await["enabled"], true);
    let response = app
        .request(
            Method::DELETE,
            "/api/v1/me/two-step/totp",
            Some(&token),
            Some(&disable(GOOD_PASSWORD, &code)),
        )
        .await;
    assert_eq!(response.status(), 204);
    assert_eq!(two_step_status(&app, &token).await["enabled"], false);
    // The password alone logs in again.
    app.log_in(ADA, GOOD_PASSWORD).await;
}

async fn spawn_with_smtp(engine: TestEngine) -> (TestApp, SmtpReceiver) {
    let smtp = SmtpReceiver::start().await;
    let database = Arc::new(TestDatabase::create(engine).await);
    let mut settings = test_settings(&database);
    settings.smtp_url = Some(smtp.url());
    let app = spawn_with(database, settings, Arc::new(ManualClock::new(TEST_EPOCH))).await;
    (app, smtp)
}

/// Delivers until `address` has `n` messages (bounded: the server's own sender may hold one
/// in flight); returns their subjects in order.
async fn subjects_delivered(
    app: &TestApp,
    smtp: &SmtpReceiver,
    address: &str,
    n: usize,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        app.services
            .deliver_mail_once(app.clock.now_timestamp())
            .await
            .unwrap();
        let messages = smtp.messages_to(address);
        if messages.len() >= n {
            assert_eq!(messages.len(), n, "more mail than expected");
            return messages
                .iter()
                .map(|mail| mail.header("subject").unwrap_or_default())
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "mail to {address} did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn notices_are_mailed_for_on_off_and_new_codes(engine: TestEngine) {
    let (app, smtp) = spawn_with_smtp(engine).await;
    let (_, token) = app.account_with_session(ADA).await;
    let (secret, _) = enable_two_step(&app, &token).await;
    // Besides the sign-up's address verification, in either order: the server's own sender
    // may deliver one of them while the test delivers the other.
    let mut subjects = subjects_delivered(&app, &smtp, ADA, 2).await;
    subjects.sort();
    assert_eq!(
        subjects,
        [
            "Confirm your email address",
            "Two-step verification was switched on"
        ]
    );

    json_of(
        app.post(
            "/api/v1/me/two-step/recovery-codes",
            Some(&token),
            &json!({ "password": GOOD_PASSWORD }),
        )
        .await,
        200,
    )
    .await;
    let subjects = subjects_delivered(&app, &smtp, ADA, 3).await;
    assert_eq!(subjects[2], "New recovery codes were made");
    let text = crate::mail::text_of(&smtp.messages_to(ADA)[2]);
    assert!(text.contains("previous codes no longer work"), "{text}");
    assert!(!text.contains(&secret), "no secret in a notice");

    let response = app
        .request(
            Method::DELETE,
            "/api/v1/me/two-step/totp",
            Some(&token),
            Some(&json!({ "password": GOOD_PASSWORD, "code": totp(&secret, now_ms(&app), 0) })),
        )
        .await;
    assert_eq!(response.status(), 204);
    let subjects = subjects_delivered(&app, &smtp, ADA, 4).await;
    assert_eq!(subjects[3], "Two-step verification was switched off");
    // A failed switch-off sends nothing (nothing changed).
    assert!(smtp.messages_to(BOB).is_empty());
}

async fn an_organization_can_require_two_step(engine: TestEngine) {
    let app = mamori_testkit::spawn_app(engine).await;
    let (_, admin) = app.account_with_session(ADA).await;
    let (bob, member) = app.account_with_session(BOB).await;
    let (_, stranger) = app.account_with_session("carol@example.com").await;
    let org = json_of(
        app.post("/api/v1/orgs", Some(&admin), &json!({ "name": "Acme" }))
            .await,
        201,
    )
    .await;
    let org_id = org["id"].as_str().unwrap().to_owned();
    assert_eq!(org["require_two_step"], false);
    // Bob joins by invitation.
    invite(&app, &admin, &org_id, BOB, "member").await;
    let bob_invitation = outbox_token(&app, BOB).await;
    json_of(
        app.post(
            "/api/v1/invitations/accept",
            Some(&member),
            &json!({ "token": bob_invitation }),
        )
        .await,
        200,
    )
    .await;
    let org_path = format!("/api/v1/orgs/{org_id}");
    json_of(app.get(&org_path, Some(&member)).await, 200).await;

    // An administrator without two-step cannot require it (it would shut them out).
    let patch = |value: bool| json!({ "require_two_step": value });
    expect_problem(
        app.request(Method::PATCH, &org_path, Some(&admin), Some(&patch(true)))
            .await,
        409,
        "two_step_required",
    )
    .await;
    // A member cannot set it at all.
    expect_problem(
        app.request(Method::PATCH, &org_path, Some(&member), Some(&patch(false)))
            .await,
        403,
        "forbidden",
    )
    .await;
    enable_two_step(&app, &admin).await;
    let org = json_of(
        app.request(Method::PATCH, &org_path, Some(&admin), Some(&patch(true)))
            .await,
        200,
    )
    .await;
    assert_eq!(org["require_two_step"], true);

    // Bob is shut out of every resource of the organization...
    for path in [
        org_path.clone(),
        format!("{org_path}/members"),
        format!("{org_path}/teams"),
        format!("{org_path}/members/{}", bob.id),
    ] {
        expect_problem(
            app.get(&path, Some(&member)).await,
            403,
            "two_step_required",
        )
        .await;
    }
    // ...the administrator is not, and a stranger still learns nothing.
    json_of(
        app.get(&format!("{org_path}/members"), Some(&admin)).await,
        200,
    )
    .await;
    expect_problem(app.get(&org_path, Some(&stranger)).await, 404, "not_found").await;
    // The list of own organizations still shows it, with the policy.
    let orgs = json_of(app.get("/api/v1/orgs", Some(&member)).await, 200).await;
    assert_eq!(orgs["items"][0]["require_two_step"], true);

    // Enrolling stays possible, and with two-step on Bob is back in.
    enable_two_step(&app, &member).await;
    let members = json_of(
        app.get(&format!("{org_path}/members"), Some(&member)).await,
        200,
    )
    .await;
    assert_eq!(members["items"].as_array().unwrap().len(), 2);

    // Lifting the policy opens the organization to members without it again.
    json_of(
        app.request(Method::PATCH, &org_path, Some(&admin), Some(&patch(false)))
            .await,
        200,
    )
    .await;
    let (dave, _) = app.account_with_session("dave@example.com").await;
    invite(&app, &admin, &org_id, "dave@example.com", "member").await;
    let dave_token = app.log_in("dave@example.com", GOOD_PASSWORD).await.token;
    json_of(
        app.post(
            "/api/v1/invitations/accept",
            Some(&dave_token),
            &json!({ "token": outbox_token(&app, "dave@example.com").await }),
        )
        .await,
        200,
    )
    .await;
    let seen = json_of(app.get(&org_path, Some(&dave_token)).await, 200).await;
    assert_eq!(seen["require_two_step"], false);
    assert!(dave.id.starts_with("acc_"));
}
