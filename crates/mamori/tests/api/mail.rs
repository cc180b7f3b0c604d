//! Outgoing mail (issue: organizations): invitations are written to the outbox in the same
//! transaction as the change, sealed, and delivered over SMTP with retries and backoff. These
//! tests run a real SMTP receiver on loopback and read the message that really went out; the
//! token in it works exactly once, and only for the address it was sent to.
//!
//! Delivery is driven with `deliver_mail_once` at the test clock's time. The server's own
//! sender runs every 2 s on the same clock, so a message may go out through either; the
//! assertions hold both ways, and where a message may be in flight in the server's sender a
//! bounded poll waits for the receiver.

use crate::orgs::{call, create_org, invite, outbox_token, sign_up_invited, token_in};
use mamori_server::ManualClock;
use mamori_testkit::{
    ClockExt, GOOD_PASSWORD, ReceivedMail, SmtpReceiver, TEST_EPOCH, TestApp, TestDatabase,
    TestEngine, expect_problem, json_of, spawn_app, spawn_with, test_settings,
};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::Row;
use std::sync::Arc;
use std::time::{Duration, Instant};

mamori_testkit::engine_tests!(
    the_invitation_arrives_and_its_token_works_once,
    an_existing_account_accepts_the_emailed_invitation,
    failed_delivery_is_retried_after_a_backoff,
    a_refused_change_sends_no_mail,
    without_smtp_mail_stays_sealed_in_the_outbox,
    mail_left_in_the_outbox_goes_out_after_a_restart_with_smtp,
    inviting_again_replaces_the_pending_invitation,
    unusable_invitations_are_refused,
    a_non_ascii_organization_name_arrives_intact,
    every_address_accepted_for_an_invitation_can_be_mailed,
    an_invitees_address_goes_when_the_account_is_deleted,
);

const PUBLIC_URL: &str = "https://id.example.test";
const LINK: &str = "https://id.example.test/invitations/accept#token=mmi_";
const DAY_MS: i64 = 86_400_000;
/// How long a bounded poll waits for a message in flight before failing.
const POLL_LIMIT: Duration = Duration::from_secs(20);

/// The server over a fresh database, sending to a new SMTP receiver.
async fn spawn_with_smtp(engine: TestEngine) -> (TestApp, SmtpReceiver) {
    let smtp = SmtpReceiver::start().await;
    let database = Arc::new(TestDatabase::create(engine).await);
    let mut settings = test_settings(&database);
    settings.smtp_url = Some(smtp.url());
    settings.public_url = PUBLIC_URL.into();
    let app = spawn_with(database, settings, Arc::new(ManualClock::new(TEST_EPOCH))).await;
    (app, smtp)
}

/// Runs delivery rounds until `address` has received `n` messages; returns them in the order
/// received. Polls (bounded) because the server's own sender may hold a message in flight.
async fn delivered(
    app: &TestApp,
    smtp: &SmtpReceiver,
    address: &str,
    n: usize,
) -> Vec<ReceivedMail> {
    let deadline = Instant::now() + POLL_LIMIT;
    loop {
        app.services
            .deliver_mail_once(app.clock.now_timestamp())
            .await
            .unwrap();
        let messages = smtp.messages_to(address);
        if messages.len() >= n {
            assert_eq!(messages.len(), n, "more mail to {address} than expected");
            return messages;
        }
        assert!(
            Instant::now() < deadline,
            "no mail to {address} arrived; outbox: {:?}",
            app.services.outbox(10).await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Runs delivery rounds until nothing in the outbox is pending.
async fn outbox_drained(app: &TestApp) {
    let deadline = Instant::now() + POLL_LIMIT;
    loop {
        app.services
            .deliver_mail_once(app.clock.now_timestamp())
            .await
            .unwrap();
        let entries = app.services.outbox(500).await.unwrap();
        if entries.iter().all(|entry| entry.status == "sent") {
            return;
        }
        assert!(Instant::now() < deadline, "outbox not drained: {entries:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The message's text as the reader sees it: the body decoded as its
/// `Content-Transfer-Encoding` says (7bit, 8bit, quoted-printable or base64).
pub(crate) fn text_of(mail: &ReceivedMail) -> String {
    let encoding = mail
        .header("Content-Transfer-Encoding")
        .unwrap_or_else(|| String::from("7bit"))
        .to_ascii_lowercase();
    let body = mail.body();
    let bytes = match encoding.as_str() {
        "7bit" | "8bit" => body.into_bytes(),
        "quoted-printable" => quoted_printable(&body),
        "base64" => base64(&body),
        other => panic!("unexpected transfer encoding {other}"),
    };
    String::from_utf8(bytes).unwrap()
}

fn quoted_printable(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] != b'=' {
            out.push(bytes[index]);
            index += 1;
        } else if bytes[index + 1..].starts_with(b"\r\n") {
            index += 3; // a soft line break
        } else {
            let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            index += 3;
        }
    }
    out
}

fn base64(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0);
    for byte in text.bytes() {
        let Some(value) = ALPHABET.iter().position(|&c| c == byte) else {
            continue; // line breaks and padding
        };
        buffer = (buffer << 6) | value as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    out
}

/// A header value with RFC 2047 encoded words (`=?utf-8?b?...?=`, `=?utf-8?q?...?=`) decoded.
fn decoded_header(value: &str) -> String {
    let mut out = Vec::new();
    let mut rest = value;
    let mut after_word = false;
    while let Some(start) = rest.find("=?") {
        let (plain, word) = rest.split_at(start);
        if !(after_word && plain.trim().is_empty()) {
            out.extend_from_slice(plain.as_bytes());
        }
        let parts: Vec<&str> = word[2..].splitn(3, '?').collect();
        let end = parts[2].find("?=").unwrap();
        let text = &parts[2][..end];
        assert!(parts[0].eq_ignore_ascii_case("utf-8"), "{value}");
        match parts[1] {
            "b" | "B" => out.extend(base64(text)),
            "q" | "Q" => out.extend(quoted_printable(&text.replace('_', " "))),
            other => panic!("unknown encoding {other} in {value}"),
        }
        rest = &parts[2][end + 2..];
        after_word = true;
    }
    out.extend_from_slice(rest.as_bytes());
    String::from_utf8(out).unwrap()
}

async fn outbox_rows(app: &TestApp) -> i64 {
    let pool = app.database.pool().await;
    let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM outbox")
        .fetch_one(&pool)
        .await
        .unwrap()
        .get("n");
    pool.close().await;
    n
}

async fn accounts_rows(app: &TestApp) -> i64 {
    let pool = app.database.pool().await;
    let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM accounts")
        .fetch_one(&pool)
        .await
        .unwrap()
        .get("n");
    pool.close().await;
    n
}

/// Sorted account IDs of the organization's members, with their roles.
async fn members(app: &TestApp, token: &str, org: &str) -> Vec<(String, String)> {
    let page = call(
        app,
        Method::GET,
        &format!("/api/v1/orgs/{org}/members"),
        token,
        None,
        200,
    )
    .await;
    let mut members: Vec<(String, String)> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|member| {
            (
                member["account_id"].as_str().unwrap().to_owned(),
                member["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    members.sort();
    members
}

async fn accept(app: &TestApp, session: &str, token: &str) -> reqwest::Response {
    app.post(
        "/api/v1/invitations/accept",
        Some(session),
        &json!({ "token": token }),
    )
    .await
}

async fn cannot_log_in(app: &TestApp, email: &str) {
    expect_problem(
        app.post(
            "/api/v1/sessions",
            None,
            &json!({ "email": email, "password": GOOD_PASSWORD }),
        )
        .await,
        401,
        "invalid_credentials",
    )
    .await;
}

/// The invitation as received: to the invited address, naming the organization, with a link
/// whose token sits in the fragment; and that token makes the invitee a member exactly once.
async fn the_invitation_arrives_and_its_token_works_once(engine: TestEngine) {
    let (app, smtp) = spawn_with_smtp(engine).await;
    let (_, admin) = app.account_with_session("admin@example.org").await;
    let org = create_org(&app, &admin, "Acme Widgets").await;
    let address = "New.Person@example.net";
    let invitation = invite(&app, &admin, &org, address, "guest").await;
    assert!(invitation["id"].as_str().unwrap().starts_with("inv_"));
    assert_eq!(invitation["email"], address);
    assert!(
        invitation.get("token").is_none(),
        "the token goes by mail only: {invitation}"
    );

    let mails = delivered(&app, &smtp, address, 1).await;
    let mail = &mails[0];
    assert_eq!(mail.to, vec![address.to_owned()]);
    assert_eq!(smtp.messages().len(), 1, "one message in all");
    let to = mail.header("To").unwrap();
    assert!(to.contains(address), "To: {to}");
    let subject = mail.header("Subject").unwrap();
    assert!(subject.contains("Acme Widgets"), "Subject: {subject}");
    let body = text_of(mail);
    assert!(body.contains(LINK), "no link in {body:?}");
    let link = body
        .lines()
        .find(|line| line.contains("/invitations/accept"))
        .unwrap()
        .trim();
    assert!(!link.contains('?'), "the token is never in a query: {link}");
    assert!(!body.contains("?token"), "{body}");
    let token = token_in(&body);
    assert_eq!(
        link,
        format!("{PUBLIC_URL}/invitations/accept#token={token}")
    );
    assert_eq!(token.len(), "mmi_".len() + 43, "{token}");

    let entries = app.services.outbox(10).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].status, "sent");
    assert_eq!(entries[0].kind, "invitation");
    assert_eq!(entries[0].attempts, 1);

    // The invitee signs up with the token from the real message.
    let joined = json_of(sign_up_invited(&app, address, &token).await, 201).await;
    assert_eq!(joined["email"], address);
    assert_eq!(joined["email_verified"], true, "{joined}");
    assert_eq!(joined["organization"]["id"], org.as_str());
    assert_eq!(joined["organization"]["name"], "Acme Widgets");
    assert_eq!(joined["organization"]["role"], "guest");
    assert_eq!(joined["organization"]["can_invite"], false);
    let invitee = joined["id"].as_str().unwrap().to_owned();
    let session = app.log_in(address, GOOD_PASSWORD).await.token;
    let me = call(&app, Method::GET, "/api/v1/me", &session, None, 200).await;
    assert_eq!(me["email_verified"], true);
    let orgs = call(&app, Method::GET, "/api/v1/orgs", &session, None, 200).await;
    assert_eq!(orgs["items"][0]["id"], org.as_str());
    assert_eq!(orgs["items"][0]["role"], "guest");
    let before = members(&app, &admin, &org).await;
    assert!(
        before.contains(&(invitee.clone(), String::from("guest"))),
        "{before:?}"
    );
    let pending = call(
        &app,
        Method::GET,
        &format!("/api/v1/orgs/{org}/invitations"),
        &admin,
        None,
        200,
    )
    .await;
    assert_eq!(pending["items"], json!([]));

    // A second use is refused: the invitee learns it was used; anyone else only that it is
    // not theirs (nothing of its state).
    expect_problem(accept(&app, &session, &token).await, 410, "invitation_used").await;
    let accounts = accounts_rows(&app).await;
    expect_problem(
        sign_up_invited(&app, "someone.else@example.net", &token).await,
        403,
        "invitation_email_mismatch",
    )
    .await;
    assert_eq!(accounts_rows(&app).await, accounts);
    cannot_log_in(&app, "someone.else@example.net").await;
    assert_eq!(members(&app, &admin, &org).await, before);

    // Nothing more was sent.
    outbox_drained(&app).await;
    assert_eq!(smtp.messages().len(), 1);
}

/// An account that exists already accepts the invitation from the message while logged in;
/// the address matches whatever its case.
async fn an_existing_account_accepts_the_emailed_invitation(engine: TestEngine) {
    let (app, smtp) = spawn_with_smtp(engine).await;
    let (_, admin) = app.account_with_session("admin@example.org").await;
    let org = create_org(&app, &admin, "Globex Partners").await;
    let (existing, session) = app
        .account_with_session("Existing.Person@Example.net")
        .await;
    let address = "existing.person@example.net";
    invite(&app, &admin, &org, address, "member").await;

    let mails = delivered(&app, &smtp, address, 1).await;
    assert!(
        mails[0]
            .header("Subject")
            .unwrap()
            .contains("Globex Partners")
    );
    let token = token_in(&text_of(&mails[0]));

    let me = call(&app, Method::GET, "/api/v1/me", &session, None, 200).await;
    assert_eq!(me["email_verified"], false);
    let joined = json_of(accept(&app, &session, &token).await, 200).await;
    assert_eq!(joined["id"], org.as_str());
    assert_eq!(joined["name"], "Globex Partners");
    // The token reached the address: accepting it proves the address.
    let me = call(&app, Method::GET, "/api/v1/me", &session, None, 200).await;
    assert_eq!(me["email_verified"], true);
    assert_eq!(joined["role"], "member");
    let orgs = call(&app, Method::GET, "/api/v1/orgs", &session, None, 200).await;
    assert_eq!(orgs["items"][0]["id"], org.as_str());
    let after = members(&app, &admin, &org).await;
    assert!(after.contains(&(existing.id.clone(), String::from("member"))));

    expect_problem(accept(&app, &session, &token).await, 410, "invitation_used").await;
    assert_eq!(members(&app, &admin, &org).await, after);
    // Anonymous acceptance is not a thing.
    let response = app
        .post(
            "/api/v1/invitations/accept",
            None,
            &json!({ "token": token }),
        )
        .await;
    assert_eq!(response.status(), 401);
}

/// A refused delivery stays pending, is not retried before its backoff, and then goes out
/// exactly once.
async fn failed_delivery_is_retried_after_a_backoff(engine: TestEngine) {
    let (app, smtp) = spawn_with_smtp(engine).await;
    smtp.set_refusing(true);
    let (_, admin) = app.account_with_session("admin@example.org").await;
    let org = create_org(&app, &admin, "Retry Works").await;
    let address = "patient@example.net";
    invite(&app, &admin, &org, address, "member").await;

    // The first attempt fails (through this round or the server's own sender).
    let deadline = Instant::now() + POLL_LIMIT;
    let entry = loop {
        app.services
            .deliver_mail_once(app.clock.now_timestamp())
            .await
            .unwrap();
        let entries = app.services.outbox(10).await.unwrap();
        assert_eq!(entries.len(), 1);
        if entries[0].attempts >= 1 {
            break entries[0].clone();
        }
        assert!(Instant::now() < deadline, "no attempt made: {entries:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(entry.status, "pending");
    assert_eq!(entry.attempts, 1);
    assert!(entry.last_error.is_some());
    assert_eq!(
        entry.next_attempt_at,
        TEST_EPOCH.plus_millis(60_000),
        "the first retry is a minute later"
    );
    assert!(smtp.messages().is_empty());

    // The receiver accepts again, but the backoff has not elapsed: nothing is sent.
    smtp.set_refusing(false);
    app.clock.advance_millis(30_000);
    let report = app
        .services
        .deliver_mail_once(app.clock.now_timestamp())
        .await
        .unwrap();
    assert_eq!(report.sent, 0);
    assert!(smtp.messages().is_empty());
    let entries = app.services.outbox(10).await.unwrap();
    assert_eq!(entries[0].status, "pending");
    assert_eq!(entries[0].attempts, 1);

    // Past the backoff it arrives, once.
    app.clock.advance_millis(30_001);
    let mails = delivered(&app, &smtp, address, 1).await;
    let token = token_in(&text_of(&mails[0]));
    let entries = app.services.outbox(10).await.unwrap();
    assert_eq!(entries[0].status, "sent");
    assert_eq!(entries[0].attempts, 2);
    app.clock.advance_millis(DAY_MS);
    app.services
        .deliver_mail_once(app.clock.now_timestamp())
        .await
        .unwrap();
    assert_eq!(smtp.messages().len(), 1, "sent exactly once");

    // And the token in it works.
    let joined = json_of(sign_up_invited(&app, address, &token).await, 201).await;
    assert_eq!(joined["organization"]["id"], org.as_str());
}

/// A change that is refused rolls back, and with it its mail: nothing enters the outbox and
/// nothing is sent.
async fn a_refused_change_sends_no_mail(engine: TestEngine) {
    let (app, smtp) = spawn_with_smtp(engine).await;
    let (_, admin) = app.account_with_session("admin@example.org").await;
    let org = create_org(&app, &admin, "Careful Co").await;
    invite(&app, &admin, &org, "member@example.net", "member").await;
    let token = token_in(&text_of(
        &delivered(&app, &smtp, "member@example.net", 1).await[0],
    ));
    json_of(
        sign_up_invited(&app, "member@example.net", &token).await,
        201,
    )
    .await;
    let member = app.log_in("member@example.net", GOOD_PASSWORD).await.token;
    outbox_drained(&app).await;
    let rows = outbox_rows(&app).await;
    let sent = smtp.messages().len();
    let invitations = format!("/api/v1/orgs/{org}/invitations");

    // Already a member (in any case of the address): 409.
    for address in ["member@example.net", "MEMBER@Example.NET"] {
        let response = app
            .post(
                &invitations,
                Some(&admin),
                &json!({ "email": address, "role": "guest" }),
            )
            .await;
        expect_problem(response, 409, "conflict").await;
    }
    // An invalid role or address: 422.
    for (email, role) in [
        ("fresh@example.net", "owner"),
        ("fresh@example.net", ""),
        ("not-an-address", "member"),
    ] {
        let response = app
            .post(
                &invitations,
                Some(&admin),
                &json!({ "email": email, "role": role }),
            )
            .await;
        expect_problem(response, 422, "validation_failed").await;
    }
    // Someone without the invite permission: 403.
    let response = app
        .post(
            &invitations,
            Some(&member),
            &json!({ "email": "fresh@example.net", "role": "guest" }),
        )
        .await;
    expect_problem(response, 403, "forbidden").await;

    assert_eq!(outbox_rows(&app).await, rows, "the outbox is unchanged");
    app.clock.advance_millis(DAY_MS);
    let report = app
        .services
        .deliver_mail_once(app.clock.now_timestamp())
        .await
        .unwrap();
    assert_eq!(report.sent, 0);
    assert_eq!(smtp.messages().len(), sent, "no mail was sent");
    assert!(smtp.messages_to("fresh@example.net").is_empty());
    let admin = app.log_in("admin@example.org", GOOD_PASSWORD).await.token;
    let pending = call(&app, Method::GET, &invitations, &admin, None, 200).await;
    assert_eq!(pending["items"], json!([]), "no invitation was left behind");
}

/// Without an SMTP URL mail waits in the outbox, sealed: no column holds the address or the
/// token, yet the operator's view opens it.
async fn without_smtp_mail_stays_sealed_in_the_outbox(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let (_, admin) = app.account_with_session("admin@example.org").await;
    let org = create_org(&app, &admin, "Sealed Envelopes").await;
    let address = "Ximena.Sealed@Example.net";
    invite(&app, &admin, &org, address, "member").await;

    for _ in 0..2 {
        let report = app
            .services
            .deliver_mail_once(app.clock.now_timestamp())
            .await
            .unwrap();
        assert_eq!(report, Default::default());
        app.clock.advance_millis(DAY_MS);
    }
    let entries = app.services.outbox(10).await.unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert_eq!(entry.status, "pending");
    assert_eq!(entry.attempts, 0);
    assert_eq!(entry.kind, "invitation");
    assert_eq!(entry.last_error, None);
    assert_eq!(entry.created_at, TEST_EPOCH);
    let mail = entry.mail.as_ref().expect("the operator opens it");
    assert_eq!(mail.to, address);
    assert!(
        mail.subject.contains("Sealed Envelopes"),
        "{}",
        mail.subject
    );
    let expected_link = format!(
        "{}/invitations/accept#token=mmi_",
        app.settings.public_url.trim_end_matches('/')
    );
    assert!(mail.body.contains(&expected_link), "{}", mail.body);
    let token = token_in(&mail.body);

    // Through SQL: the sealed message and every other column hold neither.
    let pool = app.database.pool().await;
    let sealed: Vec<String> = sqlx::query("SELECT message_sealed FROM outbox")
        .fetch_all(&pool)
        .await
        .unwrap()
        .iter()
        .map(|row| row.get("message_sealed"))
        .collect();
    assert_eq!(sealed.len(), 1);
    assert!(!sealed[0].is_empty());
    let mut texts = Vec::new();
    for table in ["outbox", "invitations"] {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM {table}")))
            .fetch_all(&pool)
            .await
            .unwrap();
        for row in rows {
            for index in 0..row.len() {
                if let Ok(Some(text)) = row.try_get::<Option<String>, _>(index) {
                    texts.push((table, text));
                }
            }
        }
    }
    pool.close().await;
    let secrets = [
        address,
        "ximena",
        token.as_str(),
        &token["mmi_".len()..],
        "Sealed Envelopes",
    ];
    for (table, text) in &texts {
        for secret in secrets {
            assert!(
                !text.to_lowercase().contains(&secret.to_lowercase()),
                "{secret:?} found in {table}: {text:?}"
            );
        }
    }

    // The token still works (seven days have not passed).
    let joined = json_of(sign_up_invited(&app, address, &token).await, 201).await;
    assert_eq!(joined["organization"]["id"], org.as_str());
    assert_eq!(app.services.outbox(10).await.unwrap()[0].status, "pending");
}

/// A crash or a missing SMTP URL loses no mail: what waits in the outbox goes out once the
/// server runs with a sender.
async fn mail_left_in_the_outbox_goes_out_after_a_restart_with_smtp(engine: TestEngine) {
    let mut app = spawn_app(engine).await;
    let (_, admin) = app.account_with_session("admin@example.org").await;
    let org = create_org(&app, &admin, "Durable Mail").await;
    invite(&app, &admin, &org, "later@example.net", "member").await;
    let stored_token = outbox_token(&app, "later@example.net").await;
    app.stop().await;

    let smtp = SmtpReceiver::start().await;
    let mut settings = app.settings.clone();
    settings.listen = "127.0.0.1:0".parse().unwrap();
    settings.smtp_url = Some(smtp.url());
    let app = spawn_with(app.database.clone(), settings, app.clock.clone()).await;
    let mails = delivered(&app, &smtp, "later@example.net", 1).await;
    assert!(mails[0].header("Subject").unwrap().contains("Durable Mail"));
    let token = token_in(&text_of(&mails[0]));
    assert_eq!(token, stored_token);
    let joined = json_of(
        sign_up_invited(&app, "later@example.net", &token).await,
        201,
    )
    .await;
    assert_eq!(joined["organization"]["id"], org.as_str());
}

/// Inviting a pending address again replaces its invitation: the old token is withdrawn, the
/// new one works.
async fn inviting_again_replaces_the_pending_invitation(engine: TestEngine) {
    let (app, smtp) = spawn_with_smtp(engine).await;
    let (_, admin) = app.account_with_session("admin@example.org").await;
    let org = create_org(&app, &admin, "Second Chances").await;
    let address = "twice@example.net";
    let first = invite(&app, &admin, &org, address, "member").await;
    let old_token = token_in(&text_of(&delivered(&app, &smtp, address, 1).await[0]));
    app.clock.advance_millis(1_000);
    let second = invite(&app, &admin, &org, address, "guest").await;
    assert_ne!(first["id"], second["id"]);
    let mails = delivered(&app, &smtp, address, 2).await;
    let new_token = token_in(&text_of(&mails[1]));
    assert_ne!(old_token, new_token);

    let pending = call(
        &app,
        Method::GET,
        &format!("/api/v1/orgs/{org}/invitations"),
        &admin,
        None,
        200,
    )
    .await;
    let items = pending["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{pending}");
    assert_eq!(items[0]["id"], second["id"]);
    assert_eq!(items[0]["role"], "guest");

    let accounts = accounts_rows(&app).await;
    expect_problem(
        sign_up_invited(&app, address, &old_token).await,
        410,
        "invitation_revoked",
    )
    .await;
    assert_eq!(accounts_rows(&app).await, accounts);
    let joined = json_of(sign_up_invited(&app, address, &new_token).await, 201).await;
    assert_eq!(joined["organization"]["role"], "guest");
    let session = app.log_in(address, GOOD_PASSWORD).await.token;
    expect_problem(
        accept(&app, &session, &old_token).await,
        410,
        "invitation_revoked",
    )
    .await;
    // The replaced invitation cannot be revoked either.
    let response = app
        .request(
            Method::DELETE,
            &format!(
                "/api/v1/orgs/{org}/invitations/{}",
                first["id"].as_str().unwrap()
            ),
            Some(&admin),
            None,
        )
        .await;
    expect_problem(response, 409, "invitation_not_pending").await;
}

/// Garbage, tokens sent to someone else, revoked and expired invitations are refused, and none
/// of them changes the membership.
async fn unusable_invitations_are_refused(engine: TestEngine) {
    let (app, smtp) = spawn_with_smtp(engine).await;
    let (_, admin) = app.account_with_session("admin@example.org").await;
    let org = create_org(&app, &admin, "Strict Door").await;
    let (_, other) = app.account_with_session("other@example.net").await;
    let before = members(&app, &admin, &org).await;
    let accounts = accounts_rows(&app).await;

    // Garbage.
    for token in [
        String::from("garbage"),
        String::new(),
        format!("mmi_{}", "A".repeat(43)),
        format!("mmi_{}", "A".repeat(44)),
        format!("mms_{}", "A".repeat(43)),
    ] {
        expect_problem(
            accept(&app, &other, &token).await,
            410,
            "invitation_invalid",
        )
        .await;
        expect_problem(
            sign_up_invited(&app, "hopeful@example.net", &token).await,
            410,
            "invitation_invalid",
        )
        .await;
    }
    assert_eq!(members(&app, &admin, &org).await, before);
    assert_eq!(accounts_rows(&app).await, accounts);

    // Sent to another address.
    invite(&app, &admin, &org, "intended@example.net", "member").await;
    let intended = token_in(&text_of(
        &delivered(&app, &smtp, "intended@example.net", 1).await[0],
    ));
    expect_problem(
        accept(&app, &other, &intended).await,
        403,
        "invitation_email_mismatch",
    )
    .await;
    expect_problem(
        sign_up_invited(&app, "impostor@example.net", &intended).await,
        403,
        "invitation_email_mismatch",
    )
    .await;
    assert_eq!(members(&app, &admin, &org).await, before);
    assert_eq!(accounts_rows(&app).await, accounts);
    cannot_log_in(&app, "impostor@example.net").await;

    // Revoked.
    let revoked = invite(&app, &admin, &org, "revoked@example.net", "member").await;
    let revoked_token = token_in(&text_of(
        &delivered(&app, &smtp, "revoked@example.net", 1).await[0],
    ));
    let response = app
        .request(
            Method::DELETE,
            &format!(
                "/api/v1/orgs/{org}/invitations/{}",
                revoked["id"].as_str().unwrap()
            ),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(response.status(), 204);
    expect_problem(
        sign_up_invited(&app, "revoked@example.net", &revoked_token).await,
        410,
        "invitation_revoked",
    )
    .await;
    cannot_log_in(&app, "revoked@example.net").await;
    // To anyone else it is simply not theirs.
    expect_problem(
        accept(&app, &other, &revoked_token).await,
        403,
        "invitation_email_mismatch",
    )
    .await;
    let (_, revoked_session) = app.account_with_session("revoked@example.net").await;
    expect_problem(
        accept(&app, &revoked_session, &revoked_token).await,
        410,
        "invitation_revoked",
    )
    .await;
    assert_eq!(members(&app, &admin, &org).await, before);

    // Expired: good until seven days have passed, gone from then on.
    invite(&app, &admin, &org, "late@example.net", "member").await;
    let late = token_in(&text_of(
        &delivered(&app, &smtp, "late@example.net", 1).await[0],
    ));
    app.clock.advance_millis(7 * DAY_MS - 1);
    let admin = app.log_in("admin@example.org", GOOD_PASSWORD).await.token;
    let pending_emails = |page: Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["email"].as_str().unwrap().to_owned())
            .collect()
    };
    let invitations = format!("/api/v1/orgs/{org}/invitations");
    // A millisecond before the end it is still pending.
    let pending = call(&app, Method::GET, &invitations, &admin, None, 200).await;
    assert!(
        pending_emails(pending.clone()).contains(&String::from("late@example.net")),
        "{pending}"
    );
    app.clock.advance_millis(2);
    let accounts = accounts_rows(&app).await;
    expect_problem(
        sign_up_invited(&app, "late@example.net", &late).await,
        410,
        "invitation_expired",
    )
    .await;
    assert_eq!(accounts_rows(&app).await, accounts);
    let (_, late_session) = app.account_with_session("late@example.net").await;
    expect_problem(
        accept(&app, &late_session, &late).await,
        410,
        "invitation_expired",
    )
    .await;
    // The invitation sent to "intended" expired too.
    expect_problem(
        sign_up_invited(&app, "intended@example.net", &intended).await,
        410,
        "invitation_expired",
    )
    .await;
    let pending = call(&app, Method::GET, &invitations, &admin, None, 200).await;
    assert_eq!(pending_emails(pending), Vec::<String>::new());
    assert_eq!(members(&app, &admin, &org).await, before);
    let value: Value = call(&app, Method::GET, "/api/v1/orgs", &late_session, None, 200).await;
    assert_eq!(value["items"], json!([]));
}

/// An organization named in Japanese (and with accents) is named correctly in the message's
/// subject and body, and the link in it still works.
async fn a_non_ascii_organization_name_arrives_intact(engine: TestEngine) {
    let (app, smtp) = spawn_with_smtp(engine).await;
    let (_, admin) = app.account_with_session("admin@example.org").await;
    let name = "株式会社まもり Café Ñandú";
    let org = create_org(&app, &admin, name).await;
    let address = "kanji@example.net";
    invite(&app, &admin, &org, address, "member").await;
    let mails = delivered(&app, &smtp, address, 1).await;
    let subject = decoded_header(&mails[0].header("Subject").unwrap());
    assert!(subject.contains(name), "Subject: {subject}");
    let body = text_of(&mails[0]);
    assert!(body.contains(name), "{body}");
    assert!(body.contains(LINK), "{body}");
    let token = token_in(&body);
    let joined = json_of(sign_up_invited(&app, address, &token).await, 201).await;
    assert_eq!(joined["organization"]["name"], name);
}

/// An address the API accepts for an invitation is one the mail can go to: an invitation is
/// either refused at once (422) or its message arrives.
async fn every_address_accepted_for_an_invitation_can_be_mailed(engine: TestEngine) {
    let (app, smtp) = spawn_with_smtp(engine).await;
    let (_, admin) = app.account_with_session("admin@example.org").await;
    let org = create_org(&app, &admin, "Odd Addresses").await;
    let addresses = [
        "o'brien@example.net",
        "first.last+tag@example.net",
        "a<b@example.net",
        "a,b@example.net",
        "a(b)@example.net",
        "a..b@example.net",
        ".a@example.net",
        "a[b]@example.net",
        "a;b@example.net",
    ];
    let mut accepted = Vec::new();
    for address in addresses {
        let response = app
            .post(
                &format!("/api/v1/orgs/{org}/invitations"),
                Some(&admin),
                &json!({ "email": address, "role": "guest" }),
            )
            .await;
        match response.status().as_u16() {
            201 => accepted.push(address),
            422 => {}
            other => panic!("{address}: {other}"),
        }
    }
    assert!(accepted.contains(&"o'brien@example.net"));
    assert!(accepted.contains(&"first.last+tag@example.net"));

    let deadline = Instant::now() + POLL_LIMIT;
    loop {
        app.services
            .deliver_mail_once(app.clock.now_timestamp())
            .await
            .unwrap();
        let missing: Vec<&str> = accepted
            .iter()
            .copied()
            .filter(|address| smtp.messages_to(address).is_empty())
            .collect();
        if missing.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            let errors: Vec<(Option<String>, &str, Option<String>)> = app
                .services
                .outbox(50)
                .await
                .unwrap()
                .into_iter()
                .filter(|entry| entry.status != "sent")
                .map(|entry| {
                    (
                        entry.mail.map(|mail| mail.to),
                        entry.status,
                        entry.last_error,
                    )
                })
                .collect();
            panic!("accepted (201) but never delivered: {missing:?}; outbox: {errors:?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// ACC-4 for invitations: when the invitee deletes the account, the invitation it accepted
/// no longer holds its address, and the sent message goes after its seven days.
async fn an_invitees_address_goes_when_the_account_is_deleted(engine: TestEngine) {
    let (app, smtp) = spawn_with_smtp(engine).await;
    let (_, admin) = app.account_with_session("admin@example.org").await;
    let org = create_org(&app, &admin, "Forgetful Org").await;
    let address = "Leaving.Soon@example.net";
    invite(&app, &admin, &org, address, "member").await;
    let token = token_in(&text_of(&delivered(&app, &smtp, address, 1).await[0]));
    let joined = json_of(sign_up_invited(&app, address, &token).await, 201).await;
    let invitee = joined["id"].as_str().unwrap().to_owned();
    let session = app.log_in(address, GOOD_PASSWORD).await.token;
    outbox_drained(&app).await;

    let response = app
        .request(
            Method::DELETE,
            "/api/v1/me",
            Some(&session),
            Some(&json!({ "password": GOOD_PASSWORD })),
        )
        .await;
    assert_eq!(response.status(), 204);
    let pool = app.database.pool().await;
    let row = sqlx::query(
        "SELECT email_index, email_sealed, status FROM invitations WHERE accepted_by = $1",
    )
    .bind(&invitee)
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    assert_eq!(row.get::<String, _>("status"), "accepted");
    assert_eq!(row.get::<String, _>("email_sealed"), "");
    assert!(
        row.get::<String, _>("email_index").starts_with("scrubbed:"),
        "the blind index of the address is gone"
    );
    // The address can be invited again, and the member list no longer shows the account.
    assert!(
        !members(&app, &admin, &org)
            .await
            .iter()
            .any(|(account, _)| *account == invitee)
    );

    // The sent message is kept seven days for the operator, then purged.
    app.clock.advance_millis(7 * DAY_MS - 1);
    app.services
        .run_jobs_once(app.clock.now_timestamp())
        .await
        .unwrap();
    assert_eq!(app.services.outbox(10).await.unwrap().len(), 1);
    app.clock.advance_millis(2);
    app.services
        .run_jobs_once(app.clock.now_timestamp())
        .await
        .unwrap();
    let left = app.services.outbox(10).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
}
