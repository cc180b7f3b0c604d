//! Organization-local accounts (issue 4, item 9; ACC-7): registered by an administrator or a
//! member who may invite, with an initial password that only the mail carries (read here at a
//! real SMTP receiver on loopback), changed at the first log-in, reset by the administrator,
//! deleted as account deletion does, counted against the plan, and refused what only
//! ordinary accounts may do. Expiries are stepped with the test clock.

use crate::mail::{delivered, text_of};
use crate::orgs::{call, call_empty, create_org, invite, outbox_token, send, sign_up_invited};
use mamori_server::ManualClock;
use mamori_testkit::{
    ClockExt, GOOD_PASSWORD, SmtpReceiver, TEST_EPOCH, TestApp, TestDatabase, TestEngine,
    expect_problem, json_of, spawn_with, test_settings,
};
use reqwest::{Method, Response};
use serde_json::{Value, json};
use std::sync::Arc;

mamori_testkit::engine_tests!(
    registering_mails_the_initial_password_and_the_first_log_in_must_change_it,
    wrong_passwords_and_unknown_login_ids_answer_the_same,
    the_initial_password_expires_and_the_administrator_mails_a_new_one,
    an_administrator_reset_ends_every_session_and_token,
    deletion_destroys_the_account_and_frees_the_login_id,
    local_accounts_count_against_the_plan_limit,
    only_those_who_may_invite_manage_local_accounts_of_their_own_organization,
    local_accounts_are_refused_what_only_ordinary_accounts_may_do,
    bad_input_changes_nothing,
    the_jobs_sweep_expired_challenges,
    the_purge_deletes_every_local_account_of_the_organization_once,
    the_endpoints_are_in_the_openapi_document,
);

const OWN_PASSWORD: &str = "juniper orbit candle 5180";
const DAY_MS: i64 = 86_400_000;

async fn spawn_mailing(engine: TestEngine) -> (TestApp, SmtpReceiver) {
    let smtp = SmtpReceiver::start().await;
    let database = Arc::new(TestDatabase::create(engine).await);
    let mut settings = test_settings(&database);
    settings.smtp_url = Some(smtp.url());
    let app = spawn_with(database, settings, Arc::new(ManualClock::new(TEST_EPOCH))).await;
    (app, smtp)
}

/// An administrator with a session and a new organization: (admin token, org ID).
async fn admin_and_org(app: &TestApp, email: &str) -> (String, String) {
    let (_, admin) = app.account_with_session(email).await;
    let org = create_org(app, &admin, "Classic Plan Co").await;
    (admin, org)
}

async fn register(app: &TestApp, token: &str, org: &str, login_id: &str, email: &str) -> Response {
    send(
        app,
        Method::POST,
        &format!("/api/v1/orgs/{org}/local-accounts"),
        token,
        Some(&json!({ "login_id": login_id, "display_name": "Taro Yamada", "email": email })),
    )
    .await
}

async fn register_ok(app: &TestApp, token: &str, org: &str, login_id: &str, email: &str) -> Value {
    json_of(register(app, token, org, login_id, email).await, 201).await
}

/// The initial password in the `n`-th (newest) message to `email`.
async fn mailed_password(app: &TestApp, smtp: &SmtpReceiver, email: &str, n: usize) -> String {
    let messages = delivered(app, smtp, email, n).await;
    // Each message is delivered before the next is made, so the newest is the last one.
    let text = messages
        .iter()
        .rev()
        .map(text_of)
        .find(|text| text.contains("Initial password: "))
        .unwrap_or_else(|| panic!("no initial password in {messages:?}"));
    let start = text.find("Initial password: ").unwrap() + "Initial password: ".len();
    let password: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    assert_eq!(password.len(), 20, "{text}");
    password
}

async fn log_in_local(app: &TestApp, org: &str, login_id: &str, password: &str) -> Response {
    app.post(
        "/api/v1/sessions",
        None,
        &json!({ "org_id": org, "login_id": login_id, "password": password }),
    )
    .await
}

/// Logs in with the initial password; returns the `mmf_` challenge.
async fn challenge_of(app: &TestApp, org: &str, login_id: &str, password: &str) -> String {
    let problem = expect_problem(
        log_in_local(app, org, login_id, password).await,
        403,
        "password_change_required",
    )
    .await;
    let challenge = problem["challenge"].as_str().unwrap().to_owned();
    assert!(challenge.starts_with("mmf_"), "{problem}");
    challenge
}

async fn change_password(app: &TestApp, challenge: &str, new_password: &str) -> Response {
    app.post(
        "/api/v1/sessions/password-change",
        None,
        &json!({ "challenge": challenge, "new_password": new_password }),
    )
    .await
}

/// Registers `login_id`, reads its mailed password and sets `OWN_PASSWORD`: (account ID,
/// session token).
async fn local_with_session(
    app: &TestApp,
    smtp: &SmtpReceiver,
    (admin, org): (&str, &str),
    login_id: &str,
    email: &str,
) -> (String, String) {
    let created = register_ok(app, admin, org, login_id, email).await;
    let password = mailed_password(app, smtp, email, 1).await;
    let challenge = challenge_of(app, org, login_id, &password).await;
    let session = json_of(change_password(app, &challenge, OWN_PASSWORD).await, 201).await;
    assert_eq!(session["account_id"], created["account_id"]);
    (
        created["account_id"].as_str().unwrap().to_owned(),
        session["token"].as_str().unwrap().to_owned(),
    )
}

async fn local_list(app: &TestApp, token: &str, org: &str) -> Value {
    call(
        app,
        Method::GET,
        &format!("/api/v1/orgs/{org}/local-accounts"),
        token,
        None,
        200,
    )
    .await
}

async fn member_ids(app: &TestApp, token: &str, org: &str) -> Vec<String> {
    let page = call(
        app,
        Method::GET,
        &format!("/api/v1/orgs/{org}/members"),
        token,
        None,
        200,
    )
    .await;
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["account_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn me_status(app: &TestApp, token: &str) -> u16 {
    app.get("/api/v1/me", Some(token)).await.status().as_u16()
}

/// (status, code, detail) of an answer: what a caller can tell apart.
async fn observed(response: Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (
        status,
        body["code"].as_str().unwrap_or("").to_owned(),
        body["detail"].as_str().unwrap_or("").to_owned(),
    )
}

async fn registering_mails_the_initial_password_and_the_first_log_in_must_change_it(
    engine: TestEngine,
) {
    let (app, smtp) = spawn_mailing(engine).await;
    let (admin, org) = admin_and_org(&app, "admin@example.com").await;
    let response = register(&app, &admin, &org, "Taro.Y", "taro@example.com").await;
    let text = response.text().await.unwrap();
    let created: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(created["login_id"], "taro.y", "{created}");
    assert_eq!(created["org_id"], org.as_str());
    assert_eq!(created["email"], "taro@example.com");
    assert_eq!(created["display_name"], "Taro Yamada");
    assert_eq!(created["must_change_password"], true);
    assert_eq!(
        created["initial_password_expires_at"],
        "2026-11-29T00:00:00.000Z"
    );
    let account = created["account_id"].as_str().unwrap().to_owned();
    assert!(member_ids(&app, &admin, &org).await.contains(&account));

    // The password is in the mail only: not in the answer, and sealed in the outbox table.
    let password = mailed_password(&app, &smtp, "taro@example.com", 1).await;
    assert!(!text.contains(&password));
    let pool = app.database.pool().await;
    let stored: Vec<String> = sqlx::query_scalar("SELECT message_sealed FROM outbox")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert!(stored.iter().all(|sealed| !sealed.contains(&password)));

    // The first log-in (the login ID in any case) earns only a challenge.
    let challenge = challenge_of(&app, &org, "TARO.y", &password).await;
    // A challenge is not a session, and not a second-factor challenge.
    assert_eq!(me_status(&app, &challenge).await, 401);
    expect_problem(
        app.post(
            "/api/v1/sessions/second-factor",
            None,
            &json!({ "challenge": challenge, "code": "123456" }),
        )
        .await,
        401,
        "invalid_challenge",
    )
    .await;
    // The sign-up rules apply to the new password; a refused one leaves the challenge usable.
    let problem = expect_problem(
        change_password(&app, &challenge, "short").await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "new_password");
    expect_problem(
        change_password(&app, &challenge, &password).await,
        422,
        "validation_failed",
    )
    .await;
    let session = json_of(change_password(&app, &challenge, OWN_PASSWORD).await, 201).await;
    assert_eq!(session["account_id"], account.as_str());
    let token = session["token"].as_str().unwrap();
    let me = json_of(app.get("/api/v1/me", Some(token)).await, 200).await;
    assert_eq!(me["email"], "taro@example.com");
    // The initial password reached the address: it is proven.
    assert_eq!(me["email_verified"], true);
    // The challenge worked once.
    expect_problem(
        change_password(&app, &challenge, "another fine password 77").await,
        401,
        "invalid_challenge",
    )
    .await;

    // From now on the initial password is dead and the holder's own one logs in.
    expect_problem(
        log_in_local(&app, &org, "taro.y", &password).await,
        401,
        "invalid_credentials",
    )
    .await;
    let again = json_of(log_in_local(&app, &org, "taro.y", OWN_PASSWORD).await, 201).await;
    assert_eq!(again["account_id"], account.as_str());
    // A local account has no email log-in.
    expect_problem(
        app.post(
            "/api/v1/sessions",
            None,
            &json!({ "email": "taro@example.com", "password": OWN_PASSWORD }),
        )
        .await,
        401,
        "invalid_credentials",
    )
    .await;
    // Every step is in the trail, and the initial password in none of it.
    let pool = app.database.pool().await;
    let events: Vec<(String, String)> =
        sqlx::query_as("SELECT action, details FROM audit_events ORDER BY occurred_at, seq")
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    let actions: Vec<&str> = events.iter().map(|(action, _)| action.as_str()).collect();
    for expected in [
        "org.local_account.created",
        "session.password_change_required",
        "account.password.changed",
        "session.login",
    ] {
        assert!(actions.contains(&expected), "{expected} in {actions:?}");
    }
    assert!(
        events
            .iter()
            .all(|(_, details)| !details.contains(&password))
    );
    let list = local_list(&app, &admin, &org).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["items"][0]["must_change_password"], false);
    assert!(
        list["items"][0]
            .get("initial_password_expires_at")
            .is_none()
    );
}

async fn wrong_passwords_and_unknown_login_ids_answer_the_same(engine: TestEngine) {
    let (app, smtp) = spawn_mailing(engine).await;
    let (admin, org) = admin_and_org(&app, "admin@example.com").await;
    let (_, other_org) = admin_and_org(&app, "other-admin@example.com").await;
    local_with_session(&app, &smtp, (&admin, &org), "hanako", "hanako@example.com").await;

    let known = observed(log_in_local(&app, &org, "hanako", "not the password 1").await).await;
    assert_eq!(known.0, 401);
    assert_eq!(known.1, "invalid_credentials");
    for (org_id, login_id) in [
        (org.as_str(), "nobody"),
        (other_org.as_str(), "hanako"),
        ("org_doesnotexist", "hanako"),
    ] {
        let unknown =
            observed(log_in_local(&app, org_id, login_id, "not the password 1").await).await;
        assert_eq!(unknown, known, "{org_id} {login_id}");
    }
    // The lock-out counts an unknown login name exactly like a known one.
    for _ in 0..4 {
        observed(log_in_local(&app, &org, "hanako", "not the password 1").await).await;
        observed(log_in_local(&app, &org, "nobody", "not the password 1").await).await;
    }
    let locked_known = log_in_local(&app, &org, "hanako", OWN_PASSWORD).await;
    let locked_unknown = log_in_local(&app, &org, "nobody", OWN_PASSWORD).await;
    let retry = |response: &Response| {
        response
            .headers()
            .get("retry-after")
            .map(|value| value.to_str().unwrap().to_owned())
    };
    assert_eq!(retry(&locked_known), retry(&locked_unknown));
    assert!(retry(&locked_known).is_some());
    assert_eq!(observed(locked_known).await, observed(locked_unknown).await);
    // The lock passes; the right password works again.
    app.clock.advance_millis(61_000);
    json_of(log_in_local(&app, &org, "hanako", OWN_PASSWORD).await, 201).await;
}

async fn the_initial_password_expires_and_the_administrator_mails_a_new_one(engine: TestEngine) {
    let (app, smtp) = spawn_mailing(engine).await;
    let (admin, org) = admin_and_org(&app, "admin@example.com").await;
    let created = register_ok(&app, &admin, &org, "jiro", "jiro@example.com").await;
    let account = created["account_id"].as_str().unwrap();
    let first = mailed_password(&app, &smtp, "jiro@example.com", 1).await;

    app.clock.advance_millis(7 * DAY_MS);
    expect_problem(
        log_in_local(&app, &org, "jiro", &first).await,
        401,
        "initial_password_expired",
    )
    .await;
    // A wrong password says nothing about expiry.
    expect_problem(
        log_in_local(&app, &org, "jiro", "not the password 1").await,
        401,
        "invalid_credentials",
    )
    .await;

    // The administrator's session has idled out meanwhile.
    let admin = app.log_in("admin@example.com", GOOD_PASSWORD).await.token;
    call_empty(
        &app,
        Method::POST,
        &format!("/api/v1/orgs/{org}/local-accounts/{account}/password-reset"),
        &admin,
        None,
        204,
    )
    .await;
    let second = mailed_password(&app, &smtp, "jiro@example.com", 2).await;
    assert_ne!(first, second);
    expect_problem(
        log_in_local(&app, &org, "jiro", &first).await,
        401,
        "invalid_credentials",
    )
    .await;
    let list = local_list(&app, &admin, &org).await;
    assert_eq!(
        list["items"][0]["initial_password_expires_at"],
        "2026-12-06T00:00:00.000Z"
    );
    let challenge = challenge_of(&app, &org, "jiro", &second).await;
    json_of(change_password(&app, &challenge, OWN_PASSWORD).await, 201).await;
}

async fn an_administrator_reset_ends_every_session_and_token(engine: TestEngine) {
    let (app, smtp) = spawn_mailing(engine).await;
    let (admin, org) = admin_and_org(&app, "admin@example.com").await;
    let (account, session) =
        local_with_session(&app, &smtp, (&admin, &org), "saburo", "saburo@example.com").await;
    let pat = call(
        &app,
        Method::POST,
        "/api/v1/me/tokens",
        &session,
        Some(&json!({ "name": "script", "scope": "full" })),
        201,
    )
    .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(me_status(&app, &pat).await, 200);
    let second_session = json_of(log_in_local(&app, &org, "saburo", OWN_PASSWORD).await, 201).await
        ["token"]
        .as_str()
        .unwrap()
        .to_owned();

    call_empty(
        &app,
        Method::POST,
        &format!("/api/v1/orgs/{org}/local-accounts/{account}/password-reset"),
        &admin,
        None,
        204,
    )
    .await;
    for token in [&session, &second_session, &pat] {
        assert_eq!(me_status(&app, token).await, 401);
    }
    // The holder's own password is gone too; the new initial one must be changed.
    expect_problem(
        log_in_local(&app, &org, "saburo", OWN_PASSWORD).await,
        401,
        "invalid_credentials",
    )
    .await;
    let password = mailed_password(&app, &smtp, "saburo@example.com", 2).await;
    let challenge = challenge_of(&app, &org, "saburo", &password).await;
    let fresh = json_of(
        change_password(&app, &challenge, "a brand new passphrase 42").await,
        201,
    )
    .await;
    assert_eq!(me_status(&app, fresh["token"].as_str().unwrap()).await, 200);
}

async fn deletion_destroys_the_account_and_frees_the_login_id(engine: TestEngine) {
    let (app, smtp) = spawn_mailing(engine).await;
    let (admin, org) = admin_and_org(&app, "admin@example.com").await;
    let (account, session) =
        local_with_session(&app, &smtp, (&admin, &org), "shiro", "shiro@example.com").await;
    let path = format!("/api/v1/orgs/{org}/local-accounts/{account}");
    call_empty(&app, Method::DELETE, &path, &admin, None, 204).await;

    assert_eq!(me_status(&app, &session).await, 401);
    assert!(!member_ids(&app, &admin, &org).await.contains(&account));
    let list = local_list(&app, &admin, &org).await;
    assert!(list["items"].as_array().unwrap().is_empty(), "{list}");
    let keyring = app.services.keyring().clone();
    assert!(keyring.key(&account).await.is_err());
    assert!(keyring.is_destroyed(&account).await.unwrap());
    let pool = app.database.pool().await;
    let row = sqlx::query_as::<_, (String, Option<String>, Option<String>)>(
        "SELECT status, email_sealed, password_hash FROM accounts WHERE id = $1",
    )
    .bind(account.as_str())
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    assert_eq!(row, (String::from("deleted"), None, None));
    expect_problem(
        log_in_local(&app, &org, "shiro", OWN_PASSWORD).await,
        401,
        "invalid_credentials",
    )
    .await;
    expect_problem(
        send(&app, Method::DELETE, &path, &admin, None).await,
        404,
        "not_found",
    )
    .await;

    // The login ID is free again, for a new account.
    let again = register_ok(&app, &admin, &org, "shiro", "shiro@example.com").await;
    assert_ne!(again["account_id"], account.as_str());
}

async fn local_accounts_count_against_the_plan_limit(engine: TestEngine) {
    let (app, smtp) = spawn_mailing(engine).await;
    let (admin, org) = admin_and_org(&app, "admin@example.com").await;
    let operator = app.operator_token().await;
    call_empty(
        &app,
        Method::PUT,
        &format!("/api/v1/operator/orgs/{org}/max-members"),
        &operator,
        Some(&json!({ "max_members": 2 })),
        204,
    )
    .await;
    register_ok(&app, &admin, &org, "first", "first@example.com").await;
    expect_problem(
        register(&app, &admin, &org, "second", "second@example.com").await,
        409,
        "plan_limit_reached",
    )
    .await;
    let list = local_list(&app, &admin, &org).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    // Nothing was mailed for the refused one, and it cannot log in.
    mailed_password(&app, &smtp, "first@example.com", 1).await;
    assert!(smtp.messages_to("second@example.com").is_empty());
    expect_problem(
        log_in_local(&app, &org, "second", "anything at all 1").await,
        401,
        "invalid_credentials",
    )
    .await;
    // A larger plan lets it in.
    call_empty(
        &app,
        Method::PUT,
        &format!("/api/v1/operator/orgs/{org}/max-members"),
        &operator,
        Some(&json!({ "max_members": 3 })),
        204,
    )
    .await;
    register_ok(&app, &admin, &org, "second", "second@example.com").await;
}

async fn only_those_who_may_invite_manage_local_accounts_of_their_own_organization(
    engine: TestEngine,
) {
    let (app, smtp) = spawn_mailing(engine).await;
    let (admin, org) = admin_and_org(&app, "admin@example.com").await;
    let (local, _) =
        local_with_session(&app, &smtp, (&admin, &org), "goro", "goro@example.com").await;

    // A member without invite permission.
    invite(&app, &admin, &org, "member@example.com", "member").await;
    let token = outbox_token(&app, "member@example.com").await;
    json_of(
        sign_up_invited(&app, "member@example.com", &token).await,
        201,
    )
    .await;
    let member = app.log_in("member@example.com", GOOD_PASSWORD).await.token;
    expect_problem(
        register(&app, &member, &org, "rokuro", "rokuro@example.com").await,
        403,
        "forbidden",
    )
    .await;
    let base = format!("/api/v1/orgs/{org}/local-accounts");
    for (method, path) in [
        (Method::GET, base.clone()),
        (Method::DELETE, format!("{base}/{local}")),
        (Method::POST, format!("{base}/{local}/password-reset")),
    ] {
        expect_problem(
            send(&app, method, &path, &member, None).await,
            403,
            "forbidden",
        )
        .await;
    }

    // A member who may invite registers one.
    invite(&app, &admin, &org, "inviter@example.com", "member").await;
    let token = outbox_token(&app, "inviter@example.com").await;
    let inviter = json_of(
        sign_up_invited(&app, "inviter@example.com", &token).await,
        201,
    )
    .await;
    let inviter_id = inviter["id"].as_str().unwrap();
    call(
        &app,
        Method::PATCH,
        &format!("/api/v1/orgs/{org}/members/{inviter_id}"),
        &admin,
        Some(&json!({ "can_invite": true })),
        200,
    )
    .await;
    let inviter = app.log_in("inviter@example.com", GOOD_PASSWORD).await.token;
    register_ok(&app, &inviter, &org, "rokuro", "rokuro@example.com").await;

    // Another organization's administrator sees nothing of this one.
    let (other_admin, other_org) = admin_and_org(&app, "other@example.com").await;
    expect_problem(
        register(&app, &other_admin, &org, "intruder", "x@example.com").await,
        404,
        "not_found",
    )
    .await;
    expect_problem(
        send(&app, Method::GET, &base, &other_admin, None).await,
        404,
        "not_found",
    )
    .await;
    // Nor reaches this organization's local account through its own.
    let other_base = format!("/api/v1/orgs/{other_org}/local-accounts");
    for (method, path) in [
        (Method::DELETE, format!("{other_base}/{local}")),
        (Method::POST, format!("{other_base}/{local}/password-reset")),
    ] {
        expect_problem(
            send(&app, method, &path, &other_admin, None).await,
            404,
            "not_found",
        )
        .await;
    }
    assert!(member_ids(&app, &admin, &org).await.contains(&local));
}

async fn local_accounts_are_refused_what_only_ordinary_accounts_may_do(engine: TestEngine) {
    let (app, smtp) = spawn_mailing(engine).await;
    let (admin, org) = admin_and_org(&app, "admin@example.com").await;
    let (local, session) =
        local_with_session(&app, &smtp, (&admin, &org), "nanako", "nanako@example.com").await;

    // Not removed as a member: deleted as a local account.
    expect_problem(
        send(
            &app,
            Method::DELETE,
            &format!("/api/v1/orgs/{org}/members/{local}"),
            &admin,
            None,
        )
        .await,
        409,
        "local_account",
    )
    .await;
    expect_problem(
        send(
            &app,
            Method::DELETE,
            &format!("/api/v1/orgs/{org}/members/{local}"),
            &session,
            None,
        )
        .await,
        409,
        "local_account",
    )
    .await;
    assert!(member_ids(&app, &admin, &org).await.contains(&local));

    // No organization of its own.
    expect_problem(
        send(
            &app,
            Method::POST,
            "/api/v1/orgs",
            &session,
            Some(&json!({ "name": "Elsewhere" })),
        )
        .await,
        403,
        "local_account",
    )
    .await;
    // No other organization by invitation, even one sent to its address.
    let (other_admin, other_org) = admin_and_org(&app, "other@example.com").await;
    invite(
        &app,
        &other_admin,
        &other_org,
        "nanako@example.com",
        "member",
    )
    .await;
    let token = outbox_token(&app, "nanako@example.com").await;
    expect_problem(
        send(
            &app,
            Method::POST,
            "/api/v1/invitations/accept",
            &session,
            Some(&json!({ "token": token })),
        )
        .await,
        403,
        "local_account",
    )
    .await;
    // No change of address.
    expect_problem(
        send(
            &app,
            Method::PATCH,
            "/api/v1/me",
            &session,
            Some(&json!({ "email": "new@example.com", "password": OWN_PASSWORD })),
        )
        .await,
        403,
        "local_account",
    )
    .await;
    let me = json_of(app.get("/api/v1/me", Some(&session)).await, 200).await;
    assert_eq!(me["email"], "nanako@example.com");
    let orgs = call(&app, Method::GET, "/api/v1/orgs", &session, None, 200).await;
    assert_eq!(orgs["items"].as_array().unwrap().len(), 1, "{orgs}");
}

async fn bad_input_changes_nothing(engine: TestEngine) {
    let (app, smtp) = spawn_mailing(engine).await;
    let (admin, org) = admin_and_org(&app, "admin@example.com").await;
    let outbox_before = app.services.outbox(100).await.unwrap().len();
    let problem = expect_problem(
        send(
            &app,
            Method::POST,
            &format!("/api/v1/orgs/{org}/local-accounts"),
            &admin,
            Some(&json!({ "login_id": "-bad id", "display_name": "", "email": "not-an-address" })),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    let mut fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| error["field"].as_str().unwrap())
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, ["display_name", "email", "login_id"], "{problem}");
    expect_problem(
        send(
            &app,
            Method::POST,
            &format!("/api/v1/orgs/{org}/local-accounts"),
            &admin,
            Some(&json!({ "login_id": "ok", "display_name": "Ok", "email": "ok@example.com", "password": "mine" })),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    let list = local_list(&app, &admin, &org).await;
    assert!(list["items"].as_array().unwrap().is_empty());
    assert_eq!(app.services.outbox(100).await.unwrap().len(), outbox_before);

    // A login ID is unique in its organization, whatever its case.
    register_ok(&app, &admin, &org, "kuro", "kuro@example.com").await;
    expect_problem(
        register(&app, &admin, &org, "KURO", "another@example.com").await,
        409,
        "login_id_taken",
    )
    .await;
    mailed_password(&app, &smtp, "kuro@example.com", 1).await;
    assert!(smtp.messages_to("another@example.com").is_empty());

    // Log-in bodies: one way of naming the account.
    for (body, field) in [
        (
            json!({ "email": "a@example.com", "org_id": org, "login_id": "kuro", "password": "x" }),
            "email",
        ),
        (json!({ "org_id": org, "password": "x" }), "login_id"),
        (json!({ "login_id": "kuro", "password": "x" }), "org_id"),
        (
            json!({ "org_id": org, "login_id": "no spaces", "password": "x" }),
            "login_id",
        ),
    ] {
        let problem = expect_problem(
            app.post("/api/v1/sessions", None, &body).await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    for challenge in [
        "",
        "mmf_short",
        "mmc_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        expect_problem(
            change_password(&app, challenge, OWN_PASSWORD).await,
            401,
            "invalid_challenge",
        )
        .await;
    }
}

async fn the_jobs_sweep_expired_challenges(engine: TestEngine) {
    let (app, smtp) = spawn_mailing(engine).await;
    let (admin, org) = admin_and_org(&app, "admin@example.com").await;
    register_ok(&app, &admin, &org, "hachi", "hachi@example.com").await;
    let password = mailed_password(&app, &smtp, "hachi@example.com", 1).await;
    let challenge = challenge_of(&app, &org, "hachi", &password).await;
    let report = app
        .services
        .run_jobs_once(app.clock.now_timestamp())
        .await
        .unwrap();
    assert_eq!(report.challenges_expired, 0);

    app.clock.advance_millis(10 * 60_000);
    expect_problem(
        change_password(&app, &challenge, OWN_PASSWORD).await,
        401,
        "invalid_challenge",
    )
    .await;
    let report = app
        .services
        .run_jobs_once(app.clock.now_timestamp())
        .await
        .unwrap();
    assert_eq!(report.challenges_expired, 1);
    let report = app
        .services
        .run_jobs_once(app.clock.now_timestamp())
        .await
        .unwrap();
    assert_eq!(report.challenges_expired, 0);
    // A new log-in gets a new challenge; the account is still usable.
    let challenge = challenge_of(&app, &org, "hachi", &password).await;
    json_of(change_password(&app, &challenge, OWN_PASSWORD).await, 201).await;
}

async fn the_purge_deletes_every_local_account_of_the_organization_once(engine: TestEngine) {
    let (app, smtp) = spawn_mailing(engine).await;
    let (admin, org) = admin_and_org(&app, "admin@example.com").await;
    let (other_admin, other_org) = admin_and_org(&app, "other@example.com").await;
    let (first, first_session) =
        local_with_session(&app, &smtp, (&admin, &org), "ichi", "ichi@example.com").await;
    let (second, second_session) =
        local_with_session(&app, &smtp, (&admin, &org), "ni", "ni@example.com").await;
    let (kept, kept_session) = local_with_session(
        &app,
        &smtp,
        (&other_admin, &other_org),
        "ichi",
        "kept@example.com",
    )
    .await;
    let org_id = mamori_core::OrgId::parse(&org).unwrap();
    let now = app.clock.now_timestamp();
    assert_eq!(
        app.services
            .purge_org_local_accounts(&org_id, now)
            .await
            .unwrap(),
        2
    );
    let keyring = app.services.keyring().clone();
    for (account, session) in [(&first, &first_session), (&second, &second_session)] {
        assert_eq!(me_status(&app, session).await, 401);
        assert!(keyring.is_destroyed(account).await.unwrap());
    }
    let members = member_ids(&app, &admin, &org).await;
    assert!(!members.contains(&first) && !members.contains(&second));
    assert!(
        local_list(&app, &admin, &org).await["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    expect_problem(
        log_in_local(&app, &org, "ichi", OWN_PASSWORD).await,
        401,
        "invalid_credentials",
    )
    .await;
    // Another organization's local account with the same login ID is untouched.
    assert_eq!(me_status(&app, &kept_session).await, 200);
    assert!(!keyring.is_destroyed(&kept).await.unwrap());
    json_of(
        log_in_local(&app, &other_org, "ichi", OWN_PASSWORD).await,
        201,
    )
    .await;
    // Idempotent.
    assert_eq!(
        app.services
            .purge_org_local_accounts(&org_id, now)
            .await
            .unwrap(),
        0
    );
}

async fn the_endpoints_are_in_the_openapi_document(engine: TestEngine) {
    let (app, _smtp) = spawn_mailing(engine).await;
    let document = json_of(app.get("/api/openapi.json", None).await, 200).await;
    let paths = &document["paths"];
    for (path, methods) in [
        ("/api/v1/orgs/{org}/local-accounts", &["post", "get"][..]),
        ("/api/v1/orgs/{org}/local-accounts/{account}", &["delete"]),
        (
            "/api/v1/orgs/{org}/local-accounts/{account}/password-reset",
            &["post"],
        ),
        ("/api/v1/sessions/password-change", &["post"]),
    ] {
        for method in methods {
            assert!(paths[path][method].is_object(), "{method} {path}");
        }
    }
    let schemas = &document["components"]["schemas"];
    for schema in [
        "CreateLocalAccountRequest",
        "LocalAccount",
        "LocalAccountPage",
        "PasswordChangeRequest",
    ] {
        assert!(schemas[schema].is_object(), "{schema}");
    }
    assert!(schemas["LogInRequest"]["properties"]["login_id"].is_object());
}
