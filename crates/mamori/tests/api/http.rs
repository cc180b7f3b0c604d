//! The HTTP conventions every call shares: `X-Request-Id` on every response (generated, echoed
//! or replaced), 404 and 405 problems, health checks, the OpenAPI document, security headers,
//! `WWW-Authenticate: Bearer` on 401, RFC 3339 UTC times with milliseconds, prefixed IDs, and
//! the `mamori_session` cookie: its attributes, reads with it, the CSRF check on
//! cookie-authenticated changes (Sec-Fetch-Site, Origin against Host), and logout clearing it.

// Test code: a failed unwrap or a panic is a failed test (clippy.toml allows them in
// `#[test]` functions, not in the helpers and engine-generic bodies here).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mamori_testkit::{GOOD_PASSWORD, TestApp, TestEngine, expect_problem, json_of, spawn_app};
use reqwest::{Method, Response};
use serde_json::{Value, json};

mamori_testkit::engine_tests!(
    every_response_carries_a_request_id,
    unknown_routes_are_404_problems,
    wrong_methods_are_405_problems,
    health_checks_answer,
    openapi_document_describes_the_api,
    security_headers_are_on_every_response,
    unauthenticated_answers_ask_for_a_bearer_token,
    times_are_rfc3339_utc_with_milliseconds,
    ids_carry_their_type_prefix,
    login_sets_a_hardened_session_cookie,
    the_cookie_authenticates_reads,
    cookie_authenticated_changes_need_same_origin_proof,
    bearer_authenticated_changes_need_no_origin,
    logout_clears_the_cookie_and_ends_the_session,
);

const EMAIL: &str = "hedy@example.com";

fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().unwrap().to_owned())
}

/// A client that opens a new connection per request, for requests whose connection the
/// server may close (an oversized body).
fn unpooled_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// A handful of responses of every kind: success, client errors of each family, documents.
async fn assorted_responses(app: &TestApp) -> Vec<(&'static str, Response)> {
    let (_, token) = app.account_with_session(EMAIL).await;
    let oversized = unpooled_client()
        .post(app.url("/api/v1/accounts"))
        .header("content-type", "application/json")
        .body(vec![b' '; 70_000])
        .send()
        .await
        .unwrap();
    vec![
        ("healthz", app.get("/healthz", None).await),
        ("readyz", app.get("/readyz", None).await),
        ("openapi", app.get("/api/openapi.json", None).await),
        ("me", app.get("/api/v1/me", Some(&token)).await),
        (
            "sign up",
            app.post(
                "/api/v1/accounts",
                None,
                &json!({ "email": "other@example.com", "password": GOOD_PASSWORD, "display_name": "O" }),
            )
            .await,
        ),
        ("401", app.get("/api/v1/me", None).await),
        ("404", app.get("/api/v1/nothing-here", None).await),
        ("405", app.request(Method::PUT, "/healthz", None, None).await),
        (
            "422",
            app.post("/api/v1/accounts", None, &json!({ "email": 1 }))
                .await,
        ),
        ("413", oversized),
        (
            "logout",
            app.request(Method::DELETE, "/api/v1/sessions/current", Some(&token), None)
                .await,
        ),
    ]
}

async fn every_response_carries_a_request_id(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let mut generated = Vec::new();
    for (what, response) in assorted_responses(&app).await {
        let id =
            header(&response, "x-request-id").unwrap_or_else(|| panic!("{what}: no x-request-id"));
        // A UUID.
        assert_eq!(id.len(), 36, "{what}: {id}");
        assert!(
            id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'),
            "{what}: {id}"
        );
        generated.push(id);
    }
    let count = generated.len();
    generated.sort();
    generated.dedup();
    assert_eq!(generated.len(), count, "request IDs repeat");

    // A sane client-supplied ID is echoed; a malformed one is replaced by a fresh one.
    let longest = "r".repeat(128);
    let too_long = "r".repeat(129);
    let very_long = "x".repeat(300);
    let cases: [(&str, bool); 9] = [
        ("req-123", true),
        ("trace_01.2:3", true),
        ("0f8fad5b-d9cb-469f-a165-70867728950e", true),
        (&longest, true),
        (&too_long, false),
        (&very_long, false),
        ("has spaces", false),
        ("<script>", false),
        ("semi;colon", false),
    ];
    for (sent, echoed) in cases {
        for path in ["/healthz", "/api/v1/me", "/api/v1/missing"] {
            let response = app
                .client
                .get(app.url(path))
                .header("x-request-id", sent)
                .send()
                .await
                .unwrap();
            let id = header(&response, "x-request-id").unwrap();
            if echoed {
                assert_eq!(id, sent, "{path}");
            } else {
                assert_ne!(id, sent, "{path}");
                assert_eq!(id.len(), 36, "{path}: replaced by a UUID, got {id}");
            }
        }
    }
}

async fn unknown_routes_are_404_problems(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let (_, token) = app.account_with_session(EMAIL).await;
    for path in [
        "/",
        "/nothing",
        "/api",
        "/api/v1",
        "/api/v1/nothing",
        "/api/v2/me",
        "/api/v1/me/",
        "/api/v1/me/sessions/x/y",
        "/API/V1/ME",
        "/api/openapi.yaml",
    ] {
        for token in [None, Some(token.as_str())] {
            let problem = expect_problem(app.get(path, token).await, 404, "not_found").await;
            assert_eq!(problem["type"], "https://mamori.dev/problems/not_found");
        }
    }
    let problem = expect_problem(
        app.post("/api/v1/nothing", None, &json!({})).await,
        404,
        "not_found",
    )
    .await;
    assert_eq!(problem["title"], "Not found");
}

async fn wrong_methods_are_405_problems(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let (_, token) = app.account_with_session(EMAIL).await;
    let cases = [
        (Method::POST, "/healthz", "GET"),
        (Method::DELETE, "/readyz", "GET"),
        (Method::POST, "/api/openapi.json", "GET"),
        (Method::GET, "/api/v1/accounts", "POST"),
        (Method::PUT, "/api/v1/accounts", "POST"),
        (Method::GET, "/api/v1/sessions", "POST"),
        (Method::POST, "/api/v1/me", "PATCH"),
        (Method::PUT, "/api/v1/me", "DELETE"),
        (Method::GET, "/api/v1/me/password", "PUT"),
        (Method::POST, "/api/v1/me/sessions", "GET"),
        (Method::GET, "/api/v1/operator/apps", "POST"),
    ];
    for (method, path, allowed) in cases {
        let response = app
            .request(method.clone(), path, Some(&token), Some(&json!({})))
            .await;
        let allow = header(&response, "allow").unwrap_or_default();
        assert!(
            allow.split(',').any(|m| m.trim() == allowed),
            "{method} {path}: allow {allow:?}"
        );
        assert!(
            !allow.split(',').any(|m| m.trim() == method.as_str()),
            "{method} {path}: allow {allow:?}"
        );
        expect_problem(response, 405, "method_not_allowed").await;
    }
}

async fn health_checks_answer(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let health = json_of(app.get("/healthz", None).await, 200).await;
    assert_eq!(health["status"], "ok");
    let ready = json_of(app.get("/readyz", None).await, 200).await;
    assert_eq!(ready["status"], "ready");
    // No credentials needed, and a garbage one does not matter either.
    json_of(app.get("/healthz", Some("garbage")).await, 200).await;
}

async fn openapi_document_describes_the_api(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let response = app.get("/api/openapi.json", None).await;
    assert_eq!(
        header(&response, "content-type").as_deref(),
        Some("application/json")
    );
    let document = json_of(response, 200).await;
    assert!(
        document["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        document["openapi"]
    );
    assert_eq!(document["info"]["title"], "Mamori");
    let paths = document["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/api/v1/accounts", &["post"][..]),
        ("/api/v1/sessions", &["post"]),
        ("/api/v1/sessions/current", &["delete"]),
        ("/api/v1/me", &["get", "patch", "delete"]),
        ("/api/v1/me/password", &["put"]),
        ("/api/v1/me/sessions", &["get"]),
        ("/api/v1/me/sessions/{id}", &["delete"]),
        ("/api/v1/operator/apps", &["post"]),
        ("/healthz", &["get"]),
        ("/readyz", &["get"]),
    ] {
        let item = paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not documented"));
        for method in methods {
            assert!(
                item.get(*method).is_some(),
                "{method} {path} is not documented"
            );
        }
    }
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"]
            .as_str()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("bearer")
    );
    assert!(document["components"]["schemas"]["Problem"].is_object());
}

async fn security_headers_are_on_every_response(engine: TestEngine) {
    let app = spawn_app(engine).await;
    for (what, response) in assorted_responses(&app).await {
        let get = |name: &str| header(&response, name);
        assert_eq!(
            get("x-content-type-options").as_deref(),
            Some("nosniff"),
            "{what}"
        );
        assert_eq!(get("cache-control").as_deref(), Some("no-store"), "{what}");
        assert_eq!(get("x-frame-options").as_deref(), Some("DENY"), "{what}");
        assert_eq!(
            get("referrer-policy").as_deref(),
            Some("no-referrer"),
            "{what}"
        );
        // Plain HTTP: no HSTS.
        assert_eq!(get("strict-transport-security"), None, "{what}");
    }
}

async fn unauthenticated_answers_ask_for_a_bearer_token(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let (_, token) = app.account_with_session(EMAIL).await;
    let responses = [
        app.get("/api/v1/me", None).await,
        app.get("/api/v1/me", Some("garbage")).await,
        app.get("/api/v1/me/sessions", Some(&format!("{token}x")))
            .await,
        app.post(
            "/api/v1/sessions",
            None,
            &json!({ "email": EMAIL, "password": "wrong wrong wrong" }),
        )
        .await,
        app.post("/api/v1/operator/apps", None, &json!({ "name": "x" }))
            .await,
        app.request(Method::DELETE, "/api/v1/sessions/current", None, None)
            .await,
    ];
    for response in responses {
        assert_eq!(response.status(), 401);
        assert_eq!(
            header(&response, "www-authenticate").as_deref(),
            Some("Bearer")
        );
    }
    // Other errors do not ask for credentials.
    let response = app.get("/api/v1/nothing", None).await;
    assert_eq!(response.status(), 404);
    assert_eq!(header(&response, "www-authenticate"), None);
}

/// Asserts `text` is `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn assert_utc_millis(text: &Value) {
    let text = text
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {text}"));
    let shape: String = text
        .chars()
        .map(|c| if c.is_ascii_digit() { 'd' } else { c })
        .collect();
    assert_eq!(shape, "dddd-dd-ddTdd:dd:dd.dddZ", "{text}");
}

async fn times_are_rfc3339_utc_with_milliseconds(engine: TestEngine) {
    let app = spawn_app(engine).await;
    app.clock.advance_millis(1_234);
    let account = json_of(
        app.post(
            "/api/v1/accounts",
            None,
            &json!({ "email": EMAIL, "password": GOOD_PASSWORD, "display_name": "Hedy" }),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(account["created_at"], "2026-11-22T00:00:01.234Z");
    assert_eq!(account["updated_at"], "2026-11-22T00:00:01.234Z");
    app.clock.advance_millis(3_600_000 + 5);
    let session = json_of(
        app.post(
            "/api/v1/sessions",
            None,
            &json!({ "email": EMAIL, "password": GOOD_PASSWORD }),
        )
        .await,
        201,
    )
    .await;
    // Twelve hours idle from 01:00:01.239.
    assert_eq!(session["expires_at"], "2026-11-22T13:00:01.239Z");
    let token = session["token"].as_str().unwrap();
    app.clock.advance_millis(120_001);
    let me = json_of(app.get("/api/v1/me", Some(token)).await, 200).await;
    assert_utc_millis(&me["created_at"]);
    assert_utc_millis(&me["updated_at"]);
    let page = json_of(app.get("/api/v1/me/sessions", Some(token)).await, 200).await;
    let item = &page["items"][0];
    assert_eq!(item["created_at"], "2026-11-22T01:00:01.239Z");
    assert_eq!(item["last_seen_at"], "2026-11-22T01:02:01.240Z");
    assert_eq!(item["expires_at"], "2026-11-22T13:02:01.240Z");
    for field in ["created_at", "last_seen_at", "expires_at"] {
        assert_utc_millis(&item[field]);
    }
}

fn assert_id(id: &Value, prefix: &str) {
    let id = id.as_str().unwrap_or_else(|| panic!("not a string: {id}"));
    let body = id
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{id} lacks {prefix}"));
    assert_eq!(body.len(), 26, "{id}");
    assert!(
        body.bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)),
        "{id}"
    );
}

async fn ids_carry_their_type_prefix(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let account = json_of(
        app.post(
            "/api/v1/accounts",
            None,
            &json!({ "email": EMAIL, "password": GOOD_PASSWORD, "display_name": "Hedy" }),
        )
        .await,
        201,
    )
    .await;
    assert_id(&account["id"], "acc_");
    let session = json_of(
        app.post(
            "/api/v1/sessions",
            None,
            &json!({ "email": EMAIL, "password": GOOD_PASSWORD }),
        )
        .await,
        201,
    )
    .await;
    assert_id(&session["account_id"], "acc_");
    assert_eq!(session["account_id"], account["id"]);
    assert_id(&session["session_id"], "ses_");
    let token = session["token"].as_str().unwrap();
    let me = json_of(app.get("/api/v1/me", Some(token)).await, 200).await;
    assert_eq!(me["id"], account["id"]);
    let page = json_of(app.get("/api/v1/me/sessions", Some(token)).await, 200).await;
    assert_id(&page["items"][0]["id"], "ses_");
    assert_eq!(page["items"][0]["id"], session["session_id"]);
    let operator = app.operator_token().await;
    let created = json_of(
        app.post(
            "/api/v1/operator/apps",
            Some(&operator),
            &json!({ "name": "Billing" }),
        )
        .await,
        201,
    )
    .await;
    assert_id(&created["id"], "app_");
    // Every ID is different.
    assert_ne!(account["id"], created["id"]);
}

/// The `Set-Cookie` of `response` for `mamori_session`: its value and its attributes.
fn session_cookie(response: &Response) -> (String, Vec<String>) {
    let cookies: Vec<&str> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|value| value.to_str().unwrap())
        .filter(|cookie| cookie.starts_with("mamori_session="))
        .collect();
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let mut parts = cookies[0].split(';').map(str::trim);
    let value = parts
        .next()
        .and_then(|pair| pair.strip_prefix("mamori_session="))
        .unwrap()
        .to_owned();
    (value, parts.map(str::to_owned).collect())
}

fn has_attribute(attributes: &[String], wanted: &str) -> bool {
    attributes
        .iter()
        .any(|attribute| attribute.eq_ignore_ascii_case(wanted))
}

async fn log_in_with(app: &TestApp, headers: &[(&str, &str)]) -> Response {
    let mut request = app
        .client
        .post(app.url("/api/v1/sessions"))
        .json(&json!({ "email": EMAIL, "password": GOOD_PASSWORD }));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

async fn login_sets_a_hardened_session_cookie(engine: TestEngine) {
    let app = spawn_app(engine).await;
    app.sign_up(EMAIL, GOOD_PASSWORD, "Hedy").await;
    // An untrusted peer claiming HTTPS through a proxy header changes nothing.
    for headers in [&[][..], &[("x-forwarded-proto", "https")]] {
        let response = log_in_with(&app, headers).await;
        let (value, attributes) = session_cookie(&response);
        let body = json_of(response, 201).await;
        assert_eq!(value, body["token"].as_str().unwrap());
        assert!(has_attribute(&attributes, "HttpOnly"), "{attributes:?}");
        assert!(has_attribute(&attributes, "SameSite=Lax"), "{attributes:?}");
        assert!(has_attribute(&attributes, "Path=/"), "{attributes:?}");
        assert!(!has_attribute(&attributes, "Secure"), "{attributes:?}");
        // It lives no longer than the session can: 30 days.
        assert!(
            has_attribute(&attributes, "Max-Age=2592000"),
            "{attributes:?}"
        );
    }
    // A failed login sets no cookie.
    let response = app
        .post(
            "/api/v1/sessions",
            None,
            &json!({ "email": EMAIL, "password": "wrong wrong wrong" }),
        )
        .await;
    assert_eq!(response.status(), 401);
    assert!(response.headers().get("set-cookie").is_none());
}

fn cookie_of(token: &str) -> String {
    format!("mamori_session={token}")
}

async fn the_cookie_authenticates_reads(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let account = app.sign_up(EMAIL, GOOD_PASSWORD, "Hedy").await;
    let token = session_cookie(&log_in_with(&app, &[]).await).0;
    for cookie in [
        cookie_of(&token),
        format!("theme=dark; {}; lang=en", cookie_of(&token)),
    ] {
        let response = app
            .client
            .get(app.url("/api/v1/me"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(json_of(response, 200).await["id"], account.id.as_str());
    }
    let sessions = app
        .client
        .get(app.url("/api/v1/me/sessions"))
        .header("cookie", cookie_of(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(sessions, 200).await["items"][0]["current"], true);
    // A cookie that is not a session is no authentication.
    for cookie in [
        String::from("mamori_session=garbage"),
        format!("other_session={token}"),
        String::from("mamori_session="),
    ] {
        let response = app
            .client
            .get(app.url("/api/v1/me"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        expect_problem(response, 401, "unauthenticated").await;
    }
}

/// Sends `PATCH /api/v1/me` renaming the account to `name`, authenticated by the cookie alone,
/// with `headers`; it must be refused with 403 `csrf_rejected` and change nothing, or go
/// through when `allowed`.
async fn check(app: &TestApp, token: &str, headers: &[(&str, String)], allowed: bool, name: &str) {
    let before = json_of(app.get("/api/v1/me", Some(token)).await, 200).await;
    assert_ne!(before["display_name"], name);
    let mut request = app
        .client
        .patch(app.url("/api/v1/me"))
        .header("cookie", cookie_of(token))
        .json(&json!({ "display_name": name }));
    for (header, value) in headers {
        request = request.header(*header, value.as_str());
    }
    let response = request.send().await.unwrap();
    let after = if allowed {
        let changed = json_of(response, 200).await;
        assert_eq!(changed["display_name"], name, "{headers:?}");
        json!({ "display_name": name })
    } else {
        let problem = expect_problem(response, 403, "csrf_rejected").await;
        assert_eq!(problem["status"], 403, "{headers:?}");
        json!({ "display_name": before["display_name"] })
    };
    let me = json_of(app.get("/api/v1/me", Some(token)).await, 200).await;
    assert_eq!(me["display_name"], after["display_name"], "{headers:?}");
    if !allowed {
        assert_eq!(me, before, "{headers:?} changed the account");
    }
}

async fn cookie_authenticated_changes_need_same_origin_proof(engine: TestEngine) {
    let app = spawn_app(engine).await;
    app.sign_up(EMAIL, GOOD_PASSWORD, "Hedy").await;
    let token = app.log_in(EMAIL, GOOD_PASSWORD).await.token;
    let own_origin = format!("http://{}", app.address);
    let site = |value: &str| ("sec-fetch-site", value.to_owned());
    let origin = |value: &str| ("origin", value.to_owned());
    let cases: Vec<(Vec<(&str, String)>, bool)> = vec![
        (vec![], false),
        (vec![site("cross-site")], false),
        (vec![site("same-site")], false),
        (vec![site("same-origin")], true),
        (vec![site("none")], true),
        (vec![origin(&own_origin)], true),
        (vec![origin("http://evil.example")], false),
        (vec![origin("null")], false),
        (vec![origin(&format!("{own_origin}.evil.example"))], false),
        (
            vec![origin(&format!("http://evil.example/{}", app.address))],
            false,
        ),
        (vec![origin("http://127.0.0.1")], false),
        // Sec-Fetch-Site is the browser's own word and wins over a matching Origin.
        (vec![site("cross-site"), origin(&own_origin)], false),
        (
            vec![site("same-origin"), origin("http://evil.example")],
            true,
        ),
    ];
    for (index, (headers, allowed)) in cases.into_iter().enumerate() {
        check(&app, &token, &headers, allowed, &format!("Hedy {index}")).await;
    }
    // Refused changes of other kinds too: changing the password, deleting, logging out.
    for (method, path, body) in [
        (
            Method::PUT,
            "/api/v1/me/password",
            json!({ "current_password": GOOD_PASSWORD, "new_password": "plum lantern seventeen quietly" }),
        ),
        (
            Method::DELETE,
            "/api/v1/me",
            json!({ "password": GOOD_PASSWORD }),
        ),
        (Method::DELETE, "/api/v1/sessions/current", json!({})),
    ] {
        let response = app
            .client
            .request(method, app.url(path))
            .header("cookie", cookie_of(&token))
            .header("sec-fetch-site", "cross-site")
            .json(&body)
            .send()
            .await
            .unwrap();
        expect_problem(response, 403, "csrf_rejected").await;
    }
    json_of(app.get("/api/v1/me", Some(&token)).await, 200).await;
    app.log_in(EMAIL, GOOD_PASSWORD).await;
}

async fn bearer_authenticated_changes_need_no_origin(engine: TestEngine) {
    let app = spawn_app(engine).await;
    app.sign_up(EMAIL, GOOD_PASSWORD, "Hedy").await;
    let token = app.log_in(EMAIL, GOOD_PASSWORD).await.token;
    let changed = json_of(
        app.request(
            Method::PATCH,
            "/api/v1/me",
            Some(&token),
            Some(&json!({ "display_name": "Bearer Hedy" })),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(changed["display_name"], "Bearer Hedy");
    // A bearer token is never sent by a browser on its own, so a foreign Origin is harmless.
    let response = app
        .client
        .patch(app.url("/api/v1/me"))
        .bearer_auth(&token)
        .header("origin", "http://evil.example")
        .header("sec-fetch-site", "cross-site")
        .json(&json!({ "display_name": "Cross Hedy" }))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(response, 200).await["display_name"], "Cross Hedy");
}

async fn logout_clears_the_cookie_and_ends_the_session(engine: TestEngine) {
    let app = spawn_app(engine).await;
    app.sign_up(EMAIL, GOOD_PASSWORD, "Hedy").await;
    let first = app.log_in(EMAIL, GOOD_PASSWORD).await.token;
    let second = app.log_in(EMAIL, GOOD_PASSWORD).await.token;

    // By bearer token.
    let response = app
        .request(
            Method::DELETE,
            "/api/v1/sessions/current",
            Some(&first),
            None,
        )
        .await;
    assert_eq!(response.status(), 204);
    let (value, attributes) = session_cookie(&response);
    assert_eq!(value, "");
    assert!(has_attribute(&attributes, "Max-Age=0"), "{attributes:?}");
    assert!(has_attribute(&attributes, "Path=/"), "{attributes:?}");
    assert!(has_attribute(&attributes, "HttpOnly"), "{attributes:?}");
    for response in [
        app.get("/api/v1/me", Some(&first)).await,
        app.client
            .get(app.url("/api/v1/me"))
            .header("cookie", cookie_of(&first))
            .send()
            .await
            .unwrap(),
        app.request(
            Method::DELETE,
            "/api/v1/sessions/current",
            Some(&first),
            None,
        )
        .await,
    ] {
        expect_problem(response, 401, "unauthenticated").await;
    }
    // The other session goes on.
    json_of(app.get("/api/v1/me", Some(&second)).await, 200).await;

    // By cookie, from the same origin.
    let response = app
        .client
        .delete(app.url("/api/v1/sessions/current"))
        .header("cookie", cookie_of(&second))
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let (value, attributes) = session_cookie(&response);
    assert_eq!(value, "");
    assert!(has_attribute(&attributes, "Max-Age=0"), "{attributes:?}");
    expect_problem(
        app.get("/api/v1/me", Some(&second)).await,
        401,
        "unauthenticated",
    )
    .await;
}
