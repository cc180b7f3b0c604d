//! Credential protection and recovery (issue 4, items 3 to 6): the lock-out per email address
//! kept in the database, per-client rate limits, password reset, email verification and
//! email changes, and the security notices. Mail is read at a real SMTP receiver on loopback;
//! lock-outs and expiries are stepped with the test clock.
//!
//! Throughout, an address without an account must be indistinguishable from one with an
//! account: the same statuses, codes, `Retry-After` values and bodies.

use crate::mail::{delivered, text_of};
use crate::orgs::{call, create_org, invite, sign_up_invited};
use mamori_server::ManualClock;
use mamori_testkit::{
    GOOD_PASSWORD, SmtpReceiver, TEST_EPOCH, TestApp, TestDatabase, TestEngine, expect_problem,
    json_of, spawn_with, test_settings,
};
use reqwest::{Method, Response};
use serde_json::{Value, json};
use sqlx::Row;
use std::sync::Arc;

mamori_testkit::engine_tests!(
    the_fifth_failure_locks_for_a_minute_then_doubling_the_same_for_unknown_addresses,
    a_success_starts_the_count_again,
    the_lock_is_kept_in_the_database_across_a_restart,
    every_failure_and_refusal_is_an_audit_event,
    per_client_limits_answer_429_with_retry_after,
    a_reset_is_requested_the_same_way_for_unknown_addresses,
    a_completed_reset_sets_the_password_ends_sessions_and_clears_the_lock,
    bad_reset_tokens_are_refused_and_change_nothing,
    sign_up_mails_a_verification_link_that_works_once,
    verification_links_expire_and_can_be_sent_again,
    an_email_change_happens_only_when_confirmed_at_the_new_address,
    an_email_change_is_refused_when_the_address_was_taken_meanwhile,
    an_organization_can_require_verified_addresses_to_join,
    changing_the_password_sends_a_notice,
    the_plan_limits_the_number_of_members,
);

const PUBLIC_URL: &str = "https://id.example.test";
const NEW_PASSWORD: &str = "copper lantern meadow 2041";

/// The server over a fresh database, sending mail to a new SMTP receiver; `adjust` changes
/// settings first.
async fn spawn_adjusted(
    engine: TestEngine,
    adjust: impl FnOnce(&mut mamori_server::Settings),
) -> (TestApp, SmtpReceiver) {
    let smtp = SmtpReceiver::start().await;
    let database = Arc::new(TestDatabase::create(engine).await);
    let mut settings = test_settings(&database);
    settings.smtp_url = Some(smtp.url());
    settings.public_url = PUBLIC_URL.into();
    adjust(&mut settings);
    let app = spawn_with(database, settings, Arc::new(ManualClock::new(TEST_EPOCH))).await;
    (app, smtp)
}

async fn spawn_mailing(engine: TestEngine) -> (TestApp, SmtpReceiver) {
    spawn_adjusted(engine, |_| {}).await
}

async fn log_in(app: &TestApp, email: &str, password: &str) -> Response {
    app.post(
        "/api/v1/sessions",
        None,
        &json!({ "email": email, "password": password }),
    )
    .await
}

/// What an observer outside sees of one answer: status, code and `Retry-After`.
async fn observed(response: Response) -> (u16, String, Option<String>) {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().unwrap().to_owned());
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let code = body["code"].as_str().unwrap_or("").to_owned();
    (status, code, retry_after)
}

fn advance_seconds(app: &TestApp, seconds: i64) {
    app.clock.advance_millis(seconds * 1000);
}

async fn complete_reset(app: &TestApp, token: &str, password: &str) -> Response {
    app.post(
        "/api/v1/password-resets/complete",
        None,
        &json!({ "token": token, "new_password": password }),
    )
    .await
}

async fn complete_verification(app: &TestApp, token: &str) -> Response {
    app.post(
        "/api/v1/email-verifications/complete",
        None,
        &json!({ "token": token }),
    )
    .await
}

async fn patch_me(app: &TestApp, session: &str, body: Value) -> Response {
    app.request(Method::PATCH, "/api/v1/me", Some(session), Some(&body))
        .await
}

/// The token of the link (`#token=<prefix>...`) in the newest message with such a link, once
/// `n` messages reached `address` (messages made at the same instant may arrive in any order).
async fn mailed_token(
    app: &TestApp,
    smtp: &SmtpReceiver,
    address: &str,
    n: usize,
    prefix: &str,
) -> (String, String) {
    let messages = delivered(app, smtp, address, n).await;
    let link = format!("#token={prefix}");
    let text = messages
        .iter()
        .rev()
        .map(text_of)
        .find(|text| text.contains(&link))
        .unwrap_or_else(|| panic!("no {link} link in {messages:?}"));
    let start = text.find(&link).unwrap() + "#token=".len();
    let token: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    assert!(token.starts_with(prefix), "{token} in {text}");
    (token, text)
}

/// The newest of `n` messages to `address` with this subject.
async fn mailed_with_subject(
    app: &TestApp,
    smtp: &SmtpReceiver,
    address: &str,
    n: usize,
    subject: &str,
) -> String {
    let messages = delivered(app, smtp, address, n).await;
    let mail = messages
        .iter()
        .rev()
        .find(|mail| mail.header("Subject").as_deref() == Some(subject))
        .unwrap_or_else(|| panic!("no {subject:?} in {messages:?}"));
    text_of(mail)
}

async fn failed_login_events(app: &TestApp, reason: &str) -> i64 {
    let pool = app.database.pool().await;
    let rows =
        sqlx::query("SELECT details FROM audit_events WHERE action = 'session.login_failed'")
            .fetch_all(&pool)
            .await
            .unwrap();
    rows.iter()
        .filter(|row| {
            let details: String = row.get("details");
            details.contains(&format!("\"reason\":\"{reason}\""))
        })
        .count() as i64
}

async fn the_fifth_failure_locks_for_a_minute_then_doubling_the_same_for_unknown_addresses(
    engine: TestEngine,
) {
    let (app, _smtp) = spawn_mailing(engine).await;
    app.sign_up("ada@example.com", GOOD_PASSWORD, "Ada Lovelace")
        .await;
    let mut seen = Vec::new();
    for email in ["ada@example.com", "nobody@example.com"] {
        let mut answers = Vec::new();
        for _ in 0..5 {
            answers.push(observed(log_in(&app, email, "wrong password 1").await).await);
        }
        // Locked now: even the right password is refused, without being checked.
        answers.push(observed(log_in(&app, email, GOOD_PASSWORD).await).await);
        advance_seconds(&app, 59);
        answers.push(observed(log_in(&app, email, GOOD_PASSWORD).await).await);
        advance_seconds(&app, 1);
        // The lock is over; the next failure locks for twice as long.
        answers.push(observed(log_in(&app, email, "wrong password 2").await).await);
        answers.push(observed(log_in(&app, email, GOOD_PASSWORD).await).await);
        // Rewind the test clock's effect for the next address: a fresh hour later.
        advance_seconds(&app, 3600);
        seen.push(answers);
    }
    let wrong = (401, String::from("invalid_credentials"), None);
    let locked = |seconds: &str| {
        (
            429,
            String::from("account_locked"),
            Some(seconds.to_owned()),
        )
    };
    assert_eq!(
        seen[0],
        vec![
            wrong.clone(),
            wrong.clone(),
            wrong.clone(),
            wrong.clone(),
            wrong.clone(),
            locked("60"),
            locked("1"),
            wrong.clone(),
            locked("120"),
        ]
    );
    assert_eq!(
        seen[0], seen[1],
        "an unknown address must behave like a known one"
    );
    // After the doubled lock the holder gets in.
    json_of(log_in(&app, "ada@example.com", GOOD_PASSWORD).await, 201).await;
}

async fn a_success_starts_the_count_again(engine: TestEngine) {
    let (app, _smtp) = spawn_mailing(engine).await;
    app.sign_up("ada@example.com", GOOD_PASSWORD, "Ada Lovelace")
        .await;
    for _ in 0..4 {
        expect_problem(
            log_in(&app, "ada@example.com", "wrong password").await,
            401,
            "invalid_credentials",
        )
        .await;
    }
    json_of(log_in(&app, "ada@example.com", GOOD_PASSWORD).await, 201).await;
    for _ in 0..4 {
        expect_problem(
            log_in(&app, "ada@example.com", "wrong password").await,
            401,
            "invalid_credentials",
        )
        .await;
    }
    // Four more failures after the success: not locked.
    json_of(log_in(&app, "ada@example.com", GOOD_PASSWORD).await, 201).await;
}

async fn the_lock_is_kept_in_the_database_across_a_restart(engine: TestEngine) {
    let (app, _smtp) = spawn_mailing(engine).await;
    app.sign_up("ada@example.com", GOOD_PASSWORD, "Ada Lovelace")
        .await;
    for _ in 0..5 {
        log_in(&app, "ada@example.com", "wrong password").await;
    }
    // Another node (here: the same server started again, its memory gone) sees the lock.
    let app = app.restart().await;
    let (status, code, retry_after) =
        observed(log_in(&app, "ada@example.com", GOOD_PASSWORD).await).await;
    assert_eq!(
        (status, code.as_str(), retry_after.as_deref()),
        (429, "account_locked", Some("60"))
    );
}

async fn every_failure_and_refusal_is_an_audit_event(engine: TestEngine) {
    let (app, _smtp) = spawn_mailing(engine).await;
    app.sign_up("ada@example.com", GOOD_PASSWORD, "Ada Lovelace")
        .await;
    for _ in 0..5 {
        log_in(&app, "ada@example.com", "wrong password").await;
    }
    for _ in 0..2 {
        log_in(&app, "nobody@example.com", "wrong password").await;
    }
    log_in(&app, "ada@example.com", GOOD_PASSWORD).await;
    log_in(&app, "ada@example.com", "wrong password").await;
    assert_eq!(failed_login_events(&app, "invalid_credentials").await, 7);
    assert_eq!(failed_login_events(&app, "locked").await, 2);
}

async fn per_client_limits_answer_429_with_retry_after(engine: TestEngine) {
    let (app, _smtp) = spawn_adjusted(engine, |settings| {
        settings.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        let two_a_minute = mamori_core::rate::RateLimit::per_minute(2, 2);
        settings.rate_limits.login = two_a_minute;
        settings.rate_limits.sign_up = two_a_minute;
        settings.rate_limits.password_reset = two_a_minute;
    })
    .await;
    let from = |client: &str, path: &str, body: Value| {
        app.client
            .post(app.url(path))
            .header("x-forwarded-for", client)
            .json(&body)
            .send()
    };
    for (path, body) in [
        (
            "/api/v1/sessions",
            json!({ "email": "x@example.com", "password": "wrong password" }),
        ),
        (
            "/api/v1/password-resets",
            json!({ "email": "x@example.com" }),
        ),
        (
            "/api/v1/accounts",
            json!({ "email": "not an email", "password": GOOD_PASSWORD, "display_name": "X" }),
        ),
    ] {
        for _ in 0..2 {
            let status = from("203.0.113.1", path, body.clone())
                .await
                .unwrap()
                .status();
            assert_ne!(status, 429, "{path}");
        }
        let limited = from("203.0.113.1", path, body.clone()).await.unwrap();
        assert_eq!(limited.headers()["retry-after"], "30", "{path}");
        expect_problem(limited, 429, "rate_limited").await;
        // Another client has its own allowance; an IPv6 client is counted by its /64.
        assert_ne!(
            from("203.0.113.2", path, body.clone())
                .await
                .unwrap()
                .status(),
            429
        );
        for host in ["2001:db8:0:1::1", "2001:db8:0:1::2"] {
            assert_ne!(from(host, path, body.clone()).await.unwrap().status(), 429);
        }
        expect_problem(
            from("2001:db8:0:1::3", path, body.clone()).await.unwrap(),
            429,
            "rate_limited",
        )
        .await;
    }
    advance_seconds(&app, 30);
    assert_ne!(
        from(
            "203.0.113.1",
            "/api/v1/password-resets",
            json!({ "email": "x@example.com" })
        )
        .await
        .unwrap()
        .status(),
        429
    );
}

async fn a_reset_is_requested_the_same_way_for_unknown_addresses(engine: TestEngine) {
    let (app, smtp) = spawn_mailing(engine).await;
    app.sign_up("ada@example.com", GOOD_PASSWORD, "Ada Lovelace")
        .await;
    // The sign-up's verification link.
    delivered(&app, &smtp, "ada@example.com", 1).await;
    let mut answers = Vec::new();
    for email in ["ADA@example.com", "nobody@example.com"] {
        let response = app
            .post("/api/v1/password-resets", None, &json!({ "email": email }))
            .await;
        let status = response.status().as_u16();
        let length = response.headers().get("content-length").cloned();
        let body = response.text().await.unwrap();
        answers.push((status, length, body));
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0].0, 202);
    let (_, text) = mailed_token(&app, &smtp, "ada@example.com", 2, "mmr_").await;
    assert!(
        text.contains("https://id.example.test/password-reset#token=mmr_"),
        "{text}"
    );
    assert!(text.contains("30 minutes"), "{text}");
    assert!(smtp.messages_to("nobody@example.com").is_empty());
    // A second request within a minute answers the same and mails nothing more.
    let again = app
        .post(
            "/api/v1/password-resets",
            None,
            &json!({ "email": "ada@example.com" }),
        )
        .await;
    assert_eq!(again.status(), 202);
    app.services
        .deliver_mail_once(mamori_testkit::ClockExt::now_timestamp(app.clock.as_ref()))
        .await
        .unwrap();
    assert_eq!(smtp.messages_to("ada@example.com").len(), 2);
    // Something that is not an address at all is a plain validation error.
    expect_problem(
        app.post(
            "/api/v1/password-resets",
            None,
            &json!({ "email": "not an address" }),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
}

async fn a_completed_reset_sets_the_password_ends_sessions_and_clears_the_lock(engine: TestEngine) {
    let (app, smtp) = spawn_mailing(engine).await;
    let (_, session) = app.account_with_session("ada@example.com").await;
    for _ in 0..5 {
        log_in(&app, "ada@example.com", "wrong password").await;
    }
    expect_problem(
        log_in(&app, "ada@example.com", GOOD_PASSWORD).await,
        429,
        "account_locked",
    )
    .await;
    let response = app
        .post(
            "/api/v1/password-resets",
            None,
            &json!({ "email": "ada@example.com" }),
        )
        .await;
    assert_eq!(response.status(), 202);
    let (token, _) = mailed_token(&app, &smtp, "ada@example.com", 2, "mmr_").await;
    // At rest the token is only a hash, and the outbox holds it sealed.
    let pool = app.database.pool().await;
    for table in ["account_tokens", "outbox", "login_throttles"] {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM {table}")))
            .fetch_all(&pool)
            .await
            .unwrap();
        for row in rows {
            for index in 0..row.len() {
                if let Ok(Some(text)) = row.try_get::<Option<String>, _>(index) {
                    assert!(!text.contains(&token[4..]), "token in {table}");
                    assert!(!text.contains("ada@example.com"), "address in {table}");
                }
            }
        }
    }
    pool.close().await;
    let response = app
        .post(
            "/api/v1/password-resets/complete",
            None,
            &json!({ "token": token, "new_password": NEW_PASSWORD }),
        )
        .await;
    assert_eq!(response.status(), 204);
    // Every session ended; the lock is gone; only the new password works.
    expect_problem(
        app.get("/api/v1/me", Some(&session)).await,
        401,
        "unauthenticated",
    )
    .await;
    expect_problem(
        log_in(&app, "ada@example.com", GOOD_PASSWORD).await,
        401,
        "invalid_credentials",
    )
    .await;
    json_of(log_in(&app, "ada@example.com", NEW_PASSWORD).await, 201).await;
    let text =
        mailed_with_subject(&app, &smtp, "ada@example.com", 3, "Your password was reset").await;
    assert!(!text.contains("mmr_"), "a notice carries no token: {text}");
}

async fn bad_reset_tokens_are_refused_and_change_nothing(engine: TestEngine) {
    let (app, smtp) = spawn_mailing(engine).await;
    let (_, session) = app.account_with_session("ada@example.com").await;
    app.post(
        "/api/v1/password-resets",
        None,
        &json!({ "email": "ada@example.com" }),
    )
    .await;
    let (token, _) = mailed_token(&app, &smtp, "ada@example.com", 2, "mmr_").await;
    // Tampered: one character changed.
    let mut tampered = token.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for bad in [
        tampered,
        String::from("mmr_short"),
        String::new(),
        token.replace("mmr_", "mmv_"),
    ] {
        expect_problem(
            complete_reset(&app, &bad, NEW_PASSWORD).await,
            410,
            "token_invalid",
        )
        .await;
    }
    // A weak password is refused and the token stays usable.
    expect_problem(
        complete_reset(&app, &token, "password").await,
        422,
        "validation_failed",
    )
    .await;
    expect_problem(
        app.post(
            "/api/v1/password-resets/complete",
            None,
            &json!({ "token": token }),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    // Nothing changed so far.
    json_of(app.get("/api/v1/me", Some(&session)).await, 200).await;
    json_of(log_in(&app, "ada@example.com", GOOD_PASSWORD).await, 201).await;
    // Used once, then refused.
    assert_eq!(
        complete_reset(&app, &token, NEW_PASSWORD).await.status(),
        204
    );
    expect_problem(
        complete_reset(&app, &token, "another pass phrase 77").await,
        410,
        "token_used",
    )
    .await;
    json_of(log_in(&app, "ada@example.com", NEW_PASSWORD).await, 201).await;
    // Expired: 30 minutes after it was made.
    advance_seconds(&app, 120);
    app.post(
        "/api/v1/password-resets",
        None,
        &json!({ "email": "ada@example.com" }),
    )
    .await;
    let (late, _) = mailed_token(&app, &smtp, "ada@example.com", 4, "mmr_").await;
    advance_seconds(&app, 30 * 60);
    expect_problem(
        complete_reset(&app, &late, "another pass phrase 77").await,
        410,
        "token_expired",
    )
    .await;
    json_of(log_in(&app, "ada@example.com", NEW_PASSWORD).await, 201).await;
}

async fn sign_up_mails_a_verification_link_that_works_once(engine: TestEngine) {
    let (app, smtp) = spawn_mailing(engine).await;
    let (account, session) = app.account_with_session("ada@example.com").await;
    assert!(!account.email_verified);
    let (token, text) = mailed_token(&app, &smtp, "ada@example.com", 1, "mmv_").await;
    assert!(
        text.contains("https://id.example.test/verify-email#token=mmv_"),
        "{text}"
    );
    expect_problem(
        complete_verification(&app, "mmv_nonsense").await,
        410,
        "token_invalid",
    )
    .await;
    let me = json_of(app.get("/api/v1/me", Some(&session)).await, 200).await;
    assert_eq!(me["email_verified"], false);
    assert_eq!(complete_verification(&app, &token).await.status(), 204);
    let me = json_of(app.get("/api/v1/me", Some(&session)).await, 200).await;
    assert_eq!(me["email_verified"], true);
    expect_problem(complete_verification(&app, &token).await, 410, "token_used").await;
    // Once verified there is nothing to send again.
    expect_problem(
        app.post("/api/v1/me/email-verification", Some(&session), &json!({}))
            .await,
        409,
        "email_already_verified",
    )
    .await;
}

async fn verification_links_expire_and_can_be_sent_again(engine: TestEngine) {
    let (app, smtp) = spawn_mailing(engine).await;
    app.sign_up("ada@example.com", GOOD_PASSWORD, "Ada Lovelace")
        .await;
    let (first, _) = mailed_token(&app, &smtp, "ada@example.com", 1, "mmv_").await;
    advance_seconds(&app, 24 * 3600);
    let session = app.log_in("ada@example.com", GOOD_PASSWORD).await.token;
    expect_problem(
        app.post(
            "/api/v1/email-verifications/complete",
            None,
            &json!({ "token": first }),
        )
        .await,
        410,
        "token_expired",
    )
    .await;
    let response = app
        .post("/api/v1/me/email-verification", Some(&session), &json!({}))
        .await;
    assert_eq!(response.status(), 202);
    let (second, _) = mailed_token(&app, &smtp, "ada@example.com", 2, "mmv_").await;
    assert_ne!(first, second);
    let response = app
        .post(
            "/api/v1/email-verifications/complete",
            None,
            &json!({ "token": second }),
        )
        .await;
    assert_eq!(response.status(), 204);
    let me = json_of(app.get("/api/v1/me", Some(&session)).await, 200).await;
    assert_eq!(me["email_verified"], true);
}

async fn an_email_change_happens_only_when_confirmed_at_the_new_address(engine: TestEngine) {
    let (app, smtp) = spawn_mailing(engine).await;
    let (_, session) = app.account_with_session("ada@example.com").await;
    delivered(&app, &smtp, "ada@example.com", 1).await;
    // Without the password, or with a wrong one: refused, nothing mailed.
    expect_problem(
        patch_me(&app, &session, json!({ "email": "ada@new.example" })).await,
        422,
        "validation_failed",
    )
    .await;
    expect_problem(
        patch_me(
            &app,
            &session,
            json!({ "email": "ada@new.example", "password": "wrong password" }),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    let me = json_of(
        patch_me(
            &app,
            &session,
            json!({ "email": "ada@new.example", "password": GOOD_PASSWORD }),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(
        me["email"], "ada@example.com",
        "not changed before confirmation"
    );
    let (token, _) = mailed_token(&app, &smtp, "ada@new.example", 1, "mmv_").await;
    let requested = mailed_with_subject(
        &app,
        &smtp,
        "ada@example.com",
        2,
        "A change of your email address was requested",
    )
    .await;
    assert!(requested.contains("ada@new.example"), "{requested}");
    assert!(
        !requested.contains("mmv_"),
        "the old address never sees the token"
    );
    // Still the old address until the link is opened.
    json_of(log_in(&app, "ada@example.com", GOOD_PASSWORD).await, 201).await;
    let response = app
        .post(
            "/api/v1/email-verifications/complete",
            None,
            &json!({ "token": token }),
        )
        .await;
    assert_eq!(response.status(), 204);
    let me = json_of(app.get("/api/v1/me", Some(&session)).await, 200).await;
    assert_eq!(me["email"], "ada@new.example");
    assert_eq!(me["email_verified"], true);
    expect_problem(
        log_in(&app, "ada@example.com", GOOD_PASSWORD).await,
        401,
        "invalid_credentials",
    )
    .await;
    json_of(log_in(&app, "ada@new.example", GOOD_PASSWORD).await, 201).await;
    let changed = mailed_with_subject(
        &app,
        &smtp,
        "ada@example.com",
        3,
        "Your email address was changed",
    )
    .await;
    assert!(changed.contains("ada@new.example"), "{changed}");
}

async fn an_email_change_is_refused_when_the_address_was_taken_meanwhile(engine: TestEngine) {
    let (app, smtp) = spawn_mailing(engine).await;
    let (_, session) = app.account_with_session("ada@example.com").await;
    json_of(
        app.request(
            Method::PATCH,
            "/api/v1/me",
            Some(&session),
            Some(&json!({ "email": "shared@example.com", "password": GOOD_PASSWORD })),
        )
        .await,
        200,
    )
    .await;
    let (token, _) = mailed_token(&app, &smtp, "shared@example.com", 1, "mmv_").await;
    app.sign_up("shared@example.com", GOOD_PASSWORD, "Someone Else")
        .await;
    expect_problem(
        app.post(
            "/api/v1/email-verifications/complete",
            None,
            &json!({ "token": token }),
        )
        .await,
        409,
        "email_taken",
    )
    .await;
    let me = json_of(app.get("/api/v1/me", Some(&session)).await, 200).await;
    assert_eq!(me["email"], "ada@example.com");
}

async fn an_organization_can_require_verified_addresses_to_join(engine: TestEngine) {
    let (app, smtp) = spawn_mailing(engine).await;
    let (_, admin) = app.account_with_session("admin@example.com").await;
    let org = create_org(&app, &admin, "Verified Only").await;
    let updated = call(
        &app,
        Method::PATCH,
        &format!("/api/v1/orgs/{org}"),
        &admin,
        Some(&json!({ "require_verified_email": true })),
        200,
    )
    .await;
    assert_eq!(updated["require_verified_email"], true, "{updated}");
    // An existing account that never verified its address is refused...
    let (_, bob) = app.account_with_session("bob@example.com").await;
    invite(&app, &admin, &org, "bob@example.com", "member").await;
    let (invitation, _) = mailed_token(&app, &smtp, "bob@example.com", 2, "mmi_").await;
    expect_problem(
        app.post(
            "/api/v1/invitations/accept",
            Some(&bob),
            &json!({ "token": invitation }),
        )
        .await,
        403,
        "email_unverified",
    )
    .await;
    // ...until it does; the invitation is still there to accept.
    let (verify_token, _) = mailed_token(&app, &smtp, "bob@example.com", 2, "mmv_").await;
    let response = app
        .post(
            "/api/v1/email-verifications/complete",
            None,
            &json!({ "token": verify_token }),
        )
        .await;
    assert_eq!(response.status(), 204);
    let joined = json_of(
        app.post(
            "/api/v1/invitations/accept",
            Some(&bob),
            &json!({ "token": invitation }),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(joined["id"], org.as_str());
    // Signing up with the invitation proves the address at once: a new account joins.
    invite(&app, &admin, &org, "carol@example.com", "member").await;
    let (carol_invitation, _) = mailed_token(&app, &smtp, "carol@example.com", 1, "mmi_").await;
    let signed_up = json_of(
        sign_up_invited(&app, "carol@example.com", &carol_invitation).await,
        201,
    )
    .await;
    assert_eq!(signed_up["email_verified"], true);
    assert_eq!(signed_up["organization"]["id"], org.as_str());
    // A member may not change the setting.
    call(
        &app,
        Method::PATCH,
        &format!("/api/v1/orgs/{org}"),
        &bob,
        Some(&json!({ "require_verified_email": false })),
        403,
    )
    .await;
}

async fn changing_the_password_sends_a_notice(engine: TestEngine) {
    let (app, smtp) = spawn_mailing(engine).await;
    let (_, session) = app.account_with_session("ada@example.com").await;
    let response = app
        .request(
            Method::PUT,
            "/api/v1/me/password",
            Some(&session),
            Some(&json!({ "current_password": GOOD_PASSWORD, "new_password": NEW_PASSWORD })),
        )
        .await;
    assert_eq!(response.status(), 204);
    let text = mailed_with_subject(
        &app,
        &smtp,
        "ada@example.com",
        2,
        "Your password was changed",
    )
    .await;
    assert!(
        text.contains("2026-11-22T00:00:00.000Z from the address 127.0.0.1"),
        "{text}"
    );
    assert!(
        text.contains("https://id.example.test/password-reset"),
        "{text}"
    );
}

async fn the_plan_limits_the_number_of_members(engine: TestEngine) {
    let (app, smtp) = spawn_mailing(engine).await;
    let (_, admin) = app.account_with_session("admin@example.com").await;
    let org = create_org(&app, &admin, "Small Plan").await;
    let operator = app.operator_token().await;
    let limit = |max: Value| {
        let operator = operator.clone();
        let path = format!("/api/v1/operator/orgs/{org}/max-members");
        let app = &app;
        async move {
            app.request(
                Method::PUT,
                &path,
                Some(&operator),
                Some(&json!({ "max_members": max })),
            )
            .await
        }
    };
    assert_eq!(limit(json!(2)).await.status(), 204);
    expect_problem(limit(json!(0)).await, 422, "validation_failed").await;
    // Only the operator sets it.
    expect_problem(
        app.request(
            Method::PUT,
            &format!("/api/v1/operator/orgs/{org}/max-members"),
            Some(&admin),
            Some(&json!({ "max_members": 100 })),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    for email in ["bob@example.com", "carol@example.com"] {
        invite(&app, &admin, &org, email, "member").await;
    }
    let (bob_invitation, _) = mailed_token(&app, &smtp, "bob@example.com", 1, "mmi_").await;
    json_of(
        sign_up_invited(&app, "bob@example.com", &bob_invitation).await,
        201,
    )
    .await;
    // Two members now: the third is refused, and its sign-up creates no account.
    let (carol_invitation, _) = mailed_token(&app, &smtp, "carol@example.com", 1, "mmi_").await;
    expect_problem(
        sign_up_invited(&app, "carol@example.com", &carol_invitation).await,
        409,
        "plan_limit_reached",
    )
    .await;
    expect_problem(
        log_in(&app, "carol@example.com", GOOD_PASSWORD).await,
        401,
        "invalid_credentials",
    )
    .await;
    // A larger plan lets the same invitation in.
    assert_eq!(limit(json!(3)).await.status(), 204);
    json_of(
        sign_up_invited(&app, "carol@example.com", &carol_invitation).await,
        201,
    )
    .await;
    assert_eq!(limit(Value::Null).await.status(), 204);
}
