//! Access logs (LOG-1, LOG-2, LOG-3). Every request is logged, whatever its answer, with its
//! UTC time from the server's clock, method, path, status, client IP, user agent, request ID,
//! and the principal and organization where known; secret query values never reach the log;
//! only an operator token reads it, with filters and keyset pages; retention deletes what is
//! older than the cutoff and keeps the rest; nothing is logged when the log is off; and what is
//! still queued when the server stops is written.
//!
//! Tests wait for the writer with `TestApp::flush_access_logs`, never by sleeping.

// Test code: a failed unwrap or a panic is a failed test (clippy.toml allows them in
// `#[test]` functions, not in the helpers and engine-generic bodies here).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mamori_core::{AccountId, OrgId, Timestamp};
use mamori_service::{AccessLogEntry, LoggedPrincipal};
use mamori_testkit::{
    TEST_EPOCH, TestApp, TestEngine, expect_problem, json_of, spawn_app, spawn_with, test_settings,
};
use reqwest::{Method, Response};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Arc;

mamori_testkit::engine_tests!(
    requests_of_every_kind_are_logged,
    query_secrets_never_reach_the_log,
    only_an_operator_token_reads_the_log,
    pages_and_filters,
    bad_filters_are_refused,
    retention_deletes_only_what_is_older_than_the_cutoff,
    the_client_ip_behind_a_trusted_proxy,
    nothing_is_logged_when_the_log_is_off,
    whats_queued_is_written_at_shutdown,
);

const ACCESS_LOGS: &str = "/api/v1/operator/access-logs";

/// Sends a request with a chosen request ID, and optionally a bearer token and extra headers.
async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    request_id: &str,
    body: Option<&Value>,
) -> Response {
    let mut request = app
        .client
        .request(method, app.url(path))
        .header("x-request-id", request_id);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send().await.unwrap()
}

/// One page of the access log, after everything answered so far is stored.
async fn read_logs(app: &TestApp, operator: &str, query: &str) -> Value {
    app.flush_access_logs().await;
    let path = if query.is_empty() {
        String::from(ACCESS_LOGS)
    } else {
        format!("{ACCESS_LOGS}?{query}")
    };
    json_of(app.get(&path, Some(operator)).await, 200).await
}

/// Every page of the access log for `query`, newest first.
async fn all_logs(app: &TestApp, operator: &str, query: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut page_query = format!("limit=500&{query}");
        if let Some(cursor) = &cursor {
            page_query.push_str(&format!("&cursor={cursor}"));
        }
        let page = read_logs(app, operator, &page_query).await;
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return items,
        }
    }
}

/// The one log of the request with this ID.
fn by_request_id<'a>(items: &'a [Value], request_id: &str) -> &'a Value {
    let found: Vec<&Value> = items
        .iter()
        .filter(|item| item["request_id"] == request_id)
        .collect();
    assert_eq!(found.len(), 1, "{request_id}: {items:#?}");
    found[0]
}

async fn register_app(app: &TestApp, operator: &str) -> Value {
    json_of(
        app.post(
            "/api/v1/operator/apps",
            Some(operator),
            &json!({ "name": "Billing" }),
        )
        .await,
        201,
    )
    .await
}

async fn requests_of_every_kind_are_logged(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let operator = app.operator_token().await;
    let (account, session) = app.account_with_session("ada@example.com").await;
    let billing = register_app(&app, &operator).await;
    let app_secret = billing["secret"].as_str().unwrap();
    let stranger_org = "org_aaaaaaaaaaaaaaaaaaaaaaaaaa";

    app.clock.set(TEST_EPOCH.plus_seconds(10));
    let org = json_of(
        send(
            &app,
            Method::POST,
            "/api/v1/orgs",
            Some(&session),
            "create-org",
            Some(&json!({ "name": "Compiler Works" })),
        )
        .await,
        201,
    )
    .await;
    let org_id = org["id"].as_str().unwrap();
    app.clock.set(TEST_EPOCH.plus_seconds(11));
    let calls: Vec<(Method, String, Option<&str>, &str, u16)> = vec![
        (Method::GET, String::from("/healthz"), None, "health", 200),
        (
            Method::GET,
            String::from("/nowhere"),
            None,
            "unknown-route",
            404,
        ),
        (
            Method::DELETE,
            String::from("/healthz"),
            None,
            "wrong-method",
            405,
        ),
        (
            Method::GET,
            String::from("/api/v1/me"),
            None,
            "no-credential",
            401,
        ),
        (
            Method::GET,
            String::from("/api/v1/me"),
            Some(&session),
            "me",
            200,
        ),
        (
            Method::GET,
            format!("/api/v1/orgs/{org_id}/members"),
            Some(&session),
            "members",
            200,
        ),
        (
            Method::GET,
            format!("/api/v1/orgs/{stranger_org}/members"),
            Some(&session),
            "stranger-org",
            404,
        ),
        (
            Method::GET,
            format!("/api/v1/app/orgs/{org_id}/members/{}", account.id),
            Some(app_secret),
            "app-asks",
            404,
        ),
        // Refused for its kind, the credential still names who tried.
        (
            Method::GET,
            String::from(ACCESS_LOGS),
            Some(&session),
            "account-on-operator-route",
            403,
        ),
        (
            Method::GET,
            String::from("/api/v1/me"),
            Some(&operator),
            "operator-on-account-route",
            403,
        ),
    ];
    for (method, path, token, request_id, status) in &calls {
        let response = send(&app, method.clone(), path, *token, request_id, None).await;
        assert_eq!(response.status(), *status, "{request_id}");
    }
    let agent = "Mozilla/5.0 ".repeat(60);
    let response = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "with-agent")
        .header("user-agent", &agent)
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let items = all_logs(&app, &operator, "").await;
    let account_id = account.id.as_str();
    let operator_id = {
        let me = by_request_id(&items, "operator-on-account-route");
        me["principal_id"].as_str().unwrap().to_owned()
    };
    assert!(operator_id.starts_with("opt_"), "{operator_id}");
    let app_id = billing["id"].as_str().unwrap();
    let account_principal = Some(("account", account_id));
    // (request ID, "method path status", principal, organization)
    let expected = [
        (
            "create-org",
            String::from("POST /api/v1/orgs 201"),
            account_principal,
            None,
        ),
        ("health", String::from("GET /healthz 200"), None, None),
        (
            "unknown-route",
            String::from("GET /nowhere 404"),
            None,
            None,
        ),
        (
            "wrong-method",
            String::from("DELETE /healthz 405"),
            None,
            None,
        ),
        (
            "no-credential",
            String::from("GET /api/v1/me 401"),
            None,
            None,
        ),
        (
            "me",
            String::from("GET /api/v1/me 200"),
            account_principal,
            None,
        ),
        (
            "members",
            format!("GET /api/v1/orgs/{org_id}/members 200"),
            account_principal,
            Some(org_id),
        ),
        (
            "stranger-org",
            format!("GET /api/v1/orgs/{stranger_org}/members 404"),
            account_principal,
            Some(stranger_org),
        ),
        (
            "app-asks",
            format!("GET /api/v1/app/orgs/{org_id}/members/{account_id} 404"),
            Some(("app", app_id)),
            Some(org_id),
        ),
        (
            "account-on-operator-route",
            format!("GET {ACCESS_LOGS} 403"),
            account_principal,
            None,
        ),
        (
            "operator-on-account-route",
            String::from("GET /api/v1/me 403"),
            Some(("operator", operator_id.as_str())),
            None,
        ),
    ];
    for (request_id, call, principal, org) in expected {
        let log = by_request_id(&items, request_id);
        let seen = format!(
            "{} {} {}",
            log["method"].as_str().unwrap(),
            log["path"].as_str().unwrap(),
            log["status"]
        );
        assert_eq!(seen, call, "{log}");
        assert_eq!(
            log["principal_type"].as_str(),
            principal.map(|(kind, _)| kind),
            "{log}"
        );
        assert_eq!(
            log["principal_id"].as_str(),
            principal.map(|(_, id)| id),
            "{log}"
        );
        assert_eq!(log["org_id"].as_str(), org, "{log}");
        assert_eq!(log["query"], Value::Null, "{log}");
        // The peer, since no proxy is trusted: X-Forwarded-For is not believed.
        assert_eq!(log["client_ip"], "127.0.0.1", "{log}");
        assert!(log["latency_us"].as_i64().unwrap() >= 0, "{log}");
        assert!(log["id"].as_str().unwrap().len() > 26, "{log}");
    }
    // Times come from the server's clock, in UTC (LOG-3).
    assert_eq!(
        by_request_id(&items, "create-org")["logged_at"],
        "2026-11-22T00:00:10.000Z"
    );
    assert_eq!(
        by_request_id(&items, "health")["logged_at"],
        "2026-11-22T00:00:11.000Z"
    );
    let with_agent = by_request_id(&items, "with-agent");
    assert_eq!(with_agent["client_ip"], "127.0.0.1");
    assert_eq!(
        with_agent["user_agent"].as_str().unwrap(),
        &agent[..512],
        "user agents are cut to 512 characters"
    );
    // A request without an ID of its own gets the server's, and that one is logged.
    let response = app.get("/healthz", None).await;
    let made_up = response
        .headers()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let items = all_logs(&app, &operator, "path_prefix=/healthz").await;
    by_request_id(&items, &made_up);
    // The operator's own reads are logged too, with the operator as principal.
    let reads = all_logs(
        &app,
        &operator,
        &format!("principal={operator_id}&method=GET"),
    )
    .await;
    assert!(
        reads
            .iter()
            .any(|item| item["path"] == ACCESS_LOGS && item["status"] == 200),
        "{reads:#?}"
    );
}

async fn query_secrets_never_reach_the_log(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let operator = app.operator_token().await;
    let (_, session) = app.account_with_session("ada@example.com").await;
    // Upper case letters never occur in IDs or generated request IDs, so a match would be a leak.
    let secret = "SeCrEtVaLuE";
    let cases = [
        (
            format!("{ACCESS_LOGS}?token={secret}&limit=5"),
            Some("token=REDACTED&limit=5"),
        ),
        (
            format!(
                "/healthz?Access_Token={secret}1&state=keep&PASSWORD={secret}2&api_key={secret}3"
            ),
            Some("Access_Token=REDACTED&state=keep&PASSWORD=REDACTED&api_key=REDACTED"),
        ),
        (
            format!(
                "/healthz?code={secret}4&client_secret={secret}5&x-signature={secret}6&auth={secret}7"
            ),
            Some("code=REDACTED&client_secret=REDACTED&x-signature=REDACTED&auth=REDACTED"),
        ),
        (
            format!("/healthz?session={secret}8&code_challenge={secret}9&credential={secret}A"),
            Some("session=REDACTED&code_challenge=REDACTED&credential=REDACTED"),
        ),
        // A session token under an innocent name is still Mamori's secret.
        (
            format!("/healthz?q={session}&page=2"),
            Some("q=REDACTED&page=2"),
        ),
        // Encoded names are recognized; a query that cannot be decoded goes as a whole.
        (
            format!("/healthz?%74oken={secret}B&a=b"),
            Some("%74oken=REDACTED&a=b"),
        ),
        (
            format!("/healthz?token={secret}C&broken=%zz"),
            Some("REDACTED"),
        ),
        (
            format!("/nowhere?password={secret}D"),
            Some("password=REDACTED"),
        ),
        (
            String::from("/healthz?limit=5&cursor=abc"),
            Some("limit=5&cursor=abc"),
        ),
    ];
    for (index, (path, _)) in cases.iter().enumerate() {
        let token = path.starts_with(ACCESS_LOGS).then_some(operator.as_str());
        send(&app, Method::GET, path, token, &format!("q-{index}"), None).await;
    }
    app.flush_access_logs().await;
    let response = app
        .get(&format!("{ACCESS_LOGS}?limit=500"), Some(&operator))
        .await;
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    assert!(!body.contains(secret), "a secret reached the log: {body}");
    assert!(
        !body.contains(&session),
        "a session token reached the log: {body}"
    );
    let items: Vec<Value> = serde_json::from_str::<Value>(&body).unwrap()["items"]
        .as_array()
        .unwrap()
        .clone();
    for (index, (_, query)) in cases.iter().enumerate() {
        let log = by_request_id(&items, &format!("q-{index}"));
        assert_eq!(log["query"].as_str(), *query, "{log}");
    }
    // Nor is it anywhere in the table.
    let rows = app
        .services
        .store()
        .access_logs(&Default::default(), None, 500)
        .await
        .unwrap();
    let stored = format!("{rows:?}");
    assert!(
        !stored.contains(secret) && !stored.contains(&session),
        "{stored}"
    );
}

async fn only_an_operator_token_reads_the_log(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let operator = app.operator_token().await;
    let (_, session) = app.account_with_session("ada@example.com").await;
    let billing = register_app(&app, &operator).await;
    let app_secret = billing["secret"].as_str().unwrap();
    expect_problem(app.get(ACCESS_LOGS, None).await, 401, "unauthenticated").await;
    expect_problem(
        app.get(ACCESS_LOGS, Some(&format!("mmo_{}", "A".repeat(43))))
            .await,
        401,
        "unauthenticated",
    )
    .await;
    expect_problem(app.get(ACCESS_LOGS, Some(&session)).await, 403, "forbidden").await;
    expect_problem(
        app.get(ACCESS_LOGS, Some(app_secret)).await,
        403,
        "forbidden",
    )
    .await;
    // Neither is the session cookie, even from the same origin.
    let response = app
        .client
        .get(app.url(ACCESS_LOGS))
        .header("cookie", format!("mamori_session={session}"))
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    expect_problem(response, 403, "forbidden").await;
    // Refusals come before the filters are looked at.
    expect_problem(
        app.get(&format!("{ACCESS_LOGS}?bogus=1"), Some(&session))
            .await,
        403,
        "forbidden",
    )
    .await;
    let page = read_logs(&app, &operator, "").await;
    assert!(!page["items"].as_array().unwrap().is_empty());
    // The route is in the OpenAPI document with its filters.
    let document = json_of(app.get("/api/openapi.json", None).await, 200).await;
    let operation = &document["paths"][ACCESS_LOGS]["get"];
    let names: HashSet<&str> = operation["parameters"]
        .as_array()
        .unwrap_or_else(|| panic!("{operation}"))
        .iter()
        .map(|parameter| {
            assert_eq!(parameter["in"], "query", "{parameter}");
            assert_eq!(parameter["required"], false, "{parameter}");
            parameter["name"].as_str().unwrap()
        })
        .collect();
    for name in [
        "from",
        "to",
        "method",
        "status",
        "path_prefix",
        "principal",
        "org",
        "limit",
        "cursor",
    ] {
        assert!(
            names.contains(name),
            "{name} is not documented: {operation}"
        );
    }
    assert!(document["components"]["schemas"]["AccessLogPage"].is_object());
    // The other lists' paging parameters are optional query parameters too.
    for parameter in document["paths"]["/api/v1/me/sessions"]["get"]["parameters"]
        .as_array()
        .unwrap()
    {
        assert_eq!(parameter["in"], "query", "{parameter}");
        assert_eq!(parameter["required"], false, "{parameter}");
    }
}

/// Logs at chosen times through the service, as the writer would store them.
async fn record(app: &TestApp, entries: Vec<AccessLogEntry>) {
    app.services.record_access_logs(&entries).await.unwrap();
}

fn entry(at: Timestamp, method: &str, path: &str, status: u16) -> AccessLogEntry {
    AccessLogEntry {
        logged_at: at,
        method: method.to_owned(),
        path: path.to_owned(),
        query: None,
        status,
        latency_us: 1200,
        client_ip: Some(String::from("198.51.100.7")),
        user_agent: None,
        principal: None,
        org_id: None,
        request_id: Some(format!("{method}-{path}-{}", at.as_millis())),
    }
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn pages_and_filters(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let operator = app.operator_token().await;
    let (account, session) = app.account_with_session("ada@example.com").await;
    let org = json_of(
        app.post("/api/v1/orgs", Some(&session), &json!({ "name": "Works" }))
            .await,
        201,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A day earlier: 7 probes, several in the same millisecond, so pages split ties.
    let day_before = TEST_EPOCH.plus_days(-1);
    let mut entries = Vec::new();
    for n in 0..7 {
        let at = day_before.plus_millis(n / 3);
        entries.push(entry(at, "GET", "/probe", 200));
    }
    let mut posted = entry(day_before.plus_seconds(5), "POST", "/probe/deeper", 422);
    posted.principal = Some(LoggedPrincipal::Account(
        AccountId::parse(&account.id).unwrap(),
    ));
    posted.org_id = OrgId::parse(&org);
    entries.push(posted);
    record(&app, entries).await;

    let probes = all_logs(&app, &operator, "path_prefix=/probe&method=GET").await;
    assert_eq!(probes.len(), 7);
    let times: Vec<&str> = probes
        .iter()
        .map(|item| item["logged_at"].as_str().unwrap())
        .collect();
    let mut newest_first = times.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, newest_first, "newest first");
    // Pages of 3, 3 and 1 cover the same logs in the same order, without repeats.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    let mut sizes = Vec::new();
    loop {
        let mut query = String::from("path_prefix=/probe&method=get&limit=3");
        if let Some(cursor) = &cursor {
            query.push_str(&format!("&cursor={cursor}"));
        }
        let page = read_logs(&app, &operator, &query).await;
        let items = page["items"].as_array().unwrap().clone();
        sizes.push(items.len());
        paged.extend(items);
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(sizes, [3, 3, 1]);
    assert_eq!(ids(&paged), ids(&probes));
    // A cursor stays valid after its log is gone.
    let first_page = read_logs(&app, &operator, "path_prefix=/probe&method=GET&limit=3").await;
    let cursor = first_page["next_cursor"].as_str().unwrap().to_owned();
    let pool = app.database.pool().await;
    let gone = sqlx::query("DELETE FROM access_logs WHERE id = $1")
        .bind(&cursor)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(gone.rows_affected(), 1);
    pool.close().await;
    let rest = read_logs(
        &app,
        &operator,
        &format!("path_prefix=/probe&method=GET&limit=10&cursor={cursor}"),
    )
    .await;
    assert_eq!(ids(rest["items"].as_array().unwrap()), ids(&probes[3..]));

    let count = |query: String| {
        let app = &app;
        let operator = &operator;
        async move { all_logs(app, operator, &query).await.len() }
    };
    assert_eq!(count(String::from("status=422")).await, 1);
    assert_eq!(
        count(String::from("method=post&path_prefix=/probe")).await,
        1
    );
    assert_eq!(count(String::from("path_prefix=/probe/")).await, 1);
    // Prefixes compare exactly: case matters, and % and _ are no wildcards.
    assert_eq!(count(String::from("path_prefix=/PROBE")).await, 0);
    assert_eq!(count(String::from("path_prefix=/pro%25")).await, 0);
    assert_eq!(count(String::from("path_prefix=/pro_e")).await, 0);
    assert_eq!(
        count(format!("principal={}&path_prefix=/probe", account.id)).await,
        1
    );
    assert_eq!(count(format!("org={org}")).await, 1);
    // `from` is inclusive, `to` exclusive; other offsets are read as UTC. (One of the probes
    // at +1 ms was deleted above.)
    let window = |from: Timestamp, to: Timestamp| {
        format!(
            "path_prefix=/probe&from={}&to={}",
            from.to_rfc3339(),
            to.to_rfc3339()
        )
    };
    assert_eq!(
        count(window(day_before, day_before.plus_millis(1))).await,
        3
    );
    assert_eq!(
        count(window(
            day_before.plus_millis(1),
            day_before.plus_seconds(5)
        ))
        .await,
        3
    );
    assert_eq!(
        count(window(day_before, day_before.plus_seconds(6))).await,
        7
    );
    assert_eq!(
        count(String::from(
            "path_prefix=/probe&from=2026-11-21T09:00:05%2B09:00&to=2026-11-21T00:00:06Z"
        ))
        .await,
        1
    );
    // Requests through the server are found by the same filters.
    assert_eq!(
        count(format!(
            "principal={}&status=201&path_prefix=/api/v1/orgs",
            account.id
        ))
        .await,
        1,
        "the organization's creation"
    );
    // Many logs: written in several statements, read in full pages.
    let base = TEST_EPOCH.plus_days(-2);
    record(
        &app,
        (0..250)
            .map(|n| entry(base.plus_millis(n), "GET", "/bulk", 204))
            .collect(),
    )
    .await;
    let bulk = all_logs(&app, &operator, "path_prefix=/bulk").await;
    assert_eq!(bulk.len(), 250);
    assert_eq!(ids(&bulk).into_iter().collect::<HashSet<_>>().len(), 250);
}

async fn bad_filters_are_refused(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let operator = app.operator_token().await;
    for (query, field) in [
        ("bogus=1", "query"),
        ("limit=abc", "query"),
        ("status=abc", "query"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("cursor=nonsense", "cursor"),
        ("cursor=ses_7ege77u2wmxtzhdng4lp3jn6l3", "cursor"),
        ("from=yesterday", "from"),
        ("to=2026-13-01T00:00:00Z", "to"),
        ("method=G%20T", "method"),
        ("status=42", "status"),
        ("path_prefix=api", "path_prefix"),
        ("principal=org_aaaaaaaaaaaaaaaaaaaaaaaaaa", "principal"),
        ("org=acc_aaaaaaaaaaaaaaaaaaaaaaaaaa", "org"),
    ] {
        let problem = expect_problem(
            app.get(&format!("{ACCESS_LOGS}?{query}"), Some(&operator))
                .await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], field, "{query}: {problem}");
    }
    // Every bad filter is named at once.
    let problem = expect_problem(
        app.get(
            &format!("{ACCESS_LOGS}?from=x&org=y&cursor=z"),
            Some(&operator),
        )
        .await,
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
    assert_eq!(fields, ["from", "org", "cursor"], "{problem}");
}

async fn retention_deletes_only_what_is_older_than_the_cutoff(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let operator = app.operator_token().await;
    let now = TEST_EPOCH.plus_days(600);
    // Requests through the server at three times of its clock.
    for (days_ago, request_id) in [(546, "546-days-old"), (544, "544-days-old"), (0, "today")] {
        app.clock.set(now.plus_days(-days_ago));
        let response = send(&app, Method::GET, "/healthz", None, request_id, None).await;
        assert_eq!(response.status(), 200);
    }
    // Just either side of the cutoff, and more than one deletion batch of old ones.
    let cutoff = now.plus_days(-app.settings.access_log_retention_days);
    let mut old = vec![entry(cutoff.plus_millis(-1), "GET", "/edge", 200)];
    old.extend((0..2500).map(|n| entry(cutoff.plus_days(-1).plus_millis(-n), "GET", "/old", 200)));
    old.push(entry(cutoff, "GET", "/edge", 200));
    record(&app, old).await;
    app.flush_access_logs().await;

    let deleted = app
        .services
        .delete_access_logs_before(cutoff)
        .await
        .unwrap();
    assert_eq!(deleted, 2502);
    app.clock.set(now);
    let items = all_logs(&app, &operator, "path_prefix=/").await;
    let request_ids: HashSet<&str> = items
        .iter()
        .filter_map(|item| item["request_id"].as_str())
        .collect();
    assert!(request_ids.contains("544-days-old"), "{request_ids:?}");
    assert!(request_ids.contains("today"));
    assert!(!request_ids.contains("546-days-old"), "{request_ids:?}");
    assert_eq!(count_paths(&items, "/old"), 0);
    let edge: Vec<&Value> = items
        .iter()
        .filter(|item| item["path"] == "/edge")
        .collect();
    assert_eq!(edge.len(), 1, "only the one at the cutoff stays");
    assert_eq!(edge[0]["logged_at"], cutoff.to_rfc3339().as_str());
    // Idempotent: nothing more to delete at the same cutoff.
    assert_eq!(
        app.services
            .delete_access_logs_before(cutoff)
            .await
            .unwrap(),
        0
    );
    assert_eq!(app.settings.access_log_retention_days, 545);
}

fn count_paths(items: &[Value], path: &str) -> usize {
    items.iter().filter(|item| item["path"] == path).count()
}

async fn the_client_ip_behind_a_trusted_proxy(engine: TestEngine) {
    let database = Arc::new(mamori_testkit::TestDatabase::create(engine).await);
    let mut settings = test_settings(&database);
    settings.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    let app = spawn_with(
        database,
        settings,
        Arc::new(mamori_server::ManualClock::new(TEST_EPOCH)),
    )
    .await;
    let operator = app.operator_token().await;
    let response = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "proxied")
        .header("x-forwarded-for", "203.0.113.9, 10.1.2.3, 127.0.0.5")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let items = all_logs(&app, &operator, "path_prefix=/healthz").await;
    // The nearest address that is not a trusted proxy.
    assert_eq!(by_request_id(&items, "proxied")["client_ip"], "10.1.2.3");
}

async fn access_log_rows(app: &TestApp) -> i64 {
    let pool = app.database.pool().await;
    let count = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM access_logs")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    count
}

async fn nothing_is_logged_when_the_log_is_off(engine: TestEngine) {
    let database = Arc::new(mamori_testkit::TestDatabase::create(engine).await);
    let mut settings = test_settings(&database);
    settings.access_log_enabled = false;
    let mut app = spawn_with(
        database,
        settings,
        Arc::new(mamori_server::ManualClock::new(TEST_EPOCH)),
    )
    .await;
    let operator = app.operator_token().await;
    assert_eq!(app.get("/healthz", None).await.status(), 200);
    let page = read_logs(&app, &operator, "").await;
    assert_eq!(page["items"], json!([]));
    app.stop().await;
    assert_eq!(access_log_rows(&app).await, 0);
}

async fn whats_queued_is_written_at_shutdown(engine: TestEngine) {
    let database = Arc::new(mamori_testkit::TestDatabase::create(engine).await);
    let mut settings = test_settings(&database);
    // Far longer than the test: only the shutdown can have written these.
    settings.access_log_flush_interval_ms = 3_600_000;
    let mut app = spawn_with(
        database,
        settings,
        Arc::new(mamori_server::ManualClock::new(TEST_EPOCH)),
    )
    .await;
    for n in 0..5 {
        let response = send(
            &app,
            Method::GET,
            "/healthz",
            None,
            &format!("late-{n}"),
            None,
        )
        .await;
        assert_eq!(response.status(), 200);
    }
    // Batched: not written yet, with the batch far from full and the interval far away.
    assert_eq!(access_log_rows(&app).await, 0);
    app.stop().await;
    assert_eq!(access_log_rows(&app).await, 5);
}
