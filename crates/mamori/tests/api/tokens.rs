//! Personal access tokens and bulk session revocation as their holder sees them: a token is
//! shown once with the `mmp_` prefix, listed without its secret, usable as a Bearer token,
//! limited by its scope (`read`: safe methods only, `403 insufficient_scope`), never able to
//! manage credentials or delete the account (`403 session_required`), dead when revoked or
//! expired (manual clock), another account's is not found; bad input is 422 and changes
//! nothing. `DELETE /api/v1/me/sessions?others=true` ends every session but the current one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::two_step::{ADA, challenge_for, enable_two_step, totp};
use mamori_testkit::{ClockExt, GOOD_PASSWORD, TestApp, TestEngine, expect_problem, json_of};
use reqwest::Method;
use serde_json::{Value, json};

mamori_testkit::engine_tests!(
    a_token_is_shown_once_and_works_as_a_bearer,
    read_tokens_only_read,
    tokens_never_manage_credentials_or_the_account,
    revoked_and_expired_tokens_are_401,
    bad_token_requests_are_422_and_change_nothing,
    tokens_are_their_holders_own,
    revoking_every_other_session,
    tokens_work_with_two_step_on,
);

const BOB: &str = "bob@example.com";
const DAY_MS: i64 = 86_400_000;

async fn create_token(app: &TestApp, session: &str, body: Value) -> Value {
    json_of(
        app.post("/api/v1/me/tokens", Some(session), &body).await,
        201,
    )
    .await
}

async fn list_tokens(app: &TestApp, session: &str) -> Vec<Value> {
    json_of(app.get("/api/v1/me/tokens", Some(session)).await, 200).await["items"]
        .as_array()
        .unwrap()
        .clone()
}

async fn a_token_is_shown_once_and_works_as_a_bearer(engine: TestEngine) {
    let app = mamori_testkit::spawn_app(engine).await;
    let (account, session) = app.account_with_session(ADA).await;
    let created = create_token(
        &app,
        &session,
        json!({ "name": "CI deploys", "scope": "full" }),
    )
    .await;
    let token = created["token"].as_str().unwrap();
    assert!(token.starts_with("mmp_") && token.len() == 47, "{token}");
    assert!(created["id"].as_str().unwrap().starts_with("pat_"));
    assert_eq!(created["name"], "CI deploys");
    assert_eq!(created["scope"], "full");
    // 90 days by default.
    let now = app.clock.now_timestamp();
    assert_eq!(
        created["expires_at"],
        now.plus_millis(90 * DAY_MS).to_rfc3339()
    );
    assert_eq!(created["last_used_at"], Value::Null);

    // Listed without the secret.
    let items = list_tokens(&app, &session).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], created["id"]);
    assert!(items[0].get("token").is_none());
    assert!(!items[0].to_string().contains(token));

    // A Bearer token for the account: reads and (full scope) changes.
    let me = json_of(app.get("/api/v1/me", Some(token)).await, 200).await;
    assert_eq!(me["id"], account.id.as_str());
    let changed = json_of(
        app.request(
            Method::PATCH,
            "/api/v1/me",
            Some(token),
            Some(&json!({ "display_name": "Ada by Token" })),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(changed["display_name"], "Ada by Token");
    let org = json_of(
        app.post(
            "/api/v1/orgs",
            Some(token),
            &json!({ "name": "Made by token" }),
        )
        .await,
        201,
    )
    .await;
    json_of(
        app.get(
            &format!("/api/v1/orgs/{}", org["id"].as_str().unwrap()),
            Some(token),
        )
        .await,
        200,
    )
    .await;
    // The use is seen in the list.
    let items = list_tokens(&app, &session).await;
    assert_eq!(items[0]["last_used_at"], now.to_rfc3339());
}

async fn read_tokens_only_read(engine: TestEngine) {
    let app = mamori_testkit::spawn_app(engine).await;
    let (_, session) = app.account_with_session(ADA).await;
    let org = json_of(
        app.post("/api/v1/orgs", Some(&session), &json!({ "name": "Acme" }))
            .await,
        201,
    )
    .await;
    let org_path = format!("/api/v1/orgs/{}", org["id"].as_str().unwrap());
    let created = create_token(
        &app,
        &session,
        json!({ "name": "dashboard", "scope": "read" }),
    )
    .await;
    let token = created["token"].as_str().unwrap();
    json_of(app.get("/api/v1/me", Some(token)).await, 200).await;
    json_of(app.get(&org_path, Some(token)).await, 200).await;
    json_of(
        app.get(&format!("{org_path}/members"), Some(token)).await,
        200,
    )
    .await;

    for (method, path, body) in [
        (
            Method::PATCH,
            "/api/v1/me".to_owned(),
            json!({ "display_name": "Nope" }),
        ),
        (
            Method::POST,
            "/api/v1/orgs".to_owned(),
            json!({ "name": "Nope" }),
        ),
        (Method::PATCH, org_path.clone(), json!({ "name": "Nope" })),
        (
            Method::POST,
            format!("{org_path}/teams"),
            json!({ "name": "Nope" }),
        ),
    ] {
        let problem = expect_problem(
            app.request(method.clone(), &path, Some(token), Some(&body))
                .await,
            403,
            "insufficient_scope",
        )
        .await;
        assert!(
            problem["detail"].as_str().unwrap().contains("read"),
            "{method} {path}: {problem}"
        );
    }
    // Nothing changed.
    let me = json_of(app.get("/api/v1/me", Some(&session)).await, 200).await;
    assert_eq!(me["display_name"], "Test Person");
    let org = json_of(app.get(&org_path, Some(&session)).await, 200).await;
    assert_eq!(org["name"], "Acme");
    let orgs = json_of(app.get("/api/v1/orgs", Some(&session)).await, 200).await;
    assert_eq!(orgs["items"].as_array().unwrap().len(), 1);
}

async fn tokens_never_manage_credentials_or_the_account(engine: TestEngine) {
    let app = mamori_testkit::spawn_app(engine).await;
    let (_, session) = app.account_with_session(ADA).await;
    let full = create_token(&app, &session, json!({ "name": "full", "scope": "full" })).await;
    let token = full["token"].as_str().unwrap();
    let token_path = format!("/api/v1/me/tokens/{}", full["id"].as_str().unwrap());
    for (method, path, body) in [
        (
            Method::POST,
            "/api/v1/me/tokens",
            Some(json!({ "name": "child", "scope": "full" })),
        ),
        (Method::GET, "/api/v1/me/tokens", None),
        (Method::DELETE, token_path.as_str(), None),
        (
            Method::PUT,
            "/api/v1/me/password",
            Some(
                json!({ "current_password": GOOD_PASSWORD, "new_password": "a brand new passphrase 2031" }),
            ),
        ),
        (
            Method::DELETE,
            "/api/v1/me",
            Some(json!({ "password": GOOD_PASSWORD })),
        ),
        (Method::GET, "/api/v1/me/two-step", None),
        (Method::POST, "/api/v1/me/two-step/totp", None),
        (
            Method::POST,
            "/api/v1/me/two-step/recovery-codes",
            Some(json!({ "password": GOOD_PASSWORD })),
        ),
        (Method::GET, "/api/v1/me/sessions", None),
        (Method::DELETE, "/api/v1/me/sessions?others=true", None),
        (Method::DELETE, "/api/v1/sessions/current", None),
    ] {
        let response = app
            .request(method.clone(), path, Some(token), body.as_ref())
            .await;
        let problem = expect_problem(response, 403, "session_required").await;
        assert!(
            problem["detail"].as_str().unwrap().contains("session"),
            "{method} {path}"
        );
    }
    // Nothing changed: one token, the account and its password as they were, the session alive.
    assert_eq!(list_tokens(&app, &session).await.len(), 1);
    app.log_in(ADA, GOOD_PASSWORD).await;
    json_of(app.get("/api/v1/me", Some(&session)).await, 200).await;
    json_of(app.get("/api/v1/me", Some(token)).await, 200).await;
    let status = json_of(app.get("/api/v1/me/two-step", Some(&session)).await, 200).await;
    assert_eq!(status["enabled"], false);
}

async fn revoked_and_expired_tokens_are_401(engine: TestEngine) {
    let app = mamori_testkit::spawn_app(engine).await;
    let (_, session) = app.account_with_session(ADA).await;
    let now = app.clock.now_timestamp();
    let short = create_token(
        &app,
        &session,
        json!({ "name": "short", "scope": "read", "expires_at": now.plus_millis(DAY_MS).to_rfc3339() }),
    )
    .await;
    let long = create_token(&app, &session, json!({ "name": "long", "scope": "full" })).await;
    let short_token = short["token"].as_str().unwrap();
    let long_token = long["token"].as_str().unwrap();
    json_of(app.get("/api/v1/me", Some(short_token)).await, 200).await;

    // Revoked: dead at once; revoking again is 404.
    let path = format!("/api/v1/me/tokens/{}", long["id"].as_str().unwrap());
    let response = app
        .request(Method::DELETE, &path, Some(&session), None)
        .await;
    assert_eq!(response.status(), 204);
    expect_problem(
        app.get("/api/v1/me", Some(long_token)).await,
        401,
        "unauthenticated",
    )
    .await;
    expect_problem(
        app.request(Method::DELETE, &path, Some(&session), None)
            .await,
        404,
        "not_found",
    )
    .await;

    // Expired: works until just before its expiry, not at it.
    app.clock.advance_millis(DAY_MS - 1);
    json_of(app.get("/api/v1/me", Some(short_token)).await, 200).await;
    app.clock.advance_millis(1);
    expect_problem(
        app.get("/api/v1/me", Some(short_token)).await,
        401,
        "unauthenticated",
    )
    .await;

    // A well-shaped token that was never issued.
    let forged = format!("mmp_{}", "A".repeat(43));
    expect_problem(
        app.get("/api/v1/me", Some(&forged)).await,
        401,
        "unauthenticated",
    )
    .await;

    // Deleting the account kills its tokens.
    let session = app.log_in(ADA, GOOD_PASSWORD).await.token;
    let kept = create_token(&app, &session, json!({ "name": "kept", "scope": "full" })).await;
    let response = app
        .request(
            Method::DELETE,
            "/api/v1/me",
            Some(&session),
            Some(&json!({ "password": GOOD_PASSWORD })),
        )
        .await;
    assert_eq!(response.status(), 204);
    expect_problem(
        app.get("/api/v1/me", Some(kept["token"].as_str().unwrap()))
            .await,
        401,
        "unauthenticated",
    )
    .await;
}

async fn bad_token_requests_are_422_and_change_nothing(engine: TestEngine) {
    let app = mamori_testkit::spawn_app(engine).await;
    let (_, session) = app.account_with_session(ADA).await;
    let now = app.clock.now_timestamp();
    for (body, field) in [
        (json!({ "name": "", "scope": "full" }), "name"),
        (json!({ "name": "   ", "scope": "full" }), "name"),
        (json!({ "name": "x".repeat(101), "scope": "full" }), "name"),
        (json!({ "name": "tab\tname", "scope": "full" }), "name"),
        (json!({ "name": "n", "scope": "admin" }), "scope"),
        (json!({ "name": "n", "scope": "READ" }), "scope"),
        (
            json!({ "name": "n", "scope": "read", "expires_at": "tomorrow" }),
            "expires_at",
        ),
        (
            json!({ "name": "n", "scope": "read", "expires_at": now.to_rfc3339() }),
            "expires_at",
        ),
        (
            json!({ "name": "n", "scope": "read", "expires_at": now.plus_millis(367 * DAY_MS).to_rfc3339() }),
            "expires_at",
        ),
        (json!({ "name": "n" }), "scope"),
        (json!({ "name": "n", "scope": "read", "extra": 1 }), "body"),
    ] {
        let problem = expect_problem(
            app.post("/api/v1/me/tokens", Some(&session), &body).await,
            422,
            "validation_failed",
        )
        .await;
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|error| error["field"].as_str().unwrap())
            .collect();
        assert!(
            fields.contains(&field) || (field == "body" && !fields.is_empty()),
            "{body}: {problem}"
        );
    }
    // A year and a day is the longest lifetime accepted.
    create_token(
        &app,
        &session,
        json!({ "name": "n", "scope": "read", "expires_at": now.plus_millis(366 * DAY_MS).to_rfc3339() }),
    )
    .await;
    assert_eq!(
        list_tokens(&app, &session).await.len(),
        1,
        "only the valid one"
    );
    for bad in ["", "pat_nonsense", "ses_aaaaaaaaaaaaaaaaaaaaaaaaaa"] {
        let response = app
            .request(
                Method::DELETE,
                &format!("/api/v1/me/tokens/{bad}x"),
                Some(&session),
                None,
            )
            .await;
        expect_problem(response, 404, "not_found").await;
    }
}

async fn tokens_are_their_holders_own(engine: TestEngine) {
    let app = mamori_testkit::spawn_app(engine).await;
    let (_, ada) = app.account_with_session(ADA).await;
    let (bob_account, bob) = app.account_with_session(BOB).await;
    let adas = create_token(&app, &ada, json!({ "name": "ada's", "scope": "full" })).await;
    // Bob neither sees nor revokes Ada's token.
    assert!(list_tokens(&app, &bob).await.is_empty());
    let path = format!("/api/v1/me/tokens/{}", adas["id"].as_str().unwrap());
    expect_problem(
        app.request(Method::DELETE, &path, Some(&bob), None).await,
        404,
        "not_found",
    )
    .await;
    let me = json_of(
        app.get("/api/v1/me", Some(adas["token"].as_str().unwrap()))
            .await,
        200,
    )
    .await;
    assert_eq!(me["email"], ADA);
    assert_ne!(me["id"], bob_account.id.as_str());
}

async fn revoking_every_other_session(engine: TestEngine) {
    let app = mamori_testkit::spawn_app(engine).await;
    let (_, first) = app.account_with_session(ADA).await;
    let second = app.log_in(ADA, GOOD_PASSWORD).await;
    let third = app.log_in(ADA, GOOD_PASSWORD).await;
    let (_, bob) = app.account_with_session(BOB).await;
    let pat = create_token(&app, &first, json!({ "name": "kept", "scope": "read" })).await;

    // Without `others=true` nothing happens.
    for query in ["", "?others=false", "?all=true"] {
        expect_problem(
            app.request(
                Method::DELETE,
                &format!("/api/v1/me/sessions{query}"),
                Some(&second.token),
                None,
            )
            .await,
            422,
            "validation_failed",
        )
        .await;
    }
    let list = json_of(
        app.get("/api/v1/me/sessions", Some(&second.token)).await,
        200,
    )
    .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 3);

    let revoked = json_of(
        app.request(
            Method::DELETE,
            "/api/v1/me/sessions?others=true",
            Some(&second.token),
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(revoked["revoked"], 2);
    let list = json_of(
        app.get("/api/v1/me/sessions", Some(&second.token)).await,
        200,
    )
    .await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], second.session_id.as_str());
    assert_eq!(items[0]["current"], true);
    for gone in [&first, &third.token] {
        expect_problem(
            app.get("/api/v1/me", Some(gone)).await,
            401,
            "unauthenticated",
        )
        .await;
    }
    // Other accounts' sessions and the account's tokens are untouched.
    json_of(app.get("/api/v1/me", Some(&bob)).await, 200).await;
    json_of(
        app.get("/api/v1/me", Some(pat["token"].as_str().unwrap()))
            .await,
        200,
    )
    .await;
}

async fn tokens_work_with_two_step_on(engine: TestEngine) {
    let app = mamori_testkit::spawn_app(engine).await;
    let (_, session) = app.account_with_session(ADA).await;
    let (secret, _) = enable_two_step(&app, &session).await;
    // A token is made from a session, which already passed the second step; it then works
    // without one, as a token does.
    let pat = create_token(&app, &session, json!({ "name": "bot", "scope": "full" })).await;
    json_of(
        app.get("/api/v1/me", Some(pat["token"].as_str().unwrap()))
            .await,
        200,
    )
    .await;
    // Log-ins still need the second step.
    let challenge = challenge_for(&app, ADA).await;
    let now = app.clock.now_timestamp().as_millis();
    json_of(
        app.post(
            "/api/v1/sessions/second-factor",
            None,
            &json!({ "challenge": challenge, "code": totp(&secret, now, 0) }),
        )
        .await,
        201,
    )
    .await;
}
