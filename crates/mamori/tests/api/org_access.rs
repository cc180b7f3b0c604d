//! Who may do what in an organization (ORG-1 to ORG-5), as one table: every organization
//! endpoint (and the app's own membership call) for every kind of caller -> the expected
//! status, on SQLite and on PostgreSQL.
//!
//! The callers: a non-member, a guest, a member, a member holding the invite permission, the
//! administrator, the administrator of another organization, an operator token and an app
//! token. The rules, from the routes and the service: outsiders (non-members, the other
//! administrator) get 404 on anything scoped to the organization, never a hint that it exists;
//! operator and app tokens get 403 on account endpoints; guests read the organization, only
//! themselves as a member and only their own teams; members without the invite permission do
//! not invite; members with it invite members and guests but not administrators; only
//! administrators change roles, manage apps and remove others; teams are managed by their
//! creator and administrators.
//!
//! Calls that change state act on throwaway targets made for that one case (a fresh member to
//! promote, a fresh guest to remove, a fresh invitation to revoke, a fresh team to delete, a
//! fresh app to enable, ...). Every refusal is a problem document with the expected `code`, and
//! what the row watches reads the same before and after it. The table is checked against the
//! OpenAPI document, so a new organization endpoint without rows fails here.

use mamori_testkit::{TestApp, TestEngine, spawn_app};
use reqwest::Method;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};

mamori_testkit::engine_tests!(every_org_endpoint_for_every_actor);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Actor {
    NonMember,
    Guest,
    Member,
    Inviter,
    Admin,
    OtherAdmin,
    Operator,
    App,
}

/// The columns of the table, in order.
const ACTORS: [Actor; 8] = [
    Actor::NonMember,
    Actor::Guest,
    Actor::Member,
    Actor::Inviter,
    Actor::Admin,
    Actor::OtherAdmin,
    Actor::Operator,
    Actor::App,
];

impl Actor {
    fn name(self) -> &'static str {
        match self {
            Actor::NonMember => "non-member",
            Actor::Guest => "guest",
            Actor::Member => "member",
            Actor::Inviter => "member with can_invite",
            Actor::Admin => "administrator",
            Actor::OtherAdmin => "administrator of another organization",
            Actor::Operator => "operator token",
            Actor::App => "app token",
        }
    }

    fn is_account(self) -> bool {
        !matches!(self, Actor::Operator | Actor::App)
    }
}

/// A throwaway target made for one case of a row; its ID (or token) is `{fresh}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fresh {
    Nothing,
    /// A member (no invite permission) who just joined.
    Member,
    /// A guest who just joined.
    Guest,
    /// A pending invitation sent by the administrator.
    InvitationByAdmin,
    /// A pending invitation sent by the member holding the invite permission.
    InvitationByInviter,
    /// The token of an invitation to a new organization, sent to the caller's own address
    /// (for operator and app tokens: to a stranger, in the organization).
    InvitationForCaller,
    /// The token of an invitation in the organization sent to a stranger.
    InvitationForStranger,
    /// A team the member created, without members.
    EmptyTeam,
    /// A team the member created, with the guest, the member, the inviter and the
    /// administrator in it.
    FullTeam,
    /// An app the operator registered, not enabled anywhere.
    App,
    /// An app the organization enabled for selected members, none selected.
    EnabledApp,
    /// As `EnabledApp`, with the member selected.
    EnabledAppWithMember,
    /// An organization-local account the administrator registered (ACC-7).
    LocalAccount,
}

impl Fresh {
    /// Whether the target depends on the caller, so it cannot serve another case.
    fn is_per_caller(self) -> bool {
        self == Fresh::InvitationForCaller
    }
}

/// One endpoint with one target: the expected status for each actor in [`ACTORS`] order.
struct Row {
    method: &'static str,
    /// With `{placeholders}`, see [`Fixture::vars`].
    path: &'static str,
    /// JSON text with `{placeholders}`.
    body: Option<&'static str>,
    expect: [u16; 8],
    fresh: Fresh,
    /// GETs (as the administrator of the organization the path names) whose answers must not
    /// change when the call is refused.
    watch: &'static [&'static str],
    /// A coded refusal accounts get instead of the default code for that status.
    code: Option<(u16, &'static str)>,
}

fn row(
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
    expect: [u16; 8],
) -> Row {
    Row {
        method,
        path,
        body,
        expect,
        fresh: Fresh::Nothing,
        watch: &[],
        code: None,
    }
}

impl Row {
    fn fresh(mut self, fresh: Fresh) -> Row {
        self.fresh = fresh;
        self
    }

    fn watch(mut self, paths: &'static [&'static str]) -> Row {
        self.watch = paths;
        self
    }

    fn code(mut self, status: u16, code: &'static str) -> Row {
        self.code = Some((status, code));
        self
    }
}

const ORG: &[&str] = &["/api/v1/orgs/{org}"];
const ADMIN: &[&str] = &["/api/v1/orgs/{org}/members/{admin}"];
const MEMBER: &[&str] = &["/api/v1/orgs/{org}/members/{member}"];
const SELF: &[&str] = &["/api/v1/orgs/{org}/members/{self}"];
const FRESH_MEMBER: &[&str] = &["/api/v1/orgs/{org}/members/{fresh}"];
const INVITATIONS: &[&str] = &["/api/v1/orgs/{org}/invitations?limit=500"];
const TEAMS: &[&str] = &["/api/v1/orgs/{org}/teams?limit=500"];
const FRESH_TEAM: &[&str] = &[
    "/api/v1/orgs/{org}/teams/{fresh}",
    "/api/v1/orgs/{org}/teams/{fresh}/members?limit=500",
];
const FRESH_TEAM_MEMBERS: &[&str] = &["/api/v1/orgs/{org}/teams/{fresh}/members?limit=500"];
const TEAM_MEMBERS: &[&str] = &["/api/v1/orgs/{org}/teams/{team}/members?limit=500"];
const APPS: &[&str] = &["/api/v1/orgs/{org}/apps"];
const APP_MEMBERS: &[&str] = &["/api/v1/orgs/{org}/apps/{app}/members?limit=500"];
const FRESH_APP_MEMBERS: &[&str] = &["/api/v1/orgs/{org}/apps/{fresh}/members?limit=500"];
const LOCAL_ACCOUNTS: &[&str] = &["/api/v1/orgs/{org}/local-accounts?limit=500"];

/// The table. Rows run top to bottom, each for every actor left to right; the two
/// "last administrator" rows come before any row that adds an administrator.
#[rustfmt::skip]
fn rows() -> Vec<Row> {
    vec![
        // Organizations.                                                    non  gst  mem  inv  adm  oth  op   app
        row("POST", "/api/v1/orgs", Some(r#"{"name":"Org of {actor}"}"#),   [201, 201, 201, 201, 201, 201, 403, 403]),
        row("GET", "/api/v1/orgs", None,                                    [200, 200, 200, 200, 200, 200, 403, 403]),
        row("GET", "/api/v1/orgs/{org}", None,                              [404, 200, 200, 200, 200, 404, 403, 403]),
        row("PATCH", "/api/v1/orgs/{org}", Some(r#"{"name":"Renamed by {actor}"}"#),
                                                                            [404, 403, 403, 403, 200, 404, 403, 403]).watch(ORG),
        // The lifecycle (issue 6): deleting needs the administrator and the password (the
        // deletion itself is in `lifecycle.rs`, as it ends the organization).
        row("DELETE", "/api/v1/orgs/{org}", Some(r#"{"password":"not the password at all"}"#),
                                                                            [404, 403, 403, 403, 422, 404, 403, 403]).watch(ORG),
        row("GET", "/api/v1/orgs/{org}/lifecycle", None,                    [404, 200, 200, 200, 200, 404, 403, 403]),
        row("POST", "/api/v1/orgs/{org}/lifecycle/continue", None,          [404, 403, 403, 403, 200, 404, 403, 403]),
        // Members.
        row("GET", "/api/v1/orgs/{org}/members", None,                      [404, 403, 200, 200, 200, 404, 403, 403]),
        row("GET", "/api/v1/orgs/{org}/members/{self}", None,               [404, 200, 200, 200, 200, 404, 403, 403]),
        row("GET", "/api/v1/orgs/{org}/members/{member}", None,             [404, 404, 200, 200, 200, 404, 403, 403]),
        row("GET", "/api/v1/orgs/{org}/members/{outsider}", None,           [404, 404, 404, 404, 404, 404, 403, 403]),
        row("PATCH", "/api/v1/orgs/{org}/members/{admin}", Some(r#"{"role":"member"}"#),
                                                                            [404, 403, 403, 403, 409, 404, 403, 403]).watch(ADMIN).code(409, "last_admin"),
        row("DELETE", "/api/v1/orgs/{org}/members/{admin}", None,           [404, 403, 403, 403, 409, 404, 403, 403]).watch(ADMIN).code(409, "last_admin"),
        row("PATCH", "/api/v1/orgs/{org}/members/{self}", Some(r#"{"role":"admin"}"#),
                                                                            [404, 403, 403, 403, 200, 404, 403, 403]).watch(SELF),
        row("PATCH", "/api/v1/orgs/{org}/members/{fresh}", Some(r#"{"role":"admin"}"#),
                                                                            [404, 403, 403, 403, 200, 404, 403, 403]).fresh(Fresh::Member).watch(FRESH_MEMBER),
        row("PATCH", "/api/v1/orgs/{org}/members/{fresh}", Some(r#"{"can_invite":true}"#),
                                                                            [404, 403, 403, 403, 200, 404, 403, 403]).fresh(Fresh::Member).watch(FRESH_MEMBER),
        row("DELETE", "/api/v1/orgs/{org}/members/{fresh}", None,           [404, 403, 403, 403, 204, 404, 403, 403]).fresh(Fresh::Guest).watch(FRESH_MEMBER),
        // Invitations.
        row("POST", "/api/v1/orgs/{org}/invitations", Some(r#"{"email":"{email}","role":"guest"}"#),
                                                                            [404, 403, 403, 201, 201, 404, 403, 403]).watch(INVITATIONS),
        row("POST", "/api/v1/orgs/{org}/invitations", Some(r#"{"email":"{email}","role":"member"}"#),
                                                                            [404, 403, 403, 201, 201, 404, 403, 403]).watch(INVITATIONS),
        row("POST", "/api/v1/orgs/{org}/invitations", Some(r#"{"email":"{email}","role":"member","can_invite":true}"#),
                                                                            [404, 403, 403, 201, 201, 404, 403, 403]).watch(INVITATIONS),
        row("POST", "/api/v1/orgs/{org}/invitations", Some(r#"{"email":"{email}","role":"admin"}"#),
                                                                            [404, 403, 403, 403, 201, 404, 403, 403]).watch(INVITATIONS),
        row("GET", "/api/v1/orgs/{org}/invitations", None,                  [404, 403, 403, 200, 200, 404, 403, 403]),
        row("DELETE", "/api/v1/orgs/{org}/invitations/{fresh}", None,       [404, 404, 404, 403, 204, 404, 403, 403]).fresh(Fresh::InvitationByAdmin).watch(INVITATIONS),
        row("DELETE", "/api/v1/orgs/{org}/invitations/{fresh}", None,       [404, 404, 404, 204, 204, 404, 403, 403]).fresh(Fresh::InvitationByInviter).watch(INVITATIONS),
        row("POST", "/api/v1/invitations/accept", Some(r#"{"token":"{fresh}"}"#),
                                                                            [200, 200, 200, 200, 200, 200, 403, 403]).fresh(Fresh::InvitationForCaller).watch(INVITATIONS),
        row("POST", "/api/v1/invitations/accept", Some(r#"{"token":"{fresh}"}"#),
                                                                            [403, 403, 403, 403, 403, 403, 403, 403]).fresh(Fresh::InvitationForStranger).watch(INVITATIONS)
                                                                            .code(403, "invitation_email_mismatch"),
        // Organization-local accounts (ACC-7): those who may invite.
        row("POST", "/api/v1/orgs/{org}/local-accounts", Some(r#"{"login_id":"{login}","display_name":"Local","email":"{email}"}"#),
                                                                            [404, 403, 403, 201, 201, 404, 403, 403]).watch(LOCAL_ACCOUNTS),
        row("GET", "/api/v1/orgs/{org}/local-accounts", None,               [404, 403, 403, 200, 200, 404, 403, 403]),
        row("POST", "/api/v1/orgs/{org}/local-accounts/{fresh}/password-reset", None,
                                                                            [404, 403, 403, 204, 204, 404, 403, 403]).fresh(Fresh::LocalAccount).watch(LOCAL_ACCOUNTS),
        row("DELETE", "/api/v1/orgs/{org}/local-accounts/{fresh}", None,    [404, 403, 403, 204, 204, 404, 403, 403]).fresh(Fresh::LocalAccount).watch(LOCAL_ACCOUNTS),
        row("DELETE", "/api/v1/orgs/{org}/members/{fresh}", None,           [404, 403, 403, 403, 409, 404, 403, 403]).fresh(Fresh::LocalAccount).watch(FRESH_MEMBER)
                                                                            .code(409, "local_account"),
        row("DELETE", "/api/v1/orgs/{other_org}/local-accounts/{fresh}", None,
                                                                            [404, 404, 404, 404, 404, 404, 403, 403]).fresh(Fresh::LocalAccount).watch(LOCAL_ACCOUNTS),
        // Teams.
        row("POST", "/api/v1/orgs/{org}/teams", Some(r#"{"name":"Team of {actor}"}"#),
                                                                            [404, 403, 201, 201, 201, 404, 403, 403]).watch(TEAMS),
        row("GET", "/api/v1/orgs/{org}/teams", None,                        [404, 200, 200, 200, 200, 404, 403, 403]),
        row("GET", "/api/v1/orgs/{org}/teams/{team}", None,                 [404, 404, 200, 200, 200, 404, 403, 403]),
        row("GET", "/api/v1/orgs/{org}/teams/{guest_team}", None,           [404, 200, 200, 200, 200, 404, 403, 403]),
        row("PATCH", "/api/v1/orgs/{org}/teams/{fresh}", Some(r#"{"name":"Renamed by {actor}"}"#),
                                                                            [404, 403, 200, 403, 200, 404, 403, 403]).fresh(Fresh::FullTeam).watch(FRESH_TEAM),
        row("DELETE", "/api/v1/orgs/{org}/teams/{fresh}", None,             [404, 403, 204, 403, 204, 404, 403, 403]).fresh(Fresh::FullTeam).watch(FRESH_TEAM),
        row("GET", "/api/v1/orgs/{org}/teams/{team}/members", None,         [404, 404, 200, 200, 200, 404, 403, 403]),
        row("GET", "/api/v1/orgs/{org}/teams/{guest_team}/members", None,   [404, 200, 200, 200, 200, 404, 403, 403]),
        row("PUT", "/api/v1/orgs/{org}/teams/{fresh}/members/{inviter}", None,
                                                                            [404, 404, 204, 403, 204, 404, 403, 403]).fresh(Fresh::EmptyTeam).watch(FRESH_TEAM_MEMBERS),
        row("PUT", "/api/v1/orgs/{org}/teams/{team}/members/{outsider}", None,
                                                                            [404, 404, 422, 403, 422, 404, 403, 403]).watch(TEAM_MEMBERS),
        row("DELETE", "/api/v1/orgs/{org}/teams/{fresh}/members/{inviter}", None,
                                                                            [404, 403, 204, 204, 204, 404, 403, 403]).fresh(Fresh::FullTeam).watch(FRESH_TEAM_MEMBERS),
        row("DELETE", "/api/v1/orgs/{org}/teams/{fresh}/members/{self}", None,
                                                                            [404, 204, 204, 204, 204, 404, 403, 403]).fresh(Fresh::FullTeam).watch(FRESH_TEAM_MEMBERS),
        // Apps the organization uses.
        row("GET", "/api/v1/orgs/{org}/apps", None,                         [404, 403, 200, 200, 200, 404, 403, 403]),
        row("GET", "/api/v1/orgs/{org}/apps/{app}", None,                   [404, 403, 200, 200, 200, 404, 403, 403]),
        row("PUT", "/api/v1/orgs/{org}/apps/{fresh}", Some(r#"{"mode":"all"}"#),
                                                                            [404, 403, 403, 403, 200, 404, 403, 403]).fresh(Fresh::App).watch(APPS),
        row("DELETE", "/api/v1/orgs/{org}/apps/{fresh}", None,              [404, 403, 403, 403, 204, 404, 403, 403]).fresh(Fresh::EnabledApp).watch(APPS),
        row("GET", "/api/v1/orgs/{org}/apps/{app}/members", None,           [404, 403, 403, 403, 200, 404, 403, 403]),
        row("PUT", "/api/v1/orgs/{org}/apps/{fresh}/members/{inviter}", None,
                                                                            [404, 403, 403, 403, 204, 404, 403, 403]).fresh(Fresh::EnabledApp).watch(FRESH_APP_MEMBERS),
        row("PUT", "/api/v1/orgs/{org}/apps/{app}/members/{outsider}", None,
                                                                            [404, 403, 403, 403, 422, 404, 403, 403]).watch(APP_MEMBERS),
        row("DELETE", "/api/v1/orgs/{org}/apps/{fresh}/members/{member}", None,
                                                                            [404, 403, 403, 403, 204, 404, 403, 403]).fresh(Fresh::EnabledAppWithMember).watch(FRESH_APP_MEMBERS),
        // The audit trail: administrators, and holders of the viewer right (none here).
        row("GET", "/api/v1/orgs/{org}/audit-events", None,                 [404, 403, 403, 403, 200, 404, 403, 403]),
        row("GET", "/api/v1/orgs/{org}/audit-events/export", None,          [404, 403, 403, 403, 200, 404, 403, 403]),
        row("GET", "/api/v1/orgs/{org}/audit-checkpoints", None,            [404, 403, 403, 403, 200, 404, 403, 403]),
        row("GET", "/api/v1/orgs/{org}/audit-viewers", None,                [404, 403, 403, 403, 200, 404, 403, 403]),
        row("PUT", "/api/v1/orgs/{org}/audit-viewers/{fresh}", None,        [404, 403, 403, 403, 201, 404, 403, 403]).fresh(Fresh::Member),
        row("DELETE", "/api/v1/orgs/{org}/audit-viewers/{member}", None,    [404, 403, 403, 403, 404, 404, 403, 403]),
        // The app's own call: only for organizations that enabled it, only about members.
        row("GET", "/api/v1/app/orgs/{org}/members/{member}", None,         [403, 403, 403, 403, 403, 403, 403, 200]),
        row("GET", "/api/v1/app/orgs/{other_org}/members/{other_admin}", None,
                                                                            [403, 403, 403, 403, 403, 403, 403, 404]),
        row("GET", "/api/v1/app/orgs/{org}/members/{outsider}", None,       [403, 403, 403, 403, 403, 403, 403, 404]),
        // Across organizations: one organization's path with another one's objects.
        row("GET", "/api/v1/orgs/{other_org}/members/{member}", None,       [404, 404, 404, 404, 404, 404, 403, 403]),
        row("PATCH", "/api/v1/orgs/{other_org}/members/{member}", Some(r#"{"role":"guest"}"#),
                                                                            [404, 404, 404, 404, 404, 404, 403, 403]).watch(MEMBER),
        row("DELETE", "/api/v1/orgs/{other_org}/members/{member}", None,    [404, 404, 404, 404, 404, 404, 403, 403]).watch(MEMBER),
        row("DELETE", "/api/v1/orgs/{other_org}/invitations/{invitation}", None,
                                                                            [404, 404, 404, 404, 404, 404, 403, 403]).watch(INVITATIONS),
        row("DELETE", "/api/v1/orgs/{org}/invitations/{other_invitation}", None,
                                                                            [404, 404, 404, 404, 404, 404, 403, 403])
                                                                            .watch(&["/api/v1/orgs/{other_org}/invitations?limit=500"]),
        row("GET", "/api/v1/orgs/{org}/teams/{other_team}", None,           [404, 404, 404, 404, 404, 404, 403, 403]),
        row("GET", "/api/v1/orgs/{other_org}/teams/{team}", None,           [404, 404, 404, 404, 404, 404, 403, 403]),
        row("PATCH", "/api/v1/orgs/{other_org}/teams/{team}", Some(r#"{"name":"Taken over"}"#),
                                                                            [404, 404, 404, 404, 404, 404, 403, 403]).watch(TEAMS),
        row("DELETE", "/api/v1/orgs/{other_org}/teams/{team}", None,        [404, 404, 404, 404, 404, 404, 403, 403]).watch(TEAMS),
        row("PUT", "/api/v1/orgs/{other_org}/teams/{team}/members/{other_admin}", None,
                                                                            [404, 404, 404, 404, 404, 404, 403, 403]).watch(TEAM_MEMBERS),
        row("GET", "/api/v1/orgs/{other_org}/apps/{app}", None,             [404, 404, 404, 404, 404, 404, 403, 403]),
        row("DELETE", "/api/v1/orgs/{other_org}/apps/{app}", None,          [404, 404, 404, 404, 404, 404, 403, 403]).watch(APPS),
        row("DELETE", "/api/v1/orgs/{other_org}/apps/{app}/members/{member}", None,
                                                                            [404, 404, 404, 404, 404, 404, 403, 403]).watch(APP_MEMBERS),
    ]
}

/// The default `code` of a refusal with `status`.
fn default_code(status: u16) -> &'static str {
    match status {
        401 => "unauthenticated",
        403 => "forbidden",
        404 => "not_found",
        409 => "conflict",
        422 => "validation_failed",
        _ => "?",
    }
}

struct Person {
    id: String,
    email: String,
    token: String,
}

/// Organization A with an administrator, a member, a member with the invite permission and a
/// guest; organization B with its own administrator; an account in neither; an operator
/// token; an app A enabled (for selected members: the member); two teams in A and one in B;
/// a pending invitation in each organization.
struct Fixture {
    app: TestApp,
    org: String,
    other_org: String,
    non_member: Person,
    guest: Person,
    member: Person,
    inviter: Person,
    admin: Person,
    other_admin: Person,
    operator_token: String,
    app_id: String,
    app_secret: String,
    /// Created by the member; the member and the inviter are in it, the guest is not.
    team: String,
    /// Created by the administrator; the guest is in it.
    guest_team: String,
    other_team: String,
    invitation: String,
    other_invitation: String,
    serial: AtomicU32,
}

/// Sends a setup request and asserts its status; returns the JSON answer (or null).
async fn setup(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
    status: u16,
) -> Value {
    let response = app
        .request(method.clone(), path, Some(token), body.as_ref())
        .await;
    let actual = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(actual, status, "setup {method} {path}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

fn id_of(value: &Value, field: &str) -> String {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {value}"))
        .to_owned()
}

async fn create_org(app: &TestApp, token: &str, name: &str) -> String {
    let org = setup(
        app,
        Method::POST,
        "/api/v1/orgs",
        token,
        Some(json!({ "name": name })),
        201,
    )
    .await;
    id_of(&org, "id")
}

async fn create_team(app: &TestApp, token: &str, org: &str, name: &str) -> String {
    let team = setup(
        app,
        Method::POST,
        &format!("/api/v1/orgs/{org}/teams"),
        token,
        Some(json!({ "name": name })),
        201,
    )
    .await;
    id_of(&team, "id")
}

async fn add_to_team(app: &TestApp, token: &str, org: &str, team: &str, account: &str) {
    setup(
        app,
        Method::PUT,
        &format!("/api/v1/orgs/{org}/teams/{team}/members/{account}"),
        token,
        None,
        204,
    )
    .await;
}

/// Registers an app with the operator token; returns (ID, secret).
async fn create_app(app: &TestApp, operator: &str, name: &str) -> (String, String) {
    let created = setup(
        app,
        Method::POST,
        "/api/v1/operator/apps",
        operator,
        Some(json!({ "name": name })),
        201,
    )
    .await;
    (id_of(&created, "id"), id_of(&created, "secret"))
}

/// The token in the invitation mail to `email`: the newest one, as the clock moves on before
/// each invitation and every invited address is used once.
async fn emailed_invitation_token(app: &TestApp, email: &str) -> String {
    let body = app
        .services
        .outbox(20)
        .await
        .unwrap()
        .into_iter()
        .filter(|entry| entry.kind == "invitation")
        .filter_map(|entry| entry.mail)
        .find(|mail| mail.to.eq_ignore_ascii_case(email))
        .unwrap_or_else(|| panic!("no invitation mail to {email} in the outbox"))
        .body;
    let (_, rest) = body
        .split_once("Invitation token (if your app asks for it): ")
        .unwrap_or_else(|| panic!("no token in {body:?}"));
    let token = rest.split_whitespace().next().unwrap_or("").to_owned();
    assert!(token.starts_with("mmi_"), "{token}");
    token
}

/// Invites `email` to `org` as the holder of `token`; returns (invitation ID, emailed token).
async fn invite(
    app: &TestApp,
    token: &str,
    org: &str,
    email: &str,
    role: &str,
    can_invite: bool,
) -> (String, String) {
    app.clock.advance_millis(1);
    let invitation = setup(
        app,
        Method::POST,
        &format!("/api/v1/orgs/{org}/invitations"),
        token,
        Some(json!({ "email": email, "role": role, "can_invite": can_invite })),
        201,
    )
    .await;
    (
        id_of(&invitation, "id"),
        emailed_invitation_token(app, email).await,
    )
}

/// Signs `email` up, logs it in, has the administrator invite it to `org` with `role` and
/// accepts; returns (account ID, session token).
async fn join(
    app: &TestApp,
    admin_token: &str,
    org: &str,
    email: &str,
    role: &str,
    can_invite: bool,
) -> (String, String) {
    let (account, token) = app.account_with_session(email).await;
    let (_, invitation) = invite(app, admin_token, org, email, role, can_invite).await;
    let joined = setup(
        app,
        Method::POST,
        "/api/v1/invitations/accept",
        &token,
        Some(json!({ "token": invitation })),
        200,
    )
    .await;
    assert_eq!(joined["id"], org, "{joined}");
    assert_eq!(joined["role"], role, "{joined}");
    (account.id, token)
}

async fn person(app: &TestApp, email: &str) -> Person {
    let (account, token) = app.account_with_session(email).await;
    Person {
        id: account.id,
        email: email.to_owned(),
        token,
    }
}

async fn joined_person(
    app: &TestApp,
    admin: &Person,
    org: &str,
    email: &str,
    role: &str,
    can_invite: bool,
) -> Person {
    let (id, token) = join(app, &admin.token, org, email, role, can_invite).await;
    Person {
        id,
        email: email.to_owned(),
        token,
    }
}

impl Fixture {
    async fn build(engine: TestEngine) -> Fixture {
        let app = spawn_app(engine).await;
        let admin = person(&app, "admin@a.example").await;
        let org = create_org(&app, &admin.token, "Organization A").await;
        let member = joined_person(&app, &admin, &org, "member@a.example", "member", false).await;
        let inviter = joined_person(&app, &admin, &org, "inviter@a.example", "member", true).await;
        let guest = joined_person(&app, &admin, &org, "guest@a.example", "guest", false).await;
        let other_admin = person(&app, "admin@b.example").await;
        let other_org = create_org(&app, &other_admin.token, "Organization B").await;
        let non_member = person(&app, "nobody@c.example").await;

        let operator_token = app.operator_token().await;
        let (app_id, app_secret) = create_app(&app, &operator_token, "Timesheets").await;
        setup(
            &app,
            Method::PUT,
            &format!("/api/v1/orgs/{org}/apps/{app_id}"),
            &admin.token,
            Some(json!({ "mode": "selected" })),
            200,
        )
        .await;
        setup(
            &app,
            Method::PUT,
            &format!("/api/v1/orgs/{org}/apps/{app_id}/members/{}", member.id),
            &admin.token,
            None,
            204,
        )
        .await;

        let team = create_team(&app, &member.token, &org, "Member's team").await;
        add_to_team(&app, &member.token, &org, &team, &member.id).await;
        add_to_team(&app, &member.token, &org, &team, &inviter.id).await;
        let guest_team = create_team(&app, &admin.token, &org, "Guest's team").await;
        add_to_team(&app, &admin.token, &org, &guest_team, &guest.id).await;
        let other_team = create_team(&app, &other_admin.token, &other_org, "B's team").await;

        let (invitation, _) = invite(
            &app,
            &admin.token,
            &org,
            "pending@a.example",
            "member",
            false,
        )
        .await;
        let (other_invitation, _) = invite(
            &app,
            &other_admin.token,
            &other_org,
            "pending@b.example",
            "member",
            false,
        )
        .await;

        Fixture {
            app,
            org,
            other_org,
            non_member,
            guest,
            member,
            inviter,
            admin,
            other_admin,
            operator_token,
            app_id,
            app_secret,
            team,
            guest_team,
            other_team,
            invitation,
            other_invitation,
            serial: AtomicU32::new(0),
        }
    }

    fn person(&self, actor: Actor) -> Option<&Person> {
        match actor {
            Actor::NonMember => Some(&self.non_member),
            Actor::Guest => Some(&self.guest),
            Actor::Member => Some(&self.member),
            Actor::Inviter => Some(&self.inviter),
            Actor::Admin => Some(&self.admin),
            Actor::OtherAdmin => Some(&self.other_admin),
            Actor::Operator | Actor::App => None,
        }
    }

    fn token(&self, actor: Actor) -> &str {
        match actor {
            Actor::Operator => &self.operator_token,
            Actor::App => &self.app_secret,
            _ => &self.person(actor).unwrap().token,
        }
    }

    /// A new address, never used before.
    fn next_email(&self, what: &str) -> String {
        let n = self.serial.fetch_add(1, Ordering::Relaxed);
        format!("{what}-{n}@a.example")
    }

    /// The values of the placeholders for one case.
    fn vars(&self, actor: Actor, fresh: &str, email: &str) -> Vec<(&'static str, String)> {
        let own = self.person(actor).unwrap_or(&self.admin);
        vec![
            ("{org}", self.org.clone()),
            ("{other_org}", self.other_org.clone()),
            ("{self}", own.id.clone()),
            ("{admin}", self.admin.id.clone()),
            ("{member}", self.member.id.clone()),
            ("{inviter}", self.inviter.id.clone()),
            ("{guest}", self.guest.id.clone()),
            ("{outsider}", self.other_admin.id.clone()),
            ("{other_admin}", self.other_admin.id.clone()),
            ("{team}", self.team.clone()),
            ("{guest_team}", self.guest_team.clone()),
            ("{other_team}", self.other_team.clone()),
            ("{app}", self.app_id.clone()),
            ("{invitation}", self.invitation.clone()),
            ("{other_invitation}", self.other_invitation.clone()),
            ("{fresh}", fresh.to_owned()),
            ("{email}", email.to_owned()),
            (
                "{login}",
                email.split('@').next().unwrap_or_default().to_owned(),
            ),
            ("{actor}", actor.name().to_owned()),
        ]
    }

    /// Makes the throwaway target of one case; returns its ID (or token).
    async fn prepare(&self, fresh: Fresh, actor: Actor) -> String {
        let app = &self.app;
        let admin = self.admin.token.as_str();
        let org = self.org.as_str();
        match fresh {
            Fresh::Nothing => String::new(),
            Fresh::Member => {
                let email = self.next_email("fresh-member");
                join(app, admin, org, &email, "member", false).await.0
            }
            Fresh::Guest => {
                let email = self.next_email("fresh-guest");
                join(app, admin, org, &email, "guest", false).await.0
            }
            Fresh::InvitationByAdmin => {
                let email = self.next_email("invitee");
                invite(app, admin, org, &email, "member", false).await.0
            }
            Fresh::InvitationByInviter => {
                let email = self.next_email("invitee");
                invite(app, &self.inviter.token, org, &email, "member", false)
                    .await
                    .0
            }
            Fresh::InvitationForCaller => match self.person(actor) {
                Some(caller) => {
                    let host = if actor == Actor::Admin {
                        &self.other_admin.token
                    } else {
                        admin
                    };
                    let throwaway = create_org(app, host, "Throwaway").await;
                    invite(app, host, &throwaway, &caller.email, "member", false)
                        .await
                        .1
                }
                None => {
                    let email = self.next_email("invitee");
                    invite(app, admin, org, &email, "member", false).await.1
                }
            },
            Fresh::InvitationForStranger => {
                let email = self.next_email("stranger");
                invite(app, admin, org, &email, "member", false).await.1
            }
            Fresh::EmptyTeam => create_team(app, &self.member.token, org, "Throwaway").await,
            Fresh::FullTeam => {
                let team = create_team(app, &self.member.token, org, "Throwaway").await;
                for person in [&self.guest, &self.member, &self.inviter, &self.admin] {
                    add_to_team(app, &self.member.token, org, &team, &person.id).await;
                }
                team
            }
            Fresh::LocalAccount => {
                let email = self.next_email("local");
                let login = email.split('@').next().unwrap_or_default().to_owned();
                let created = setup(
                    app,
                    Method::POST,
                    &format!("/api/v1/orgs/{org}/local-accounts"),
                    admin,
                    Some(json!({ "login_id": login, "display_name": "Local", "email": email })),
                    201,
                )
                .await;
                id_of(&created, "account_id")
            }
            Fresh::App => create_app(app, &self.operator_token, "Throwaway").await.0,
            Fresh::EnabledApp | Fresh::EnabledAppWithMember => {
                let (id, _) = create_app(app, &self.operator_token, "Throwaway").await;
                setup(
                    app,
                    Method::PUT,
                    &format!("/api/v1/orgs/{org}/apps/{id}"),
                    admin,
                    Some(json!({ "mode": "selected" })),
                    200,
                )
                .await;
                if fresh == Fresh::EnabledAppWithMember {
                    setup(
                        app,
                        Method::PUT,
                        &format!("/api/v1/orgs/{org}/apps/{id}/members/{}", self.member.id),
                        admin,
                        None,
                        204,
                    )
                    .await;
                }
                id
            }
        }
    }

    /// What the watched GETs answer now (status and body), read by the administrator of the
    /// organization each path names.
    async fn observe(&self, watch: &[&str], vars: &[(&str, String)]) -> Vec<(String, String)> {
        let mut seen = Vec::new();
        for template in watch {
            let path = fill(template, vars);
            let token = if template.contains("{other_org}") {
                &self.other_admin.token
            } else {
                &self.admin.token
            };
            let response = self.app.get(&path, Some(token)).await;
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            seen.push((path, format!("{status} {text}")));
        }
        seen
    }

    /// Runs one case: `token` calls the row's endpoint; the answer must have the `expected`
    /// status (and for a refusal, be a problem with its code that changed nothing watched).
    async fn case(
        &self,
        row: &Row,
        label: &str,
        vars: &[(&str, String)],
        watch: &[&str],
        token: Option<&str>,
        (expected, code): (u16, &str),
    ) -> Result<(), String> {
        let path = fill(row.path, vars);
        assert!(
            !path.contains('{'),
            "{label}: unknown placeholder in {path}"
        );
        let body = row.body.map(|body| {
            serde_json::from_str::<Value>(&fill(body, vars))
                .unwrap_or_else(|error| panic!("{label}: bad body: {error}"))
        });
        let refused = expected >= 400;
        let before = if refused {
            self.observe(watch, vars).await
        } else {
            Vec::new()
        };
        let method = Method::from_bytes(row.method.as_bytes()).unwrap();
        let response = self.app.request(method, &path, token, body.as_ref()).await;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let text = response.text().await.unwrap();
        if status != expected {
            return Err(format!(
                "{label}: expected {expected}, got {status}: {text}"
            ));
        }
        if !refused {
            return Ok(());
        }
        if content_type != "application/problem+json" {
            return Err(format!(
                "{label}: a refusal with content type {content_type:?}: {text}"
            ));
        }
        let problem: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if problem["code"] != code || problem["status"] != expected {
            return Err(format!(
                "{label}: expected a problem with code {code:?} and status {expected}, got {text}"
            ));
        }
        let after = self.observe(watch, vars).await;
        for ((path, was), (_, is)) in before.iter().zip(&after) {
            if was != is {
                return Err(format!(
                    "{label}: refused, yet GET {path} changed from {was} to {is}"
                ));
            }
        }
        Ok(())
    }

    /// The fixture is what the table assumes.
    async fn check_starting_point(&self) {
        let app = &self.app;
        let org = &self.org;
        let members = setup(
            app,
            Method::GET,
            &format!("/api/v1/orgs/{org}/members"),
            &self.admin.token,
            None,
            200,
        )
        .await;
        let mut standing: Vec<(String, String, bool)> = members["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| {
                (
                    id_of(item, "account_id"),
                    id_of(item, "role"),
                    item["can_invite"].as_bool().unwrap(),
                )
            })
            .collect();
        standing.sort();
        let mut expected = vec![
            (self.admin.id.clone(), String::from("admin"), true),
            (self.member.id.clone(), String::from("member"), false),
            (self.inviter.id.clone(), String::from("member"), true),
            (self.guest.id.clone(), String::from("guest"), false),
        ];
        expected.sort();
        assert_eq!(standing, expected, "{members}");

        let as_guest = setup(
            app,
            Method::GET,
            &format!("/api/v1/orgs/{org}"),
            &self.guest.token,
            None,
            200,
        )
        .await;
        assert_eq!(as_guest["role"], "guest", "{as_guest}");
        assert_eq!(as_guest["can_invite"], false, "{as_guest}");

        // Guests see only the teams they are in; members see all of them.
        let team_ids = |page: &Value| -> BTreeSet<String> {
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|team| id_of(team, "id"))
                .collect()
        };
        let teams_path = format!("/api/v1/orgs/{org}/teams");
        let seen = setup(app, Method::GET, &teams_path, &self.guest.token, None, 200).await;
        assert_eq!(
            team_ids(&seen),
            BTreeSet::from([self.guest_team.clone()]),
            "the guest's teams: {seen}"
        );
        let seen = setup(app, Method::GET, &teams_path, &self.member.token, None, 200).await;
        assert_eq!(
            team_ids(&seen),
            BTreeSet::from([self.team.clone(), self.guest_team.clone()]),
            "the member's teams: {seen}"
        );
        let seen = setup(
            app,
            Method::GET,
            &format!("/api/v1/orgs/{}/teams", self.other_org),
            &self.other_admin.token,
            None,
            200,
        )
        .await;
        assert_eq!(
            team_ids(&seen),
            BTreeSet::from([self.other_team.clone()]),
            "B's teams: {seen}"
        );

        // The app sees roles and who is an active member of it (selected mode: the member).
        for (who, role, active) in [
            (&self.member, "member", true),
            (&self.inviter, "member", false),
            (&self.guest, "guest", false),
            (&self.admin, "admin", false),
        ] {
            let seen = setup(
                app,
                Method::GET,
                &format!("/api/v1/app/orgs/{org}/members/{}", who.id),
                &self.app_secret,
                None,
                200,
            )
            .await;
            assert_eq!(seen["org_id"], *org, "{seen}");
            assert_eq!(seen["account_id"], who.id, "{seen}");
            assert_eq!(seen["role"], role, "{seen}");
            assert_eq!(seen["active"], active, "{seen}");
        }
    }
}

fn fill(template: &str, vars: &[(&str, String)]) -> String {
    vars.iter()
        .fold(template.to_owned(), |text, (name, value)| {
            text.replace(name, value)
        })
}

/// `/api/v1/orgs/{org}/teams/{team}` -> `/api/v1/orgs/{}/teams/{}`.
fn shape(path: &str) -> String {
    let path = path.split('?').next().unwrap_or("");
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "{}"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Every operation the OpenAPI document lists for organizations, invitations and the app's
/// organization calls, as (METHOD, shape).
async fn documented_org_operations(app: &TestApp) -> BTreeSet<(String, String)> {
    let response = app.get("/api/openapi.json", None).await;
    assert_eq!(response.status(), 200);
    let document: Value = response.json().await.unwrap();
    let mut operations = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        let in_scope = path.starts_with("/api/v1/orgs")
            || path.starts_with("/api/v1/invitations")
            || path.starts_with("/api/v1/app/orgs");
        if !in_scope {
            continue;
        }
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                operations.insert((method.to_uppercase(), shape(path)));
            }
        }
    }
    operations
}

async fn every_org_endpoint_for_every_actor(engine: TestEngine) {
    let fixture = Fixture::build(engine).await;
    fixture.check_starting_point().await;
    let rows = rows();

    // The table covers exactly the documented endpoints.
    let covered: BTreeSet<(String, String)> = rows
        .iter()
        .map(|row| (row.method.to_owned(), shape(row.path)))
        .collect();
    let documented = documented_org_operations(&fixture.app).await;
    let missing: Vec<_> = documented.difference(&covered).collect();
    let unknown: Vec<_> = covered.difference(&documented).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "endpoints without rows: {missing:?}; rows for undocumented endpoints: {unknown:?}"
    );

    let mut failures = Vec::new();
    let mut n_cases = 0;
    for (index, row) in rows.iter().enumerate() {
        // A throwaway target serves the cases of its row until one succeeds (and so may have
        // used it up): a refused case, as checked, leaves it as it was.
        let mut unused_target: Option<String> = None;
        for (actor, expected) in ACTORS.into_iter().zip(row.expect) {
            n_cases += 1;
            let fresh = match unused_target.take() {
                Some(target) if !row.fresh.is_per_caller() => target,
                _ => fixture.prepare(row.fresh, actor).await,
            };
            if expected >= 400 {
                unused_target = Some(fresh.clone());
            }
            let email = fixture.next_email("new");
            let vars = fixture.vars(actor, &fresh, &email);
            let label = format!(
                "row {} ({} {}{}) as {}",
                index + 1,
                row.method,
                row.path,
                row.body.map(|body| format!(" {body}")).unwrap_or_default(),
                actor.name()
            );
            let code = match row.code {
                Some((status, code)) if status == expected && actor.is_account() => code,
                _ => default_code(expected),
            };
            let token = Some(fixture.token(actor));
            if let Err(failure) = fixture
                .case(row, &label, &vars, row.watch, token, (expected, code))
                .await
            {
                failures.push(failure);
            }
        }
    }

    // Without a credential, every row is 401 (no throwaway targets, nothing to watch).
    for (index, row) in rows.iter().enumerate() {
        n_cases += 1;
        let vars = fixture.vars(Actor::Admin, "x", "anonymous@a.example");
        let label = format!(
            "row {} ({} {}) without a credential",
            index + 1,
            row.method,
            row.path
        );
        if let Err(failure) = fixture
            .case(row, &label, &vars, &[], None, (401, "unauthenticated"))
            .await
        {
            failures.push(failure);
        }
    }

    assert!(
        failures.is_empty(),
        "{} of {n_cases} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // The table's own actors still hold their places: no row demoted or removed them.
    for (who, role, can_invite) in [
        (&fixture.admin, "admin", true),
        (&fixture.member, "member", false),
        (&fixture.inviter, "member", true),
        (&fixture.guest, "guest", false),
    ] {
        let seen = setup(
            &fixture.app,
            Method::GET,
            &format!("/api/v1/orgs/{}/members/{}", fixture.org, who.id),
            &fixture.admin.token,
            None,
            200,
        )
        .await;
        assert_eq!(seen["role"], role, "{seen}");
        assert_eq!(seen["can_invite"], can_invite, "{seen}");
    }
}
