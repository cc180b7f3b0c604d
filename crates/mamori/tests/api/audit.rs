//! The audit trail as its users see it (issue 5: AUD-1, AUD-2, INC-3), through the running
//! server and the `mamori` binary, on SQLite and on PostgreSQL.
//!
//! - The event model: actor (with the display name it had then), target, outcome, IP, user
//!   agent, request ID and time of the request that caused each event; failed log-ins are
//!   events too.
//! - Who reads: administrators, and members or teams granted the viewer right.
//! - Filters, cursor pagination and the refusals of bad queries.
//! - Events sent by apps: validation, the organization that must have enabled the app, the
//!   rate limit, and concurrent writers.
//! - Exports: JSON Lines verified by the independent verifier of `audit_verifier.rs` and by
//!   `mamori audit verify-export`, both catching a one-character change; CSV quoting and
//!   formula guarding.
//! - Signed checkpoints, checked with aws-lc-rs against the published key.
//! - Tampering with the stored chain (a changed, a deleted, two swapped events, a forged
//!   checkpoint): `mamori audit verify` names the first bad `seq`.
//! - Retention on an injected clock: 399 days stays, 401 days goes, the chain still verifies.

use crate::audit_verifier::{self, Verified, base64_decode, check_checkpoint, event_hash};
use crate::orgs::{create_org, invite, outbox_token};
use futures_util::future::join_all;
use mamori_core::Timestamp;
use mamori_testkit::process::run;
use mamori_testkit::{
    ClockExt, GOOD_PASSWORD, TEST_EPOCH, TestApp, TestEngine, spawn_app, spawn_with, test_settings,
};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use sqlx::Row;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

mamori_testkit::engine_tests!(
    events_record_who_did_what_from_where_and_when,
    reading_needs_an_administrator_or_the_viewer_right,
    filters_narrow_and_the_cursor_walks_every_event_once,
    apps_record_events_in_organizations_that_enabled_them,
    app_events_are_rate_limited_per_app,
    concurrent_app_events_get_contiguous_seqs,
    the_jsonl_export_verifies_independently_and_a_changed_character_is_found,
    the_csv_export_quotes_cells_and_guards_formulas,
    checkpoints_are_listed_and_verify_with_the_published_key,
    tampering_with_the_stored_chain_is_found,
    a_chain_longer_than_a_scan_page_is_verified_across_its_pages,
    retention_deletes_what_is_due_and_the_chain_still_verifies,
    retention_signs_its_anchor_and_a_truncation_is_named,
);

/// The user agent every request of these tests sends.
const AGENT: &str = "mamori-audit-tests/1.0";

// ---------------------------------------------------------------------------------------
// Helpers.

/// An answer, read in full.
struct Answer {
    status: u16,
    /// The `X-Request-Id` response header.
    request_id: String,
    headers: HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    /// Asserts the status; returns the body as JSON.
    fn expect(&self, status: u16) -> Value {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        self.json()
    }

    /// Asserts a problem document with `status` and `code`; returns it.
    fn problem(&self, status: u16, code: &str) -> Value {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        assert_eq!(
            self.headers
                .get("content-type")
                .and_then(|value| value.to_str().ok()),
            Some("application/problem+json"),
            "{}",
            self.text
        );
        let problem = self.json();
        assert_eq!(problem["code"], code, "{problem}");
        assert_eq!(problem["status"], status, "{problem}");
        problem
    }

    /// A `validation_failed` problem naming `field` among its field errors.
    fn invalid(&self, field: &str) -> Value {
        let problem = self.problem(422, "validation_failed");
        assert!(
            fields(&problem).iter().any(|name| name == field),
            "expected a field error on {field}: {problem}"
        );
        problem
    }
}

fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|error| error["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Sends a request with the tests' user agent (and optionally our own request ID).
async fn exchange_with(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
    request_id: Option<&str>,
) -> Answer {
    let mut request = app
        .client
        .request(method, app.url(path))
        .header("user-agent", AGENT);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    if let Some(request_id) = request_id {
        request = request.header("x-request-id", request_id);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let request_id = headers
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(!request_id.is_empty(), "every answer has an X-Request-Id");
    let text = response.text().await.expect("body read");
    Answer {
        status,
        request_id,
        headers,
        text,
    }
}

async fn exchange(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Answer {
    exchange_with(app, method, path, token, body, None).await
}

async fn get(app: &TestApp, path: &str, token: &str) -> Answer {
    exchange(app, Method::GET, path, Some(token), None).await
}

/// One page of the organization's trail as `token` sees it.
async fn page(app: &TestApp, token: &str, org: &str, query: &str) -> Value {
    get(
        app,
        &format!("/api/v1/orgs/{org}/audit-events?{query}"),
        token,
    )
    .await
    .expect(200)
}

/// The whole trail (one page of up to 500), newest first.
async fn all_events(app: &TestApp, token: &str, org: &str) -> Vec<Value> {
    let page = page(app, token, org, "limit=500").await;
    assert_eq!(page["next_cursor"], Value::Null, "one page holds it all");
    page["items"].as_array().unwrap().clone()
}

fn seqs_of(items: &[Value]) -> Vec<i64> {
    items
        .iter()
        .map(|item| item["seq"].as_i64().unwrap())
        .collect()
}

fn page_seqs(page: &Value) -> Vec<i64> {
    seqs_of(page["items"].as_array().unwrap())
}

fn actions_of(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|item| item["action"].as_str().unwrap().to_owned())
        .collect()
}

/// Checks a list of events (newest first, the whole chain down to seq 1) with the
/// independent verifier: each hash recomputes from the event as listed, and each event links
/// to the one before it.
fn assert_listed_chain_verifies(items: &[Value]) {
    let mut prev: Option<&Value> = None;
    for item in items.iter().rev() {
        let mut without_hash = item.clone();
        let hash = without_hash
            .as_object_mut()
            .unwrap()
            .remove("hash")
            .unwrap();
        let prev_hash = item["prev_hash"].as_str().unwrap();
        match prev {
            None => assert_eq!(prev_hash, "0".repeat(64), "{item}"),
            Some(prev) => {
                assert_eq!(prev_hash, prev["hash"].as_str().unwrap(), "{item}");
                assert_eq!(item["seq"].as_i64(), prev["seq"].as_i64().map(|s| s + 1));
            }
        }
        assert_eq!(
            event_hash(prev_hash, &without_hash).unwrap(),
            hash.as_str().unwrap(),
            "the listed event hashes as it reads: {item}"
        );
        prev = Some(item);
    }
}

/// How many events the chain holds in the store.
async fn chain_len(app: &TestApp, chain: &str) -> i64 {
    let pool = app.database.pool().await;
    let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM audit_events WHERE chain = $1")
        .bind(chain)
        .fetch_one(&pool)
        .await
        .unwrap()
        .get("n");
    pool.close().await;
    n
}

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_mamori"))
}

/// Runs `mamori ARGS` on the test's databases; returns (success, stdout, stderr).
async fn mamori(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let database = app.database.clone();
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(binary(), &database, &args)
    })
    .await
    .unwrap()
}

/// `mamori audit verify [--org chain]` succeeds; returns its standard output.
async fn verify_passes(app: &TestApp, chain: Option<&str>) -> String {
    let mut args = vec!["audit", "verify"];
    if let Some(chain) = chain {
        args.extend(["--org", chain]);
    }
    let (ok, stdout, stderr) = mamori(app, &args).await;
    assert!(ok, "mamori {args:?} fails: {stdout}\n{stderr}");
    assert!(!stdout.contains("BROKEN"), "{stdout}");
    stdout
}

/// `mamori audit verify --org chain` fails and names `seq` as the first bad one.
async fn verify_fails_at(app: &TestApp, chain: &str, seq: i64) {
    let (ok, stdout, stderr) = mamori(app, &["audit", "verify", "--org", chain]).await;
    assert!(!ok, "verify passes a tampered chain: {stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains(&format!("chain {chain}: first bad seq {seq}:")),
        "stderr names seq {seq}: {stderr}"
    );
    assert!(
        stdout.contains(&format!("chain {chain}: BROKEN at seq {seq}")),
        "{stdout}"
    );
}

/// Signs a checkpoint of every chain that moved, at the app's clock; returns how many.
async fn sign_checkpoints(app: &TestApp) -> u64 {
    let now = app.clock.now_timestamp();
    app.services
        .run_audit_checkpoints_once(1, now, now)
        .await
        .unwrap()
}

/// The published checkpoint key, checked for consistency; returns (raw key, document).
async fn published_key(app: &TestApp) -> (Vec<u8>, Value) {
    let document = exchange(app, Method::GET, "/api/v1/audit/public-key", None, None)
        .await
        .expect(200);
    assert_eq!(document["algorithm"], "Ed25519", "{document}");
    let encoded = document["public_key"].as_str().unwrap();
    assert!(
        encoded.len() == 43 && !encoded.contains(['=', '+', '/']),
        "base64url without padding: {encoded}"
    );
    let raw = base64_decode(encoded).unwrap();
    assert_eq!(raw.len(), 32);
    assert_eq!(
        document["key_id"].as_str().unwrap(),
        audit_verifier::key_id_of(&raw),
        "the key ID is the start of the key's SHA-256"
    );
    // The PEM is the same key as a SubjectPublicKeyInfo (RFC 8410).
    let pem = document["public_key_pem"].as_str().unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
    assert!(
        pem.trim_end().ends_with("-----END PUBLIC KEY-----"),
        "{pem}"
    );
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    let der = base64_decode(&body).unwrap();
    let mut expected = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    expected.extend_from_slice(&raw);
    assert_eq!(der, expected);
    (raw, document)
}

/// Registers an app with an operator token; returns (ID, secret).
async fn register_app(app: &TestApp, name: &str) -> (String, String) {
    let operator = app.operator_token().await;
    let created = exchange(
        app,
        Method::POST,
        "/api/v1/operator/apps",
        Some(&operator),
        Some(&json!({ "name": name })),
    )
    .await
    .expect(201);
    (
        created["id"].as_str().unwrap().to_owned(),
        created["secret"].as_str().unwrap().to_owned(),
    )
}

async fn enable_app(app: &TestApp, admin: &str, org: &str, app_id: &str) {
    exchange(
        app,
        Method::PUT,
        &format!("/api/v1/orgs/{org}/apps/{app_id}"),
        Some(admin),
        Some(&json!({ "mode": "all" })),
    )
    .await
    .expect(200);
}

async fn app_event(app: &TestApp, secret: &str, body: &Value) -> Answer {
    exchange(
        app,
        Method::POST,
        "/api/v1/app/audit-events",
        Some(secret),
        Some(body),
    )
    .await
}

/// Accepts the newest invitation to `email` by signing up with `name`; returns (ID, token).
async fn accept_invitation(app: &TestApp, email: &str, name: &str) -> (String, String) {
    let token = outbox_token(app, email).await;
    let joined = exchange(
        app,
        Method::POST,
        "/api/v1/accounts",
        None,
        Some(&json!({
            "email": email,
            "password": GOOD_PASSWORD,
            "display_name": name,
            "invitation_token": token,
        })),
    )
    .await
    .expect(201);
    let session = app.log_in(email, GOOD_PASSWORD).await;
    (joined["id"].as_str().unwrap().to_owned(), session.token)
}

/// Invites `email` into `org` with `role` and signs it up as `name`; returns (ID, token).
async fn join(
    app: &TestApp,
    admin: &str,
    org: &str,
    email: &str,
    role: &str,
    name: &str,
) -> (String, String) {
    invite(app, admin, org, email, role).await;
    accept_invitation(app, email, name).await
}

async fn create_team(app: &TestApp, token: &str, org: &str, name: &str) -> String {
    exchange(
        app,
        Method::POST,
        &format!("/api/v1/orgs/{org}/teams"),
        Some(token),
        Some(&json!({ "name": name })),
    )
    .await
    .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The status `token` gets reading the organization's trail.
async fn read_status(app: &TestApp, token: &str, org: &str) -> u16 {
    get(app, &format!("/api/v1/orgs/{org}/audit-events"), token)
        .await
        .status
}

/// Exports the organization's trail as JSON Lines.
async fn export_jsonl(app: &TestApp, token: &str, org: &str) -> String {
    let answer = get(
        app,
        &format!("/api/v1/orgs/{org}/audit-events/export?format=jsonl"),
        token,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(
        answer.headers["content-type"].to_str().unwrap(),
        "application/x-ndjson"
    );
    let disposition = answer.headers["content-disposition"].to_str().unwrap();
    assert_eq!(
        disposition,
        format!("attachment; filename=\"audit-{org}.jsonl\"")
    );
    answer.text
}

/// Verifies an export with the independent verifier, asserting it is good.
fn independently_verified(text: &str, key: &[u8]) -> Verified {
    match audit_verifier::verify_export(text, key) {
        Ok(verified) => verified,
        Err(broken) => panic!("the export does not verify: {broken:?}\n{text}"),
    }
}

/// `mamori audit verify-export FILE --public-key=KEY`. (The `=` form: a base64url key starts
/// with `-` one time in 64, and `--public-key -AbC...` is then read as an unknown flag.)
async fn verify_export_cli(app: &TestApp, file: &Path, key: &str) -> (bool, String, String) {
    let file = file.display().to_string();
    let key = format!("--public-key={key}");
    mamori(app, &["audit", "verify-export", &file, &key]).await
}

fn rfc3339(at: Timestamp) -> String {
    at.to_rfc3339()
}

// ---------------------------------------------------------------------------------------
// 1. The event model.

/// AUD-1: each event says who (with the name they had then), what, to what, with which
/// outcome, from which address and user agent, in which request, and when; INC-3: a failed
/// log-in is an event too, in the platform chain.
async fn events_record_who_did_what_from_where_and_when(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let (alice_account, alice) = app
        .account_with_session_named("alice@example.org", "Alice Admin")
        .await;
    let alice_id = alice_account.id;

    let created = exchange(
        &app,
        Method::POST,
        "/api/v1/orgs",
        Some(&alice),
        Some(&json!({ "name": "Event Model" })),
    )
    .await;
    let org = created.expect(201)["id"].as_str().unwrap().to_owned();

    app.clock.advance_millis(1_000);
    let invited = exchange(
        &app,
        Method::POST,
        &format!("/api/v1/orgs/{org}/invitations"),
        Some(&alice),
        Some(&json!({ "email": "bob@example.org", "role": "member" })),
    )
    .await;
    let invitation = invited.expect(201)["id"].as_str().unwrap().to_owned();
    let (bob, _) = accept_invitation(&app, "bob@example.org", "Bob Builder").await;
    let (carol, _) = join(&app, &alice, &org, "carol@example.org", "member", "Carol").await;

    // A request ID the client chose is the one recorded.
    app.clock.advance_millis(1_000);
    let team = exchange_with(
        &app,
        Method::POST,
        &format!("/api/v1/orgs/{org}/teams"),
        Some(&alice),
        Some(&json!({ "name": "Before Rename" })),
        Some("client-chosen-id-42"),
    )
    .await;
    assert_eq!(team.request_id, "client-chosen-id-42");
    let team_id = team.expect(201)["id"].as_str().unwrap().to_owned();

    app.clock.advance_millis(1_000);
    let demoted = exchange(
        &app,
        Method::PATCH,
        &format!("/api/v1/orgs/{org}/members/{bob}"),
        Some(&alice),
        Some(&json!({ "role": "guest" })),
    )
    .await;
    demoted.expect(200);

    app.clock.advance_millis(1_000);
    let removed = exchange(
        &app,
        Method::DELETE,
        &format!("/api/v1/orgs/{org}/members/{carol}"),
        Some(&alice),
        None,
    )
    .await;
    removed.expect(204);

    // Alice renames herself: earlier events keep the name she had when she acted.
    exchange(
        &app,
        Method::PATCH,
        "/api/v1/me",
        Some(&alice),
        Some(&json!({ "display_name": "Alice Renamed" })),
    )
    .await
    .expect(200);
    app.clock.advance_millis(1_000);
    let after = exchange(
        &app,
        Method::POST,
        &format!("/api/v1/orgs/{org}/teams"),
        Some(&alice),
        Some(&json!({ "name": "After Rename" })),
    )
    .await;
    let after_team = after.expect(201)["id"].as_str().unwrap().to_owned();

    let items = all_events(&app, &alice, &org).await;
    assert_eq!(
        actions_of(&items),
        [
            "org.team.created",
            "org.member.removed",
            "org.member.updated",
            "org.team.created",
            "org.invitation.accepted",
            "org.invitation.created",
            "org.invitation.accepted",
            "org.invitation.created",
            "org.created",
        ],
        "newest first"
    );
    assert_eq!(seqs_of(&items), [9, 8, 7, 6, 5, 4, 3, 2, 1]);
    assert_listed_chain_verifies(&items);
    for item in &items {
        assert_eq!(item["chain"], org.as_str(), "{item}");
        assert_eq!(item["org_id"], org.as_str(), "{item}");
        assert_eq!(item["outcome"], "success", "{item}");
        assert_eq!(item["ip"], "127.0.0.1", "{item}");
        assert_eq!(item["actor"]["type"], "account", "{item}");
        let time = item["time"].as_str().unwrap();
        assert!(
            time.len() == 24 && time.starts_with("2026-11-22T00:00:0") && time.ends_with(".000Z"),
            "RFC 3339, UTC, milliseconds: {time}"
        );
        assert!(item["request_id"].as_str().is_some_and(|id| !id.is_empty()));
    }
    let event = |seq: i64| items.iter().find(|item| item["seq"] == seq).unwrap();
    let alice_then = json!({ "type": "account", "id": alice_id, "name": "Alice Admin" });

    let org_created = event(1);
    assert_eq!(org_created["action"], "org.created");
    assert_eq!(org_created["actor"], alice_then);
    assert_eq!(org_created["target"], json!({ "type": "org", "id": org }));
    assert_eq!(org_created["details"], json!({}));
    assert_eq!(org_created["request_id"], created.request_id.as_str());
    assert_eq!(org_created["user_agent"], AGENT);
    assert_eq!(org_created["time"], "2026-11-22T00:00:00.000Z");
    assert_eq!(org_created["prev_hash"], "0".repeat(64));

    let invitation_created = event(2);
    assert_eq!(invitation_created["actor"], alice_then);
    assert_eq!(
        invitation_created["target"],
        json!({ "type": "invitation", "id": invitation })
    );
    assert_eq!(
        invitation_created["details"],
        json!({ "role": "member", "can_invite": false, "replaced": 0 })
    );
    assert_eq!(
        invitation_created["request_id"],
        invited.request_id.as_str()
    );
    assert_eq!(invitation_created["time"], "2026-11-22T00:00:01.000Z");

    let accepted = event(3);
    assert_eq!(
        accepted["actor"],
        json!({ "type": "account", "id": bob, "name": "Bob Builder" })
    );
    assert_eq!(
        accepted["details"],
        json!({ "role": "member", "invited_by": alice_id })
    );

    let team_created = event(6);
    assert_eq!(team_created["actor"], alice_then);
    assert_eq!(
        team_created["target"],
        json!({ "type": "team", "id": team_id })
    );
    assert_eq!(team_created["request_id"], "client-chosen-id-42");
    assert_eq!(team_created["time"], "2026-11-22T00:00:02.000Z");

    let updated = event(7);
    assert_eq!(updated["action"], "org.member.updated");
    assert_eq!(updated["target"], json!({ "type": "account", "id": bob }));
    assert_eq!(
        updated["details"],
        json!({
            "role": { "from": "member", "to": "guest" },
            "can_invite": { "from": false, "to": false },
        })
    );
    assert_eq!(updated["request_id"], demoted.request_id.as_str());
    assert_eq!(updated["user_agent"], AGENT);
    assert_eq!(updated["time"], "2026-11-22T00:00:03.000Z");

    let removal = event(8);
    assert_eq!(removal["target"], json!({ "type": "account", "id": carol }));
    assert_eq!(removal["details"], json!({ "role": "member" }));
    assert_eq!(removal["request_id"], removed.request_id.as_str());
    assert_eq!(removal["time"], "2026-11-22T00:00:04.000Z");

    let renamed = event(9);
    assert_eq!(
        renamed["actor"],
        json!({ "type": "account", "id": alice_id, "name": "Alice Renamed" })
    );
    assert_eq!(
        renamed["target"],
        json!({ "type": "team", "id": after_team })
    );
    assert_eq!(renamed["request_id"], after.request_id.as_str());

    // INC-3: failed log-ins are events, in the platform chain, with outcome failure.
    let wrong = exchange(
        &app,
        Method::POST,
        "/api/v1/sessions",
        None,
        Some(&json!({ "email": "alice@example.org", "password": "not her password at all" })),
    )
    .await;
    wrong.problem(401, "invalid_credentials");
    let unknown = exchange(
        &app,
        Method::POST,
        "/api/v1/sessions",
        None,
        Some(&json!({ "email": "nobody@example.org", "password": "not her password at all" })),
    )
    .await;
    unknown.problem(401, "invalid_credentials");
    let pool = app.database.pool().await;
    let rows = sqlx::query(
        "SELECT org_id, actor_type, actor_id, target_type, target_id, outcome, ip, user_agent, \
         request_id, details FROM audit_events WHERE chain = 'platform' \
         AND action = 'session.login_failed' ORDER BY seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    assert_eq!(rows.len(), 2);
    for (row, answer, target) in [
        (&rows[0], &wrong, Some(alice_id.as_str())),
        (&rows[1], &unknown, None),
    ] {
        assert_eq!(row.get::<Option<String>, _>("org_id"), None);
        assert_eq!(row.get::<String, _>("actor_type"), "anonymous");
        assert_eq!(row.get::<Option<String>, _>("actor_id"), None);
        assert_eq!(
            row.get::<Option<String>, _>("target_type").as_deref(),
            target.map(|_| "account")
        );
        assert_eq!(row.get::<Option<String>, _>("target_id").as_deref(), target);
        assert_eq!(row.get::<String, _>("outcome"), "failure");
        assert_eq!(
            row.get::<Option<String>, _>("ip").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(
            row.get::<Option<String>, _>("user_agent").as_deref(),
            Some(AGENT)
        );
        assert_eq!(
            row.get::<Option<String>, _>("request_id").as_deref(),
            Some(answer.request_id.as_str())
        );
        assert_eq!(
            row.get::<String, _>("details"),
            r#"{"reason":"invalid_credentials"}"#
        );
    }
    // Both chains verify with the command line.
    let stdout = verify_passes(&app, Some("platform")).await;
    assert!(stdout.contains("chain platform: ok, seq 1 to "), "{stdout}");
    let stdout = verify_passes(&app, Some(&org)).await;
    assert!(
        stdout.contains(&format!("chain {org}: ok, seq 1 to 9 (9 events")),
        "{stdout}"
    );
}

// ---------------------------------------------------------------------------------------
// 2. Who may read.

async fn viewers(app: &TestApp, admin: &str, org: &str) -> Vec<(String, String)> {
    let list = get(app, &format!("/api/v1/orgs/{org}/audit-viewers"), admin)
        .await
        .expect(200);
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            assert!(
                item["granted_at"].as_str().unwrap().ends_with('Z'),
                "{item}"
            );
            (
                item["subject_type"].as_str().unwrap().to_owned(),
                item["subject_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn set_viewer(app: &TestApp, token: &str, org: &str, subject: &str, grant: bool) -> Answer {
    exchange(
        app,
        if grant { Method::PUT } else { Method::DELETE },
        &format!("/api/v1/orgs/{org}/audit-viewers/{subject}"),
        Some(token),
        None,
    )
    .await
}

/// Administrators read the trail; a member or guest only with the viewer right, held
/// directly or through a team, and only while they hold it; outsiders learn nothing.
async fn reading_needs_an_administrator_or_the_viewer_right(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let (_, alice) = app.account_with_session("alice@example.org").await;
    let org = create_org(&app, &alice, "Readers").await;
    let (bob, bob_token) = join(&app, &alice, &org, "bob@example.org", "member", "Bob").await;
    let (carol, carol_token) =
        join(&app, &alice, &org, "carol@example.org", "member", "Carol").await;
    let (gina, gina_token) = join(&app, &alice, &org, "gina@example.org", "guest", "Gina").await;
    let (dave, dave_token) = app.account_with_session("dave@example.org").await;
    let dave = dave.id;

    assert_eq!(read_status(&app, &alice, &org).await, 200);
    let events = format!("/api/v1/orgs/{org}/audit-events");
    get(&app, &events, &bob_token)
        .await
        .problem(403, "forbidden");
    get(&app, &events, &gina_token)
        .await
        .problem(403, "forbidden");
    get(&app, &events, &dave_token)
        .await
        .problem(404, "not_found");
    assert!(viewers(&app, &alice, &org).await.is_empty());

    // A member: granted (201, then 204), reads everything a reader reads; revoked, reads
    // nothing again.
    set_viewer(&app, &alice, &org, &bob, true).await.expect(201);
    set_viewer(&app, &alice, &org, &bob, true).await.expect(204);
    assert_eq!(
        viewers(&app, &alice, &org).await,
        [(String::from("account"), bob.clone())]
    );
    assert_eq!(read_status(&app, &bob_token, &org).await, 200);
    for path in [
        format!("/api/v1/orgs/{org}/audit-events/export?format=jsonl"),
        format!("/api/v1/orgs/{org}/audit-events/export?format=csv"),
        format!("/api/v1/orgs/{org}/audit-checkpoints"),
    ] {
        get(&app, &path, &bob_token).await.expect(200);
    }
    // Reading is not managing.
    get(
        &app,
        &format!("/api/v1/orgs/{org}/audit-viewers"),
        &bob_token,
    )
    .await
    .problem(403, "forbidden");
    set_viewer(&app, &bob_token, &org, &carol, true)
        .await
        .problem(403, "forbidden");
    set_viewer(&app, &alice, &org, &bob, false)
        .await
        .expect(204);
    get(&app, &events, &bob_token)
        .await
        .problem(403, "forbidden");
    set_viewer(&app, &alice, &org, &bob, false)
        .await
        .problem(404, "not_found");

    // A team: its members read while they are in it and while it exists.
    let team = create_team(&app, &alice, &org, "Auditors").await;
    let membership = format!("/api/v1/orgs/{org}/teams/{team}/members/{carol}");
    exchange(&app, Method::PUT, &membership, Some(&alice), None)
        .await
        .expect(204);
    get(&app, &events, &carol_token)
        .await
        .problem(403, "forbidden");
    set_viewer(&app, &alice, &org, &team, true)
        .await
        .expect(201);
    assert_eq!(read_status(&app, &carol_token, &org).await, 200);
    exchange(&app, Method::DELETE, &membership, Some(&alice), None)
        .await
        .expect(204);
    get(&app, &events, &carol_token)
        .await
        .problem(403, "forbidden");
    exchange(&app, Method::PUT, &membership, Some(&alice), None)
        .await
        .expect(204);
    assert_eq!(read_status(&app, &carol_token, &org).await, 200);
    exchange(
        &app,
        Method::DELETE,
        &format!("/api/v1/orgs/{org}/teams/{team}"),
        Some(&alice),
        None,
    )
    .await
    .expect(204);
    get(&app, &events, &carol_token)
        .await
        .problem(403, "forbidden");
    assert!(
        viewers(&app, &alice, &org).await.is_empty(),
        "the team's grant went with it"
    );

    // A guest with the right reads too.
    set_viewer(&app, &alice, &org, &gina, true)
        .await
        .expect(201);
    assert_eq!(read_status(&app, &gina_token, &org).await, 200);

    // Removing a member from the organization removes the grant.
    set_viewer(&app, &alice, &org, &bob, true).await.expect(201);
    exchange(
        &app,
        Method::DELETE,
        &format!("/api/v1/orgs/{org}/members/{bob}"),
        Some(&alice),
        None,
    )
    .await
    .expect(204);
    assert_eq!(
        viewers(&app, &alice, &org).await,
        [(String::from("account"), gina.clone())]
    );
    get(&app, &events, &bob_token)
        .await
        .problem(404, "not_found");

    // Only members and teams of the organization can be granted.
    for subject in [dave.as_str(), "team_aaaaaaaaaaaaaaaaaaaaaaaaaa", "somebody"] {
        set_viewer(&app, &alice, &org, subject, true)
            .await
            .problem(404, "not_found");
    }
    // An outsider cannot even see that the organization exists.
    get(
        &app,
        &format!("/api/v1/orgs/{org}/audit-viewers"),
        &dave_token,
    )
    .await
    .problem(404, "not_found");

    // Grants and revocations are in the trail; the repeated grant is not.
    let granted = page(&app, &alice, &org, "action=org.audit_log.viewer_granted").await;
    assert_eq!(page_seqs(&granted).len(), 4, "{granted}");
    let revoked = page(&app, &alice, &org, "action=org.audit_log.viewer_revoked").await;
    assert_eq!(
        revoked["items"][0]["target"],
        json!({ "type": "account", "id": bob })
    );
    assert_eq!(page_seqs(&revoked).len(), 1);
    // Bob's two exports are in it, under his name.
    let exports = page(&app, &alice, &org, "action=org.audit_log.exported").await;
    let formats: Vec<&Value> = exports["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            assert_eq!(item["actor"]["id"], bob.as_str());
            assert_eq!(item["actor"]["name"], "Bob");
            &item["details"]["format"]
        })
        .collect();
    assert_eq!(formats, [&json!("csv"), &json!("jsonl")]);
}

// ---------------------------------------------------------------------------------------
// 3. Filters and pagination.

/// Every filter narrows; a `_` in an action prefix is a plain character; the cursor walks
/// every event once, newest first; bad queries are refused with a problem and record nothing.
async fn filters_narrow_and_the_cursor_walks_every_event_once(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let (_, alice) = app.account_with_session("alice@example.org").await;
    let org = create_org(&app, &alice, "Filtered").await; // 1, at t0
    app.clock.advance_millis(60_000);
    let (bob, _) = join(&app, &alice, &org, "bob@example.org", "member", "Bob").await; // 2, 3
    app.clock.advance_millis(60_000);
    let t2 = app.clock.now_timestamp();
    exchange(
        &app,
        Method::PATCH,
        &format!("/api/v1/orgs/{org}/members/{bob}"),
        Some(&alice),
        Some(&json!({ "can_invite": true })),
    )
    .await
    .expect(200); // 4
    let team = create_team(&app, &alice, &org, "Filter Team").await; // 5
    exchange(
        &app,
        Method::PUT,
        &format!("/api/v1/orgs/{org}/teams/{team}/members/{bob}"),
        Some(&alice),
        None,
    )
    .await
    .expect(204); // 6
    app.clock.advance_millis(60_000);
    let t3 = app.clock.now_timestamp();
    let (app_id, secret) = register_app(&app, "Acme").await;
    enable_app(&app, &alice, &org, &app_id).await; // 7
    for (action, outcome) in [
        ("acme_x.done", "success"),
        ("acmeyx.done", "failure"),
        ("acme_x.more.done", "success"),
    ] {
        app_event(
            &app,
            &secret,
            &json!({
                "org_id": org,
                "action": action,
                "outcome": outcome,
                "target": { "type": "widget", "id": "w1" },
            }),
        )
        .await
        .expect(201); // 8, 9, 10
    }
    let all: Vec<i64> = (1..=10).rev().collect();
    assert_eq!(page_seqs(&page(&app, &alice, &org, "limit=500").await), all);

    let filtered = |query: String| {
        let app = &app;
        let alice = &alice;
        let org = &org;
        async move { page_seqs(&page(app, alice, org, &format!("{query}&limit=500")).await) }
    };
    assert_eq!(filtered(String::from("action=org.member")).await, [4]);
    assert_eq!(filtered(String::from("action=org.team")).await, [6, 5]);
    assert_eq!(
        filtered(String::from("action=org.invitation.accepted")).await,
        [3]
    );
    assert_eq!(
        filtered(String::from("action=org")).await,
        [7, 6, 5, 4, 3, 2, 1]
    );
    // `_` is not a wildcard: acme_x does not match acmeyx.
    assert_eq!(filtered(String::from("action=acme_x")).await, [10, 8]);
    assert_eq!(filtered(String::from("action=acmeyx")).await, [9]);
    assert_eq!(filtered(String::from("action=acme")).await, [10, 9, 8]);
    assert!(
        filtered(String::from("action=org.membership"))
            .await
            .is_empty()
    );
    assert_eq!(filtered(format!("actor={bob}")).await, [3]);
    assert_eq!(filtered(format!("actor={app_id}")).await, [10, 9, 8]);
    assert_eq!(filtered(format!("target={bob}")).await, [4]);
    assert_eq!(filtered(format!("target={app_id}")).await, [7]);
    assert_eq!(filtered(String::from("target=w1")).await, [10, 9, 8]);
    assert_eq!(filtered(String::from("outcome=failure")).await, [9]);
    assert_eq!(
        filtered(String::from("outcome=success")).await,
        [10, 8, 7, 6, 5, 4, 3, 2, 1]
    );
    let (t2, t3) = (rfc3339(t2), rfc3339(t3));
    assert_eq!(filtered(format!("from={t2}")).await, [10, 9, 8, 7, 6, 5, 4]);
    assert_eq!(
        filtered(format!("to={t2}")).await,
        [3, 2, 1],
        "to is exclusive"
    );
    assert_eq!(filtered(format!("from={t2}&to={t3}")).await, [6, 5, 4]);
    // An offset other than Z means the same instant.
    let t2_in_tokyo = "2026-11-22T09:02:00%2B09:00";
    assert_eq!(
        filtered(format!("from={t2_in_tokyo}&to={t3}")).await,
        [6, 5, 4]
    );
    assert_eq!(
        filtered(format!(
            "action=org&from={t2}&to={t3}&target={bob}&outcome=success"
        ))
        .await,
        [4]
    );

    // The cursor walks every event exactly once, newest first.
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let query = match &cursor {
            Some(cursor) => format!("limit=3&cursor={cursor}"),
            None => String::from("limit=3"),
        };
        let page = page(&app, &alice, &org, &query).await;
        let seqs = page_seqs(&page);
        assert!(seqs.len() <= 3);
        walked.extend(seqs);
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(walked, all);
    // Also with a filter, down to pages of one.
    let first = page(&app, &alice, &org, "action=acme_x&limit=1").await;
    assert_eq!(page_seqs(&first), [10]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = page(
        &app,
        &alice,
        &org,
        &format!("action=acme_x&limit=1&cursor={cursor}"),
    )
    .await;
    assert_eq!(page_seqs(&second), [8]);
    assert_eq!(second["next_cursor"], Value::Null);

    // Bad queries: a problem naming the field, and nothing recorded (not even an export).
    let before = chain_len(&app, &org).await;
    let list = format!("/api/v1/orgs/{org}/audit-events");
    let export = format!("/api/v1/orgs/{org}/audit-events/export");
    for (path, field) in [
        (format!("{list}?colour=blue"), "query"),
        (format!("{list}?limit=abc"), "query"),
        (format!("{list}?limit=0"), "limit"),
        (format!("{list}?limit=501"), "limit"),
        (format!("{list}?cursor=abc"), "cursor"),
        (format!("{list}?cursor=0"), "cursor"),
        (format!("{list}?cursor=-5"), "cursor"),
        (format!("{list}?from=yesterday"), "from"),
        (format!("{list}?to=2026-13-01T00:00:00Z"), "to"),
        (format!("{list}?from={t3}&to={t2}"), "to"),
        (format!("{list}?from={t2}&to={t2}"), "to"),
        (format!("{list}?action=Org.Member"), "action"),
        (format!("{list}?action="), "action"),
        (format!("{list}?action=org%25"), "action"),
        (format!("{list}?outcome=maybe"), "outcome"),
        (format!("{list}?actor="), "actor"),
        (format!("{export}?format=xml"), "format"),
        (format!("{export}?format=jsonl&colour=blue"), "query"),
        (format!("{export}?format=csv&from=yesterday"), "from"),
        (format!("{export}?action=ORG"), "action"),
        (format!("{export}?outcome=maybe"), "outcome"),
        (
            format!("/api/v1/orgs/{org}/audit-checkpoints?cursor=abc"),
            "cursor",
        ),
        (
            format!("/api/v1/orgs/{org}/audit-checkpoints?colour=blue"),
            "query",
        ),
    ] {
        let answer = get(&app, &path, &alice).await;
        assert!(
            (400..500).contains(&answer.status),
            "{path}: {} {}",
            answer.status,
            answer.text
        );
        answer.invalid(field);
    }
    assert_eq!(
        chain_len(&app, &org).await,
        before,
        "refused reads record nothing"
    );
}

// ---------------------------------------------------------------------------------------
// 4. Events sent by apps.

/// An app records events, validated, into the trail of an organization that enabled it,
/// under its own name; anywhere else it gets 404; a refused event is not recorded.
async fn apps_record_events_in_organizations_that_enabled_them(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let (_, alice) = app.account_with_session("alice@example.org").await;
    let org = create_org(&app, &alice, "Ledger Customer").await;
    let other = create_org(&app, &alice, "Not A Customer").await;
    let (app_id, secret) = register_app(&app, "Ledger").await;
    enable_app(&app, &alice, &org, &app_id).await;

    app.clock.advance_millis(1_500);
    let recorded = app_event(
        &app,
        &secret,
        &json!({
            "org_id": org,
            "action": "ledger.invoice.paid",
            "target": { "type": "invoice", "id": "inv_42" },
            "outcome": "failure",
            "details": { "amount": 1200, "currency": "EUR", "lines": [1, 2], "paid": false },
        }),
    )
    .await;
    let event = recorded.expect(201);
    assert_eq!(event["seq"], 3, "{event}");
    assert_eq!(event["chain"], org.as_str());
    assert_eq!(event["org_id"], org.as_str());
    assert_eq!(
        event["actor"],
        json!({ "type": "app", "id": app_id, "name": "Ledger" })
    );
    assert_eq!(event["action"], "ledger.invoice.paid");
    assert_eq!(
        event["target"],
        json!({ "type": "invoice", "id": "inv_42" })
    );
    assert_eq!(event["outcome"], "failure");
    assert_eq!(event["ip"], "127.0.0.1");
    assert_eq!(event["user_agent"], AGENT);
    assert_eq!(event["request_id"], recorded.request_id.as_str());
    assert_eq!(event["time"], "2026-11-22T00:00:01.500Z");
    assert_eq!(
        event["details"],
        json!({ "amount": 1200, "currency": "EUR", "lines": [1, 2], "paid": false })
    );
    // The answer is the event as stored: it hashes as it reads.
    let mut without_hash = event.clone();
    let hash = without_hash
        .as_object_mut()
        .unwrap()
        .remove("hash")
        .unwrap();
    assert_eq!(
        event_hash(event["prev_hash"].as_str().unwrap(), &without_hash).unwrap(),
        hash.as_str().unwrap()
    );
    // Target, outcome and details are optional.
    let bare = app_event(
        &app,
        &secret,
        &json!({ "org_id": org, "action": "ledger.synced" }),
    )
    .await
    .expect(201);
    assert_eq!(bare["seq"], 4);
    assert_eq!(bare["prev_hash"], hash);
    assert_eq!(bare["outcome"], "success");
    assert_eq!(bare["details"], json!({}));
    assert_eq!(bare["target"], json!({ "type": null, "id": null }));

    // The administrator sees both, as the app answered them.
    let items = all_events(&app, &alice, &org).await;
    assert_eq!(items[0], bare);
    assert_eq!(items[1], event);
    assert_listed_chain_verifies(&items);

    // Nowhere else: an organization that did not enable the app, or none at all.
    let other_len = chain_len(&app, &other).await;
    for org_id in [
        other.as_str(),
        "org_aaaaaaaaaaaaaaaaaaaaaaaaaa",
        "not-an-org",
    ] {
        app_event(
            &app,
            &secret,
            &json!({ "org_id": org_id, "action": "ledger.invoice.paid" }),
        )
        .await
        .problem(404, "not_found");
    }
    assert_eq!(chain_len(&app, &other).await, other_len);

    // Bad events: 422 naming the field, and nothing recorded.
    let before = chain_len(&app, &org).await;
    let base = |extra: Value| {
        let mut body = json!({ "org_id": org, "action": "ledger.invoice.paid" });
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        body
    };
    let cases = [
        (base(json!({ "action": "Ledger.Paid" })), "action"),
        (base(json!({ "action": "ledger" })), "action"),
        (base(json!({ "action": "ledger..paid" })), "action"),
        (base(json!({ "action": "ledger.1paid" })), "action"),
        (
            base(json!({ "action": format!("ledger.{}", "a".repeat(130)) })),
            "action",
        ),
        (base(json!({ "action": "org.x" })), "action"),
        (base(json!({ "action": "account.created" })), "action"),
        (base(json!({ "action": "audit.anything" })), "action"),
        (
            base(json!({ "target": { "type": "invoice" } })),
            "target.id",
        ),
        (
            base(json!({ "target": { "type": "Invoice!", "id": "x" } })),
            "target.type",
        ),
        (
            base(json!({ "target": { "type": "invoice", "id": "" } })),
            "target.id",
        ),
        (base(json!({ "details": "text" })), "details"),
        (base(json!({ "details": [1, 2] })), "details"),
        (base(json!({ "details": { "amount": 12.5 } })), "details"),
        (
            base(json!({ "details": { "big": 9_007_199_254_740_993_u64 } })),
            "details",
        ),
        (
            base(json!({ "details": { "blob": "a".repeat(8 * 1024) } })),
            "details",
        ),
        (
            base(
                json!({ "details": { "a": { "b": { "c": { "d": { "e": { "f": { "g": { "h": { "i": 1 } } } } } } } } } }),
            ),
            "details",
        ),
        (base(json!({ "outcome": "maybe" })), "outcome"),
    ];
    for (body, field) in cases {
        let answer = app_event(&app, &secret, &body).await;
        answer.invalid(field);
    }
    // Several mistakes at once are all reported.
    let answer = app_event(
        &app,
        &secret,
        &base(json!({ "action": "org.x", "outcome": "maybe", "details": 1 })),
    )
    .await;
    let problem = answer.invalid("action");
    let mut named = fields(&problem);
    named.sort();
    assert_eq!(named, ["action", "details", "outcome"]);
    // Details of exactly 8 KiB as canonical JSON are accepted.
    let blob = "a".repeat(8 * 1024 - r#"{"blob":""}"#.len());
    let largest = app_event(&app, &secret, &base(json!({ "details": { "blob": blob } }))).await;
    largest.expect(201);
    assert_eq!(
        chain_len(&app, &org).await,
        before + 1,
        "only the valid one was recorded"
    );

    // Only the app's own secret records app events.
    let body = base(json!({}));
    exchange(
        &app,
        Method::POST,
        "/api/v1/app/audit-events",
        None,
        Some(&body),
    )
    .await
    .problem(401, "unauthenticated");
    exchange(
        &app,
        Method::POST,
        "/api/v1/app/audit-events",
        Some(&alice),
        Some(&body),
    )
    .await
    .problem(403, "forbidden");
    let operator = app.operator_token().await;
    exchange(
        &app,
        Method::POST,
        "/api/v1/app/audit-events",
        Some(&operator),
        Some(&body),
    )
    .await
    .problem(403, "forbidden");

    // Once the organization disables the app, the app can no longer write there.
    exchange(
        &app,
        Method::DELETE,
        &format!("/api/v1/orgs/{org}/apps/{app_id}"),
        Some(&alice),
        None,
    )
    .await
    .expect(204);
    app_event(&app, &secret, &body)
        .await
        .problem(404, "not_found");
    assert_eq!(
        chain_len(&app, &org).await,
        before + 2,
        "+ org.app.disabled"
    );
}

/// Each app may send `app_events_per_second` events a second, in bursts up to twice that;
/// beyond, 429 with `Retry-After`, until the clock moves on. Another app has its own budget.
async fn app_events_are_rate_limited_per_app(engine: TestEngine) {
    let database = Arc::new(mamori_testkit::TestDatabase::create(engine).await);
    let mut settings = test_settings(&database);
    settings.audit.app_events_per_second = 3;
    let app = spawn_with(
        database,
        settings,
        Arc::new(mamori_server::ManualClock::new(TEST_EPOCH)),
    )
    .await;
    let (_, alice) = app.account_with_session("alice@example.org").await;
    let org = create_org(&app, &alice, "Busy").await;
    let (noisy, noisy_secret) = register_app(&app, "Noisy").await;
    let (quiet, quiet_secret) = register_app(&app, "Quiet").await;
    enable_app(&app, &alice, &org, &noisy).await;
    enable_app(&app, &alice, &org, &quiet).await;
    let body = json!({ "org_id": org, "action": "noisy.ping" });

    let before = chain_len(&app, &org).await;
    for _ in 0..6 {
        app_event(&app, &noisy_secret, &body).await.expect(201);
    }
    let limited = app_event(&app, &noisy_secret, &body).await;
    limited.problem(429, "rate_limited");
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "Retry-After: {retry_after}");
    assert_eq!(
        chain_len(&app, &org).await,
        before + 6,
        "the refused one is not recorded"
    );
    // The other app is not held back by the first.
    app_event(
        &app,
        &quiet_secret,
        &json!({ "org_id": org, "action": "quiet.ping" }),
    )
    .await
    .expect(201);

    // A second later, a second's worth of events goes through, and no more.
    app.clock.advance_millis(1_000);
    for _ in 0..3 {
        app_event(&app, &noisy_secret, &body).await.expect(201);
    }
    app_event(&app, &noisy_secret, &body)
        .await
        .problem(429, "rate_limited");
    assert_eq!(chain_len(&app, &org).await, before + 10);
}

/// Concurrent app events are each answered after they are stored, with distinct, contiguous
/// `seq`s, and the chain verifies from the command line.
async fn concurrent_app_events_get_contiguous_seqs(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let (_, alice) = app.account_with_session("alice@example.org").await;
    let org = create_org(&app, &alice, "Concurrent").await;
    let (app_id, secret) = register_app(&app, "Firehose").await;
    enable_app(&app, &alice, &org, &app_id).await;
    let before = chain_len(&app, &org).await;

    let answers = join_all((0..50).map(|i| {
        let body = json!({
            "org_id": org,
            "action": "firehose.event.sent",
            "target": { "type": "message", "id": format!("m{i}") },
            "details": { "n": i },
        });
        let app = &app;
        let secret = &secret;
        async move { app_event(app, secret, &body).await }
    }))
    .await;
    let mut by_seq = BTreeMap::new();
    for answer in &answers {
        let event = answer.expect(201);
        let seq = event["seq"].as_i64().unwrap();
        assert!(by_seq.insert(seq, event).is_none(), "seq {seq} given twice");
    }
    let seqs: Vec<i64> = by_seq.keys().copied().collect();
    assert_eq!(seqs, ((before + 1)..=(before + 50)).collect::<Vec<_>>());
    // Each answer's prev_hash is the hash of the answer before it.
    for (seq, event) in by_seq.range((before + 2)..) {
        assert_eq!(event["prev_hash"], by_seq[&(seq - 1)]["hash"], "seq {seq}");
    }
    assert_eq!(chain_len(&app, &org).await, before + 50);
    let items = all_events(&app, &alice, &org).await;
    assert_listed_chain_verifies(&items);
    let stdout = verify_passes(&app, Some(&org)).await;
    assert!(
        stdout.contains(&format!("chain {org}: ok, seq 1 to {}", before + 50)),
        "{stdout}"
    );
}

// ---------------------------------------------------------------------------------------
// 5. Exports.

/// A JSON Lines export of 30+ events with stored checkpoints in the middle verifies with the
/// independent verifier and with `mamori audit verify-export`; one changed character in one
/// event's details is found by both, at that event's `seq`; a cut export is incomplete.
async fn the_jsonl_export_verifies_independently_and_a_changed_character_is_found(
    engine: TestEngine,
) {
    let app = spawn_app(engine).await;
    // A name that needs escaping, and characters beyond the BMP, in every actor field.
    let (_, alice) = app
        .account_with_session_named("alice@example.org", "Zoë \"Z\" Ørsted, 東京 😀")
        .await;
    let org = create_org(&app, &alice, "Exported").await;
    let (app_id, secret) = register_app(&app, "Ledger ⚖").await;
    enable_app(&app, &alice, &org, &app_id).await;
    let (key, key_document) = published_key(&app).await;

    let mut checkpointed = Vec::new();
    let mut tampered_seq = 0;
    for i in 0..30_i64 {
        app.clock.advance_millis(7);
        let event = app_event(
            &app,
            &secret,
            &json!({
                "org_id": org,
                "action": "ledger.entry.posted",
                "target": { "type": "entry", "id": format!("entry/{i} ✓") },
                "outcome": if i % 7 == 3 { "failure" } else { "success" },
                "details": {
                    "note": format!("note {i}"),
                    "n": -i * 1_000_003,
                    // Members whose order differs in UTF-8 and UTF-16, control characters,
                    // quotes and backslashes, nesting, booleans and null.
                    "\u{1F600}": "emoji",
                    "\u{E000}": "private use",
                    "é": { "z": [true, false, null], "a": "tab\there \"quoted\" back\\slash \u{1}\u{1f}\u{7f}\u{2028}" },
                    "": i % 2 == 0,
                },
            }),
        )
        .await
        .expect(201);
        let seq = event["seq"].as_i64().unwrap();
        if i == 15 {
            tampered_seq = seq;
        }
        if i == 9 {
            // A stored checkpoint, through the service...
            assert!(sign_checkpoints(&app).await >= 1);
            checkpointed.push(seq);
        }
        if i == 19 {
            // ...and one through the command line, an hour on (due by time).
            let at = rfc3339(app.clock.now_timestamp().plus_seconds(3_600));
            let (ok, stdout, stderr) = mamori(&app, &["audit", "checkpoint", "--now", &at]).await;
            assert!(ok, "{stderr}");
            assert!(stdout.contains(&format!("at {at}: ")), "{stdout}");
            assert!(!stdout.contains(": 0 checkpoints signed"), "{stdout}");
            checkpointed.push(seq);
        }
    }

    let text = export_jsonl(&app, &alice, &org).await;
    let verified = independently_verified(&text, &key);
    let stored = chain_len(&app, &org).await;
    assert!(stored >= 33, "{stored}");
    assert_eq!(verified.chain, org);
    assert_eq!(
        (verified.anchor_seq, verified.anchor_hash.as_str()),
        (0, "0".repeat(64).as_str())
    );
    assert_eq!(
        verified.events.len() as i64,
        stored,
        "every event is exported"
    );
    assert_eq!(verified.last_seq(), stored);
    for seq in &checkpointed {
        assert!(
            verified.checkpoint_seqs.contains(seq),
            "stored checkpoint {seq} is in the export: {:?}",
            verified.checkpoint_seqs
        );
    }
    assert_eq!(
        verified.checkpoint_seqs.last(),
        Some(&stored),
        "the head is signed"
    );
    // The export's last event is the export itself.
    let last = verified.events.last().unwrap();
    assert_eq!(last["action"], "org.audit_log.exported");
    assert_eq!(last["details"], json!({ "format": "jsonl" }));
    assert_eq!(last["actor"]["name"], "Zoë \"Z\" Ørsted, 東京 😀");
    // The exported events are the listed events.
    let listed: BTreeMap<i64, Value> = all_events(&app, &alice, &org)
        .await
        .into_iter()
        .map(|item| (item["seq"].as_i64().unwrap(), item))
        .collect();
    for event in &verified.events {
        assert_eq!(&listed[&event["seq"].as_i64().unwrap()], event);
    }

    // The command line agrees, with the key as base64url and as a PEM file.
    let folder = tempfile::tempdir().unwrap();
    let file = folder.path().join("export.jsonl");
    std::fs::write(&file, &text).unwrap();
    let encoded = key_document["public_key"].as_str().unwrap();
    let (ok, stdout, stderr) = verify_export_cli(&app, &file, encoded).await;
    assert!(ok, "verify-export: {stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!(
            "chain {org}: seq 1 to {stored} verified ({stored} events"
        )) && stdout.contains("complete"),
        "{stdout}"
    );
    let pem_file = folder.path().join("key.pem");
    std::fs::write(&pem_file, key_document["public_key_pem"].as_str().unwrap()).unwrap();
    let (ok, _, stderr) = verify_export_cli(&app, &file, &pem_file.display().to_string()).await;
    assert!(ok, "verify-export with a PEM file: {stderr}");

    // One character of one event's details changed: both find it, at that seq.
    let needle = "\"note\":\"note 15\"";
    let lines: Vec<&str> = text.lines().collect();
    let changed: Vec<String> = lines
        .iter()
        .map(|line| {
            if line.contains(needle) {
                assert!(line.contains(&format!("\"seq\":{tampered_seq},")), "{line}");
                line.replace(needle, "\"note\":\"note 16\"")
            } else {
                (*line).to_owned()
            }
        })
        .collect();
    let changed = changed.join("\n") + "\n";
    assert_eq!(changed.len(), text.len());
    assert_eq!(
        changed
            .bytes()
            .zip(text.bytes())
            .filter(|(a, b)| a != b)
            .count(),
        1,
        "one character differs"
    );
    let broken = audit_verifier::verify_export(&changed, &key).unwrap_err();
    assert_eq!(broken.seq, tampered_seq, "{broken:?}");
    std::fs::write(&file, &changed).unwrap();
    let (ok, _, stderr) = verify_export_cli(&app, &file, encoded).await;
    assert!(!ok, "verify-export passes a changed export");
    assert!(
        stderr.contains(&format!("chain {org}: first bad seq {tampered_seq}:")),
        "{stderr}"
    );

    // A line with a second `details` member is not the canonical line the server wrote: a
    // reader keeping the first member would see other details than the ones hashed.
    let doubled: Vec<String> = lines
        .iter()
        .map(|line| {
            if line.contains(needle) {
                line.replacen(
                    "\"details\":",
                    "\"details\":{\"note\":\"forged\"},\"details\":",
                    1,
                )
            } else {
                (*line).to_owned()
            }
        })
        .collect();
    let doubled = doubled.join("\n") + "\n";
    let broken = audit_verifier::verify_export(&doubled, &key).unwrap_err();
    assert_eq!(broken.seq, tampered_seq, "{broken:?}");

    // An export cut before its final checkpoint cannot prove it is complete.
    let cut = lines[..lines.len() - 1].join("\n") + "\n";
    assert!(audit_verifier::verify_export(&cut, &key).is_err());
    std::fs::write(&file, &cut).unwrap();
    let (ok, _, stderr) = verify_export_cli(&app, &file, encoded).await;
    assert!(!ok, "verify-export passes a cut export");
    assert!(stderr.contains("incomplete"), "{stderr}");

    // Another key does not verify the export.
    let mut wrong_key = key.clone();
    wrong_key[0] ^= 1;
    assert!(audit_verifier::verify_export(&text, &wrong_key).is_err());
}

/// Splits CSV text (RFC 4180) into rows of cells.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cell.push(c),
            (false, '"') => {
                assert!(cell.is_empty(), "a quote in the middle of a cell: {text}");
                quoted = true;
            }
            (false, ',') => row.push(std::mem::take(&mut cell)),
            (false, '\n') => {
                row.push(std::mem::take(&mut cell));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => cell.push(c),
        }
    }
    assert!(
        !quoted && cell.is_empty() && row.is_empty(),
        "ends with a newline"
    );
    rows
}

/// CSV: a header row and one row per event; cells with commas or quotes are quoted; a cell a
/// spreadsheet would run as a formula starts with `'`. Filtered exports hold only matches.
async fn the_csv_export_quotes_cells_and_guards_formulas(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let (_, alice) = app
        .account_with_session_named("alice@example.org", "Smith, \"Jo\"")
        .await;
    let org = create_org(&app, &alice, "Spreadsheet").await;
    let (mallory, _) = join(
        &app,
        &alice,
        &org,
        "mallory@example.org",
        "member",
        "=HYPERLINK(\"http://x\")",
    )
    .await;

    let answer = get(
        &app,
        &format!("/api/v1/orgs/{org}/audit-events/export?format=csv"),
        &alice,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(
        answer.headers["content-type"].to_str().unwrap(),
        "text/csv; charset=utf-8"
    );
    assert_eq!(
        answer.headers["content-disposition"].to_str().unwrap(),
        format!("attachment; filename=\"audit-{org}.csv\"")
    );
    let text = &answer.text;
    assert!(text.contains(",\"Smith, \"\"Jo\"\"\","), "{text}");
    assert!(
        text.contains(",\"'=HYPERLINK(\"\"http://x\"\")\","),
        "{text}"
    );
    let rows = parse_csv(text);
    let header = [
        "id",
        "chain",
        "seq",
        "org_id",
        "actor_type",
        "actor_id",
        "actor_name",
        "action",
        "target_type",
        "target_id",
        "outcome",
        "ip",
        "user_agent",
        "request_id",
        "time",
        "details",
        "prev_hash",
        "hash",
    ];
    assert_eq!(rows[0], header);
    let listed = all_events(&app, &alice, &org).await;
    assert_eq!(
        rows.len() - 1,
        listed.len(),
        "one row per event, the export included"
    );
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    for (row, event) in rows[1..].iter().zip(listed.iter().rev()) {
        assert_eq!(row.len(), header.len(), "{row:?}");
        assert_eq!(row[column("seq")], event["seq"].to_string());
        assert_eq!(row[column("hash")], event["hash"].as_str().unwrap());
        assert_eq!(
            row[column("prev_hash")],
            event["prev_hash"].as_str().unwrap()
        );
        assert_eq!(row[column("action")], event["action"].as_str().unwrap());
        assert_eq!(row[column("time")], event["time"].as_str().unwrap());
        assert_eq!(
            row[column("user_agent")],
            event["user_agent"].as_str().unwrap_or("")
        );
        let details: Value = serde_json::from_str(&row[column("details")]).unwrap();
        assert_eq!(details, event["details"]);
    }
    let by_action = |action: &str| {
        rows[1..]
            .iter()
            .find(|row| row[column("action")] == action)
            .unwrap()
            .clone()
    };
    assert_eq!(
        by_action("org.created")[column("actor_name")],
        "Smith, \"Jo\""
    );
    let accepted = by_action("org.invitation.accepted");
    assert_eq!(accepted[column("actor_id")], mallory);
    assert_eq!(accepted[column("actor_name")], "'=HYPERLINK(\"http://x\")");
    let exported = &rows[rows.len() - 1];
    assert_eq!(exported[column("action")], "org.audit_log.exported");
    assert_eq!(exported[column("details")], r#"{"format":"csv"}"#);
    assert_eq!(exported[column("target_type")], "org");
    assert_eq!(exported[column("target_id")], org);

    // Filtered exports hold only what matches: no anchor and no checkpoints in JSON Lines,
    // since a filtered trail is not a chain.
    let answer = get(
        &app,
        &format!("/api/v1/orgs/{org}/audit-events/export?format=csv&action=org.invitation"),
        &alice,
    )
    .await;
    let rows = parse_csv(&answer.text);
    assert_eq!(rows.len(), 3, "{}", answer.text);
    let answer = get(
        &app,
        &format!("/api/v1/orgs/{org}/audit-events/export?format=jsonl&action=org.invitation"),
        &alice,
    )
    .await;
    let lines: Vec<Value> = answer
        .text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(
        lines
            .iter()
            .map(|line| line["action"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["org.invitation.created", "org.invitation.accepted"]
    );
}

// ---------------------------------------------------------------------------------------
// 6. Checkpoints.

/// The organization lists its checkpoints, oldest first and by cursor; each is signed by the
/// published key (checked with aws-lc-rs) over the chain's hash at its `seq`; the command
/// line prints the same key.
async fn checkpoints_are_listed_and_verify_with_the_published_key(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let (_, alice) = app.account_with_session("alice@example.org").await;
    let org = create_org(&app, &alice, "Signed").await;
    let (key, key_document) = published_key(&app).await;
    for name in ["One", "Two"] {
        create_team(&app, &alice, &org, name).await;
    }
    assert!(sign_checkpoints(&app).await >= 1);
    // Signing again with nothing new signs nothing for this chain.
    sign_checkpoints(&app).await;
    for name in ["Three", "Four"] {
        create_team(&app, &alice, &org, name).await;
    }
    app.clock.advance_millis(60_000);
    assert!(sign_checkpoints(&app).await >= 1);

    let hashes: BTreeMap<i64, String> = all_events(&app, &alice, &org)
        .await
        .into_iter()
        .map(|item| {
            (
                item["seq"].as_i64().unwrap(),
                item["hash"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let list = get(
        &app,
        &format!("/api/v1/orgs/{org}/audit-checkpoints"),
        &alice,
    )
    .await
    .expect(200);
    let items = list["items"].as_array().unwrap();
    let seqs = seqs_of(items);
    assert!(seqs.contains(&3) && seqs.contains(&5), "{list}");
    assert!(
        seqs.windows(2).all(|pair| pair[0] < pair[1]),
        "oldest first: {seqs:?}"
    );
    for item in items {
        assert_eq!(item["chain"], org.as_str());
        assert_eq!(item["key_id"], key_document["key_id"]);
        let (seq, hash) = check_checkpoint(item, &key)
            .unwrap_or_else(|why| panic!("checkpoint does not verify: {why}: {item}"));
        assert_eq!(
            hashes[&seq], hash,
            "the checkpoint names the chain's hash at {seq}"
        );
        // Any change to what was signed breaks the signature.
        let mut moved = item.clone();
        moved["seq"] = json!(seq + 1);
        assert!(check_checkpoint(&moved, &key).is_err());
        let mut retimed = item.clone();
        retimed["time"] = json!("2030-01-01T00:00:00.000Z");
        assert!(check_checkpoint(&retimed, &key).is_err());
    }
    let at_5 = items.iter().find(|item| item["seq"] == 5).unwrap();
    assert_eq!(at_5["time"], "2026-11-22T00:01:00.000Z");

    // The cursor walks the same list one at a time.
    let mut walked = Vec::new();
    let mut query = String::from("limit=1");
    for _ in 0..10 {
        let page = get(
            &app,
            &format!("/api/v1/orgs/{org}/audit-checkpoints?{query}"),
            &alice,
        )
        .await
        .expect(200);
        walked.extend(page_seqs(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => query = format!("limit=1&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(walked, seqs);

    // `mamori audit public-key` prints the published key.
    let (ok, stdout, stderr) = mamori(&app, &["audit", "public-key"]).await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(&format!(
            "key id {}",
            key_document["key_id"].as_str().unwrap()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(key_document["public_key_pem"].as_str().unwrap()),
        "{stdout}"
    );
    assert_eq!(
        stdout.lines().last(),
        key_document["public_key"].as_str(),
        "{stdout}"
    );
}

// ---------------------------------------------------------------------------------------
// 7. Tampering with the store.

/// Someone with write access to the database changes one event's details, deletes one
/// event, deletes the newest, swaps two, or alters a checkpoint: `mamori audit verify` fails
/// each time and names the first bad `seq`; untouched chains still pass.
async fn tampering_with_the_stored_chain_is_found(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let (_, alice) = app.account_with_session("alice@example.org").await;
    published_key(&app).await;
    let mut orgs = Vec::new();
    for name in [
        "Changed",
        "Deleted",
        "Newest Deleted",
        "Swapped",
        "Untouched",
    ] {
        let org = create_org(&app, &alice, name).await;
        for team in 0..5 {
            create_team(&app, &alice, &org, &format!("Team {team}")).await;
        }
        assert_eq!(chain_len(&app, &org).await, 6);
        orgs.push(org);
    }
    // Checkpoints over the untouched heads first: tampering after them is still found.
    sign_checkpoints(&app).await;
    let stdout = verify_passes(&app, None).await;
    for org in &orgs {
        assert!(
            stdout.contains(&format!("chain {org}: ok, seq 1 to 6 (6 events")),
            "{stdout}"
        );
    }
    assert!(stdout.contains("chain platform: ok"), "{stdout}");

    let pool = app.database.pool().await;
    // (a) One event's details changed.
    sqlx::query("UPDATE audit_events SET details = $1 WHERE chain = $2 AND seq = 3")
        .bind(r#"{"forged":true}"#)
        .bind(&orgs[0])
        .execute(&pool)
        .await
        .unwrap();
    // (b) One event deleted.
    sqlx::query("DELETE FROM audit_events WHERE chain = $1 AND seq = 4")
        .bind(&orgs[1])
        .execute(&pool)
        .await
        .unwrap();
    // (c) The newest event deleted.
    sqlx::query("DELETE FROM audit_events WHERE chain = $1 AND seq = 6")
        .bind(&orgs[2])
        .execute(&pool)
        .await
        .unwrap();
    // (d) Two events swapped, through a temporary seq.
    for (from, to) in [(2, -1), (5, 2), (-1, 5)] {
        sqlx::query("UPDATE audit_events SET seq = $1 WHERE chain = $2 AND seq = $3")
            .bind(to as i64)
            .bind(&orgs[3])
            .bind(from as i64)
            .execute(&pool)
            .await
            .unwrap();
    }
    verify_fails_at(&app, &orgs[0], 3).await;
    verify_fails_at(&app, &orgs[1], 4).await;
    verify_fails_at(&app, &orgs[2], 6).await;
    verify_fails_at(&app, &orgs[3], 2).await;
    let stdout = verify_passes(&app, Some(&orgs[4])).await;
    assert!(
        stdout.contains(&format!("chain {}: ok", orgs[4])),
        "{stdout}"
    );
    // All chains at once: fails, naming a bad seq.
    let (ok, _, stderr) = mamori(&app, &["audit", "verify"]).await;
    assert!(!ok);
    assert!(stderr.contains("first bad seq"), "{stderr}");

    // (e) A checkpoint altered to match a rewritten head: its signature no longer holds.
    verify_passes(&app, Some("platform")).await;
    let checkpoint: i64 =
        sqlx::query("SELECT MAX(seq) AS seq FROM audit_checkpoints WHERE chain = 'platform'")
            .fetch_one(&pool)
            .await
            .unwrap()
            .get("seq");
    sqlx::query("UPDATE audit_checkpoints SET hash = $1 WHERE chain = 'platform' AND seq = $2")
        .bind("f".repeat(64))
        .bind(checkpoint)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    verify_fails_at(&app, "platform", checkpoint).await;

    // An unknown chain is an error, not a pass.
    let (ok, _, stderr) = mamori(&app, &["audit", "verify", "--org", "org_nothing"]).await;
    assert!(!ok && stderr.contains("no audit chain"), "{stderr}");
}

/// A chain of 20,000 app events is read for verification in several pages (8,192 events at
/// most each) and hashed on several threads: it verifies whole, with checkpoints between the
/// pages; a changed event in the third page, or an actor name that no longer opens in the
/// second, is named by its own `seq`.
async fn a_chain_longer_than_a_scan_page_is_verified_across_its_pages(engine: TestEngine) {
    const EVENTS: usize = 20_000;
    let app = spawn_app(engine).await;
    let (_, alice) = app.account_with_session("alice@example.org").await;
    let org = create_org(&app, &alice, "Long Chain").await;
    let (app_id, _) = register_app(&app, "Firehose").await;
    enable_app(&app, &alice, &org, &app_id).await;
    let before = chain_len(&app, &org).await;
    let principal = mamori_service::AppPrincipal {
        app_id: mamori_core::AppId::parse(&app_id).unwrap(),
    };
    // In process, 256 at a time, through the group commit as the HTTP handler sends them;
    // in two halves, each signed by a checkpoint (the first falls in the second page).
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for half in [EVENTS / 2, EVENTS] {
        let writers = (0..256).map(|_| {
            let (services, principal, org, next) = (
                app.services.clone(),
                principal.clone(),
                org.clone(),
                next.clone(),
            );
            let now = app.clock.now_timestamp();
            tokio::spawn(async move {
                loop {
                    let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if index >= half {
                        break;
                    }
                    let event = mamori_service::NewAppEvent {
                        org_id: org.clone(),
                        action: String::from("firehose.event.sent"),
                        target_type: Some(String::from("message")),
                        target_id: Some(format!("m{index}")),
                        outcome: None,
                        details: Some(json!({ "n": index })),
                    };
                    services
                        .record_app_event(
                            &principal,
                            event,
                            &mamori_service::RequestContext::default(),
                            now,
                        )
                        .await
                        .unwrap();
                }
            })
        });
        for writer in join_all(writers).await {
            writer.unwrap();
        }
        next.store(half, std::sync::atomic::Ordering::Relaxed);
        assert!(sign_checkpoints(&app).await >= 1);
    }
    let last = before + EVENTS as i64;
    assert_eq!(chain_len(&app, &org).await, last);
    let stdout = verify_passes(&app, Some(&org)).await;
    assert!(
        stdout.contains(&format!("chain {org}: ok, seq 1 to {last} ({last} events")),
        "{stdout}"
    );

    let pool = app.database.pool().await;
    let set = |column: &'static str, value: String, seq: i64| {
        let (pool, org) = (pool.clone(), org.clone());
        async move {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE audit_events SET {column} = $1 WHERE chain = $2 AND seq = $3"
            )))
            .bind(value)
            .bind(org)
            .bind(seq)
            .execute(&pool)
            .await
            .unwrap();
        }
    };
    let stored = |column: &'static str, seq: i64| {
        let (pool, org) = (pool.clone(), org.clone());
        async move {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {column} AS v FROM audit_events WHERE chain = $1 AND seq = $2"
            )))
            .bind(org)
            .bind(seq)
            .fetch_one(&pool)
            .await
            .unwrap()
            .get::<String, _>("v")
        }
    };
    // (a) Details changed in the third page.
    let details = stored("details", 17_001).await;
    set("details", String::from(r#"{"n":-1}"#), 17_001).await;
    verify_fails_at(&app, &org, 17_001).await;
    set("details", details, 17_001).await;
    verify_passes(&app, Some(&org)).await;
    // (b) An actor name in the second page replaced by one sealed for another field.
    let name = stored("actor_name_sealed", 9_000).await;
    let other_field = app
        .services
        .keyring()
        .key(&org)
        .await
        .unwrap()
        .seal("another_field", b"Firehose")
        .unwrap();
    set("actor_name_sealed", other_field, 9_000).await;
    let (ok, _, stderr) = mamori(&app, &["audit", "verify", "--org", &org]).await;
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("first bad seq 9000"), "{stderr}");
    assert!(stderr.contains("actor name cannot be opened"), "{stderr}");
    set("actor_name_sealed", name, 9_000).await;
    pool.close().await;
    verify_passes(&app, Some(&org)).await;
}

// ---------------------------------------------------------------------------------------
// 8. Retention.

/// AUD-2 on an injected clock: at 399 days nothing goes; at 401 days after the first events
/// (399 after the second batch) the first batch is gone, the second stays, the chain keeps an
/// anchor, and both `mamori audit verify` and the independent verifier still pass.
async fn retention_deletes_what_is_due_and_the_chain_still_verifies(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let (_, key_document) = published_key(&app).await;
    let key = base64_decode(key_document["public_key"].as_str().unwrap()).unwrap();
    let day = |n: i64| TEST_EPOCH.plus_days(n);

    // Day 0: the organization and two teams (seq 1 to 3), and a checkpoint of that head.
    let (_, alice) = app.account_with_session("alice@example.org").await;
    let org = create_org(&app, &alice, "Retained").await;
    create_team(&app, &alice, &org, "Day Zero A").await;
    create_team(&app, &alice, &org, "Day Zero B").await;
    app.services
        .run_audit_checkpoints_once(1, day(0), day(0))
        .await
        .unwrap();
    let anchor_hash = all_events(&app, &alice, &org).await[0]["hash"]
        .as_str()
        .unwrap()
        .to_owned();

    // Day 2: two more (seq 4 and 5).
    app.clock.set(day(2));
    let alice = app.log_in("alice@example.org", GOOD_PASSWORD).await.token;
    create_team(&app, &alice, &org, "Day Two A").await;
    create_team(&app, &alice, &org, "Day Two B").await;
    app.services
        .run_audit_checkpoints_once(1, day(2), day(2))
        .await
        .unwrap();
    let platform_before = chain_len(&app, "platform").await;

    // 399 days after the first events: nothing is due.
    let at = rfc3339(day(399));
    let (ok, stdout, stderr) = mamori(&app, &["audit", "retention", "--now", &at]).await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(&format!("at {at}: 0 audit events deleted from 0 chains")),
        "{stdout}"
    );
    assert_eq!(chain_len(&app, &org).await, 5);

    // 401 days after the first batch, 399 after the second: the first batch goes, in the
    // organization's chain (3) and the platform's (sign-up and first log-in, 2).
    let at = rfc3339(day(401));
    let (ok, stdout, stderr) = mamori(&app, &["audit", "retention", "--now", &at]).await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(&format!("at {at}: 5 audit events deleted from 2 chains")),
        "{stdout}"
    );
    assert_eq!(chain_len(&app, "platform").await, platform_before - 2);
    let pool = app.database.pool().await;
    let kept: Vec<i64> = sqlx::query("SELECT seq FROM audit_events WHERE chain = $1 ORDER BY seq")
        .bind(&org)
        .fetch_all(&pool)
        .await
        .unwrap()
        .iter()
        .map(|row| row.get("seq"))
        .collect();
    assert_eq!(kept, [4, 5]);
    let head = sqlx::query(
        "SELECT anchor_seq, anchor_hash, last_seq FROM audit_chain_heads WHERE chain = $1",
    )
    .bind(&org)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(head.get::<i64, _>("anchor_seq"), 3);
    assert_eq!(head.get::<String, _>("anchor_hash"), anchor_hash);
    assert_eq!(head.get::<i64, _>("last_seq"), 5);
    pool.close().await;
    // Running again at the same time deletes nothing more.
    let report = app.services.run_retention_once(day(401)).await.unwrap();
    assert_eq!(report.audit_events_deleted, 0);

    // The trail still verifies, in the store and in an export that starts at the anchor.
    let stdout = verify_passes(&app, None).await;
    assert!(
        stdout.contains(&format!("chain {org}: ok, seq 4 to 5 (2 events")),
        "{stdout}"
    );
    app.clock.set(day(401));
    let alice = app.log_in("alice@example.org", GOOD_PASSWORD).await.token;
    let items = all_events(&app, &alice, &org).await;
    assert_eq!(seqs_of(&items), [5, 4]);
    let text = export_jsonl(&app, &alice, &org).await;
    let anchor: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(
        (
            &anchor["anchor"]["chain"],
            &anchor["anchor"]["hash"],
            &anchor["anchor"]["seq"]
        ),
        (&json!(org), &json!(anchor_hash), &json!(3))
    );
    // Retention signed the purge at its own time, with the published key.
    assert_eq!(anchor["anchor"]["time"], rfc3339(day(401)));
    assert_eq!(anchor["anchor"]["key_id"], key_document["key_id"]);
    let verified = independently_verified(&text, &key);
    assert_eq!(verified.anchor_seq, 3);
    assert_eq!(seqs_of(&verified.events), [4, 5, 6]);
    assert!(
        verified.checkpoint_seqs.contains(&5),
        "{:?}",
        verified.checkpoint_seqs
    );
    assert_eq!(verified.checkpoint_seqs.last(), Some(&6));
    let folder = tempfile::tempdir().unwrap();
    let file = folder.path().join("retained.jsonl");
    std::fs::write(&file, &text).unwrap();
    let (ok, stdout, stderr) =
        verify_export_cli(&app, &file, key_document["public_key"].as_str().unwrap()).await;
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("seq 4 to 6 verified"), "{stdout}");
}

/// A purge by retention signs the new anchor (`JCS({anchor: true, chain, hash, seq, time})`),
/// so both verifiers tell it from a truncation: events deleted by SQL with the anchor moved
/// by hand, even to a `seq` an ordinary checkpoint covers, fail verification in the store and
/// in an export, naming the anchor's `seq`.
async fn retention_signs_its_anchor_and_a_truncation_is_named(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let (key, key_document) = published_key(&app).await;
    let encoded_key = key_document["public_key"].as_str().unwrap().to_owned();
    let day = |n: i64| TEST_EPOCH.plus_days(n);

    // Day 0: seq 1 to 3, checkpointed at 3. Day 2: seq 4 and 5, checkpointed at 5; then 6.
    let (_, alice) = app.account_with_session("alice@example.org").await;
    let org = create_org(&app, &alice, "Purged").await;
    create_team(&app, &alice, &org, "A").await;
    create_team(&app, &alice, &org, "B").await;
    app.services
        .run_audit_checkpoints_once(1, day(0), day(0))
        .await
        .unwrap();
    app.clock.set(day(2));
    let alice = app.log_in("alice@example.org", GOOD_PASSWORD).await.token;
    create_team(&app, &alice, &org, "C").await;
    create_team(&app, &alice, &org, "D").await;
    app.services
        .run_audit_checkpoints_once(1, day(2), day(2))
        .await
        .unwrap();
    create_team(&app, &alice, &org, "E").await;

    // Day 401: retention purges 1 to 3 and signs the anchor at 3, in place of the ordinary
    // checkpoint there; the listing of checkpoints starts after the anchor.
    let report = app.services.run_retention_once(day(401)).await.unwrap();
    assert!(report.audit_events_deleted >= 3, "{report:?}");
    verify_passes(&app, Some(&org)).await;
    app.clock.set(day(401));
    let alice = app.log_in("alice@example.org", GOOD_PASSWORD).await.token;
    let listed = get(
        &app,
        &format!("/api/v1/orgs/{org}/audit-checkpoints"),
        &alice,
    )
    .await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let listed: Value = serde_json::from_str(&listed.text).unwrap();
    let listed_seqs: Vec<i64> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(listed_seqs, [5], "{listed}");
    let text = export_jsonl(&app, &alice, &org).await;
    let verified = independently_verified(&text, &key);
    assert_eq!(verified.anchor_seq, 3);
    let folder = tempfile::tempdir().unwrap();
    let file = folder.path().join("purged.jsonl");
    std::fs::write(&file, &text).unwrap();
    let (ok, stdout, stderr) = verify_export_cli(&app, &file, &encoded_key).await;
    assert!(ok, "{stdout}\n{stderr}");

    // The same anchor line with its signature taken off, or moved to another seq, no longer
    // passes the offline verifiers.
    let first_line = text.lines().next().unwrap();
    let mut unsigned: Value = serde_json::from_str(first_line).unwrap();
    for field in ["key_id", "signature", "time"] {
        unsigned["anchor"].as_object_mut().unwrap().remove(field);
    }
    let stripped = text.replacen(first_line, &unsigned.to_string(), 1);
    let broken = audit_verifier::verify_export(&stripped, &key).unwrap_err();
    assert_eq!(broken.seq, 3, "{broken:?}");
    std::fs::write(&file, &stripped).unwrap();
    let (ok, _, stderr) = verify_export_cli(&app, &file, &encoded_key).await;
    assert!(!ok, "verify-export passes an unsigned anchor");
    assert!(stderr.contains("first bad seq 3:"), "{stderr}");

    // Someone with the database deletes 4 and 5 and moves the anchor to 5, where an ordinary
    // checkpoint is: no purge was signed for 5, and both verifiers name it.
    let pool = app.database.pool().await;
    let hash_5: String = sqlx::query("SELECT hash FROM audit_events WHERE chain = $1 AND seq = 5")
        .bind(&org)
        .fetch_one(&pool)
        .await
        .unwrap()
        .get("hash");
    sqlx::query("DELETE FROM audit_events WHERE chain = $1 AND seq <= 5")
        .bind(&org)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM audit_checkpoints WHERE chain = $1 AND seq < 5")
        .bind(&org)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_chain_heads SET anchor_seq = 5, anchor_hash = $1 WHERE chain = $2")
        .bind(&hash_5)
        .bind(&org)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    verify_fails_at(&app, &org, 5).await;
    let (_, stdout, stderr) = mamori(&app, &["audit", "verify", "--org", &org]).await;
    assert!(stderr.contains("truncated"), "{stdout}\n{stderr}");
    let text = export_jsonl(&app, &alice, &org).await;
    let broken = audit_verifier::verify_export(&text, &key).unwrap_err();
    assert_eq!(broken.seq, 5, "{broken:?}");
    std::fs::write(&file, &text).unwrap();
    let (ok, _, stderr) = verify_export_cli(&app, &file, &encoded_key).await;
    assert!(!ok, "verify-export passes a truncated chain");
    assert!(stderr.contains("first bad seq 5:"), "{stderr}");
}
