//! The operator's calls and the audit trail. `POST /api/v1/operator/apps` registers an app for an
//! operator token only (401 without a credential or with an unknown one, 403 with an account
//! session or an app secret) and validates the name; app secrets and operator tokens cannot act
//! as an account. Every successful change, and every failed login or password check, leaves one
//! audit row, and the platform chain's `seq` runs 1..n without gaps, each `prev_hash` the
//! previous row's `hash`, even under concurrent writes.

// Test code: a failed unwrap or a panic is a failed test (clippy.toml allows them in
// `#[test]` functions, not in the helpers and engine-generic bodies here).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use futures_util::future::join_all;
use mamori_testkit::{GOOD_PASSWORD, TestApp, TestEngine, expect_problem, json_of, spawn_app};
use reqwest::Method;
use serde_json::{Value, json};

mamori_testkit::engine_tests!(
    the_operator_registers_apps,
    only_an_operator_token_registers_apps,
    app_names_are_validated,
    apps_and_operators_cannot_act_as_accounts,
    changes_leave_audit_rows,
    the_platform_chain_is_gapless_and_linked,
);

const ADA: &str = "ada@example.com";

async fn count_apps(app: &TestApp) -> i64 {
    let pool = app.database.pool().await;
    let count = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM apps")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    count
}

/// Registers an app with `authorization` (an `Authorization` header value) and asserts the
/// answer: 201 with the app, or the problem `code`. Nothing is created on a refusal.
async fn check(
    app: &TestApp,
    authorization: Option<&str>,
    body: &Value,
    status: u16,
    code: Option<&str>,
) -> Value {
    let before = count_apps(app).await;
    let mut request = app.client.post(app.url("/api/v1/operator/apps")).json(body);
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    let response = request.send().await.unwrap();
    let answer = match code {
        Some(code) => expect_problem(response, status, code).await,
        None => json_of(response, status).await,
    };
    let created = i64::from(status == 201);
    assert_eq!(
        count_apps(app).await,
        before + created,
        "{authorization:?} {body}"
    );
    answer
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn the_operator_registers_apps(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let operator = bearer(&app.operator_token().await);
    let billing = check(
        &app,
        Some(&operator),
        &json!({ "name": "Billing" }),
        201,
        None,
    )
    .await;
    let id = billing["id"].as_str().unwrap();
    assert!(id.starts_with("app_") && id.len() == 30, "{id}");
    assert_eq!(billing["name"], "Billing");
    let secret = billing["secret"].as_str().unwrap();
    assert!(secret.starts_with("mma_") && secret.len() == 47, "{secret}");
    // Names are trimmed; two apps never share an ID or a secret, even with the same name.
    let chat = check(
        &app,
        Some(&operator),
        &json!({ "name": "  Chat  " }),
        201,
        None,
    )
    .await;
    assert_eq!(chat["name"], "Chat");
    let again = check(
        &app,
        Some(&operator),
        &json!({ "name": "Billing" }),
        201,
        None,
    )
    .await;
    assert_ne!(again["id"], billing["id"]);
    assert_ne!(again["secret"], billing["secret"]);
    assert_ne!(chat["secret"], billing["secret"]);
    // Only a hash of the secret is stored.
    let pool = app.database.pool().await;
    let stored: Vec<String> = sqlx::query_scalar::<_, String>("SELECT secret_hash FROM apps")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(stored.len(), 3);
    assert!(!stored.iter().any(|hash| hash.contains(&secret[4..])));
    // The secret authenticates as the app: known, though not allowed to act as an account.
    expect_problem(app.get("/api/v1/me", Some(secret)).await, 403, "forbidden").await;
}

async fn only_an_operator_token_registers_apps(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let operator = app.operator_token().await;
    let (_, session) = app.account_with_session(ADA).await;
    let app_secret = json_of(
        app.post(
            "/api/v1/operator/apps",
            Some(&operator),
            &json!({ "name": "Billing" }),
        )
        .await,
        201,
    )
    .await["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut altered = operator.clone();
    let last = altered.pop().unwrap();
    altered.push(if last == 'A' { 'B' } else { 'A' });
    let body = json!({ "name": "Sneaky" });
    let cases: Vec<(Option<String>, u16, &str)> = vec![
        (None, 401, "unauthenticated"),
        (
            Some(bearer(&format!("mmo_{}", "A".repeat(43)))),
            401,
            "unauthenticated",
        ),
        (Some(bearer(&altered)), 401, "unauthenticated"),
        (Some(bearer("mmo_garbage")), 401, "unauthenticated"),
        (
            Some(bearer(&format!("{operator}x"))),
            401,
            "unauthenticated",
        ),
        (Some(operator.clone()), 401, "unauthenticated"),
        (Some(format!("Basic {operator}")), 401, "unauthenticated"),
        (Some(bearer(&session)), 403, "forbidden"),
        (Some(bearer(&app_secret)), 403, "forbidden"),
    ];
    for (authorization, status, code) in cases {
        let problem = check(&app, authorization.as_deref(), &body, status, Some(code)).await;
        assert_eq!(problem["status"], status);
    }
    // An account session by cookie is no operator either, even from the same origin.
    let response = app
        .client
        .post(app.url("/api/v1/operator/apps"))
        .header("cookie", format!("mamori_session={session}"))
        .header("sec-fetch-site", "same-origin")
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_problem(response, 403, "forbidden").await;
    assert_eq!(count_apps(&app).await, 1);
    // The operator token itself still works.
    check(&app, Some(&bearer(&operator)), &body, 201, None).await;
}

async fn app_names_are_validated(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let operator = bearer(&app.operator_token().await);
    let too_long = "n".repeat(201);
    let too_long_wide = "名".repeat(201);
    for name in [
        "",
        "   ",
        "\t",
        too_long.as_str(),
        too_long_wide.as_str(),
        "Bell\u{7}",
        "Two\nLines",
    ] {
        let problem = check(
            &app,
            Some(&operator),
            &json!({ "name": name }),
            422,
            Some("validation_failed"),
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], "name", "{name:?}: {problem}");
    }
    let longest = "名".repeat(200);
    let created = check(
        &app,
        Some(&operator),
        &json!({ "name": longest }),
        201,
        None,
    )
    .await;
    assert_eq!(created["name"], longest.as_str());
}

async fn apps_and_operators_cannot_act_as_accounts(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let operator = app.operator_token().await;
    let (_, session) = app.account_with_session(ADA).await;
    let app_secret = json_of(
        app.post(
            "/api/v1/operator/apps",
            Some(&operator),
            &json!({ "name": "Billing" }),
        )
        .await,
        201,
    )
    .await["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let calls = [
        (Method::GET, "/api/v1/me", None),
        (
            Method::PATCH,
            "/api/v1/me",
            Some(json!({ "display_name": "Robot" })),
        ),
        (
            Method::PUT,
            "/api/v1/me/password",
            Some(
                json!({ "current_password": GOOD_PASSWORD, "new_password": "plum lantern seventeen quietly" }),
            ),
        ),
        (
            Method::DELETE,
            "/api/v1/me",
            Some(json!({ "password": GOOD_PASSWORD })),
        ),
        (Method::GET, "/api/v1/me/sessions", None),
        (Method::DELETE, "/api/v1/sessions/current", None),
    ];
    for token in [&app_secret, &operator] {
        for (method, path, body) in &calls {
            expect_problem(
                app.request(method.clone(), path, Some(token), body.as_ref())
                    .await,
                403,
                "forbidden",
            )
            .await;
        }
    }
    // The account is untouched and the credentials still work for what they are for.
    let me = json_of(app.get("/api/v1/me", Some(&session)).await, 200).await;
    assert_eq!(me["display_name"], "Test Person");
    app.log_in(ADA, GOOD_PASSWORD).await;
    json_of(
        app.post(
            "/api/v1/operator/apps",
            Some(&operator),
            &json!({ "name": "Chat" }),
        )
        .await,
        201,
    )
    .await;
}

/// One audit row, as read back from the data store.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
struct Row {
    seq: i64,
    action: String,
    outcome: String,
    actor_type: String,
    actor_id: Option<String>,
    actor_name_sealed: Option<String>,
    target_type: Option<String>,
    target_id: Option<String>,
    ip: Option<String>,
    request_id: Option<String>,
}

async fn platform_rows(app: &TestApp) -> Vec<Row> {
    let pool = app.database.pool().await;
    let rows = sqlx::query_as::<_, Row>(
        "SELECT seq, action, outcome, actor_type, actor_id, actor_name_sealed, target_type, \
         target_id, ip, request_id FROM audit_events WHERE chain = 'platform' ORDER BY seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows
}

async fn changes_leave_audit_rows(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let operator = app.operator_token().await;
    let account = app.sign_up(ADA, GOOD_PASSWORD, "Ada").await;
    let first = app.log_in(ADA, GOOD_PASSWORD).await;
    let second = app.log_in(ADA, GOOD_PASSWORD).await;
    let wrong = json!({ "email": ADA, "password": "plum lantern seventeen quietly" });
    expect_problem(
        app.post("/api/v1/sessions", None, &wrong).await,
        401,
        "invalid_credentials",
    )
    .await;
    let unknown = json!({ "email": "nobody@example.com", "password": GOOD_PASSWORD });
    expect_problem(
        app.post("/api/v1/sessions", None, &unknown).await,
        401,
        "invalid_credentials",
    )
    .await;
    // Refused input leaves no row.
    expect_problem(
        app.post(
            "/api/v1/accounts",
            None,
            &json!({ "email": "weak@example.com", "password": "password123", "display_name": "W" }),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    json_of(
        app.request(
            Method::PATCH,
            "/api/v1/me",
            Some(&first.token),
            Some(&json!({ "display_name": "Countess" })),
        )
        .await,
        200,
    )
    .await;
    expect_problem(
        app.request(
            Method::PUT,
            "/api/v1/me/password",
            Some(&first.token),
            Some(&json!({ "current_password": "wrong wrong wrong", "new_password": "plum lantern seventeen quietly" })),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    let response = app
        .request(
            Method::DELETE,
            &format!("/api/v1/me/sessions/{}", second.session_id),
            Some(&first.token),
            None,
        )
        .await;
    assert_eq!(response.status(), 204);
    let created = app
        .client
        .post(app.url("/api/v1/operator/apps"))
        .bearer_auth(&operator)
        .header("x-request-id", "create-billing-1")
        .json(&json!({ "name": "Billing" }))
        .send()
        .await
        .unwrap();
    let created = json_of(created, 201).await;
    let response = app
        .request(
            Method::PUT,
            "/api/v1/me/password",
            Some(&first.token),
            Some(&json!({ "current_password": GOOD_PASSWORD, "new_password": "plum lantern seventeen quietly" })),
        )
        .await;
    assert_eq!(response.status(), 204);
    let response = app
        .request(
            Method::DELETE,
            "/api/v1/sessions/current",
            Some(&first.token),
            None,
        )
        .await;
    assert_eq!(response.status(), 204);
    let last = app.log_in(ADA, "plum lantern seventeen quietly").await;
    let response = app
        .request(
            Method::DELETE,
            "/api/v1/me",
            Some(&last.token),
            Some(&json!({ "password": "plum lantern seventeen quietly" })),
        )
        .await;
    assert_eq!(response.status(), 204);

    let rows = platform_rows(&app).await;
    let summary: Vec<(&str, &str)> = rows
        .iter()
        .map(|row| (row.action.as_str(), row.outcome.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("operator.token.created", "success"),
            ("account.created", "success"),
            ("session.login", "success"),
            ("session.login", "success"),
            ("session.login_failed", "failure"),
            ("session.login_failed", "failure"),
            ("account.updated", "success"),
            ("account.password.check_failed", "failure"),
            ("session.revoked", "success"),
            ("app.created", "success"),
            ("account.password.changed", "success"),
            ("session.logout", "success"),
            ("session.login", "success"),
            ("account.deleted", "success"),
        ]
    );
    let account_id = Some(account.id.clone());
    // Who did what to which.
    assert_eq!(rows[1].actor_id, account_id);
    assert_eq!(rows[1].target_id, account_id);
    assert_eq!(rows[2].target_type.as_deref(), Some("session"));
    assert_eq!(
        rows[2].target_id.as_deref(),
        Some(first.session_id.as_str())
    );
    // A log-in names its actor as sign-up did (sealed afresh each time: same length), and
    // after a rename by the new name.
    let sealed_len = |row: &Row| row.actor_name_sealed.as_ref().map(String::len);
    assert!(sealed_len(&rows[1]).is_some(), "{:?}", rows[1]);
    for login in [2, 3] {
        assert_eq!(
            sealed_len(&rows[login]),
            sealed_len(&rows[1]),
            "{:?}",
            rows[login]
        );
    }
    assert!(
        sealed_len(&rows[12]) > sealed_len(&rows[1]),
        "{:?}",
        rows[12]
    );
    // A failed login is anonymous; it names the account only when there is one.
    assert_eq!(rows[4].actor_type, "anonymous");
    assert_eq!(rows[4].actor_id, None);
    assert_eq!(rows[4].target_id, account_id);
    assert_eq!(rows[5].actor_type, "anonymous");
    assert_eq!(rows[5].target_id, None);
    assert_eq!(
        rows[8].target_id.as_deref(),
        Some(second.session_id.as_str())
    );
    assert_eq!(rows[9].actor_type, "operator");
    assert!(rows[9].actor_id.as_deref().unwrap().starts_with("opt_"));
    assert_eq!(rows[9].target_type.as_deref(), Some("app"));
    assert_eq!(rows[9].target_id.as_deref(), created["id"].as_str());
    assert_eq!(rows[9].request_id.as_deref(), Some("create-billing-1"));
    assert_eq!(rows[13].target_id, account_id);
    for row in &rows[1..] {
        assert_eq!(row.ip.as_deref(), Some("127.0.0.1"), "{row:?}");
        assert!(row.request_id.is_some(), "{row:?}");
    }
}

async fn the_platform_chain_is_gapless_and_linked(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let operator = app.operator_token().await;
    let server = &app;
    // Writers at the same time: sign-ups, failed logins and app registrations.
    let sign_ups = join_all((0..6).map(|n| async move {
        let body = json!({
            "email": format!("person{n}@example.com"),
            "password": GOOD_PASSWORD,
            "display_name": format!("Person {n}"),
        });
        server.post("/api/v1/accounts", None, &body).await
    }))
    .await;
    for response in sign_ups {
        json_of(response, 201).await;
    }
    let mixed = join_all((0..6).map(|n| {
        let (token, path, body) = if n % 2 == 0 {
            (
                None,
                "/api/v1/sessions",
                json!({ "email": format!("person{n}@example.com"), "password": "wrong wrong wrong" }),
            )
        } else {
            (
                Some(operator.as_str()),
                "/api/v1/operator/apps",
                json!({ "name": format!("App {n}") }),
            )
        };
        async move {
            let response = server.post(path, token, &body).await;
            response.status().as_u16()
        }
    }))
    .await;
    assert_eq!(mixed, [401, 201, 401, 201, 401, 201]);
    let logins = join_all((0..6).map(|n| async move {
        server
            .log_in(&format!("person{n}@example.com"), GOOD_PASSWORD)
            .await
    }))
    .await;
    assert_eq!(logins.len(), 6);

    let pool = app.database.pool().await;
    let chain: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT seq, prev_hash, hash FROM audit_events WHERE chain = 'platform' ORDER BY seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    // 1 operator token + 6 sign-ups + 3 failed logins + 3 apps + 6 logins.
    assert_eq!(chain.len(), 19);
    let seqs: Vec<i64> = chain.iter().map(|(seq, _, _)| *seq).collect();
    assert_eq!(seqs, (1..=19).collect::<Vec<i64>>());
    assert_eq!(
        chain[0].1,
        "0".repeat(64),
        "the first row follows the genesis hash"
    );
    for pair in chain.windows(2) {
        assert_eq!(
            pair[1].1, pair[0].2,
            "seq {} does not follow {}",
            pair[1].0, pair[0].0
        );
    }
    for (seq, _, hash) in &chain {
        assert_eq!(hash.len(), 64, "seq {seq}");
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()), "seq {seq}");
    }
    // Each hash is the hash of its own row.
    let rows = app
        .services
        .store()
        .audit_events("platform", 1, 100)
        .await
        .unwrap();
    assert_eq!(rows.len(), 19);
    // Each hash is the hash of its own row (with the actor's name sealed in it).
    let verdicts = app.services.verify_audit(Some("platform")).await.unwrap();
    assert_eq!(verdicts.len(), 1);
    assert_eq!(verdicts[0].first_break, None);
    assert_eq!(verdicts[0].events, 19);
    // Nothing else wrote to another chain.
    let chains: i64 = sqlx::query_scalar("SELECT COUNT(DISTINCT chain) FROM audit_events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(chains, 1);
}
