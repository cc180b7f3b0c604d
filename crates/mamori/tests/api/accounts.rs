//! Accounts and sessions through the running server (ACC-1, ACC-3, ACC-4, ACC-5).

use mamori_testkit::{GOOD_PASSWORD, TestEngine, expect_problem, json_of, spawn_app};
use serde_json::json;

mamori_testkit::engine_tests!(
    full_account_lifecycle,
    accounts_and_sessions_survive_restart
);

const NEW_PASSWORD: &str = "plum lantern seventeen quietly";

/// Sign up, log in, read `me`, change the password (the old one fails), delete the account
/// (login fails), and sign up again with the same email.
async fn full_account_lifecycle(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let account = app
        .sign_up("Ada@Example.com", GOOD_PASSWORD, "Ada Lovelace")
        .await;
    assert!(account.id.starts_with("acc_"));
    assert_eq!(account.email, "Ada@Example.com");
    assert_eq!(account.created_at, "2026-11-22T00:00:00.000Z");

    // Emails compare case-insensitively.
    let session = app.log_in("ada@example.COM", GOOD_PASSWORD).await;
    assert_eq!(session.account_id, account.id);
    let me = json_of(app.get("/api/v1/me", Some(&session.token)).await, 200).await;
    assert_eq!(me["display_name"], "Ada Lovelace");
    assert_eq!(me["email"], "Ada@Example.com");

    let second = app.log_in("ada@example.com", GOOD_PASSWORD).await;
    let response = app
        .request(
            reqwest::Method::PUT,
            "/api/v1/me/password",
            Some(&session.token),
            Some(&json!({ "current_password": GOOD_PASSWORD, "new_password": NEW_PASSWORD })),
        )
        .await;
    assert_eq!(response.status(), 204);
    // The other session ended; this one goes on.
    expect_problem(
        app.get("/api/v1/me", Some(&second.token)).await,
        401,
        "unauthenticated",
    )
    .await;
    json_of(app.get("/api/v1/me", Some(&session.token)).await, 200).await;
    expect_problem(
        app.post(
            "/api/v1/sessions",
            None,
            &json!({ "email": "ada@example.com", "password": GOOD_PASSWORD }),
        )
        .await,
        401,
        "invalid_credentials",
    )
    .await;
    let session = app.log_in("ada@example.com", NEW_PASSWORD).await;

    let response = app
        .request(
            reqwest::Method::DELETE,
            "/api/v1/me",
            Some(&session.token),
            Some(&json!({ "password": NEW_PASSWORD })),
        )
        .await;
    assert_eq!(response.status(), 204);
    expect_problem(
        app.get("/api/v1/me", Some(&session.token)).await,
        401,
        "unauthenticated",
    )
    .await;
    expect_problem(
        app.post(
            "/api/v1/sessions",
            None,
            &json!({ "email": "ada@example.com", "password": NEW_PASSWORD }),
        )
        .await,
        401,
        "invalid_credentials",
    )
    .await;

    let again = app
        .sign_up("ada@example.com", GOOD_PASSWORD, "Ada Again")
        .await;
    assert_ne!(again.id, account.id);
    app.log_in("ADA@example.com", GOOD_PASSWORD).await;
}

async fn accounts_and_sessions_survive_restart(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let (account, token) = app.account_with_session("grace@example.com").await;
    let app = app.restart().await;
    let me = json_of(app.get("/api/v1/me", Some(&token)).await, 200).await;
    assert_eq!(me["id"], account.id.as_str());
    app.log_in("grace@example.com", GOOD_PASSWORD).await;
}
