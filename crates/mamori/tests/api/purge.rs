//! The organization purge (DEL-3, DEL-5, DEL-7, AUD-3): everything of the organization goes,
//! step by recorded step, the exempt records stay, members and apps are shut out at the
//! request, apps get a signed webhook (retried) and confirm, the data key is destroyed so an
//! earlier copy of the data store cannot be read, and a purge killed with `kill -9` resumes.

use crate::orgs::{call, call_empty, create_org, invite, outbox_token};
use mamori_core::Timestamp;
use mamori_testkit::process::{ServerProcess, run};
use mamori_testkit::{
    ClockExt, GOOD_PASSWORD, TestApp, TestDatabase, TestEngine, expect_problem, json_of, spawn_app,
};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::Row;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mamori_testkit::engine_tests!(
    a_purge_removes_the_organization_and_keeps_the_exempt_records,
    bad_purge_requests_change_nothing,
    apps_get_a_signed_webhook_retried_and_confirm,
    an_earlier_copy_of_the_data_store_cannot_be_read_after_the_purge,
    a_purge_killed_half_way_resumes_and_completes,
    a_purge_leased_by_another_node_waits_for_its_lease,
    the_command_line_requests_and_runs_a_purge,
    a_webhook_is_retried_with_backoff_for_eight_days,
);

const ADMIN_EMAIL: &str = "Adelheid.Contract@example.org";
const ADMIN_NAME: &str = "Adelheid Contractwoman";
const MEMBER_EMAIL: &str = "Zebulon.Quillfeather@example.org";
const MEMBER_NAME: &str = "Zebulon Quillfeather";
const INVITEE_EMAIL: &str = "Pending.Ptolemy@example.org";
const ORG_NAME: &str = "Quasarine Holdings";
const TEAM_NAME: &str = "Obsidian Taskforce";
const LOCAL_LOGIN: &str = "hieronymus.local";
const LOCAL_NAME: &str = "Hieronymus Lanternwick";
const LOCAL_EMAIL: &str = "Hieronymus.Lanternwick@example.org";

/// Every step, in the order it runs.
const STEPS: [&str; 10] = [
    "memberships",
    "teams",
    "invitations",
    "apps",
    "relationships",
    "local_accounts",
    "mail",
    "content",
    "audit",
    "key",
];

struct World {
    app: TestApp,
    operator: String,
    org: String,
    admin_id: String,
    admin: String,
    member_id: String,
    member: String,
    team: String,
    /// An organization-local account (ACC-7): purged with the organization.
    local_id: String,
    app_id: String,
    secret: String,
}

/// Invites `email`, signs it up with `name` through the invitation and logs it in.
async fn join_named(
    app: &TestApp,
    admin: &str,
    org: &str,
    email: &str,
    name: &str,
) -> (String, String) {
    invite(app, admin, org, email, "member").await;
    let token = outbox_token(app, email).await;
    let body = json!({
        "email": email, "password": GOOD_PASSWORD, "display_name": name,
        "invitation_token": token,
    });
    let joined = json_of(app.post("/api/v1/accounts", None, &body).await, 201).await;
    let session = app.log_in(email, GOOD_PASSWORD).await;
    (joined["id"].as_str().unwrap().to_owned(), session.token)
}

async fn register_app(app: &TestApp, operator: &str, name: &str) -> (String, String) {
    let created = call(
        app,
        Method::POST,
        "/api/v1/operator/apps",
        operator,
        Some(&json!({ "name": name })),
        201,
    )
    .await;
    (
        created["id"].as_str().unwrap().to_owned(),
        created["secret"].as_str().unwrap().to_owned(),
    )
}

async fn enable_app(app: &TestApp, admin: &str, org: &str, app_id: &str) {
    call(
        app,
        Method::PUT,
        &format!("/api/v1/orgs/{org}/apps/{app_id}"),
        admin,
        Some(&json!({ "mode": "all" })),
        200,
    )
    .await;
}

/// An organization with an administrator, a member who joined by invitation, a pending
/// invitation, a team, an enabled app with relationships, and audit events by both people.
async fn world(engine: TestEngine) -> World {
    let app = spawn_app(engine).await;
    let operator = app.operator_token().await;
    let (admin_account, admin) = app
        .account_with_session_named(ADMIN_EMAIL, ADMIN_NAME)
        .await;
    let org = create_org(&app, &admin, ORG_NAME).await;
    let (member_id, member) = join_named(&app, &admin, &org, MEMBER_EMAIL, MEMBER_NAME).await;
    invite(&app, &admin, &org, INVITEE_EMAIL, "member").await;
    let team = call(
        &app,
        Method::POST,
        &format!("/api/v1/orgs/{org}/teams"),
        &admin,
        Some(&json!({ "name": TEAM_NAME })),
        201,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    call_empty(
        &app,
        Method::PUT,
        &format!("/api/v1/orgs/{org}/teams/{team}/members/{member_id}"),
        &admin,
        None,
        204,
    )
    .await;
    let local = call(
        &app,
        Method::POST,
        &format!("/api/v1/orgs/{org}/local-accounts"),
        &admin,
        Some(&json!({
            "login_id": LOCAL_LOGIN, "display_name": LOCAL_NAME, "email": LOCAL_EMAIL,
        })),
        201,
    )
    .await;
    let local_id = local["account_id"].as_str().unwrap().to_owned();
    let (app_id, secret) = register_app(&app, &operator, "Projects").await;
    enable_app(&app, &admin, &org, &app_id).await;
    let writes = json!([
        { "resource": "project:p1", "relation": "member", "subject": format!("account:{member_id}") },
        { "resource": "project:p1", "relation": "admin", "subject": format!("team:{team}#member") },
        { "resource": "folder:f1", "relation": "viewer", "subject": "project:p1#member" },
    ]);
    json_of(
        app.post(
            "/api/v1/authz/relationships",
            Some(&secret),
            &json!({ "org_id": org, "writes": writes }),
        )
        .await,
        200,
    )
    .await;
    World {
        app,
        operator,
        org,
        admin_id: admin_account.id,
        admin,
        member_id,
        member,
        team,
        local_id,
        app_id,
        secret,
    }
}

impl World {
    fn now(&self) -> Timestamp {
        self.app.clock.now_timestamp()
    }

    async fn request_purge(&self) -> Value {
        call(
            &self.app,
            Method::POST,
            &format!("/api/v1/operator/orgs/{}/purge", self.org),
            &self.operator,
            Some(&json!({ "confirm": self.org })),
            202,
        )
        .await
    }

    async fn status(&self) -> Value {
        call(
            &self.app,
            Method::GET,
            &format!("/api/v1/operator/orgs/{}/purge", self.org),
            &self.operator,
            None,
            200,
        )
        .await
    }

    /// Runs purge rounds until the purge is finished.
    async fn run_purge(&self) {
        for _ in 0..100 {
            let report = self.app.services.run_purges_once(self.now()).await.unwrap();
            assert_eq!(report.failed, 0, "{report:?}");
            if report.in_progress.is_empty() {
                return;
            }
        }
        panic!("the purge did not finish in 100 rounds");
    }

    async fn check(&self, account: &str) -> Value {
        let body = json!({
            "resource": "project:p1", "permission": "view", "subject": format!("account:{account}"),
        });
        let response = self
            .app
            .post("/api/v1/authz/check", Some(&self.secret), &body)
            .await;
        let status = response.status().as_u16();
        json!({ "status": status, "body": response.json::<Value>().await.unwrap_or(Value::Null) })
    }
}

/// Rows of `table` whose `column` is `value`.
async fn count(app: &TestApp, table: &str, column: &str, value: &str) -> i64 {
    let pool = app.database.pool().await;
    let n: i64 = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) AS n FROM {table} WHERE {column} = $1"
    )))
    .bind(value)
    .fetch_one(&pool)
    .await
    .unwrap()
    .get("n");
    pool.close().await;
    n
}

async fn a_purge_removes_the_organization_and_keeps_the_exempt_records(engine: TestEngine) {
    let w = world(engine).await;
    let org = w.org.as_str();
    let before = w.check(&w.member_id).await;
    assert_eq!(before["body"]["allowed"], true, "{before}");
    assert!(count(&w.app, "audit_events", "chain", org).await >= 5);
    assert!(count(&w.app, "outbox", "key_owner", org).await >= 2);

    let requested = w.request_purge().await;
    assert_eq!(requested["org_id"], org);
    assert_eq!(requested["finished_at"], Value::Null);
    assert_eq!(requested["contact_account_id"], w.admin_id.as_str());
    let due = Timestamp::parse_rfc3339(requested["due_by"].as_str().unwrap()).unwrap();
    assert_eq!(due, w.now().plus_days(10));
    // Asking again changes nothing.
    assert_eq!(w.request_purge().await, requested);

    // Closed at once, before any step ran: to members, and to the app.
    for token in [&w.admin, &w.member] {
        expect_problem(
            w.app.get(&format!("/api/v1/orgs/{org}"), Some(token)).await,
            404,
            "not_found",
        )
        .await;
    }
    let after = w.check(&w.member_id).await;
    assert_eq!(after["body"]["allowed"], false, "{after}");
    expect_problem(
        w.app
            .get(
                &format!("/api/v1/app/orgs/{org}/members/{}", w.member_id),
                Some(&w.secret),
            )
            .await,
        404,
        "not_found",
    )
    .await;

    w.run_purge().await;
    let status = w.status().await;
    assert!(status["finished_at"].is_string(), "{status}");
    let steps: Vec<&str> = status["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["name"].as_str().unwrap())
        .collect();
    assert_eq!(steps, STEPS, "each step once, in order");
    assert!(
        status["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|step| step["done_at"].is_string())
    );
    let rows = |name: &str| {
        status["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|step| step["name"] == name)
            .unwrap()["rows"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(rows("memberships"), 3);
    assert_eq!(rows("local_accounts"), 1);
    assert_eq!(rows("teams"), 1);
    assert_eq!(rows("invitations"), 2);
    assert_eq!(rows("apps"), 1);
    assert!(rows("relationships") >= 3);
    assert_eq!(rows("key"), 1);

    // Gone from every store.
    for (table, column) in [
        ("memberships", "org_id"),
        ("teams", "org_id"),
        ("team_members", "org_id"),
        ("invitations", "org_id"),
        ("org_apps", "org_id"),
        ("org_app_members", "org_id"),
        ("authz_relationships", "org_id"),
        ("authz_objects", "org_id"),
        ("audit_viewers", "org_id"),
        ("outbox", "key_owner"),
        ("audit_events", "chain"),
        ("audit_events", "org_id"),
    ] {
        assert_eq!(count(&w.app, table, column, org).await, 0, "{table}");
    }
    assert_eq!(
        count(&w.app, "authz_relationships", "subject_id", &w.team).await,
        0
    );
    // The local account is gone as a deleted account is (ACC-4): no row of its own, no
    // session, its key destroyed.
    assert_eq!(count(&w.app, "local_accounts", "org_id", org).await, 0);
    assert_eq!(
        count(&w.app, "sessions", "account_id", &w.local_id).await,
        0
    );
    let tombstone = count(&w.app, "accounts", "id", &w.local_id).await;
    assert!(tombstone <= 1);
    assert!(
        w.app
            .services
            .keyring()
            .is_destroyed(&w.local_id)
            .await
            .unwrap()
    );
    // The organization's key is destroyed.
    let keyring = w.app.services.keyring().clone();
    assert!(keyring.key(org).await.is_err());
    assert!(keyring.is_destroyed(org).await.unwrap());

    // Kept (DEL-5): the organization's ID (with no content), the contract administrator's
    // account with name and contact, readable; the purge's own evidence.
    let pool = w.app.database.pool().await;
    let row = sqlx::query("SELECT status, name_sealed FROM organizations WHERE id = $1")
        .bind(org)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(row.get::<String, _>("status"), "purged");
    assert_eq!(row.get::<String, _>("name_sealed"), "");
    pool.close().await;
    let me = json_of(w.app.get("/api/v1/me", Some(&w.admin)).await, 200).await;
    assert_eq!(me["display_name"], ADMIN_NAME);
    assert!(
        me["email"]
            .as_str()
            .unwrap()
            .eq_ignore_ascii_case(ADMIN_EMAIL),
        "{me}"
    );
    // The organization's chain keeps only its signed anchor, and still verifies; the request
    // is on record in the platform chain.
    let verdicts = w.app.services.verify_audit(Some(org)).await.unwrap();
    assert_eq!(verdicts.len(), 1);
    assert!(verdicts[0].first_break.is_none(), "{:?}", verdicts[0]);
    assert_eq!(verdicts[0].events, 0);
    let platform = w.app.services.verify_audit(Some("platform")).await.unwrap();
    assert!(platform[0].first_break.is_none());
    assert_eq!(
        count(&w.app, "audit_events", "action", "org.purge.requested").await,
        1
    );

    // Another round finds nothing to do.
    let report = w.app.services.run_purges_once(w.now()).await.unwrap();
    assert!(report.is_idle(), "{report:?}");
}

async fn bad_purge_requests_change_nothing(engine: TestEngine) {
    let w = world(engine).await;
    let path = format!("/api/v1/operator/orgs/{}/purge", w.org);
    // The body must repeat the organization's ID.
    for body in [
        json!({ "confirm": "org_aaaaaaaaaaaaaaaaaaaaaaaaaa" }),
        json!({ "confirm": "" }),
    ] {
        let problem = expect_problem(
            w.app
                .request(Method::POST, &path, Some(&w.operator), Some(&body))
                .await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], "confirm", "{problem}");
    }
    expect_problem(
        w.app
            .request(Method::POST, &path, Some(&w.operator), Some(&json!({})))
            .await,
        422,
        "validation_failed",
    )
    .await;
    // Only the operator.
    for token in [&w.admin, &w.secret] {
        let response = w
            .app
            .request(
                Method::POST,
                &path,
                Some(token),
                Some(&json!({ "confirm": w.org })),
            )
            .await;
        assert!(
            matches!(response.status().as_u16(), 401 | 403),
            "{}",
            response.status()
        );
    }
    // Unknown organizations.
    for org in ["org_aaaaaaaaaaaaaaaaaaaaaaaaaa", "nonsense"] {
        expect_problem(
            w.app
                .request(
                    Method::POST,
                    &format!("/api/v1/operator/orgs/{org}/purge"),
                    Some(&w.operator),
                    Some(&json!({ "confirm": org })),
                )
                .await,
            404,
            "not_found",
        )
        .await;
    }
    expect_problem(w.app.get(&path, Some(&w.operator)).await, 404, "not_found").await;
    // Nothing changed: the organization is open, nothing is queued.
    json_of(
        w.app
            .get(&format!("/api/v1/orgs/{}", w.org), Some(&w.member))
            .await,
        200,
    )
    .await;
    assert_eq!(count(&w.app, "org_purges", "org_id", &w.org).await, 0);
    assert_eq!(count(&w.app, "purge_webhooks", "org_id", &w.org).await, 0);
    // A webhook URL must be http or https.
    for url in [
        "ftp://example.org/hook",
        "not a url",
        "https://user:pw@example.org/",
        "",
    ] {
        expect_problem(
            w.app
                .request(
                    Method::PUT,
                    &format!("/api/v1/operator/apps/{}/webhook", w.app_id),
                    Some(&w.operator),
                    Some(&json!({ "url": url })),
                )
                .await,
            422,
            "validation_failed",
        )
        .await;
    }
    expect_problem(
        w.app
            .request(
                Method::PUT,
                "/api/v1/operator/apps/app_aaaaaaaaaaaaaaaaaaaaaaaaaa/webhook",
                Some(&w.operator),
                Some(&json!({ "url": "https://example.org/hook" })),
            )
            .await,
        404,
        "not_found",
    )
    .await;
    // An app confirms only a purge that concerns it.
    expect_problem(
        w.app
            .post(
                "/api/v1/app/purge-confirmations",
                Some(&w.secret),
                &json!({ "org_id": w.org }),
            )
            .await,
        404,
        "not_found",
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// A small HTTP receiver for webhooks: answers each request with the next status of its
// script (then 200) and keeps what it received.

#[derive(Debug, Clone)]
struct Received {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

struct Receiver {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

async fn receiver(script: Vec<u16>) -> Receiver {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/mamori", listener.local_addr().unwrap());
    let received = Arc::new(Mutex::new(Vec::new()));
    let script = Arc::new(Mutex::new(script));
    let kept = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let kept = kept.clone();
            let script = script.clone();
            tokio::spawn(async move {
                let mut data = Vec::new();
                let mut buffer = [0u8; 4096];
                let (head_end, length) = loop {
                    let n = socket.read(&mut buffer).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    data.extend_from_slice(&buffer[..n]);
                    if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&data[..end]).to_lowercase();
                        let length = head
                            .lines()
                            .find_map(|line| line.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                        break (end + 4, length);
                    }
                };
                while data.len() < head_end + length {
                    let n = socket.read(&mut buffer).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    data.extend_from_slice(&buffer[..n]);
                }
                let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
                let headers = head
                    .lines()
                    .skip(1)
                    .filter_map(|line| line.split_once(':'))
                    .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                    .collect();
                kept.lock().unwrap().push(Received {
                    headers,
                    body: data[head_end..head_end + length].to_vec(),
                });
                let status = {
                    let mut script = script.lock().unwrap();
                    if script.is_empty() {
                        200
                    } else {
                        script.remove(0)
                    }
                };
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = socket.write_all(answer.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    Receiver { url, received }
}

/// HMAC-SHA256 written out from its definition (RFC 2104), to check Mamori's independently.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner_key: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    let outer_key: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&inner_key)
        .chain_update(message)
        .finalize();
    let outer = Sha256::new()
        .chain_update(&outer_key)
        .chain_update(inner)
        .finalize();
    let mut out = [0u8; 32];
    out.copy_from_slice(&outer);
    out
}

/// What the documentation tells app developers to do: HMAC-SHA256 keyed with the bytes of the
/// signing secret the operator was given, over `timestamp + "." + body`.
fn signature_is_valid(signing_secret: &str, received: &Received) -> bool {
    let timestamp = received.header("mamori-webhook-timestamp").unwrap();
    let signature = received.header("mamori-webhook-signature").unwrap();
    let key = signing_secret.as_bytes();
    let mut message = timestamp.as_bytes().to_vec();
    message.push(b'.');
    message.extend_from_slice(&received.body);
    let expected = format!("v1={}", hex_of(&hmac_sha256(key, &message)));
    expected == signature
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn apps_get_a_signed_webhook_retried_and_confirm(engine: TestEngine) {
    let w = world(engine).await;
    // A second app, enabled too, never confirms; a third is not enabled for the organization.
    let (quiet_id, _) = register_app(&w.app, &w.operator, "Quiet").await;
    enable_app(&w.app, &w.admin, &w.org, &quiet_id).await;
    let (_, stranger_secret) = register_app(&w.app, &w.operator, "Stranger").await;
    let hooks = receiver(vec![500]).await;
    let quiet_hooks = receiver(vec![]).await;
    let mut signing = Vec::new();
    for (app_id, url) in [(&w.app_id, &hooks.url), (&quiet_id, &quiet_hooks.url)] {
        let set = call(
            &w.app,
            Method::PUT,
            &format!("/api/v1/operator/apps/{app_id}/webhook"),
            &w.operator,
            Some(&json!({ "url": url })),
            200,
        )
        .await;
        assert_eq!(set["url"], url.as_str());
        let secret = set["signing_secret"].as_str().unwrap().to_owned();
        assert!(secret.starts_with("mmw_"), "{set}");
        signing.push(secret);
    }
    let (signing_secret, quiet_signing) = (signing[0].clone(), signing[1].clone());
    assert_ne!(signing_secret, quiet_signing);
    let requested = w.request_purge().await;
    let due_by = requested["due_by"].as_str().unwrap().to_owned();
    let services = &w.app.services;

    // First attempt: the receiver answers 500.
    let report = services.deliver_webhooks_once(w.now()).await.unwrap();
    assert_eq!((report.delivered, report.retrying), (1, 1), "{report:?}");
    assert_eq!(hooks.received.lock().unwrap().len(), 1);
    // Not again before the backoff is over.
    let report = services.deliver_webhooks_once(w.now()).await.unwrap();
    assert!(report.is_idle(), "{report:?}");
    w.app.clock.advance_millis(61_000);
    let report = services.deliver_webhooks_once(w.now()).await.unwrap();
    assert_eq!((report.delivered, report.retrying), (1, 0), "{report:?}");
    let received = hooks.received.lock().unwrap().clone();
    assert_eq!(received.len(), 2, "retried once after the 500");
    for delivery in &received {
        assert!(
            signature_is_valid(&signing_secret, delivery),
            "{delivery:?}"
        );
        assert!(!signature_is_valid(&quiet_signing, delivery));
        // Neither the app's own secret nor its stored hash signs webhooks.
        assert!(!signature_is_valid(&w.secret, delivery));
        let stored_hash = hex_of(&Sha256::digest(w.secret.as_bytes()));
        assert!(!signature_is_valid(&stored_hash, delivery));
        let body: Value = serde_json::from_slice(&delivery.body).unwrap();
        assert_eq!(
            body,
            json!({ "type": "org.purge_started", "org_id": w.org, "purge_due_by": due_by })
        );
    }
    let quiet = quiet_hooks.received.lock().unwrap().clone();
    assert_eq!(quiet.len(), 1);
    assert!(signature_is_valid(&quiet_signing, &quiet[0]));
    // A tampered body does not verify.
    let mut tampered = received[1].clone();
    tampered.body = tampered
        .body
        .replace_bytes(b"org.purge_started", b"org.purge_finished");
    assert!(!signature_is_valid(&signing_secret, &tampered));
    // Delivered: never sent again.
    w.app.clock.advance_millis(86_400_000);
    assert!(
        services
            .deliver_webhooks_once(w.now())
            .await
            .unwrap()
            .is_idle()
    );

    // The app confirms, twice: the first time stays.
    let first = json_of(
        w.app
            .post(
                "/api/v1/app/purge-confirmations",
                Some(&w.secret),
                &json!({ "org_id": w.org }),
            )
            .await,
        200,
    )
    .await;
    w.app.clock.advance_millis(1_000);
    let second = json_of(
        w.app
            .post(
                "/api/v1/app/purge-confirmations",
                Some(&w.secret),
                &json!({ "org_id": w.org }),
            )
            .await,
        200,
    )
    .await;
    assert_eq!(first, second);
    // An app the purge does not concern cannot confirm it.
    expect_problem(
        w.app
            .post(
                "/api/v1/app/purge-confirmations",
                Some(&stranger_secret),
                &json!({ "org_id": w.org }),
            )
            .await,
        404,
        "not_found",
    )
    .await;
    let response = w
        .app
        .post(
            "/api/v1/app/purge-confirmations",
            Some(&w.operator),
            &json!({ "org_id": w.org }),
        )
        .await;
    assert!(
        matches!(response.status().as_u16(), 401 | 403),
        "{}",
        response.status()
    );

    // Before the deadline nobody is overdue; after it, the app that did not confirm is.
    let app_status = |status: &Value, id: &str| {
        status["apps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|app| app["app_id"] == id)
            .unwrap()
            .clone()
    };
    let status = w.status().await;
    assert_eq!(app_status(&status, &quiet_id)["overdue"], false);
    let confirmed = app_status(&status, &w.app_id);
    assert_eq!(confirmed["confirmed_at"], first["confirmed_at"]);
    assert_eq!(confirmed["attempts"], 2);
    assert!(confirmed["webhook_delivered_at"].is_string());
    w.app.clock.advance_millis(10 * 86_400_000);
    let status = w.status().await;
    assert_eq!(app_status(&status, &quiet_id)["overdue"], true, "{status}");
    assert_eq!(app_status(&status, &quiet_id)["confirmed_at"], Value::Null);
    assert_eq!(app_status(&status, &w.app_id)["overdue"], false);
    // Every attempt is on record.
    assert_eq!(
        count(&w.app, "purge_webhook_attempts", "app_id", &w.app_id).await,
        2
    );
}

trait ReplaceBytes {
    fn replace_bytes(&self, from: &[u8], to: &[u8]) -> Vec<u8>;
}

impl ReplaceBytes for Vec<u8> {
    fn replace_bytes(&self, from: &[u8], to: &[u8]) -> Vec<u8> {
        let at = self
            .windows(from.len())
            .position(|window| window == from)
            .unwrap();
        let mut out = self[..at].to_vec();
        out.extend_from_slice(to);
        out.extend_from_slice(&self[at + from.len()..]);
        out
    }
}

// ---------------------------------------------------------------------------------------

/// The organization's sealed values (table, field, sealed text): everything it holds about its
/// people and itself, as a backup would carry it.
async fn sealed_values_of(pool: &sqlx::AnyPool, org: &str) -> Vec<(String, String)> {
    let mut values = Vec::new();
    for (query, field) in [
        (
            "SELECT name_sealed AS v FROM organizations WHERE id = $1",
            "name",
        ),
        (
            "SELECT name_sealed AS v FROM teams WHERE org_id = $1",
            "team_name",
        ),
        (
            "SELECT email_sealed AS v FROM invitations WHERE org_id = $1",
            "invitation_email",
        ),
        (
            "SELECT message_sealed AS v FROM outbox WHERE key_owner = $1",
            "mail",
        ),
        (
            "SELECT actor_name_sealed AS v FROM audit_events WHERE chain = $1 \
             AND actor_name_sealed IS NOT NULL",
            "audit_actor_name",
        ),
    ] {
        for row in sqlx::query(query).bind(org).fetch_all(pool).await.unwrap() {
            let value: String = row.get("v");
            if !value.is_empty() {
                values.push((field.to_owned(), value));
            }
        }
    }
    values
}

fn contains_case_insensitive(haystack: &[u8], needle: &str) -> bool {
    let needle = needle.to_lowercase().into_bytes();
    haystack
        .to_ascii_lowercase()
        .windows(needle.len())
        .any(|window| window == needle.as_slice())
}

/// Copies the SQLite data store's files (database and write-ahead log) into `dir`.
fn copy_sqlite_files(from: &Path, dir: &Path) -> Vec<std::path::PathBuf> {
    let mut copies = Vec::new();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("mamori.db") && !name.ends_with("-shm") {
            let copy = dir.join(&name);
            std::fs::copy(&path, &copy).unwrap();
            copies.push(copy);
        }
    }
    copies
}

async fn an_earlier_copy_of_the_data_store_cannot_be_read_after_the_purge(engine: TestEngine) {
    let w = world(engine).await;
    let org = w.org.clone();
    // The member acts in the organization, so the trail holds the member's name too.
    call(
        &w.app,
        Method::POST,
        &format!("/api/v1/orgs/{org}/teams"),
        &w.member,
        Some(&json!({ "name": "Second Team" })),
        201,
    )
    .await;
    let secrets = [
        MEMBER_NAME,
        MEMBER_EMAIL,
        INVITEE_EMAIL,
        ORG_NAME,
        TEAM_NAME,
        LOCAL_NAME,
        LOCAL_EMAIL,
        LOCAL_LOGIN,
        "Zebulon",
        "Ptolemy",
        "Hieronymus",
    ];
    let keyring = w.app.services.keyring().clone();

    // The backup: on SQLite the files themselves; on either engine the sealed values.
    let backup_dir = tempfile::tempdir().unwrap();
    let pool = w.app.database.pool().await;
    let backup = sealed_values_of(&pool, &org).await;
    pool.close().await;
    let copies = if engine == TestEngine::Sqlite {
        copy_sqlite_files(w.app.database.data_dir(), backup_dir.path())
    } else {
        Vec::new()
    };
    // Before the purge the backup is readable with the live keyring: it does hold the
    // member's name and email, the invitee's address, the names.
    let key = keyring.key(&org).await.unwrap();
    let opened: Vec<String> = backup
        .iter()
        .map(|(field, sealed)| key.open_string(field, sealed).unwrap())
        .collect();
    drop(key);
    for secret in [
        MEMBER_NAME,
        MEMBER_EMAIL,
        INVITEE_EMAIL,
        ORG_NAME,
        TEAM_NAME,
    ] {
        assert!(
            opened
                .iter()
                .any(|text| contains_case_insensitive(text.as_bytes(), secret)),
            "the backup should hold {secret} before the purge"
        );
    }

    w.request_purge().await;
    w.run_purge().await;

    // After: the backup's sealed values open with nothing the live system holds.
    assert!(keyring.key(&org).await.is_err());
    assert!(keyring.is_destroyed(&w.local_id).await.unwrap());
    assert!(keyring.is_destroyed(&org).await.unwrap());
    // No key the live keyring holds opens any of them.
    for owner in [org.as_str(), w.member_id.as_str(), w.admin_id.as_str()] {
        if let Ok(key) = keyring.key(owner).await {
            for (field, sealed) in &backup {
                assert!(
                    key.open_string(field, sealed).is_err(),
                    "{owner} opens {field}"
                );
            }
        }
    }
    // The live store holds none of them any more.
    let pool = w.app.database.pool().await;
    assert!(sealed_values_of(&pool, &org).await.is_empty());
    pool.close().await;
    // On SQLite, the copy read as a database gives the same sealed values, which no longer
    // open; and neither the copy's files nor the live store's hold any plaintext of them.
    if engine == TestEngine::Sqlite {
        assert!(!copies.is_empty());
        let mut files = copies.clone();
        for entry in std::fs::read_dir(w.app.database.data_dir()).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("mamori.db") {
                files.push(path);
            }
        }
        for file in &files {
            let bytes = std::fs::read(file).unwrap();
            for secret in secrets {
                assert!(
                    !contains_case_insensitive(&bytes, secret),
                    "{secret:?} found in {}",
                    file.display()
                );
            }
        }
        let copy_db = backup_dir.path().join("mamori.db");
        sqlx::any::install_default_drivers();
        let copy_pool = sqlx::AnyPool::connect(&format!("sqlite://{}", copy_db.display()))
            .await
            .unwrap();
        let from_copy = sealed_values_of(&copy_pool, &org).await;
        copy_pool.close().await;
        assert_eq!(from_copy, backup);
    }
    // The member's own account is the member's, not the organization's: it stays, under the
    // member's own key, and no longer belongs to the organization.
    assert_eq!(
        count(&w.app, "memberships", "account_id", &w.member_id).await,
        0
    );
}

// ---------------------------------------------------------------------------------------

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_mamori"))
}

/// Adds `relationships` relationships and `events` audit events to the organization's chain
/// directly in SQL, so the purge has work for a while. The events are a valid continuation
/// of nothing: the audit step deletes them whatever they hold.
async fn seed_bulk(
    database: &TestDatabase,
    org: &str,
    app_id: &str,
    relationships: usize,
    events: usize,
) {
    let pool = database.pool().await;
    let chunk = 500;
    for start in (0..relationships).step_by(chunk) {
        let end = (start + chunk).min(relationships);
        let mut sql = String::from(
            "INSERT INTO authz_relationships (app_id, org_id, resource_type, resource_id, relation, \
             subject_type, subject_id, subject_relation, created_at) VALUES ",
        );
        for i in start..end {
            if i > start {
                sql.push(',');
            }
            sql.push_str(&format!(
                "('{app_id}', '{org}', 'project', 'bulk{i}', 'member', 'account', 'acc_bulk{i}', '', 0)"
            ));
        }
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .unwrap();
    }
    let head: i64 = sqlx::query("SELECT last_seq FROM audit_chain_heads WHERE chain = $1")
        .bind(org)
        .fetch_one(&pool)
        .await
        .unwrap()
        .get("last_seq");
    for start in (0..events).step_by(chunk) {
        let end = (start + chunk).min(events);
        let mut sql = String::from(
            "INSERT INTO audit_events (id, chain, seq, org_id, actor_type, action, outcome, \
             occurred_at, details, prev_hash, hash) VALUES ",
        );
        for i in start..end {
            if i > start {
                sql.push(',');
            }
            let seq = head + 1 + i as i64;
            sql.push_str(&format!(
                "('evt_bulk{i}', '{org}', {seq}, '{org}', 'system', 'bulk.event', 'success', 0, '{{}}', '{h:064}', '{h2:064}')",
                h = seq - 1,
                h2 = seq
            ));
        }
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .unwrap();
    }
    sqlx::query("UPDATE audit_chain_heads SET last_seq = $1, last_hash = $2 WHERE chain = $3")
        .bind(head + events as i64)
        .bind(format!("{:064}", head + events as i64))
        .bind(org)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

async fn steps_of(database: &TestDatabase, org: &str) -> Vec<(String, Option<i64>)> {
    let pool = database.pool().await;
    let rows = sqlx::query("SELECT step, done_at FROM purge_steps WHERE org_id = $1")
        .bind(org)
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    rows.iter()
        .map(|row| (row.get("step"), row.get("done_at")))
        .collect()
}

async fn finished(database: &TestDatabase, org: &str) -> bool {
    let pool = database.pool().await;
    let done: Option<i64> = sqlx::query("SELECT finished_at FROM org_purges WHERE org_id = $1")
        .bind(org)
        .fetch_one(&pool)
        .await
        .unwrap()
        .get("finished_at");
    pool.close().await;
    done.is_some()
}

async fn a_purge_killed_half_way_resumes_and_completes(engine: TestEngine) {
    let w = world(engine).await;
    let org = w.org.clone();
    let database = w.app.database.clone();
    let mut app = w.app;
    app.stop().await;
    seed_bulk(&database, &org, &w.app_id, 30_000, 300_000).await;
    // The purge is requested from the command line; `serve` runs it in the background.
    let (ok, stdout, stderr) = {
        let database = database.clone();
        let org = org.clone();
        tokio::task::spawn_blocking(move || {
            run(
                binary(),
                &database,
                &["lifecycle", "purge", &org, "--confirm", &org],
            )
        })
        .await
        .unwrap()
    };
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("not finished"), "{stdout}");

    let mut server = ServerProcess::start(binary(), &database, &[]);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let steps = steps_of(&database, &org).await;
        if steps.iter().any(|(_, done)| done.is_some()) {
            break;
        }
        assert!(Instant::now() < deadline, "no step done within 120 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill_hard();
    assert!(
        !finished(&database, &org).await,
        "the purge finished before it could be killed; seed more rows"
    );
    let at_kill = steps_of(&database, &org).await;
    assert!(at_kill.iter().any(|(_, done)| done.is_none()) || at_kill.len() < STEPS.len());

    // Restarted, the purge resumes (once the dead node's lease runs out) and completes.
    let mut server = ServerProcess::start(binary(), &database, &[]);
    let deadline = Instant::now() + Duration::from_secs(180);
    while !finished(&database, &org).await {
        assert!(
            Instant::now() < deadline,
            "the purge did not finish after the restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.terminate();
    let steps = steps_of(&database, &org).await;
    let mut names: Vec<&str> = steps.iter().map(|(name, _)| name.as_str()).collect();
    names.sort_unstable();
    let mut expected = STEPS.to_vec();
    expected.sort_unstable();
    assert_eq!(names, expected, "each step recorded once");
    assert!(steps.iter().all(|(_, done)| done.is_some()));
    for (table, column) in [
        ("authz_relationships", "org_id"),
        ("audit_events", "chain"),
        ("memberships", "org_id"),
    ] {
        let pool = database.pool().await;
        let n: i64 = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) AS n FROM {table} WHERE {column} = $1"
        )))
        .bind(&org)
        .fetch_one(&pool)
        .await
        .unwrap()
        .get("n");
        pool.close().await;
        assert_eq!(n, 0, "{table}");
    }
}

// ---------------------------------------------------------------------------------------

async fn a_purge_leased_by_another_node_waits_for_its_lease(engine: TestEngine) {
    let w = world(engine).await;
    w.request_purge().await;
    // Another node holds the purge for 30 more seconds.
    let lease_until = w.now().plus_millis(30_000);
    let pool = w.app.database.pool().await;
    sqlx::query("UPDATE org_purges SET lease_owner = 'node-elsewhere', lease_until = $1")
        .bind(lease_until.as_millis())
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let report = w.app.services.run_purges_once(w.now()).await.unwrap();
    assert_eq!(report.busy, 1, "{report:?}");
    assert_eq!(report.steps_done, 0);
    assert!(w.status().await["steps"].as_array().unwrap().is_empty());
    // The administrator, the member and the local account.
    assert_eq!(count(&w.app, "memberships", "org_id", &w.org).await, 3);
    // Once its lease has run out, this node takes the purge over and finishes it.
    w.app.clock.set(lease_until);
    w.run_purge().await;
    assert!(w.status().await["finished_at"].is_string());
    assert_eq!(count(&w.app, "memberships", "org_id", &w.org).await, 0);
}

async fn the_command_line_requests_and_runs_a_purge(engine: TestEngine) {
    let w = world(engine).await;
    let database = w.app.database.clone();
    let org = w.org.clone();
    let mamori = |args: Vec<String>| {
        let database = database.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run(binary(), &database, &args)
        })
    };
    let args = |list: &[&str]| list.iter().map(|arg| (*arg).to_owned()).collect::<Vec<_>>();
    // The confirmation must repeat the organization's ID: nothing changes otherwise.
    let (ok, _, stderr) = mamori(args(&[
        "lifecycle",
        "purge",
        &org,
        "--confirm",
        "org_aaaaaaaaaaaaaaaaaaaaaaaaaa",
    ]))
    .await
    .unwrap();
    assert!(!ok);
    assert!(stderr.contains("confirm"), "{stderr}");
    assert_eq!(count(&w.app, "org_purges", "org_id", &org).await, 0);

    let (ok, stdout, stderr) = mamori(args(&["lifecycle", "purge", &org, "--confirm", &org]))
        .await
        .unwrap();
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("purge of {org}")), "{stdout}");
    assert!(stdout.contains("not finished"), "{stdout}");
    // The command line asked at the machine's time; run a little later than that.
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let now = Timestamp::from_millis(i64::try_from(wall).unwrap() + 5_000).to_rfc3339();
    let (ok, stdout, stderr) = mamori(args(&["lifecycle", "purge-run", "--now", &now]))
        .await
        .unwrap();
    assert!(ok, "{stdout}\n{stderr}");
    // The test server's own purge loop (every 2 s of real time, at the test's clock) may have
    // taken the first steps before the command line did: every step is done, once.
    assert!(
        stdout.starts_with(&format!("at {now}: ")) && stdout.contains(" purge steps done"),
        "{stdout}"
    );
    assert!(stdout.contains("finished "), "{stdout}");
    for step in STEPS {
        assert_eq!(
            stdout.matches(&format!("step {step:<15} done ")).count(),
            1,
            "{step}: {stdout}"
        );
    }
    assert!(
        stdout.contains("webhook not delivered  attempts 1"),
        "{stdout}"
    );
    // Again: nothing left to do.
    let (ok, stdout, _) = mamori(args(&["lifecycle", "purge-run", "--now", &now]))
        .await
        .unwrap();
    assert!(ok);
    assert!(
        stdout.starts_with(&format!("at {now}: 0 purge steps done")),
        "{stdout}"
    );
}

async fn a_webhook_is_retried_with_backoff_for_eight_days(engine: TestEngine) {
    let w = world(engine).await;
    // The receiver always fails.
    let hooks = receiver(vec![503; 1_000]).await;
    call(
        &w.app,
        Method::PUT,
        &format!("/api/v1/operator/apps/{}/webhook", w.app_id),
        &w.operator,
        Some(&json!({ "url": hooks.url })),
        200,
    )
    .await;
    w.request_purge().await;
    let started = w.now();
    let mut gaps = Vec::new();
    let mut last = started;
    loop {
        let report = w.app.services.deliver_webhooks_once(w.now()).await.unwrap();
        assert_eq!(report.delivered, 0);
        if report.gave_up == 1 {
            break;
        }
        assert_eq!(report.retrying, 1, "{report:?}");
        gaps.push(w.now().millis_since(last));
        last = w.now();
        // Nothing before the next attempt is due.
        let pool = w.app.database.pool().await;
        let next: i64 = sqlx::query("SELECT next_attempt_at FROM purge_webhooks WHERE app_id = $1")
            .bind(&w.app_id)
            .fetch_one(&pool)
            .await
            .unwrap()
            .get("next_attempt_at");
        pool.close().await;
        w.app.clock.set(Timestamp::from_millis(next - 1));
        assert!(
            w.app
                .services
                .deliver_webhooks_once(w.now())
                .await
                .unwrap()
                .is_idle()
        );
        w.app.clock.set(Timestamp::from_millis(next));
        assert!(gaps.len() < 100, "no end to the retries");
    }
    let attempts = hooks.received.lock().unwrap().len() as i64;
    assert_eq!(attempts, gaps.len() as i64 + 1);
    // Exponential from a minute, capped at six hours, for at least seven days.
    assert_eq!(&gaps[1..4], &[60_000, 120_000, 240_000]);
    assert!(gaps.iter().all(|gap| *gap <= 6 * 3_600_000));
    assert!(w.now().millis_since(started) >= 7 * 86_400_000);
    let status = w.status().await;
    let app = &status["apps"][0];
    assert_eq!(app["attempts"], attempts, "{status}");
    assert!(app["webhook_gave_up_at"].is_string());
    assert_eq!(app["webhook_delivered_at"], Value::Null);
    assert_eq!(
        count(&w.app, "purge_webhook_attempts", "app_id", &w.app_id).await,
        attempts
    );
    // Given up: never sent again.
    w.app.clock.advance_millis(30 * 86_400_000);
    assert!(
        w.app
            .services
            .deliver_webhooks_once(w.now())
            .await
            .unwrap()
            .is_idle()
    );
}
