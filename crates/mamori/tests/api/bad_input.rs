//! Bad input changes nothing. Sign-up, login, `PATCH /me`, `PUT /me/password`, `DELETE /me`
//! and `POST /operator/apps` get malformed JSON (400), wrong types, missing and unknown fields
//! (422 naming the field), other media types (415), bodies over 64 KiB (413), invalid emails and
//! display names, weak passwords, duplicate emails (409) and wrong passwords (401 at login, 422
//! on a password change or deletion). Every one answers a 4xx `application/problem+json` with
//! its stable code, never a 500, and leaves accounts, sessions, apps, the audit trail and the
//! account itself as they were (the old password still logs in).

// Test code: a failed unwrap or a panic is a failed test (clippy.toml allows them in
// `#[test]` functions, not in the helpers and engine-generic bodies here).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mamori_testkit::{GOOD_PASSWORD, TestApp, TestEngine, expect_problem, json_of, spawn_app};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::AnyPool;

mamori_testkit::engine_tests!(
    malformed_json_is_400_everywhere,
    other_media_types_are_415_everywhere,
    bodies_over_64_kib_are_413_everywhere,
    refusing_a_large_body_says_connection_close,
    wrong_types_are_422_naming_the_field,
    missing_fields_are_422_naming_the_field,
    unknown_fields_are_422_naming_the_field,
    sign_up_refuses_invalid_emails,
    sign_up_refuses_bad_display_names,
    update_me_refuses_bad_display_names,
    weak_passwords_are_refused_at_sign_up,
    weak_passwords_are_refused_on_password_change,
    passwords_made_of_the_holders_name_are_refused,
    duplicate_email_in_any_case_is_409,
    wrong_password_at_login_is_401_and_same_as_unknown_email,
    wrong_current_password_is_422_and_changes_nothing,
    password_accepted_at_sign_up_always_logs_in,
);

const EMAIL: &str = "marguerite.fontaine@example.com";
const NAME: &str = "Marguerite Fontaine";
const BODY_LIMIT: usize = 64 * 1024;

/// Which credential a call is made with.
#[derive(Debug, Clone, Copy)]
enum Who {
    Anyone,
    Account,
    Operator,
}

/// One of the calls that take a JSON body.
#[derive(Clone)]
struct Call {
    method: Method,
    path: &'static str,
    who: Who,
}

const SIGN_UP: Call = Call {
    method: Method::POST,
    path: "/api/v1/accounts",
    who: Who::Anyone,
};
const LOG_IN: Call = Call {
    method: Method::POST,
    path: "/api/v1/sessions",
    who: Who::Anyone,
};
const UPDATE_ME: Call = Call {
    method: Method::PATCH,
    path: "/api/v1/me",
    who: Who::Account,
};
const CHANGE_PASSWORD: Call = Call {
    method: Method::PUT,
    path: "/api/v1/me/password",
    who: Who::Account,
};
const DELETE_ME: Call = Call {
    method: Method::DELETE,
    path: "/api/v1/me",
    who: Who::Account,
};
const CREATE_APP: Call = Call {
    method: Method::POST,
    path: "/api/v1/operator/apps",
    who: Who::Operator,
};

const NEW_PASSWORD: &str = "plum lantern seventeen quietly";

/// Every call with a body it accepts, in an order in which each is accepted in turn (the
/// password change comes before the deletion that uses the new password).
fn calls_with_valid_bodies() -> Vec<(Call, Value)> {
    vec![
        (
            SIGN_UP,
            json!({ "email": "newcomer@example.com", "password": GOOD_PASSWORD, "display_name": "New" }),
        ),
        (LOG_IN, json!({ "email": EMAIL, "password": GOOD_PASSWORD })),
        (UPDATE_ME, json!({ "display_name": "Changed Name" })),
        (CREATE_APP, json!({ "name": "Billing" })),
        (
            CHANGE_PASSWORD,
            json!({ "current_password": GOOD_PASSWORD, "new_password": NEW_PASSWORD }),
        ),
        (DELETE_ME, json!({ "password": NEW_PASSWORD })),
    ]
}

/// A request to send: a call with raw bytes and an optional content type.
struct Sent {
    method: Method,
    path: &'static str,
    who: Who,
    content_type: Option<&'static str>,
    body: Vec<u8>,
}

impl Call {
    fn json(&self, body: &Value) -> Sent {
        self.raw(Some("application/json"), body.to_string())
    }

    fn raw(&self, content_type: Option<&'static str>, body: impl Into<Vec<u8>>) -> Sent {
        Sent {
            method: self.method.clone(),
            path: self.path,
            who: self.who,
            content_type,
            body: body.into(),
        }
    }
}

/// What the answer must be.
#[derive(Debug, Clone, Copy)]
struct Expect {
    status: u16,
    code: &'static str,
    /// The one field `errors[]` must name, for `validation_failed`.
    field: Option<&'static str>,
    /// How many failure events (a wrong password) the audit trail gains.
    failures: i64,
}

const fn problem(status: u16, code: &'static str) -> Expect {
    Expect {
        status,
        code,
        field: None,
        failures: 0,
    }
}

const fn invalid(field: &'static str) -> Expect {
    Expect {
        status: 422,
        code: "validation_failed",
        field: Some(field),
        failures: 0,
    }
}

impl Expect {
    const fn audited_as_failure(self) -> Expect {
        Expect {
            failures: 1,
            ..self
        }
    }
}

/// A server with one account (two sessions of it) and an operator token.
struct Fixture {
    app: TestApp,
    /// Sends the bad requests on fresh connections: after refusing an oversized body the
    /// server may close its connection, and that must not disturb the other requests.
    client: reqwest::Client,
    pool: AnyPool,
    token: String,
    other_token: String,
    operator: String,
}

/// Everything bad input must leave alone.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    active_accounts: i64,
    sessions: i64,
    apps: i64,
    successes: i64,
    failures: i64,
    me: String,
    other_session: u16,
}

impl Fixture {
    async fn new(engine: TestEngine) -> Fixture {
        let app = spawn_app(engine).await;
        app.sign_up(EMAIL, GOOD_PASSWORD, NAME).await;
        let token = app.log_in(EMAIL, GOOD_PASSWORD).await.token;
        let other_token = app.log_in(EMAIL, GOOD_PASSWORD).await.token;
        let operator = app.operator_token().await;
        let pool = app.database.pool().await;
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        Fixture {
            app,
            client,
            pool,
            token,
            other_token,
            operator,
        }
    }

    fn credential(&self, who: Who) -> Option<&str> {
        match who {
            Who::Anyone => None,
            Who::Account => Some(&self.token),
            Who::Operator => Some(&self.operator),
        }
    }

    async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    async fn snapshot(&self) -> Snapshot {
        let me = self.app.get("/api/v1/me", Some(&self.token)).await;
        let me = format!("{} {}", me.status(), me.text().await.unwrap());
        let other_session = self
            .app
            .get("/api/v1/me", Some(&self.other_token))
            .await
            .status()
            .as_u16();
        Snapshot {
            active_accounts: self
                .count("SELECT COUNT(*) FROM accounts WHERE status = 'active'")
                .await,
            sessions: self.count("SELECT COUNT(*) FROM sessions").await,
            apps: self.count("SELECT COUNT(*) FROM apps").await,
            successes: self
                .count("SELECT COUNT(*) FROM audit_events WHERE outcome = 'success'")
                .await,
            failures: self
                .count("SELECT COUNT(*) FROM audit_events WHERE outcome = 'failure'")
                .await,
            me,
            other_session,
        }
    }

    /// The account still logs in with its password (and not with `wrong`).
    async fn assert_password_unchanged(&self, wrong: &str) {
        self.app.log_in(EMAIL, GOOD_PASSWORD).await;
        expect_problem(
            self.app
                .post(
                    "/api/v1/sessions",
                    None,
                    &json!({ "email": EMAIL, "password": wrong }),
                )
                .await,
            401,
            "invalid_credentials",
        )
        .await;
    }
}

/// Sends `sent`, asserts the problem it answers, and that nothing changed but the expected
/// failure events in the audit trail. Returns the problem.
async fn check(fixture: &Fixture, sent: Sent, expect: Expect) -> Value {
    let before = fixture.snapshot().await;
    let shown: String = String::from_utf8_lossy(&sent.body)
        .chars()
        .take(160)
        .collect();
    let what = format!(
        "{} {} ({:?}, {} bytes) {shown}",
        sent.method,
        sent.path,
        sent.content_type,
        sent.body.len()
    );
    let mut request = fixture
        .client
        .request(sent.method, fixture.app.url(sent.path));
    if let Some(token) = fixture.credential(sent.who) {
        request = request.bearer_auth(token);
    }
    if let Some(content_type) = sent.content_type {
        request = request.header("content-type", content_type);
    }
    let response = request.body(sent.body).send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|value| value.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    assert_eq!(status, expect.status, "{what}: {text}");
    assert_eq!(
        content_type.as_deref(),
        Some("application/problem+json"),
        "{what}: {text}"
    );
    let problem: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(problem["code"], expect.code, "{what}: {text}");
    assert_eq!(problem["status"], expect.status, "{what}: {text}");
    assert!(problem["title"].is_string(), "{what}: {text}");
    assert!(problem["type"].is_string(), "{what}: {text}");
    if let Some(field) = expect.field {
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .map(|error| error["field"].as_str().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(fields, [field], "{what}: {text}");
    }
    let after = fixture.snapshot().await;
    let expected = Snapshot {
        failures: before.failures + expect.failures,
        ..before
    };
    assert_eq!(after, expected, "{what} changed something");
    problem
}

/// A valid JSON body of exactly `size` bytes: `body` padded with trailing white space.
fn padded(body: &Value, size: usize) -> Vec<u8> {
    let mut bytes = body.to_string().into_bytes();
    assert!(bytes.len() <= size);
    bytes.resize(size, b' ');
    bytes
}

/// An email address of exactly `len` characters (at least 198), valid in every other way.
fn email_of_len(len: usize) -> String {
    let email = format!(
        "{}@{}.{}.{}.com",
        "a".repeat(64),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(len - 197)
    );
    assert_eq!(email.len(), len);
    email
}

async fn malformed_json_is_400_everywhere(engine: TestEngine) {
    let fixture = Fixture::new(engine).await;
    for (call, body) in calls_with_valid_bodies() {
        // The first field the call knows, so that only the syntax is wrong.
        let key = body.as_object().unwrap().keys().next().unwrap().clone();
        let valid = body.to_string();
        let mut malformed: Vec<Vec<u8>> = [
            String::new(),
            String::from("{"),
            format!("{{\"{key}\": "),
            format!("{{\"{key}\": \"x\",}}"),
            format!("{{'{key}': 'x'}}"),
            format!("{valid} trailing"),
            format!("{valid}{{}}"),
            String::from("not json at all"),
            // A lone surrogate is not a character.
            format!("{{\"{key}\": \"\\ud800\"}}"),
        ]
        .into_iter()
        .map(String::into_bytes)
        .collect();
        // Bytes that are not UTF-8.
        let mut not_utf8 = format!("{{\"{key}\": \"").into_bytes();
        not_utf8.extend_from_slice(b"\xff\xfe\"}");
        malformed.push(not_utf8);
        for bytes in malformed {
            check(
                &fixture,
                call.raw(Some("application/json"), bytes),
                problem(400, "malformed_json"),
            )
            .await;
        }
    }
    fixture
        .assert_password_unchanged("not the password at all")
        .await;
}

async fn other_media_types_are_415_everywhere(engine: TestEngine) {
    let fixture = Fixture::new(engine).await;
    for (call, body) in calls_with_valid_bodies() {
        let text = body.to_string();
        for content_type in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            Some("application/jsonx"),
            Some("json"),
        ] {
            check(
                &fixture,
                call.raw(content_type, text.clone()),
                problem(415, "unsupported_media_type"),
            )
            .await;
        }
    }
    // The same bodies as JSON (with a charset parameter, in any case) go through.
    for (call, body) in calls_with_valid_bodies() {
        let mut request = fixture
            .client
            .request(call.method.clone(), fixture.app.url(call.path))
            .header("content-type", "Application/JSON; charset=utf-8")
            .body(body.to_string());
        if let Some(token) = fixture.credential(call.who) {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(
            status.is_success(),
            "{} {}: {status} {text}",
            call.method,
            call.path
        );
    }
    expect_problem(
        fixture.app.get("/api/v1/me", Some(&fixture.token)).await,
        401,
        "unauthenticated",
    )
    .await;
}

async fn bodies_over_64_kib_are_413_everywhere(engine: TestEngine) {
    let fixture = Fixture::new(engine).await;
    for (call, body) in calls_with_valid_bodies() {
        for size in [BODY_LIMIT + 1, 4 * BODY_LIMIT] {
            check(
                &fixture,
                call.raw(Some("application/json"), padded(&body, size)),
                problem(413, "payload_too_large"),
            )
            .await;
        }
        // One long field rather than white space.
        let mut big = body.clone();
        let key = body.as_object().unwrap().keys().next().unwrap().clone();
        big[key] = Value::String("x".repeat(BODY_LIMIT));
        check(&fixture, call.json(&big), problem(413, "payload_too_large")).await;
    }
    fixture
        .assert_password_unchanged("not the password at all")
        .await;
    // Exactly at the limit is read.
    let at_limit = fixture
        .app
        .client
        .patch(fixture.app.url("/api/v1/me"))
        .bearer_auth(&fixture.token)
        .header("content-type", "application/json")
        .body(padded(
            &json!({ "display_name": "At The Limit" }),
            BODY_LIMIT,
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(at_limit, 200).await["display_name"], "At The Limit");
}

/// Sends each `(call, body, field)` and expects 422 naming `field`; the password stays.
async fn check_fields(engine: TestEngine, cases: Vec<(Call, Value, &'static str)>) {
    let fixture = Fixture::new(engine).await;
    for (call, body, field) in cases {
        check(&fixture, call.json(&body), invalid(field)).await;
    }
    fixture
        .assert_password_unchanged("not the password at all")
        .await;
}

/// When the server answers 413 without reading a large body it drops the connection; it must
/// say `Connection: close` so that a keep-alive client does not send its next request into a
/// dead connection (RFC 9112, section 9.6).
async fn refusing_a_large_body_says_connection_close(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let client = reqwest::Client::new();
    for size in [4 * BODY_LIMIT, 16 * BODY_LIMIT] {
        let response = client
            .post(app.url("/api/v1/accounts"))
            .header("content-type", "application/json")
            .body(padded(&json!({}), size))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 413);
        assert_eq!(
            response
                .headers()
                .get("connection")
                .map(|value| value.to_str().unwrap()),
            Some("close"),
            "{size} bytes refused; headers: {:?}",
            response.headers()
        );
        expect_problem(response, 413, "payload_too_large").await;
    }
}

async fn wrong_types_are_422_naming_the_field(engine: TestEngine) {
    let password = GOOD_PASSWORD;
    let mut cases: Vec<(Call, Value, &str)> = vec![
        (
            SIGN_UP,
            json!({ "email": 5, "password": password, "display_name": "N" }),
            "email",
        ),
        (
            SIGN_UP,
            json!({ "email": "new@example.com", "password": true, "display_name": "N" }),
            "password",
        ),
        (
            SIGN_UP,
            json!({ "email": "new@example.com", "password": password, "display_name": ["N"] }),
            "display_name",
        ),
        (
            SIGN_UP,
            json!({ "email": null, "password": password, "display_name": "N" }),
            "email",
        ),
        (
            LOG_IN,
            json!({ "email": { "address": EMAIL }, "password": password }),
            "email",
        ),
        (
            LOG_IN,
            json!({ "email": EMAIL, "password": 1234567890 }),
            "password",
        ),
        (UPDATE_ME, json!({ "display_name": 5 }), "display_name"),
        (UPDATE_ME, json!({ "display_name": false }), "display_name"),
        (
            CHANGE_PASSWORD,
            json!({ "current_password": 7, "new_password": NEW_PASSWORD }),
            "current_password",
        ),
        (
            CHANGE_PASSWORD,
            json!({ "current_password": password, "new_password": ["plum"] }),
            "new_password",
        ),
        (DELETE_ME, json!({ "password": 123 }), "password"),
        (DELETE_ME, json!({ "password": null }), "password"),
        (CREATE_APP, json!({ "name": 5 }), "name"),
        (CREATE_APP, json!({ "name": { "en": "Billing" } }), "name"),
    ];
    // A body that is not an object at all is the body's fault.
    for (call, _) in calls_with_valid_bodies() {
        for body in [json!("text"), json!(42), json!(null)] {
            cases.push((call.clone(), body, "body"));
        }
    }
    check_fields(engine, cases).await;
}

async fn missing_fields_are_422_naming_the_field(engine: TestEngine) {
    let password = GOOD_PASSWORD;
    let cases: Vec<(Call, Value, &str)> = vec![
        (
            SIGN_UP,
            json!({ "password": password, "display_name": "N" }),
            "email",
        ),
        (
            SIGN_UP,
            json!({ "email": "new@example.com", "display_name": "N" }),
            "password",
        ),
        (
            SIGN_UP,
            json!({ "email": "new@example.com", "password": password }),
            "display_name",
        ),
        (LOG_IN, json!({ "password": password }), "email"),
        (LOG_IN, json!({ "email": EMAIL }), "password"),
        (
            CHANGE_PASSWORD,
            json!({ "new_password": NEW_PASSWORD }),
            "current_password",
        ),
        (
            CHANGE_PASSWORD,
            json!({ "current_password": password }),
            "new_password",
        ),
        (DELETE_ME, json!({}), "password"),
        (CREATE_APP, json!({}), "name"),
    ];
    check_fields(engine, cases).await;
}

async fn unknown_fields_are_422_naming_the_field(engine: TestEngine) {
    let password = GOOD_PASSWORD;
    let cases: Vec<(Call, Value, &str)> = vec![
        (
            SIGN_UP,
            json!({ "email": "new@example.com", "password": password, "display_name": "N", "is_admin": true }),
            "is_admin",
        ),
        (
            LOG_IN,
            json!({ "email": EMAIL, "password": password, "remember_me": true }),
            "remember_me",
        ),
        (
            UPDATE_ME,
            json!({ "email": "elsewhere@example.com", "password_hash": "x" }),
            "password_hash",
        ),
        (
            UPDATE_ME,
            json!({ "display_name": "Sneaky", "email_verified": true }),
            "email_verified",
        ),
        (
            CHANGE_PASSWORD,
            json!({ "current_password": password, "new_password": NEW_PASSWORD, "confirm": "x" }),
            "confirm",
        ),
        (
            DELETE_ME,
            json!({ "password": password, "force": true }),
            "force",
        ),
        (
            CREATE_APP,
            json!({ "name": "Billing", "secret": "mma_chosen" }),
            "secret",
        ),
    ];
    check_fields(engine, cases).await;
}

async fn sign_up_refuses_invalid_emails(engine: TestEngine) {
    let fixture = Fixture::new(engine).await;
    let too_long = email_of_len(255);
    let long_local = format!("{}@example.com", "a".repeat(65));
    let invalid_emails = [
        "",
        "   ",
        "plainaddress",
        "@example.com",
        "newcomer@",
        "newcomer@example",
        "newcomer@@example.com",
        "new comer@example.com",
        "newcomer@exam ple.com",
        "newcomer@-example.com",
        "newcomer@example-.com",
        "newcomer@example..com",
        "newcomer@.example.com",
        "\"newcomer\"@example.com",
        "new\u{0}comer@example.com",
        "newcomer@example.com@example.org",
        too_long.as_str(),
        long_local.as_str(),
    ];
    for email in invalid_emails {
        check(
            &fixture,
            SIGN_UP
                .json(&json!({ "email": email, "password": GOOD_PASSWORD, "display_name": "New" })),
            invalid("email"),
        )
        .await;
    }
    // Exactly 254 characters is an address.
    let longest = email_of_len(254);
    let account = fixture.app.sign_up(&longest, GOOD_PASSWORD, "Long").await;
    assert_eq!(account.email, longest);
    fixture.app.log_in(&longest, GOOD_PASSWORD).await;
}

async fn sign_up_refuses_bad_display_names(engine: TestEngine) {
    let fixture = Fixture::new(engine).await;
    let too_long = "n".repeat(201);
    let too_long_wide = "名".repeat(201);
    for name in [
        "",
        "   ",
        "\t\n",
        too_long.as_str(),
        too_long_wide.as_str(),
        "Bell\u{7} Person",
        "Line\nBreak",
        "Nul\u{0}Person",
    ] {
        check(
            &fixture,
            SIGN_UP.json(
                &json!({ "email": "newcomer@example.com", "password": GOOD_PASSWORD, "display_name": name }),
            ),
            invalid("display_name"),
        )
        .await;
    }
    // 200 characters (600 bytes) is a name.
    let longest = "名".repeat(200);
    let account = fixture
        .app
        .sign_up("newcomer@example.com", GOOD_PASSWORD, &longest)
        .await;
    assert_eq!(account.display_name, longest);
}

async fn update_me_refuses_bad_display_names(engine: TestEngine) {
    let fixture = Fixture::new(engine).await;
    let too_long = "n".repeat(201);
    let too_long_wide = "é".repeat(201);
    for name in [
        "",
        "  ",
        too_long.as_str(),
        too_long_wide.as_str(),
        "Escape\u{1b}[31m",
    ] {
        check(
            &fixture,
            UPDATE_ME.json(&json!({ "display_name": name })),
            invalid("display_name"),
        )
        .await;
    }
    let me = json_of(
        fixture.app.get("/api/v1/me", Some(&fixture.token)).await,
        200,
    )
    .await;
    assert_eq!(me["display_name"], NAME);
    let longest = "é".repeat(200);
    let changed = json_of(
        fixture
            .app
            .request(
                Method::PATCH,
                "/api/v1/me",
                Some(&fixture.token),
                Some(&json!({ "display_name": longest })),
            )
            .await,
        200,
    )
    .await;
    assert_eq!(changed["display_name"], longest.as_str());
}

/// Passwords the policy refuses for an account with the address `email` (whose local part
/// is `marguerite.fontaine`).
fn weak_passwords(email: &str) -> Vec<String> {
    let mut passwords: Vec<String> = [
        "",
        "Xk9#vQ2!m",
        "password123",
        "Password123!",
        "1234567890",
        "qwertyuiop",
        "aaaaaaaaaaaaaaaa",
        "iloveyou12345",
        // Built from the email address.
        email,
        "marguerite.fontaine",
        "Marguerite.Fontaine",
        "marguerite.fontaine1",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    // Over 1024 characters, however strong.
    let mut long = GOOD_PASSWORD.repeat(40);
    long.truncate(1025);
    passwords.push(long);
    passwords.push("é".repeat(1025));
    passwords
}

/// Passwords made only of the holder's name, email and a year: guessable by anyone who knows
/// the account (NIST SP 800-63B's "context-specific words").
const PERSONAL_PASSWORDS: [&str; 4] = [
    NAME,
    "Fontaine Marguerite",
    "fontaine.marguerite",
    "margueritefontaine2026",
];

async fn weak_passwords_are_refused_at_sign_up(engine: TestEngine) {
    let fixture = Fixture::new(engine).await;
    // A fresh address with the same local part as the existing account's.
    let email = "marguerite.fontaine@example.org";
    for password in weak_passwords(email) {
        check(
            &fixture,
            SIGN_UP.json(&json!({ "email": email, "password": password, "display_name": NAME })),
            invalid("password"),
        )
        .await;
    }
    // 10 characters and 1024 characters are both allowed.
    fixture.app.sign_up(email, "Xk9#vQ2!mZ", NAME).await;
    fixture.app.log_in(email, "Xk9#vQ2!mZ").await;
    let mut longest = GOOD_PASSWORD.repeat(40);
    longest.truncate(1024);
    fixture
        .app
        .sign_up("long.password@example.com", &longest, "Long")
        .await;
    fixture
        .app
        .log_in("long.password@example.com", &longest)
        .await;
}

async fn weak_passwords_are_refused_on_password_change(engine: TestEngine) {
    let fixture = Fixture::new(engine).await;
    for password in weak_passwords(EMAIL) {
        check(
            &fixture,
            CHANGE_PASSWORD
                .json(&json!({ "current_password": GOOD_PASSWORD, "new_password": password })),
            invalid("new_password"),
        )
        .await;
    }
    fixture.assert_password_unchanged("password123").await;
}

async fn passwords_made_of_the_holders_name_are_refused(engine: TestEngine) {
    let fixture = Fixture::new(engine).await;
    for password in PERSONAL_PASSWORDS {
        check(
            &fixture,
            CHANGE_PASSWORD
                .json(&json!({ "current_password": GOOD_PASSWORD, "new_password": password })),
            invalid("new_password"),
        )
        .await;
        check(
            &fixture,
            SIGN_UP.json(&json!({
                "email": "marguerite.fontaine@example.org",
                "password": password,
                "display_name": NAME,
            })),
            invalid("password"),
        )
        .await;
    }
    fixture.assert_password_unchanged(NAME).await;
}

async fn duplicate_email_in_any_case_is_409(engine: TestEngine) {
    let fixture = Fixture::new(engine).await;
    for email in [
        EMAIL,
        "Marguerite.Fontaine@Example.com",
        "MARGUERITE.FONTAINE@EXAMPLE.COM",
        "marguerite.fontaine@EXAMPLE.com",
        "  marguerite.fontaine@example.com  ",
    ] {
        check(
            &fixture,
            SIGN_UP.json(&json!({
                "email": email,
                "password": NEW_PASSWORD,
                "display_name": "Impostor",
            })),
            problem(409, "conflict"),
        )
        .await;
    }
    fixture.assert_password_unchanged(NEW_PASSWORD).await;
    let me = json_of(
        fixture.app.get("/api/v1/me", Some(&fixture.token)).await,
        200,
    )
    .await;
    assert_eq!(me["display_name"], NAME);
    assert_eq!(me["email"], EMAIL);
}

/// A login attempt, whatever it answers.
async fn attempt(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    app.post(
        "/api/v1/sessions",
        None,
        &json!({ "email": email, "password": password }),
    )
    .await
}

async fn wrong_password_at_login_is_401_and_same_as_unknown_email(engine: TestEngine) {
    let fixture = Fixture::new(engine).await;
    let wrong_password = LOG_IN.json(&json!({ "email": EMAIL, "password": NEW_PASSWORD }));
    check(
        &fixture,
        wrong_password,
        problem(401, "invalid_credentials").audited_as_failure(),
    )
    .await;
    check(
        &fixture,
        LOG_IN.json(&json!({ "email": "nobody@example.com", "password": GOOD_PASSWORD })),
        problem(401, "invalid_credentials").audited_as_failure(),
    )
    .await;
    let reference = attempt(&fixture.app, EMAIL, NEW_PASSWORD).await;
    let reference = reference.bytes().await.unwrap();
    for (email, password) in [
        (EMAIL, ""),
        (EMAIL, "marguerite fontaine"),
        (
            "MARGUERITE.FONTAINE@example.com",
            "Violet Tangerine Harbor 1987",
        ),
        ("nobody@example.com", GOOD_PASSWORD),
        ("nobody.at.all@example.org", NEW_PASSWORD),
    ] {
        let response = attempt(&fixture.app, email, password).await;
        assert_eq!(response.status(), 401, "{email} / {password}");
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer",
            "{email} / {password}"
        );
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        // Byte for byte: nothing tells an unknown email from a wrong password.
        let body = response.bytes().await.unwrap();
        assert_eq!(body, reference, "{email} / {password}");
    }
    // The fifth failure locked the address for a minute (brute-force protection).
    fixture.app.clock.advance_millis(60_000);
    fixture.assert_password_unchanged("").await;
}

async fn wrong_current_password_is_422_and_changes_nothing(engine: TestEngine) {
    let fixture = Fixture::new(engine).await;
    for wrong in [
        "",
        "violet tangerine harbor 1988",
        "Violet Tangerine Harbor 1987",
        NEW_PASSWORD,
    ] {
        check(
            &fixture,
            CHANGE_PASSWORD
                .json(&json!({ "current_password": wrong, "new_password": NEW_PASSWORD })),
            invalid("current_password").audited_as_failure(),
        )
        .await;
        check(
            &fixture,
            DELETE_ME.json(&json!({ "password": wrong })),
            invalid("password").audited_as_failure(),
        )
        .await;
    }
    fixture.assert_password_unchanged(NEW_PASSWORD).await;
    // Both sessions still work, and the account can still be deleted with its password.
    json_of(
        fixture
            .app
            .get("/api/v1/me", Some(&fixture.other_token))
            .await,
        200,
    )
    .await;
    let response = fixture
        .app
        .request(
            Method::DELETE,
            "/api/v1/me",
            Some(&fixture.token),
            Some(&json!({ "password": GOOD_PASSWORD })),
        )
        .await;
    assert_eq!(response.status(), 204);
}

/// A password is checked for length after Unicode normalization at sign-up; logging in with
/// the very same password must then work too. "é" typed as "e" + a combining accent is two
/// code points that normalize to one character.
async fn password_accepted_at_sign_up_always_logs_in(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let password = format!("{GOOD_PASSWORD} {}", "e\u{301}".repeat(600));
    app.sign_up("accents@example.com", &password, "Accent Person")
        .await;
    let session = app.log_in("accents@example.com", &password).await;
    json_of(app.get("/api/v1/me", Some(&session.token)).await, 200).await;
}
