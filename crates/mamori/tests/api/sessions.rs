//! Sessions as their holder sees them: the list at `GET /api/v1/me/sessions` (fields, the one
//! current session, user agent and IP, `limit`/`cursor` pagination without duplicates or gaps,
//! 422 on bad parameters), revoking one's own sessions and not another account's, the 12-hour
//! idle timeout with touch on use, the 30-day absolute lifetime, and 401 for expired, garbage,
//! revoked and deleted-account tokens. Time moves only by the manual clock.

// Test code: a failed unwrap or a panic is a failed test (clippy.toml allows them in
// `#[test]` functions, not in the helpers and engine-generic bodies here).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mamori_testkit::{GOOD_PASSWORD, TestApp, TestEngine, expect_problem, json_of, spawn_app};
use reqwest::Method;
use serde_json::{Value, json};

mamori_testkit::engine_tests!(
    the_list_shows_each_session_of_the_holder,
    pagination_walks_every_session_once,
    pagination_survives_revoking_the_cursor_session,
    bad_list_parameters_are_422,
    revoking_sessions,
    idle_sessions_expire_after_12_hours,
    sessions_in_use_stay_alive,
    sessions_end_after_30_days_even_in_use,
    bad_bearer_tokens_are_401,
    sessions_of_a_deleted_account_are_401,
    revocations_reach_every_node,
);

const ADA: &str = "ada@example.com";
const BOB: &str = "bob@example.com";
const HOUR: i64 = 3_600_000;

/// A logged-in session: its token and ID.
struct Login {
    token: String,
    id: String,
}

async fn log_in(app: &TestApp, email: &str, headers: &[(&str, &str)]) -> Login {
    let mut request = app
        .client
        .post(app.url("/api/v1/sessions"))
        .json(&json!({ "email": email, "password": GOOD_PASSWORD }));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = json_of(request.send().await.unwrap(), 201).await;
    Login {
        token: body["token"].as_str().unwrap().to_owned(),
        id: body["session_id"].as_str().unwrap().to_owned(),
    }
}

/// Sends a GET with the given `Authorization` header value and asserts the answer: a problem
/// with `code` for a 4xx status, JSON otherwise. Returns the body.
async fn check(
    app: &TestApp,
    authorization: Option<&str>,
    path: &str,
    status: u16,
    code: Option<&str>,
) -> Value {
    let mut request = app.client.get(app.url(path));
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    let response = request.send().await.unwrap();
    if status == 401 {
        assert_eq!(
            response
                .headers()
                .get("www-authenticate")
                .map(|value| value.to_str().unwrap()),
            Some("Bearer"),
            "{authorization:?} {path}"
        );
    }
    match code {
        Some(code) => expect_problem(response, status, code).await,
        None => json_of(response, status).await,
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn me_status(app: &TestApp, token: &str) -> u16 {
    app.get("/api/v1/me", Some(token)).await.status().as_u16()
}

/// Deletes the account behind `token` with its password; the answer's status.
async fn delete_me(app: &TestApp, token: &str) -> u16 {
    app.request(
        Method::DELETE,
        "/api/v1/me",
        Some(token),
        Some(&json!({ "password": GOOD_PASSWORD })),
    )
    .await
    .status()
    .as_u16()
}

/// Walks the session list with `limit` per page; asserts every page's shape; returns the IDs.
async fn walk(app: &TestApp, token: &str, limit: Option<usize>) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let mut query = Vec::new();
        if let Some(limit) = limit {
            query.push(format!("limit={limit}"));
        }
        if let Some(cursor) = &cursor {
            query.push(format!("cursor={cursor}"));
        }
        let path = format!("/api/v1/me/sessions?{}", query.join("&"));
        let page = check(app, Some(&bearer(token)), &path, 200, None).await;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= limit.unwrap_or(50), "{path}: {page}");
        ids.extend(
            items
                .iter()
                .map(|item| item["id"].as_str().unwrap().to_owned()),
        );
        match &page["next_cursor"] {
            Value::Null => return ids,
            Value::String(next) => {
                assert_eq!(items.len(), limit.unwrap_or(50), "a short page mid-list");
                cursor = Some(next.clone());
            }
            other => panic!("next_cursor {other}"),
        }
    }
    panic!("the list never ends");
}

async fn the_list_shows_each_session_of_the_holder(engine: TestEngine) {
    let app = spawn_app(engine).await;
    app.sign_up(ADA, GOOD_PASSWORD, "Ada").await;
    app.sign_up(BOB, GOOD_PASSWORD, "Bob").await;
    let long_agent = "L".repeat(600);
    let first = log_in(&app, ADA, &[("user-agent", "Firefox/140.0 (test)")]).await;
    app.clock.advance_millis(1_000);
    let second = log_in(
        &app,
        ADA,
        &[
            ("user-agent", long_agent.as_str()),
            // From an untrusted peer this header is ignored.
            ("x-forwarded-for", "203.0.113.9"),
        ],
    )
    .await;
    let bob = log_in(&app, BOB, &[("user-agent", "Bob's browser")]).await;

    for (current, other) in [(&first, &second), (&second, &first)] {
        let page = check(
            &app,
            Some(&bearer(&current.token)),
            "/api/v1/me/sessions",
            200,
            None,
        )
        .await;
        assert_eq!(page["next_cursor"], Value::Null);
        let items = page["items"].as_array().unwrap();
        // Oldest first, and only Ada's.
        let ids: Vec<&str> = items
            .iter()
            .map(|item| item["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [first.id.as_str(), second.id.as_str()]);
        assert!(!ids.contains(&bob.id.as_str()));
        let currents: Vec<&Value> = items
            .iter()
            .filter(|item| item["current"] == true)
            .collect();
        assert_eq!(currents.len(), 1, "{page}");
        assert_eq!(currents[0]["id"], current.id.as_str());
        let other_item = items
            .iter()
            .find(|item| item["id"] == other.id.as_str())
            .unwrap();
        assert_eq!(other_item["current"], false);
        for item in items {
            let fields: Vec<&String> = item.as_object().unwrap().keys().collect();
            for field in [
                "id",
                "created_at",
                "last_seen_at",
                "expires_at",
                "ip",
                "user_agent",
                "current",
            ] {
                assert!(item.get(field).is_some(), "{field} missing: {fields:?}");
            }
            assert_eq!(item["ip"], "127.0.0.1");
        }
        assert_eq!(items[0]["user_agent"], "Firefox/140.0 (test)");
        // A long user agent is kept to its first 512 characters.
        assert_eq!(items[1]["user_agent"], &long_agent[..512]);
        assert_eq!(items[0]["created_at"], "2026-11-22T00:00:00.000Z");
        assert_eq!(items[0]["last_seen_at"], "2026-11-22T00:00:00.000Z");
        assert_eq!(items[0]["expires_at"], "2026-11-22T12:00:00.000Z");
        assert_eq!(items[1]["created_at"], "2026-11-22T00:00:01.000Z");
        assert_eq!(items[1]["expires_at"], "2026-11-22T12:00:01.000Z");
    }
    let page = check(
        &app,
        Some(&bearer(&bob.token)),
        "/api/v1/me/sessions",
        200,
        None,
    )
    .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["user_agent"], "Bob's browser");
    assert_eq!(page["items"][0]["current"], true);
}

async fn pagination_walks_every_session_once(engine: TestEngine) {
    let app = spawn_app(engine).await;
    app.sign_up(ADA, GOOD_PASSWORD, "Ada").await;
    let mut logins = Vec::new();
    for _ in 0..5 {
        logins.push(log_in(&app, ADA, &[]).await);
        app.clock.advance_millis(1_000);
    }
    // Two sessions created in the same millisecond still get a place each.
    logins.push(log_in(&app, ADA, &[]).await);
    logins.push(log_in(&app, ADA, &[]).await);
    let mut expected: Vec<String> = logins.iter().map(|login| login.id.clone()).collect();
    expected[5..].sort();
    let token = &logins[0].token;
    for limit in [Some(1), Some(2), Some(3), Some(7), Some(500), None] {
        let ids = walk(&app, token, limit).await;
        assert_eq!(ids, expected, "limit {limit:?}");
    }
    // Another account's list is its own.
    let (_, bob) = app.account_with_session(BOB).await;
    assert_eq!(walk(&app, &bob, Some(2)).await.len(), 1);
}

async fn pagination_survives_revoking_the_cursor_session(engine: TestEngine) {
    let app = spawn_app(engine).await;
    app.sign_up(ADA, GOOD_PASSWORD, "Ada").await;
    let mut logins = Vec::new();
    for _ in 0..5 {
        logins.push(log_in(&app, ADA, &[]).await);
        app.clock.advance_millis(1_000);
    }
    let token = &logins[4].token;
    let page = check(
        &app,
        Some(&bearer(token)),
        "/api/v1/me/sessions?limit=2",
        200,
        None,
    )
    .await;
    // Cursors are opaque; this one points just past the second session.
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    assert_eq!(page["items"][1]["id"], logins[1].id.as_str());
    // The last session of the page is revoked before the next page is read.
    let response = app
        .request(
            Method::DELETE,
            &format!("/api/v1/me/sessions/{}", logins[1].id),
            Some(token),
            None,
        )
        .await;
    assert_eq!(response.status(), 204);
    let next = check(
        &app,
        Some(&bearer(token)),
        &format!("/api/v1/me/sessions?limit=2&cursor={cursor}"),
        200,
        None,
    )
    .await;
    let ids: Vec<&str> = next["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [logins[2].id.as_str(), logins[3].id.as_str()],
        "the sessions after the cursor: {next}"
    );
}

async fn bad_list_parameters_are_422(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let (account, token) = app.account_with_session(ADA).await;
    let authorization = bearer(&token);
    for (query, field) in [
        ("limit=0", Some("limit")),
        ("limit=501", Some("limit")),
        ("limit=100000000000", None),
        ("limit=-1", None),
        ("limit=ten", None),
        ("limit=", None),
        ("limit=1.5", None),
        ("cursor=garbage", Some("cursor")),
        ("cursor=", Some("cursor")),
        ("limit=2&cursor=ses_!!", Some("cursor")),
        ("cursor=ses_", Some("cursor")),
        (&format!("cursor={}", account.id), Some("cursor")),
        ("page=2", None),
        ("limit=2&offset=4", None),
        ("limit=2&limit=3", None),
    ] {
        let path = format!("/api/v1/me/sessions?{query}");
        let problem = check(
            &app,
            Some(&authorization),
            &path,
            422,
            Some("validation_failed"),
        )
        .await;
        let errors = problem["errors"].as_array().unwrap();
        assert!(!errors.is_empty(), "{query}: {problem}");
        if let Some(field) = field {
            assert_eq!(errors[0]["field"], field, "{query}: {problem}");
        }
    }
    // The bounds themselves are fine.
    for query in ["limit=1", "limit=500"] {
        let path = format!("/api/v1/me/sessions?{query}");
        let page = check(&app, Some(&authorization), &path, 200, None).await;
        assert_eq!(page["items"].as_array().unwrap().len(), 1);
    }
}

async fn revoking_sessions(engine: TestEngine) {
    let app = spawn_app(engine).await;
    app.sign_up(ADA, GOOD_PASSWORD, "Ada").await;
    app.sign_up(BOB, GOOD_PASSWORD, "Bob").await;
    let first = log_in(&app, ADA, &[]).await;
    let second = log_in(&app, ADA, &[]).await;
    let bob = log_in(&app, BOB, &[]).await;
    let revoke = |id: &str| format!("/api/v1/me/sessions/{id}");

    let response = app
        .request(
            Method::DELETE,
            &revoke(&second.id),
            Some(&first.token),
            None,
        )
        .await;
    assert_eq!(response.status(), 204);
    assert_eq!(me_status(&app, &second.token).await, 401);
    assert_eq!(me_status(&app, &first.token).await, 200);
    let ids = walk(&app, &first.token, None).await;
    assert_eq!(ids, [first.id.as_str()]);

    // Gone already, another account's, or not a session at all: 404, and nothing happens.
    for id in [
        second.id.as_str(),
        bob.id.as_str(),
        "garbage",
        "ses_aaaaaaaaaaaaaaaaaaaaaaaaaa",
        "ses_AAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        expect_problem(
            app.request(Method::DELETE, &revoke(id), Some(&first.token), None)
                .await,
            404,
            "not_found",
        )
        .await;
    }
    assert_eq!(me_status(&app, &bob.token).await, 200);
    assert_eq!(walk(&app, &bob.token, None).await, [bob.id.as_str()]);

    // Without a session, nothing is revoked.
    expect_problem(
        app.request(Method::DELETE, &revoke(&bob.id), None, None)
            .await,
        401,
        "unauthenticated",
    )
    .await;
    assert_eq!(me_status(&app, &bob.token).await, 200);

    // Revoking the current session ends it.
    let response = app
        .request(Method::DELETE, &revoke(&first.id), Some(&first.token), None)
        .await;
    assert_eq!(response.status(), 204);
    assert_eq!(me_status(&app, &first.token).await, 401);
}

async fn idle_sessions_expire_after_12_hours(engine: TestEngine) {
    let app = spawn_app(engine).await;
    app.sign_up(ADA, GOOD_PASSWORD, "Ada").await;
    let used = log_in(&app, ADA, &[]).await;
    let idle = log_in(&app, ADA, &[]).await;
    let idle_too = log_in(&app, ADA, &[]).await;
    app.clock.advance_millis(12 * HOUR - 1);
    assert_eq!(me_status(&app, &used.token).await, 200);
    app.clock.advance_millis(1);
    // Exactly twelve hours after its last use, a session is over.
    for token in [&idle.token, &idle_too.token] {
        check(
            &app,
            Some(&bearer(token)),
            "/api/v1/me",
            401,
            Some("unauthenticated"),
        )
        .await;
    }
    // Used a millisecond ago: alive.
    assert_eq!(me_status(&app, &used.token).await, 200);
    // The expired sessions are not listed.
    assert_eq!(walk(&app, &used.token, None).await, [used.id.as_str()]);
    // A new login works.
    let fresh = log_in(&app, ADA, &[]).await;
    assert_eq!(me_status(&app, &fresh.token).await, 200);
}

async fn sessions_in_use_stay_alive(engine: TestEngine) {
    let app = spawn_app(engine).await;
    app.sign_up(ADA, GOOD_PASSWORD, "Ada").await;
    let session = log_in(&app, ADA, &[]).await;
    for _ in 0..4 {
        app.clock.advance_millis(11 * HOUR);
        assert_eq!(me_status(&app, &session.token).await, 200);
    }
    let page = check(
        &app,
        Some(&bearer(&session.token)),
        "/api/v1/me/sessions",
        200,
        None,
    )
    .await;
    // Last used 44 hours in; idle until 12 hours later.
    assert_eq!(page["items"][0]["created_at"], "2026-11-22T00:00:00.000Z");
    assert_eq!(page["items"][0]["last_seen_at"], "2026-11-23T20:00:00.000Z");
    assert_eq!(page["items"][0]["expires_at"], "2026-11-24T08:00:00.000Z");
    app.clock.advance_millis(12 * HOUR);
    check(
        &app,
        Some(&bearer(&session.token)),
        "/api/v1/me",
        401,
        Some("unauthenticated"),
    )
    .await;
}

async fn sessions_end_after_30_days_even_in_use(engine: TestEngine) {
    let app = spawn_app(engine).await;
    app.sign_up(ADA, GOOD_PASSWORD, "Ada").await;
    let session = log_in(&app, ADA, &[]).await;
    let bearer = bearer(&session.token);
    for _ in 0..71 {
        app.clock.advance_millis(10 * HOUR);
        assert_eq!(me_status(&app, &session.token).await, 200);
    }
    // 710 hours in: the idle end (722 h) is past the absolute end (720 h).
    let page = check(&app, Some(&bearer), "/api/v1/me/sessions", 200, None).await;
    assert_eq!(page["items"][0]["expires_at"], "2026-12-22T00:00:00.000Z");
    app.clock.advance_millis(10 * HOUR - 1);
    assert_eq!(me_status(&app, &session.token).await, 200);
    app.clock.advance_millis(1);
    check(
        &app,
        Some(&bearer),
        "/api/v1/me",
        401,
        Some("unauthenticated"),
    )
    .await;
    check(
        &app,
        Some(&bearer),
        "/api/v1/me/sessions",
        401,
        Some("unauthenticated"),
    )
    .await;
    // The password still opens a new session.
    let fresh = log_in(&app, ADA, &[]).await;
    assert_eq!(me_status(&app, &fresh.token).await, 200);
}

async fn bad_bearer_tokens_are_401(engine: TestEngine) {
    let app = spawn_app(engine).await;
    app.sign_up(ADA, GOOD_PASSWORD, "Ada").await;
    let live = log_in(&app, ADA, &[]).await;
    let logged_out = log_in(&app, ADA, &[]).await;
    let response = app
        .request(
            Method::DELETE,
            "/api/v1/sessions/current",
            Some(&logged_out.token),
            None,
        )
        .await;
    assert_eq!(response.status(), 204);
    let expired = log_in(&app, ADA, &[]).await;
    app.clock.advance_millis(6 * HOUR);
    assert_eq!(me_status(&app, &live.token).await, 200);
    app.clock.advance_millis(6 * HOUR);

    let well_formed_unknown = format!("mms_{}", "A".repeat(43));
    let mut altered = live.token.clone();
    let last = altered.pop().unwrap();
    altered.push(if last == 'A' { 'B' } else { 'A' });
    let authorizations = [
        bearer(&expired.token),
        bearer(&logged_out.token),
        bearer(&well_formed_unknown),
        bearer(&altered),
        bearer(&format!("{}x", live.token)),
        bearer(&live.token[..live.token.len() - 1]),
        bearer(&live.token.replacen("mms_", "mmo_", 1)),
        bearer(&live.token.replacen("mms_", "mma_", 1)),
        bearer("garbage"),
        bearer(""),
        String::from("Bearer"),
        format!("Basic {}", "YWRhQGV4YW1wbGUuY29tOnBhc3N3b3Jk"),
        format!("Token {}", live.token),
        live.token.clone(),
    ];
    for authorization in &authorizations {
        for path in ["/api/v1/me", "/api/v1/me/sessions"] {
            check(
                &app,
                Some(authorization),
                path,
                401,
                Some("unauthenticated"),
            )
            .await;
        }
    }
    check(&app, None, "/api/v1/me", 401, Some("unauthenticated")).await;
    // The live token still works, with the scheme in any case.
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let me = check(
            &app,
            Some(&format!("{scheme} {}", live.token)),
            "/api/v1/me",
            200,
            None,
        )
        .await;
        assert_eq!(me["email"], ADA);
    }
}

async fn sessions_of_a_deleted_account_are_401(engine: TestEngine) {
    let app = spawn_app(engine).await;
    app.sign_up(ADA, GOOD_PASSWORD, "Ada").await;
    let first = log_in(&app, ADA, &[]).await;
    let second = log_in(&app, ADA, &[]).await;
    let (_, bob) = app.account_with_session(BOB).await;
    assert_eq!(delete_me(&app, &first.token).await, 204);
    for token in [&first.token, &second.token] {
        for path in ["/api/v1/me", "/api/v1/me/sessions"] {
            check(
                &app,
                Some(&bearer(token)),
                path,
                401,
                Some("unauthenticated"),
            )
            .await;
        }
        expect_problem(
            app.request(
                Method::PATCH,
                "/api/v1/me",
                Some(token),
                Some(&json!({ "display_name": "Ghost" })),
            )
            .await,
            401,
            "unauthenticated",
        )
        .await;
    }
    // Later on, too.
    app.clock.advance_millis(HOUR);
    assert_eq!(me_status(&app, &second.token).await, 401);
    assert_eq!(me_status(&app, &bob).await, 200);
}

/// Sessions and accounts are answered from memory on each node (the credential cache): a
/// revocation on one node takes effect there before it answers, and on every other node once
/// that node has synced its cache (every 250 ms while it serves).
async fn revocations_reach_every_node(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let mut settings = app.settings.clone();
    settings.listen = "127.0.0.1:0".parse().unwrap();
    let node_b =
        mamori_testkit::spawn_with(app.database.clone(), settings, app.clock.clone()).await;
    app.sign_up(ADA, GOOD_PASSWORD, "Ada").await;
    let first = log_in(&app, ADA, &[]).await;
    let second = log_in(&app, ADA, &[]).await;
    node_b.services.sync_credential_cache().await.unwrap();
    app.services.sync_credential_cache().await.unwrap();
    // Both nodes have read both sessions and the account.
    for node in [&app, &node_b] {
        for login in [&first, &second] {
            let me = json_of(node.get("/api/v1/me", Some(&login.token)).await, 200).await;
            assert_eq!(me["display_name"], "Ada");
        }
    }

    // Revoked on A: refused on A at once, and on B after its next sync.
    let response = app
        .request(
            Method::DELETE,
            &format!("/api/v1/me/sessions/{}", second.id),
            Some(&first.token),
            None,
        )
        .await;
    assert_eq!(response.status(), 204);
    assert_eq!(me_status(&app, &second.token).await, 401);
    node_b.services.sync_credential_cache().await.unwrap();
    assert_eq!(me_status(&node_b, &second.token).await, 401);
    assert_eq!(me_status(&node_b, &first.token).await, 200);

    // An account change made on B shows on A after A's sync, and on B at once.
    let response = node_b
        .request(
            Method::PATCH,
            "/api/v1/me",
            Some(&first.token),
            Some(&json!({ "display_name": "Ada L." })),
        )
        .await;
    assert_eq!(response.status(), 200);
    let me = json_of(node_b.get("/api/v1/me", Some(&first.token)).await, 200).await;
    assert_eq!(me["display_name"], "Ada L.");
    app.services.sync_credential_cache().await.unwrap();
    let me = json_of(app.get("/api/v1/me", Some(&first.token)).await, 200).await;
    assert_eq!(me["display_name"], "Ada L.");

    // Deleting the account on B ends its sessions on A too.
    assert_eq!(delete_me(&node_b, &first.token).await, 204);
    assert_eq!(me_status(&node_b, &first.token).await, 401);
    app.services.sync_credential_cache().await.unwrap();
    assert_eq!(me_status(&app, &first.token).await, 401);
}
