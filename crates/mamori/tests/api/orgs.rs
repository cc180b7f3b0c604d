//! Organizations through the running server (ACC-1, ACC-2, ORG-1 to ORG-5): signing up with
//! an organization, roles and the last administrator, removal and leaving with everything
//! that hangs on a membership (ORG-3), teams (ORG-4), apps and their active members (ORG-5),
//! sealed organization data, and the organization's own audit chain.
//!
//! Invitation tokens are read from the outbox here (no SMTP); `mail.rs` reads them from real
//! messages.

use mamori_testkit::{GOOD_PASSWORD, TestApp, TestEngine, expect_problem, json_of, spawn_app};
use reqwest::{Method, Response};
use serde_json::{Value, json};
use sqlx::Row;

mamori_testkit::engine_tests!(
    signing_up_with_an_organization_makes_its_administrator,
    an_invalid_organization_at_sign_up_creates_no_account,
    administrators_change_roles_and_one_always_remains,
    the_invite_permission_is_passed_on_but_never_exceeded,
    removing_a_member_takes_every_access_in_that_organization,
    leaving_takes_every_access_in_that_organization,
    the_last_administrator_cannot_delete_the_account,
    teams_are_managed_by_their_creator_and_administrators,
    guests_see_only_their_own_teams,
    apps_are_enabled_for_all_or_selected_members,
    organization_data_is_sealed,
    every_change_is_in_the_organizations_own_audit_chain,
    concurrent_changes_keep_an_administrator,
    concurrent_invitations_all_succeed,
    concurrent_app_selections_all_succeed,
);

// ---------------------------------------------------------------------------------------
// Helpers (also used by `mail.rs`).

/// Sends a request and reads the answer as JSON, asserting its status.
pub(crate) async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<&Value>,
    status: u16,
) -> Value {
    json_of(app.request(method, path, Some(token), body).await, status).await
}

/// Sends a request whose answer has no body, asserting its status.
pub(crate) async fn call_empty(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<&Value>,
    status: u16,
) {
    let response = app.request(method, path, Some(token), body).await;
    let actual = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(actual, status, "{path}: {text}");
}

pub(crate) async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> Response {
    app.request(method, path, Some(token), body).await
}

/// Creates an organization as `token`; returns its ID.
pub(crate) async fn create_org(app: &TestApp, token: &str, name: &str) -> String {
    let org = call(
        app,
        Method::POST,
        "/api/v1/orgs",
        token,
        Some(&json!({ "name": name })),
        201,
    )
    .await;
    assert_eq!(org["role"], "admin", "{org}");
    assert_eq!(org["name"], name);
    org["id"].as_str().unwrap().to_owned()
}

/// Invites `email` into `org` with `role`; returns the invitation.
pub(crate) async fn invite(
    app: &TestApp,
    token: &str,
    org: &str,
    email: &str,
    role: &str,
) -> Value {
    let invitation = call(
        app,
        Method::POST,
        &format!("/api/v1/orgs/{org}/invitations"),
        token,
        Some(&json!({ "email": email, "role": role })),
        201,
    )
    .await;
    assert_eq!(invitation["status"], "pending", "{invitation}");
    assert_eq!(invitation["role"], role);
    invitation
}

/// The invitation token in a message body: what follows `#token=`.
pub(crate) fn token_in(body: &str) -> String {
    let start = body
        .find("#token=")
        .unwrap_or_else(|| panic!("no link with a token in {body:?}"))
        + "#token=".len();
    let token: String = body[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    assert!(token.starts_with("mmi_"), "{token}");
    token
}

/// The token of the newest message in the outbox sent to `email`.
pub(crate) async fn outbox_token(app: &TestApp, email: &str) -> String {
    let entries = app.services.outbox(500).await.unwrap();
    let mail = entries
        .into_iter()
        // Sign-up verification mail goes to the same addresses.
        .filter(|entry| entry.kind == "invitation")
        .filter_map(|entry| entry.mail)
        .find(|mail| mail.to.eq_ignore_ascii_case(email))
        .unwrap_or_else(|| panic!("no mail to {email} in the outbox"));
    token_in(&mail.body)
}

/// Signs up with an invitation token; returns the answer (account and organization).
pub(crate) async fn sign_up_invited(app: &TestApp, email: &str, token: &str) -> Response {
    app.post(
        "/api/v1/accounts",
        None,
        &json!({
            "email": email,
            "password": GOOD_PASSWORD,
            "display_name": "Invited Person",
            "invitation_token": token,
        }),
    )
    .await
}

/// Invites a new address, signs it up with the token from the outbox and logs it in;
/// returns (account ID, session token).
async fn join(app: &TestApp, admin: &str, org: &str, email: &str, role: &str) -> (String, String) {
    invite(app, admin, org, email, role).await;
    let token = outbox_token(app, email).await;
    let joined = json_of(sign_up_invited(app, email, &token).await, 201).await;
    assert_eq!(joined["organization"]["id"], org, "{joined}");
    assert_eq!(joined["organization"]["role"], role);
    let session = app.log_in(email, GOOD_PASSWORD).await;
    (joined["id"].as_str().unwrap().to_owned(), session.token)
}

/// Signs up and logs in a fresh account; returns (account ID, session token).
pub(crate) async fn person(app: &TestApp, email: &str) -> (String, String) {
    let (account, token) = app.account_with_session(email).await;
    (account.id, token)
}

/// IDs of the organization's members, as `token` sees them.
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
    ids(&page, "account_id")
}

fn ids(page: &Value, field: &str) -> Vec<String> {
    let mut ids: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item[field].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn sorted(items: &[&str]) -> Vec<String> {
    let mut items: Vec<String> = items.iter().map(|item| (*item).to_owned()).collect();
    items.sort();
    items
}

async fn team_member_ids(app: &TestApp, token: &str, org: &str, team: &str) -> Vec<String> {
    let page = call(
        app,
        Method::GET,
        &format!("/api/v1/orgs/{org}/teams/{team}/members"),
        token,
        None,
        200,
    )
    .await;
    ids(&page, "account_id")
}

async fn create_team(app: &TestApp, token: &str, org: &str, name: &str) -> String {
    let team = call(
        app,
        Method::POST,
        &format!("/api/v1/orgs/{org}/teams"),
        token,
        Some(&json!({ "name": name })),
        201,
    )
    .await;
    assert_eq!(team["name"], name);
    assert_eq!(team["can_manage"], true, "{team}");
    team["id"].as_str().unwrap().to_owned()
}

async fn add_to_team(app: &TestApp, token: &str, org: &str, team: &str, account: &str) -> Response {
    send(
        app,
        Method::PUT,
        &format!("/api/v1/orgs/{org}/teams/{team}/members/{account}"),
        token,
        None,
    )
    .await
}

async fn change_member(
    app: &TestApp,
    token: &str,
    org: &str,
    account: &str,
    body: Value,
) -> Response {
    send(
        app,
        Method::PATCH,
        &format!("/api/v1/orgs/{org}/members/{account}"),
        token,
        Some(&body),
    )
    .await
}

async fn remove_member(app: &TestApp, token: &str, org: &str, account: &str) -> Response {
    send(
        app,
        Method::DELETE,
        &format!("/api/v1/orgs/{org}/members/{account}"),
        token,
        None,
    )
    .await
}

/// Registers an app as the operator; returns (app ID, app secret).
async fn register_app(app: &TestApp, name: &str) -> (String, String) {
    let operator = app.operator_token().await;
    let created = call(
        app,
        Method::POST,
        "/api/v1/operator/apps",
        &operator,
        Some(&json!({ "name": name })),
        201,
    )
    .await;
    (
        created["id"].as_str().unwrap().to_owned(),
        created["secret"].as_str().unwrap().to_owned(),
    )
}

/// What the app learns about `account` in `org`: the answer of the app's membership call.
async fn app_view(app: &TestApp, secret: &str, org: &str, account: &str) -> Response {
    app.get(
        &format!("/api/v1/app/orgs/{org}/members/{account}"),
        Some(secret),
    )
    .await
}

/// Whether the app sees `account` as an active member of `org` (asserting it sees it at all).
async fn app_active(app: &TestApp, secret: &str, org: &str, account: &str) -> bool {
    let view = json_of(app_view(app, secret, org, account).await, 200).await;
    assert_eq!(view["org_id"], org);
    assert_eq!(view["account_id"], account);
    view["active"].as_bool().unwrap()
}

async fn enable_app(app: &TestApp, token: &str, org: &str, app_id: &str, mode: &str) -> Response {
    send(
        app,
        Method::PUT,
        &format!("/api/v1/orgs/{org}/apps/{app_id}"),
        token,
        Some(&json!({ "mode": mode })),
    )
    .await
}

async fn select_for_app(
    app: &TestApp,
    token: &str,
    org: &str,
    app_id: &str,
    account: &str,
    selected: bool,
) -> Response {
    let method = if selected {
        Method::PUT
    } else {
        Method::DELETE
    };
    send(
        app,
        method,
        &format!("/api/v1/orgs/{org}/apps/{app_id}/members/{account}"),
        token,
        None,
    )
    .await
}

async fn count(app: &TestApp, table: &str) -> i64 {
    let pool = app.database.pool().await;
    let n: i64 = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) AS n FROM {table}"
    )))
    .fetch_one(&pool)
    .await
    .unwrap()
    .get("n");
    pool.close().await;
    n
}

/// The organization's audit chain: (seq, action, actor, prev_hash, hash), in order.
async fn audit_chain(
    app: &TestApp,
    org: &str,
) -> Vec<(i64, String, Option<String>, String, String)> {
    let pool = app.database.pool().await;
    let rows = sqlx::query(
        "SELECT seq, action, actor_id, org_id, prev_hash, hash FROM audit_events \
         WHERE chain = $1 ORDER BY seq",
    )
    .bind(org)
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows.iter()
        .map(|row| {
            assert_eq!(row.get::<Option<String>, _>("org_id").as_deref(), Some(org));
            (
                row.get("seq"),
                row.get("action"),
                row.get("actor_id"),
                row.get("prev_hash"),
                row.get("hash"),
            )
        })
        .collect()
}

/// The actions of the organization's chain, asserting seq runs 1, 2, 3, ... and each event
/// links to the one before.
async fn audit_actions(app: &TestApp, org: &str) -> Vec<String> {
    let chain = audit_chain(app, org).await;
    let mut previous = "0".repeat(64);
    for (index, (seq, action, _, prev_hash, hash)) in chain.iter().enumerate() {
        assert_eq!(*seq, index as i64 + 1, "gap before {action}");
        assert_eq!(
            prev_hash, &previous,
            "{action} does not link to the event before"
        );
        previous.clone_from(hash);
    }
    chain.into_iter().map(|(_, action, ..)| action).collect()
}

// ---------------------------------------------------------------------------------------
// Tests.

/// ACC-1: one sign-up makes the account and its organization; the creator administers it.
async fn signing_up_with_an_organization_makes_its_administrator(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let response = app
        .post(
            "/api/v1/accounts",
            None,
            &json!({
                "email": "founder@example.org",
                "password": GOOD_PASSWORD,
                "display_name": "Fran Founder",
                "organization": { "name": "  Acme Widgets  " },
            }),
        )
        .await;
    let signed_up = json_of(response, 201).await;
    assert!(signed_up["id"].as_str().unwrap().starts_with("acc_"));
    assert_eq!(signed_up["email"], "founder@example.org");
    let org = &signed_up["organization"];
    let org_id = org["id"].as_str().unwrap().to_owned();
    assert!(org_id.starts_with("org_"), "{org}");
    assert_eq!(org["name"], "Acme Widgets", "the name is trimmed");
    assert_eq!(org["role"], "admin");
    assert_eq!(org["can_invite"], true);

    let token = app.log_in("founder@example.org", GOOD_PASSWORD).await.token;
    let orgs = call(&app, Method::GET, "/api/v1/orgs", &token, None, 200).await;
    assert_eq!(orgs["items"].as_array().unwrap().len(), 1, "{orgs}");
    assert_eq!(orgs["items"][0]["id"], org_id.as_str());
    assert_eq!(orgs["items"][0]["name"], "Acme Widgets");
    assert_eq!(orgs["items"][0]["role"], "admin");
    assert_eq!(orgs["next_cursor"], Value::Null);

    let one = call(
        &app,
        Method::GET,
        &format!("/api/v1/orgs/{org_id}"),
        &token,
        None,
        200,
    )
    .await;
    assert_eq!(one["role"], "admin");
    let members = call(
        &app,
        Method::GET,
        &format!("/api/v1/orgs/{org_id}/members"),
        &token,
        None,
        200,
    )
    .await;
    let items = members["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["account_id"], signed_up["id"]);
    assert_eq!(items[0]["email"], "founder@example.org");
    assert_eq!(items[0]["role"], "admin");

    // Exactly 200 characters is allowed.
    let long = "n".repeat(200);
    let response = app
        .post(
            "/api/v1/accounts",
            None,
            &json!({
                "email": "second@example.org",
                "password": GOOD_PASSWORD,
                "display_name": "Second Founder",
                "organization": { "name": long },
            }),
        )
        .await;
    let signed_up = json_of(response, 201).await;
    assert_eq!(signed_up["organization"]["name"], long.as_str());

    // Someone else does not see the organization.
    let (_, stranger) = person(&app, "stranger@example.org").await;
    let orgs = call(&app, Method::GET, "/api/v1/orgs", &stranger, None, 200).await;
    assert_eq!(orgs["items"], json!([]));
    expect_problem(
        app.get(&format!("/api/v1/orgs/{org_id}"), Some(&stranger))
            .await,
        404,
        "not_found",
    )
    .await;
}

/// A sign-up whose organization is invalid creates nothing at all.
async fn an_invalid_organization_at_sign_up_creates_no_account(engine: TestEngine) {
    let app = spawn_app(engine).await;
    app.sign_up("someone@example.org", GOOD_PASSWORD, "Some One")
        .await;
    let accounts_before = count(&app, "accounts").await;
    let orgs_before = count(&app, "organizations").await;
    let memberships_before = count(&app, "memberships").await;

    for name in [
        "x".repeat(201),
        String::from("   "),
        String::from("bad\u{7}name"),
    ] {
        let response = app
            .post(
                "/api/v1/accounts",
                None,
                &json!({
                    "email": "hopeful@example.org",
                    "password": GOOD_PASSWORD,
                    "display_name": "Hopeful Founder",
                    "organization": { "name": name },
                }),
            )
            .await;
        let problem = expect_problem(response, 422, "validation_failed").await;
        assert_eq!(
            problem["errors"][0]["field"], "organization.name",
            "{problem}"
        );
    }
    // An organization and an invitation together are refused too.
    let response = app
        .post(
            "/api/v1/accounts",
            None,
            &json!({
                "email": "hopeful@example.org",
                "password": GOOD_PASSWORD,
                "display_name": "Hopeful Founder",
                "organization": { "name": "Fine Name" },
                "invitation_token": format!("mmi_{}", "a".repeat(43)),
            }),
        )
        .await;
    expect_problem(response, 422, "validation_failed").await;

    expect_problem(
        app.post(
            "/api/v1/sessions",
            None,
            &json!({ "email": "hopeful@example.org", "password": GOOD_PASSWORD }),
        )
        .await,
        401,
        "invalid_credentials",
    )
    .await;
    assert_eq!(count(&app, "accounts").await, accounts_before);
    assert_eq!(count(&app, "organizations").await, orgs_before);
    assert_eq!(count(&app, "memberships").await, memberships_before);

    // The address is still free.
    app.sign_up("hopeful@example.org", GOOD_PASSWORD, "Hopeful Founder")
        .await;
}

/// ORG-1: administrators promote and demote; members cannot change roles; the last
/// administrator can neither be demoted nor leave; guests never hold the invite permission.
async fn administrators_change_roles_and_one_always_remains(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let (alice, alice_token) = person(&app, "alice@example.org").await;
    let org = create_org(&app, &alice_token, "Roles Inc").await;
    let (bob, bob_token) = join(&app, &alice_token, &org, "bob@example.org", "member").await;
    let (carol, carol_token) = join(&app, &alice_token, &org, "carol@example.org", "member").await;

    // A member changes no roles, not even its own.
    expect_problem(
        change_member(&app, &bob_token, &org, &carol, json!({ "role": "admin" })).await,
        403,
        "forbidden",
    )
    .await;
    expect_problem(
        change_member(&app, &bob_token, &org, &bob, json!({ "role": "admin" })).await,
        403,
        "forbidden",
    )
    .await;
    expect_problem(
        change_member(
            &app,
            &bob_token,
            &org,
            &carol,
            json!({ "can_invite": true }),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    // Nor removes anyone.
    expect_problem(
        remove_member(&app, &bob_token, &org, &carol).await,
        403,
        "forbidden",
    )
    .await;

    // Promote, then demote.
    let promoted = json_of(
        change_member(&app, &alice_token, &org, &bob, json!({ "role": "admin" })).await,
        200,
    )
    .await;
    assert_eq!(promoted["role"], "admin");
    assert_eq!(promoted["can_invite"], true);
    let seen = call(
        &app,
        Method::GET,
        &format!("/api/v1/orgs/{org}"),
        &bob_token,
        None,
        200,
    )
    .await;
    assert_eq!(seen["role"], "admin");
    let demoted = json_of(
        change_member(&app, &alice_token, &org, &bob, json!({ "role": "member" })).await,
        200,
    )
    .await;
    assert_eq!(demoted["role"], "member");

    // The last administrator cannot be demoted, nor leave.
    expect_problem(
        change_member(
            &app,
            &alice_token,
            &org,
            &alice,
            json!({ "role": "member" }),
        )
        .await,
        409,
        "last_admin",
    )
    .await;
    expect_problem(
        change_member(&app, &alice_token, &org, &alice, json!({ "role": "guest" })).await,
        409,
        "last_admin",
    )
    .await;
    expect_problem(
        remove_member(&app, &alice_token, &org, &alice).await,
        409,
        "last_admin",
    )
    .await;
    let me = call(
        &app,
        Method::GET,
        &format!("/api/v1/orgs/{org}/members/{alice}"),
        &alice_token,
        None,
        200,
    )
    .await;
    assert_eq!(me["role"], "admin");

    // Guests never hold the invite permission.
    expect_problem(
        change_member(
            &app,
            &alice_token,
            &org,
            &carol,
            json!({ "role": "guest", "can_invite": true }),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    let guest = json_of(
        change_member(&app, &alice_token, &org, &carol, json!({ "role": "guest" })).await,
        200,
    )
    .await;
    assert_eq!(guest["role"], "guest");
    assert_eq!(guest["can_invite"], false);
    expect_problem(
        change_member(
            &app,
            &alice_token,
            &org,
            &carol,
            json!({ "can_invite": true }),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    let response = app
        .post(
            &format!("/api/v1/orgs/{org}/invitations"),
            Some(&alice_token),
            &json!({ "email": "dave@example.org", "role": "guest", "can_invite": true }),
        )
        .await;
    expect_problem(response, 422, "validation_failed").await;
    // A guest does not see the member list, nor change anything.
    expect_problem(
        app.get(&format!("/api/v1/orgs/{org}/members"), Some(&carol_token))
            .await,
        403,
        "forbidden",
    )
    .await;
    expect_problem(
        change_member(&app, &carol_token, &org, &carol, json!({ "role": "admin" })).await,
        403,
        "forbidden",
    )
    .await;
    // Bad role.
    expect_problem(
        change_member(&app, &alice_token, &org, &bob, json!({ "role": "owner" })).await,
        422,
        "validation_failed",
    )
    .await;

    // With a second administrator the first may leave.
    json_of(
        change_member(&app, &alice_token, &org, &bob, json!({ "role": "admin" })).await,
        200,
    )
    .await;
    let response = remove_member(&app, &alice_token, &org, &alice).await;
    assert_eq!(response.status(), 204);
    expect_problem(
        app.get(&format!("/api/v1/orgs/{org}"), Some(&alice_token))
            .await,
        404,
        "not_found",
    )
    .await;
    assert_eq!(
        member_ids(&app, &bob_token, &org).await,
        sorted(&[&bob, &carol])
    );
    // Now bob is the last administrator.
    expect_problem(
        change_member(&app, &bob_token, &org, &bob, json!({ "role": "member" })).await,
        409,
        "last_admin",
    )
    .await;
    expect_problem(
        remove_member(&app, &bob_token, &org, &bob).await,
        409,
        "last_admin",
    )
    .await;
    // Bob may remove the guest.
    assert_eq!(
        remove_member(&app, &bob_token, &org, &carol).await.status(),
        204
    );
    assert_eq!(member_ids(&app, &bob_token, &org).await, vec![bob.clone()]);
}

/// ORG-2: whoever holds the invite permission invites, may pass it on to members, never
/// invites administrators unless an administrator; revoking is for administrators and the
/// inviter.
async fn the_invite_permission_is_passed_on_but_never_exceeded(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let (_, alice_token) = person(&app, "alice@example.org").await;
    let org = create_org(&app, &alice_token, "Invites Ltd").await;
    let invitations = format!("/api/v1/orgs/{org}/invitations");
    let invited = json_of(
        invite_as(&app, &org, &alice_token, "bob@example.org", "member", true).await,
        201,
    )
    .await;
    assert_eq!(invited["can_invite"], true);
    let token = outbox_token(&app, "bob@example.org").await;
    let joined = json_of(sign_up_invited(&app, "bob@example.org", &token).await, 201).await;
    assert_eq!(joined["organization"]["can_invite"], true);
    let bob = joined["id"].as_str().unwrap().to_owned();
    let bob_token = app.log_in("bob@example.org", GOOD_PASSWORD).await.token;
    let (carol, carol_token) = join(&app, &alice_token, &org, "carol@example.org", "member").await;

    // Bob passes the permission on, invites guests, but no administrators.
    let dave = json_of(
        invite_as(&app, &org, &bob_token, "dave@example.org", "member", true).await,
        201,
    )
    .await;
    assert_eq!(dave["invited_by"], bob.as_str());
    let guest = json_of(
        invite_as(&app, &org, &bob_token, "gus@example.org", "guest", false).await,
        201,
    )
    .await;
    expect_problem(
        invite_as(&app, &org, &bob_token, "eve@example.org", "admin", false).await,
        403,
        "forbidden",
    )
    .await;
    // Carol may not invite, nor see or revoke invitations.
    expect_problem(
        invite_as(
            &app,
            &org,
            &carol_token,
            "frank@example.org",
            "guest",
            false,
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    expect_problem(
        app.get(&invitations, Some(&carol_token)).await,
        403,
        "forbidden",
    )
    .await;
    let dave_path = format!("{invitations}/{}", dave["id"].as_str().unwrap());
    let guest_path = format!("{invitations}/{}", guest["id"].as_str().unwrap());
    expect_problem(
        send(&app, Method::DELETE, &dave_path, &carol_token, None).await,
        404,
        "not_found",
    )
    .await;
    let listed = call(&app, Method::GET, &invitations, &bob_token, None, 200).await;
    let mut emails: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["email"].as_str().unwrap())
        .collect();
    emails.sort_unstable();
    assert_eq!(emails, ["dave@example.org", "gus@example.org"]);

    // With the permission, Carol still revokes only her own invitations.
    json_of(
        change_member(
            &app,
            &alice_token,
            &org,
            &carol,
            json!({ "can_invite": true }),
        )
        .await,
        200,
    )
    .await;
    expect_problem(
        send(&app, Method::DELETE, &dave_path, &carol_token, None).await,
        403,
        "forbidden",
    )
    .await;
    call_empty(&app, Method::DELETE, &dave_path, &bob_token, None, 204).await;
    call_empty(&app, Method::DELETE, &guest_path, &alice_token, None, 204).await;
    expect_problem(
        send(&app, Method::DELETE, &guest_path, &alice_token, None).await,
        409,
        "invitation_not_pending",
    )
    .await;
    let listed = call(&app, Method::GET, &invitations, &alice_token, None, 200).await;
    assert_eq!(listed["items"], json!([]));

    // Taking the permission away takes it away.
    json_of(
        change_member(
            &app,
            &alice_token,
            &org,
            &bob,
            json!({ "can_invite": false }),
        )
        .await,
        200,
    )
    .await;
    expect_problem(
        invite_as(&app, &org, &bob_token, "henry@example.org", "guest", false).await,
        403,
        "forbidden",
    )
    .await;
}

async fn invite_as(
    app: &TestApp,
    org: &str,
    token: &str,
    email: &str,
    role: &str,
    can_invite: bool,
) -> Response {
    app.post(
        &format!("/api/v1/orgs/{org}/invitations"),
        Some(token),
        &json!({ "email": email, "role": role, "can_invite": can_invite }),
    )
    .await
}

/// Builds the cascade scenario: an organization where `mallory` is a member, in two teams and
/// selected for an app, and who also has an organization of her own.
struct Cascade {
    app: TestApp,
    org: String,
    own_org: String,
    admin: String,
    admin_token: String,
    member: String,
    member_token: String,
    teams: [String; 2],
    app_id: String,
    app_secret: String,
}

async fn cascade(engine: TestEngine) -> Cascade {
    let app = spawn_app(engine).await;
    let (admin, admin_token) = person(&app, "admin@example.org").await;
    let org = create_org(&app, &admin_token, "Cascade Co").await;
    let (member, member_token) =
        join(&app, &admin_token, &org, "mallory@example.org", "member").await;
    let own_org = create_org(&app, &member_token, "Mallory Own").await;

    let first = create_team(&app, &admin_token, &org, "First Team").await;
    let second = create_team(&app, &member_token, &org, "Second Team").await;
    for team in [&first, &second] {
        assert_eq!(
            add_to_team(&app, &admin_token, &org, team, &member)
                .await
                .status(),
            204
        );
        assert_eq!(
            add_to_team(&app, &admin_token, &org, team, &admin)
                .await
                .status(),
            204
        );
    }
    let (app_id, app_secret) = register_app(&app, "Cascade App").await;
    json_of(
        enable_app(&app, &admin_token, &org, &app_id, "selected").await,
        200,
    )
    .await;
    assert_eq!(
        select_for_app(&app, &admin_token, &org, &app_id, &member, true)
            .await
            .status(),
        204
    );
    // The same app is used by her own organization, for everyone.
    json_of(
        enable_app(&app, &member_token, &own_org, &app_id, "all").await,
        200,
    )
    .await;
    assert!(app_active(&app, &app_secret, &org, &member).await);
    assert!(app_active(&app, &app_secret, &own_org, &member).await);

    Cascade {
        app,
        org,
        own_org,
        admin,
        admin_token,
        member,
        member_token,
        teams: [first, second],
        app_id,
        app_secret,
    }
}

/// After `member` lost its membership: no access through the API, in no team, no app seat;
/// its other organization untouched; and joining again does not bring any of it back.
async fn assert_cascaded(c: &Cascade) {
    let app = &c.app;
    for path in [
        format!("/api/v1/orgs/{}", c.org),
        format!("/api/v1/orgs/{}/members", c.org),
        format!("/api/v1/orgs/{}/teams", c.org),
        format!("/api/v1/orgs/{}/teams/{}", c.org, c.teams[0]),
        format!("/api/v1/orgs/{}/teams/{}/members", c.org, c.teams[1]),
        format!("/api/v1/orgs/{}/apps", c.org),
    ] {
        expect_problem(
            app.get(&path, Some(&c.member_token)).await,
            404,
            "not_found",
        )
        .await;
    }
    expect_problem(
        app.post(
            &format!("/api/v1/orgs/{}/teams", c.org),
            Some(&c.member_token),
            &json!({ "name": "Sneaky" }),
        )
        .await,
        404,
        "not_found",
    )
    .await;
    assert_eq!(
        member_ids(app, &c.admin_token, &c.org).await,
        vec![c.admin.clone()]
    );
    for team in &c.teams {
        assert_eq!(
            team_member_ids(app, &c.admin_token, &c.org, team).await,
            vec![c.admin.clone()],
            "still in {team}"
        );
    }
    expect_problem(
        app_view(app, &c.app_secret, &c.org, &c.member).await,
        404,
        "not_found",
    )
    .await;
    let seats = call(
        app,
        Method::GET,
        &format!("/api/v1/orgs/{}/apps/{}/members", c.org, c.app_id),
        &c.admin_token,
        None,
        200,
    )
    .await;
    assert_eq!(seats["items"], json!([]));

    // Her own organization is untouched.
    let orgs = call(app, Method::GET, "/api/v1/orgs", &c.member_token, None, 200).await;
    assert_eq!(ids(&orgs, "id"), vec![c.own_org.clone()]);
    let own = call(
        app,
        Method::GET,
        &format!("/api/v1/orgs/{}", c.own_org),
        &c.member_token,
        None,
        200,
    )
    .await;
    assert_eq!(own["role"], "admin");
    assert!(app_active(app, &c.app_secret, &c.own_org, &c.member).await);

    // Invited again, she starts from nothing: no team, no app seat. (The clock moves so the
    // new message is the newest in the outbox.)
    app.clock.advance_millis(1);
    invite(app, &c.admin_token, &c.org, "mallory@example.org", "member").await;
    let token = outbox_token(app, "mallory@example.org").await;
    let joined = call(
        app,
        Method::POST,
        "/api/v1/invitations/accept",
        &c.member_token,
        Some(&json!({ "token": token })),
        200,
    )
    .await;
    assert_eq!(joined["id"], c.org.as_str());
    for team in &c.teams {
        assert_eq!(
            team_member_ids(app, &c.admin_token, &c.org, team).await,
            vec![c.admin.clone()]
        );
    }
    assert!(!app_active(app, &c.app_secret, &c.org, &c.member).await);
}

/// ORG-3: a removed member at once loses every access in the organization.
async fn removing_a_member_takes_every_access_in_that_organization(engine: TestEngine) {
    let c = cascade(engine).await;
    let response = remove_member(&c.app, &c.admin_token, &c.org, &c.member).await;
    assert_eq!(response.status(), 204);
    assert_cascaded(&c).await;
    // Removing someone who is not a member is 404.
    let response = remove_member(
        &c.app,
        &c.admin_token,
        &c.org,
        "acc_nobodynobodynobodynobody",
    )
    .await;
    expect_problem(response, 404, "not_found").await;
}

/// ORG-3: a member who leaves loses the same.
async fn leaving_takes_every_access_in_that_organization(engine: TestEngine) {
    let c = cascade(engine).await;
    let response = remove_member(&c.app, &c.member_token, &c.org, &c.member).await;
    assert_eq!(response.status(), 204);
    assert_cascaded(&c).await;
}

/// ACC-3 with organizations: the last administrator of an organization cannot delete the
/// account; after handing over, the deletion takes the account out of every organization.
async fn the_last_administrator_cannot_delete_the_account(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let (alice, alice_token) = person(&app, "alice@example.org").await;
    let org = create_org(&app, &alice_token, "Handover Ltd").await;
    let other = create_org(&app, &alice_token, "Second Handover Ltd").await;
    let (bob, bob_token) = join(&app, &alice_token, &org, "bob@example.org", "member").await;
    let team = create_team(&app, &alice_token, &org, "Everyone").await;
    assert_eq!(
        add_to_team(&app, &alice_token, &org, &team, &alice)
            .await
            .status(),
        204
    );

    let password = json!({ "password": GOOD_PASSWORD });
    let delete_me = || {
        app.request(
            Method::DELETE,
            "/api/v1/me",
            Some(&alice_token),
            Some(&password),
        )
    };
    let problem = expect_problem(delete_me().await, 409, "last_admin").await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains(&org), "{detail}");
    assert!(detail.contains(&other), "{detail}");
    // Nothing changed.
    app.log_in("alice@example.org", GOOD_PASSWORD).await;
    assert_eq!(
        member_ids(&app, &bob_token, &org).await,
        sorted(&[&alice, &bob])
    );

    // Handing over one organization is not enough.
    json_of(
        change_member(&app, &alice_token, &org, &bob, json!({ "role": "admin" })).await,
        200,
    )
    .await;
    let problem = expect_problem(delete_me().await, 409, "last_admin").await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(!detail.contains(&org), "{detail}");
    assert!(detail.contains(&other), "{detail}");

    // The other organization gets an administrator too; then the deletion works.
    let (carol, carol_token) = join(&app, &alice_token, &other, "carol@example.org", "admin").await;
    assert_eq!(
        member_ids(&app, &bob_token, &org).await,
        sorted(&[&alice, &bob])
    );
    let response = delete_me().await;
    assert_eq!(response.status(), 204);
    assert_eq!(member_ids(&app, &bob_token, &org).await, vec![bob.clone()]);
    assert_eq!(
        team_member_ids(&app, &bob_token, &org, &team).await,
        Vec::<String>::new()
    );
    expect_problem(
        app.post(
            "/api/v1/sessions",
            None,
            &json!({ "email": "alice@example.org", "password": GOOD_PASSWORD }),
        )
        .await,
        401,
        "invalid_credentials",
    )
    .await;
    let actions = audit_actions(&app, &org).await;
    assert_eq!(actions.last().map(String::as_str), Some("org.member.left"));
    let chain = audit_chain(&app, &other).await;
    let (_, action, actor, ..) = chain.last().unwrap();
    assert_eq!(action, "org.member.left");
    assert_eq!(actor.as_deref(), Some(alice.as_str()));
    let orgs = call(&app, Method::GET, "/api/v1/orgs", &carol_token, None, 200).await;
    assert_eq!(ids(&orgs, "id"), vec![other.clone()]);
    assert_eq!(
        member_ids(&app, &carol_token, &other).await,
        vec![carol.clone()]
    );
}

/// ORG-4: members create teams and manage their own; administrators manage any; others see
/// but cannot change them; only the organization's members can be in a team.
async fn teams_are_managed_by_their_creator_and_administrators(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let (alice, alice_token) = person(&app, "alice@example.org").await;
    let org = create_org(&app, &alice_token, "Teamwork GmbH").await;
    let (bob, bob_token) = join(&app, &alice_token, &org, "bob@example.org", "member").await;
    let (carol, carol_token) = join(&app, &alice_token, &org, "carol@example.org", "member").await;
    let (outsider, outsider_token) = person(&app, "outsider@example.org").await;
    let outside_org = create_org(&app, &outsider_token, "Elsewhere").await;

    // Bob creates a team and manages it.
    let team = create_team(&app, &bob_token, &org, "Backend").await;
    assert!(team.starts_with("team_"), "{team}");
    let teams_path = format!("/api/v1/orgs/{org}/teams/{team}");
    let renamed = call(
        &app,
        Method::PATCH,
        &teams_path,
        &bob_token,
        Some(&json!({ "name": "Backend Guild" })),
        200,
    )
    .await;
    assert_eq!(renamed["name"], "Backend Guild");
    assert_eq!(renamed["created_by"], bob.as_str());
    assert_eq!(
        add_to_team(&app, &bob_token, &org, &team, &carol)
            .await
            .status(),
        204
    );
    assert_eq!(
        add_to_team(&app, &bob_token, &org, &team, &bob)
            .await
            .status(),
        204
    );
    // Adding twice changes nothing.
    assert_eq!(
        add_to_team(&app, &bob_token, &org, &team, &carol)
            .await
            .status(),
        204
    );
    assert_eq!(
        team_member_ids(&app, &bob_token, &org, &team).await,
        sorted(&[&bob, &carol])
    );
    call_empty(
        &app,
        Method::DELETE,
        &format!("{teams_path}/members/{carol}"),
        &bob_token,
        None,
        204,
    )
    .await;
    assert_eq!(
        team_member_ids(&app, &bob_token, &org, &team).await,
        vec![bob.clone()]
    );
    assert_eq!(
        add_to_team(&app, &bob_token, &org, &team, &carol)
            .await
            .status(),
        204
    );

    // Carol sees the team but cannot manage it.
    let seen = call(&app, Method::GET, &teams_path, &carol_token, None, 200).await;
    assert_eq!(seen["name"], "Backend Guild");
    assert_eq!(seen["can_manage"], false);
    let listed = call(
        &app,
        Method::GET,
        &format!("/api/v1/orgs/{org}/teams"),
        &carol_token,
        None,
        200,
    )
    .await;
    assert_eq!(ids(&listed, "id"), vec![team.clone()]);
    assert_eq!(
        team_member_ids(&app, &carol_token, &org, &team).await,
        sorted(&[&bob, &carol])
    );
    expect_problem(
        send(
            &app,
            Method::PATCH,
            &teams_path,
            &carol_token,
            Some(&json!({ "name": "Mine" })),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    expect_problem(
        add_to_team(&app, &carol_token, &org, &team, &alice).await,
        403,
        "forbidden",
    )
    .await;
    expect_problem(
        send(
            &app,
            Method::DELETE,
            &format!("{teams_path}/members/{bob}"),
            &carol_token,
            None,
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    expect_problem(
        send(&app, Method::DELETE, &teams_path, &carol_token, None).await,
        403,
        "forbidden",
    )
    .await;
    // But she may leave it.
    call_empty(
        &app,
        Method::DELETE,
        &format!("{teams_path}/members/{carol}"),
        &carol_token,
        None,
        204,
    )
    .await;
    assert_eq!(
        team_member_ids(&app, &bob_token, &org, &team).await,
        vec![bob.clone()]
    );

    // An administrator manages any team.
    let renamed = call(
        &app,
        Method::PATCH,
        &teams_path,
        &alice_token,
        Some(&json!({ "name": "Platform" })),
        200,
    )
    .await;
    assert_eq!(renamed["name"], "Platform");
    assert_eq!(renamed["can_manage"], true);
    assert_eq!(
        add_to_team(&app, &alice_token, &org, &team, &alice)
            .await
            .status(),
        204
    );
    call_empty(
        &app,
        Method::DELETE,
        &format!("{teams_path}/members/{bob}"),
        &alice_token,
        None,
        204,
    )
    .await;
    assert_eq!(
        team_member_ids(&app, &alice_token, &org, &team).await,
        vec![alice.clone()]
    );

    // Only the organization's members can be in a team.
    for account in [outsider.as_str(), "acc_nobodynobodynobodynobody", "garbage"] {
        let problem = expect_problem(
            add_to_team(&app, &alice_token, &org, &team, account).await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], "account", "{problem}");
    }
    // The outsider sees nothing of it, and it is not reachable through another organization.
    expect_problem(
        app.get(&teams_path, Some(&outsider_token)).await,
        404,
        "not_found",
    )
    .await;
    expect_problem(
        app.get(
            &format!("/api/v1/orgs/{outside_org}/teams/{team}"),
            Some(&outsider_token),
        )
        .await,
        404,
        "not_found",
    )
    .await;

    // Names: required, at most 200 characters.
    let teams = format!("/api/v1/orgs/{org}/teams");
    for name in ["x".repeat(201), String::from("  ")] {
        let problem = expect_problem(
            send(
                &app,
                Method::POST,
                &teams,
                &bob_token,
                Some(&json!({ "name": name })),
            )
            .await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], "name", "{problem}");
        expect_problem(
            send(
                &app,
                Method::PATCH,
                &teams_path,
                &alice_token,
                Some(&json!({ "name": name })),
            )
            .await,
            422,
            "validation_failed",
        )
        .await;
    }
    let long = "y".repeat(200);
    let long_team = create_team(&app, &carol_token, &org, &long).await;
    let seen = call(
        &app,
        Method::GET,
        &format!("/api/v1/orgs/{org}/teams/{long_team}"),
        &bob_token,
        None,
        200,
    )
    .await;
    assert_eq!(seen["name"], long.as_str());
    let seen = call(&app, Method::GET, &teams_path, &alice_token, None, 200).await;
    assert_eq!(seen["name"], "Platform", "a refused rename changed nothing");

    // Creator and administrator delete.
    call_empty(
        &app,
        Method::DELETE,
        &format!("/api/v1/orgs/{org}/teams/{long_team}"),
        &carol_token,
        None,
        204,
    )
    .await;
    call_empty(&app, Method::DELETE, &teams_path, &alice_token, None, 204).await;
    expect_problem(
        app.get(&teams_path, Some(&bob_token)).await,
        404,
        "not_found",
    )
    .await;
    let listed = call(&app, Method::GET, &teams, &bob_token, None, 200).await;
    assert_eq!(listed["items"], json!([]));
}

/// ORG-4 for guests: they see only the teams they are in, create none, and manage none.
async fn guests_see_only_their_own_teams(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let (alice, alice_token) = person(&app, "alice@example.org").await;
    let org = create_org(&app, &alice_token, "Guesthouse").await;
    let (guest, guest_token) = join(&app, &alice_token, &org, "guest@example.org", "guest").await;
    let theirs = create_team(&app, &alice_token, &org, "With Guest").await;
    let other = create_team(&app, &alice_token, &org, "Without Guest").await;
    assert_eq!(
        add_to_team(&app, &alice_token, &org, &theirs, &guest)
            .await
            .status(),
        204
    );

    let listed = call(
        &app,
        Method::GET,
        &format!("/api/v1/orgs/{org}/teams"),
        &guest_token,
        None,
        200,
    )
    .await;
    assert_eq!(ids(&listed, "id"), vec![theirs.clone()]);
    let seen = call(
        &app,
        Method::GET,
        &format!("/api/v1/orgs/{org}/teams/{theirs}"),
        &guest_token,
        None,
        200,
    )
    .await;
    assert_eq!(seen["name"], "With Guest");
    assert_eq!(seen["can_manage"], false);
    assert_eq!(
        team_member_ids(&app, &guest_token, &org, &theirs).await,
        vec![guest.clone()]
    );
    for path in [
        format!("/api/v1/orgs/{org}/teams/{other}"),
        format!("/api/v1/orgs/{org}/teams/{other}/members"),
    ] {
        expect_problem(app.get(&path, Some(&guest_token)).await, 404, "not_found").await;
    }
    expect_problem(
        add_to_team(&app, &guest_token, &org, &other, &guest).await,
        404,
        "not_found",
    )
    .await;
    expect_problem(
        send(
            &app,
            Method::POST,
            &format!("/api/v1/orgs/{org}/teams"),
            &guest_token,
            Some(&json!({ "name": "Guest Team" })),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    expect_problem(
        send(
            &app,
            Method::PATCH,
            &format!("/api/v1/orgs/{org}/teams/{theirs}"),
            &guest_token,
            Some(&json!({ "name": "Renamed" })),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    // A guest reads its own membership, nobody else's.
    let me = call(
        &app,
        Method::GET,
        &format!("/api/v1/orgs/{org}/members/{guest}"),
        &guest_token,
        None,
        200,
    )
    .await;
    assert_eq!(me["role"], "guest");
    assert_eq!(me["can_invite"], false);
    expect_problem(
        app.get(
            &format!("/api/v1/orgs/{org}/members/{alice}"),
            Some(&guest_token),
        )
        .await,
        404,
        "not_found",
    )
    .await;
    // Once out of the team, the guest no longer sees it.
    call_empty(
        &app,
        Method::DELETE,
        &format!("/api/v1/orgs/{org}/teams/{theirs}/members/{guest}"),
        &guest_token,
        None,
        204,
    )
    .await;
    let listed = call(
        &app,
        Method::GET,
        &format!("/api/v1/orgs/{org}/teams"),
        &guest_token,
        None,
        200,
    )
    .await;
    assert_eq!(listed["items"], json!([]));
    expect_problem(
        app.get(
            &format!("/api/v1/orgs/{org}/teams/{theirs}"),
            Some(&guest_token),
        )
        .await,
        404,
        "not_found",
    )
    .await;
}

/// ORG-5: an administrator enables an app for all members or for selected ones; the app
/// learns who is active, and sees nothing of organizations that did not enable it.
async fn apps_are_enabled_for_all_or_selected_members(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let (alice, alice_token) = person(&app, "alice@example.org").await;
    let org = create_org(&app, &alice_token, "Appy Corp").await;
    let (bob, bob_token) = join(&app, &alice_token, &org, "bob@example.org", "member").await;
    let (gina, _) = join(&app, &alice_token, &org, "gina@example.org", "guest").await;
    let (olga, olga_token) = person(&app, "olga@example.org").await;
    let other_org = create_org(&app, &olga_token, "Other Corp").await;
    let (app_id, secret) = register_app(&app, "Timesheets").await;
    let (other_app, other_secret) = register_app(&app, "Expenses").await;
    assert!(app_id.starts_with("app_"), "{app_id}");
    let everyone = [alice.as_str(), bob.as_str(), gina.as_str()];

    // Not enabled yet: the app sees nothing.
    expect_problem(
        app_view(&app, &secret, &org, &alice).await,
        404,
        "not_found",
    )
    .await;
    // Only administrators enable apps; modes are all or selected; unknown apps are 404.
    expect_problem(
        enable_app(&app, &bob_token, &org, &app_id, "all").await,
        403,
        "forbidden",
    )
    .await;
    let problem = expect_problem(
        enable_app(&app, &alice_token, &org, &app_id, "some").await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "mode", "{problem}");
    expect_problem(
        enable_app(
            &app,
            &alice_token,
            &org,
            "app_nosuchappnosuchappnosuchap",
            "all",
        )
        .await,
        404,
        "not_found",
    )
    .await;
    expect_problem(
        app_view(&app, &secret, &org, &alice).await,
        404,
        "not_found",
    )
    .await;

    // All: every member is active.
    let enabled = json_of(
        enable_app(&app, &alice_token, &org, &app_id, "all").await,
        200,
    )
    .await;
    assert_eq!(enabled["mode"], "all");
    assert_eq!(enabled["app_id"], app_id.as_str());
    assert_eq!(enabled["app_name"], "Timesheets");
    for account in everyone {
        assert!(app_active(&app, &secret, &org, account).await, "{account}");
    }
    let view = json_of(app_view(&app, &secret, &org, &gina).await, 200).await;
    assert_eq!(view["role"], "guest");
    // Not members, and other apps, learn nothing.
    expect_problem(app_view(&app, &secret, &org, &olga).await, 404, "not_found").await;
    expect_problem(
        app_view(&app, &other_secret, &org, &alice).await,
        404,
        "not_found",
    )
    .await;
    expect_problem(
        app_view(&app, &secret, &other_org, &olga).await,
        404,
        "not_found",
    )
    .await;
    let listed = call(
        &app,
        Method::GET,
        &format!("/api/v1/orgs/{org}/apps"),
        &bob_token,
        None,
        200,
    )
    .await;
    assert_eq!(ids(&listed, "app_id"), vec![app_id.clone()]);

    // Selected: nobody until selected.
    let enabled = json_of(
        enable_app(&app, &alice_token, &org, &app_id, "selected").await,
        200,
    )
    .await;
    assert_eq!(enabled["mode"], "selected");
    for account in everyone {
        assert!(!app_active(&app, &secret, &org, account).await, "{account}");
    }
    assert_eq!(
        select_for_app(&app, &alice_token, &org, &app_id, &bob, true)
            .await
            .status(),
        204
    );
    assert!(app_active(&app, &secret, &org, &bob).await);
    assert!(!app_active(&app, &secret, &org, &alice).await);
    assert!(!app_active(&app, &secret, &org, &gina).await);
    let seats = call(
        &app,
        Method::GET,
        &format!("/api/v1/orgs/{org}/apps/{app_id}/members"),
        &alice_token,
        None,
        200,
    )
    .await;
    assert_eq!(seats["items"], json!([bob.clone()]));
    // Members do not select.
    expect_problem(
        select_for_app(&app, &bob_token, &org, &app_id, &alice, true).await,
        403,
        "forbidden",
    )
    .await;
    // Only members can be selected.
    for account in [olga.as_str(), "acc_nobodynobodynobodynobody", "garbage"] {
        let problem = expect_problem(
            select_for_app(&app, &alice_token, &org, &app_id, account, true).await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], "account", "{problem}");
    }
    expect_problem(app_view(&app, &secret, &org, &olga).await, 404, "not_found").await;
    // Selecting for an app the organization did not enable is 404.
    expect_problem(
        select_for_app(&app, &alice_token, &org, &other_app, &bob, true).await,
        404,
        "not_found",
    )
    .await;

    // Unselect.
    assert_eq!(
        select_for_app(&app, &alice_token, &org, &app_id, &bob, false)
            .await
            .status(),
        204
    );
    assert!(!app_active(&app, &secret, &org, &bob).await);
    expect_problem(
        select_for_app(&app, &alice_token, &org, &app_id, &bob, false).await,
        404,
        "not_found",
    )
    .await;

    // Disable: the app sees nothing any more.
    assert_eq!(
        select_for_app(&app, &alice_token, &org, &app_id, &bob, true)
            .await
            .status(),
        204
    );
    expect_problem(
        send(
            &app,
            Method::DELETE,
            &format!("/api/v1/orgs/{org}/apps/{app_id}"),
            &bob_token,
            None,
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    call_empty(
        &app,
        Method::DELETE,
        &format!("/api/v1/orgs/{org}/apps/{app_id}"),
        &alice_token,
        None,
        204,
    )
    .await;
    for account in everyone {
        expect_problem(
            app_view(&app, &secret, &org, account).await,
            404,
            "not_found",
        )
        .await;
    }
    expect_problem(
        app.get(
            &format!("/api/v1/orgs/{org}/apps/{app_id}"),
            Some(&alice_token),
        )
        .await,
        404,
        "not_found",
    )
    .await;
    // Enabled again in selected mode, nobody carries over from before.
    json_of(
        enable_app(&app, &alice_token, &org, &app_id, "selected").await,
        200,
    )
    .await;
    assert!(!app_active(&app, &secret, &org, &bob).await);

    // The app's own secret is required.
    let response = app
        .get(&format!("/api/v1/app/orgs/{org}/members/{bob}"), None)
        .await;
    assert_eq!(response.status(), 401);
    let response = app
        .get(
            &format!("/api/v1/app/orgs/{org}/members/{bob}"),
            Some("not-a-secret"),
        )
        .await;
    assert_eq!(response.status(), 401);
}

fn contains_case_insensitive(haystack: &[u8], needle: &str) -> bool {
    let needle = needle.to_lowercase().into_bytes();
    haystack
        .to_ascii_lowercase()
        .windows(needle.len())
        .any(|window| window == needle.as_slice())
}

/// ENC-1 for organizations: names of organizations and teams, and invited addresses, are
/// sealed; no column holds them in plaintext.
async fn organization_data_is_sealed(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let (_, token) = person(&app, "owner@example.org").await;
    let org = create_org(&app, &token, "Quetzalcoatl Holdings").await;
    let team = create_team(&app, &token, &org, "Obsidian Circle").await;
    let renamed = call(
        &app,
        Method::PATCH,
        &format!("/api/v1/orgs/{org}"),
        &token,
        Some(&json!({ "name": "Quetzalcoatl Holdings Renamed" })),
        200,
    )
    .await;
    assert_eq!(renamed["name"], "Quetzalcoatl Holdings Renamed");
    let renamed_team = call(
        &app,
        Method::PATCH,
        &format!("/api/v1/orgs/{org}/teams/{team}"),
        &token,
        Some(&json!({ "name": "Obsidian Circle Two" })),
        200,
    )
    .await;
    assert_eq!(renamed_team["name"], "Obsidian Circle Two");
    invite(&app, &token, &org, "Xochitl.Invitee@Example.net", "member").await;
    let secrets = ["Quetzalcoatl", "Obsidian", "Xochitl", "Invitee@Example"];

    let pool = app.database.pool().await;
    let mut n_values = 0;
    for table in [
        "organizations",
        "teams",
        "memberships",
        "invitations",
        "team_members",
        "outbox",
        "audit_events",
    ] {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM {table}")))
            .fetch_all(&pool)
            .await
            .unwrap();
        for row in rows {
            for index in 0..row.len() {
                if let Ok(Some(text)) = row.try_get::<Option<String>, _>(index) {
                    n_values += 1;
                    for secret in secrets {
                        assert!(
                            !contains_case_insensitive(text.as_bytes(), secret),
                            "{secret:?} found in {table}: {text:?}"
                        );
                    }
                }
            }
        }
    }
    assert!(n_values > 10, "too few values checked: {n_values}");
    pool.close().await;

    // The API still reads them.
    let seen = call(
        &app,
        Method::GET,
        &format!("/api/v1/orgs/{org}"),
        &token,
        None,
        200,
    )
    .await;
    assert_eq!(seen["name"], "Quetzalcoatl Holdings Renamed");
    let seen = call(
        &app,
        Method::GET,
        &format!("/api/v1/orgs/{org}/teams/{team}"),
        &token,
        None,
        200,
    )
    .await;
    assert_eq!(seen["name"], "Obsidian Circle Two");

    // On SQLite, byte for byte in every file of the data store.
    if engine == TestEngine::Sqlite {
        for entry in std::fs::read_dir(app.database.data_dir()).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !name.starts_with("mamori.db") {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            for secret in secrets {
                assert!(
                    !contains_case_insensitive(&bytes, secret),
                    "{secret:?} found in {name}"
                );
            }
        }
    }
}

/// Every change to an organization, and nothing refused, is recorded in the organization's
/// own chain, numbered without gaps from 1 and linked by hashes.
async fn every_change_is_in_the_organizations_own_audit_chain(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let (alice, alice_token) = person(&app, "alice@example.org").await;
    let (carol, carol_token) = person(&app, "carol@example.org").await;
    let org = create_org(&app, &alice_token, "Audited Org").await;
    let (bob, bob_token) = join(&app, &alice_token, &org, "bob@example.org", "member").await;
    // Carol, who has an account, accepts while logged in.
    invite(&app, &alice_token, &org, "carol@example.org", "member").await;
    let token = outbox_token(&app, "carol@example.org").await;
    call(
        &app,
        Method::POST,
        "/api/v1/invitations/accept",
        &carol_token,
        Some(&json!({ "token": token })),
        200,
    )
    .await;

    // Refused changes leave nothing.
    expect_problem(
        change_member(&app, &bob_token, &org, &carol, json!({ "role": "admin" })).await,
        403,
        "forbidden",
    )
    .await;
    expect_problem(
        change_member(
            &app,
            &alice_token,
            &org,
            &alice,
            json!({ "role": "member" }),
        )
        .await,
        409,
        "last_admin",
    )
    .await;

    json_of(
        change_member(&app, &alice_token, &org, &bob, json!({ "role": "admin" })).await,
        200,
    )
    .await;
    // A change to what already is records nothing.
    let same = json_of(
        change_member(&app, &alice_token, &org, &bob, json!({ "role": "admin" })).await,
        200,
    )
    .await;
    assert_eq!(same["role"], "admin");
    let team = create_team(&app, &alice_token, &org, "Audit Team").await;
    assert_eq!(
        add_to_team(&app, &alice_token, &org, &team, &carol)
            .await
            .status(),
        204
    );
    call(
        &app,
        Method::PATCH,
        &format!("/api/v1/orgs/{org}/teams/{team}"),
        &alice_token,
        Some(&json!({ "name": "Audit Team 2" })),
        200,
    )
    .await;
    call_empty(
        &app,
        Method::DELETE,
        &format!("/api/v1/orgs/{org}/teams/{team}/members/{carol}"),
        &alice_token,
        None,
        204,
    )
    .await;
    let (app_id, _) = register_app(&app, "Audited App").await;
    json_of(
        enable_app(&app, &alice_token, &org, &app_id, "selected").await,
        200,
    )
    .await;
    assert_eq!(
        select_for_app(&app, &alice_token, &org, &app_id, &carol, true)
            .await
            .status(),
        204
    );
    assert_eq!(
        select_for_app(&app, &alice_token, &org, &app_id, &carol, true)
            .await
            .status(),
        204
    );
    assert_eq!(
        select_for_app(&app, &alice_token, &org, &app_id, &carol, false)
            .await
            .status(),
        204
    );
    call_empty(
        &app,
        Method::DELETE,
        &format!("/api/v1/orgs/{org}/apps/{app_id}"),
        &alice_token,
        None,
        204,
    )
    .await;
    let invitation = invite(&app, &alice_token, &org, "dave@example.org", "guest").await;
    call_empty(
        &app,
        Method::DELETE,
        &format!(
            "/api/v1/orgs/{org}/invitations/{}",
            invitation["id"].as_str().unwrap()
        ),
        &alice_token,
        None,
        204,
    )
    .await;
    assert_eq!(
        remove_member(&app, &alice_token, &org, &carol)
            .await
            .status(),
        204
    );
    call(
        &app,
        Method::PATCH,
        &format!("/api/v1/orgs/{org}"),
        &alice_token,
        Some(&json!({ "name": "Audited Org 2" })),
        200,
    )
    .await;
    call_empty(
        &app,
        Method::DELETE,
        &format!("/api/v1/orgs/{org}/teams/{team}"),
        &alice_token,
        None,
        204,
    )
    .await;
    assert_eq!(
        remove_member(&app, &bob_token, &org, &bob).await.status(),
        204
    );

    let actions = audit_actions(&app, &org).await;
    assert_eq!(
        actions,
        [
            "org.created",
            "org.invitation.created",
            "org.invitation.accepted",
            "org.invitation.created",
            "org.invitation.accepted",
            "org.member.updated",
            "org.team.created",
            "org.team.member.added",
            "org.team.updated",
            "org.team.member.removed",
            "org.app.enabled",
            "org.app.member.added",
            "org.app.member.removed",
            "org.app.disabled",
            "org.invitation.created",
            "org.invitation.revoked",
            "org.member.removed",
            "org.updated",
            "org.team.deleted",
            "org.member.left",
        ]
    );
    let chain = audit_chain(&app, &org).await;
    let actor_of = |index: usize| chain[index].2.clone().unwrap();
    assert_eq!(actor_of(0), alice);
    assert_eq!(actor_of(2), bob, "the invitee accepts");
    assert_eq!(actor_of(4), carol);
    assert_eq!(actor_of(19), bob);

    // Nothing of the organization is in the platform chain, nor in another organization's.
    let pool = app.database.pool().await;
    let stray: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM audit_events WHERE action LIKE 'org.%' AND chain <> org_id",
    )
    .fetch_one(&pool)
    .await
    .unwrap()
    .get("n");
    assert_eq!(stray, 0);
    pool.close().await;
}

/// Two administrators demoting each other, or leaving, at the same moment: one wins, and the
/// organization always keeps an administrator.
async fn concurrent_changes_keep_an_administrator(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let (alice, alice_token) = person(&app, "alice@example.org").await;
    let org = create_org(&app, &alice_token, "Racing Org").await;
    let (bob, bob_token) = join(&app, &alice_token, &org, "bob@example.org", "admin").await;
    for round in 0..5 {
        // Demote each other.
        let (first, second) = tokio::join!(
            change_member(&app, &alice_token, &org, &bob, json!({ "role": "member" })),
            change_member(&app, &bob_token, &org, &alice, json!({ "role": "member" })),
        );
        let statuses = [first.status().as_u16(), second.status().as_u16()];
        assert_eq!(
            statuses.iter().filter(|status| **status == 200).count(),
            1,
            "round {round}: {statuses:?}"
        );
        let roles = stored_roles(&app, &org).await;
        assert_eq!(
            roles.iter().filter(|(_, role)| role == "admin").count(),
            1,
            "round {round}: {roles:?}"
        );
        // Whoever is still administrator promotes the other again.
        let (admin_token, other) = if roles.contains(&(alice.clone(), String::from("admin"))) {
            (&alice_token, &bob)
        } else {
            (&bob_token, &alice)
        };
        json_of(
            change_member(&app, admin_token, &org, other, json!({ "role": "admin" })).await,
            200,
        )
        .await;
    }
    // Both leave at once: one stays.
    let (first, second) = tokio::join!(
        remove_member(&app, &alice_token, &org, &alice),
        remove_member(&app, &bob_token, &org, &bob),
    );
    let statuses = [first.status().as_u16(), second.status().as_u16()];
    assert!(
        statuses == [204, 409] || statuses == [409, 204],
        "{statuses:?}"
    );
    let roles = stored_roles(&app, &org).await;
    assert_eq!(roles.len(), 1, "{roles:?}");
    assert_eq!(roles[0].1, "admin");
    audit_actions(&app, &org).await;
}

/// Every member's (account, role) of `org`, read through SQL.
async fn stored_roles(app: &TestApp, org: &str) -> Vec<(String, String)> {
    let pool = app.database.pool().await;
    let rows = sqlx::query(
        "SELECT account_id, role FROM memberships WHERE org_id = $1 ORDER BY account_id",
    )
    .bind(org)
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows.iter()
        .map(|row| (row.get("account_id"), row.get("role")))
        .collect()
}

/// Several invitations into one organization at the same moment all succeed, each with its
/// mail in the outbox and its event in the chain.
async fn concurrent_invitations_all_succeed(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let (_, token) = person(&app, "alice@example.org").await;
    let org = create_org(&app, &token, "Busy Org").await;
    let path = format!("/api/v1/orgs/{org}/invitations");
    let bodies: Vec<Value> = (0..8)
        .map(|n| json!({ "email": format!("guest{n}@example.net"), "role": "guest" }))
        .collect();
    let started = std::time::Instant::now();
    let responses = futures_util::future::join_all(
        bodies
            .iter()
            .map(|body| app.request(Method::POST, &path, Some(&token), Some(body))),
    )
    .await;
    let elapsed = started.elapsed();
    let mut statuses = Vec::new();
    for response in responses {
        let status = response.status().as_u16();
        statuses.push((status, response.text().await.unwrap()));
    }
    assert!(
        statuses.iter().all(|(status, _)| *status == 201),
        "after {elapsed:?}: {statuses:?}"
    );
    let outbox = app.services.outbox(50).await.unwrap();
    assert_eq!(
        outbox
            .iter()
            .filter(|entry| entry.kind == "invitation")
            .count(),
        8
    );
    let actions = audit_actions(&app, &org).await;
    assert_eq!(
        actions
            .iter()
            .filter(|action| *action == "org.invitation.created")
            .count(),
        8
    );
}

/// Several members selected for an app at the same moment are all selected.
async fn concurrent_app_selections_all_succeed(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let (_, token) = person(&app, "alice@example.org").await;
    let org = create_org(&app, &token, "Busy Apps").await;
    let mut members = Vec::new();
    for n in 0..8 {
        let email = format!("member{n}@example.net");
        members.push(join(&app, &token, &org, &email, "member").await.0);
    }
    let (app_id, secret) = register_app(&app, "Busy App").await;
    json_of(
        enable_app(&app, &token, &org, &app_id, "selected").await,
        200,
    )
    .await;
    let started = std::time::Instant::now();
    let responses = futures_util::future::join_all(
        members
            .iter()
            .map(|member| select_for_app(&app, &token, &org, &app_id, member, true)),
    )
    .await;
    let elapsed = started.elapsed();
    let mut statuses = Vec::new();
    for response in responses {
        let status = response.status().as_u16();
        statuses.push((status, response.text().await.unwrap()));
    }
    assert!(
        statuses.iter().all(|(status, _)| *status == 204),
        "after {elapsed:?}: {statuses:?}"
    );
    for member in &members {
        assert!(app_active(&app, &secret, &org, member).await);
    }
}
