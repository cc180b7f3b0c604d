//! The data lifecycle (issue 6): contract events, deletion by the contract administrator,
//! restore, and the scheduler walking every organization row of both built-in policies day by
//! day on a simulated clock. Nothing happens a day early, everything happens on its day, the
//! notices arrive at a real SMTP receiver, and the report says which deadlines were met.
//!
//! The clock is stepped by setting the test clock and calling `run_lifecycle_once` at its
//! time; the server's own loop runs on the same clock, so a step may be taken by either and
//! the assertions read the resulting state.

use crate::mail::text_of;
use crate::orgs::{call, create_org, invite, outbox_token, sign_up_invited};
use mamori_core::Timestamp;
use mamori_server::ManualClock;
use mamori_service::lifecycle::policy::Policy;
use mamori_testkit::{
    ClockExt, GOOD_PASSWORD, SmtpReceiver, TEST_EPOCH, TestApp, TestDatabase, TestEngine,
    expect_problem, json_of, spawn_app, spawn_with, test_settings,
};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

mamori_testkit::engine_tests!(
    deleting_closes_the_org_to_members_and_apps_at_once_and_answers_the_timeline,
    wrong_password_or_role_deletes_nothing,
    contract_events_out_of_order_are_refused_and_change_nothing,
    a_deleted_org_is_restored_before_its_purge_but_not_after,
    whitepaper_rows_happen_on_their_day_and_not_a_day_early,
    terms_v3_rows_happen_on_their_day_and_not_a_day_early,
    a_free_org_that_confirms_it_continues_is_kept,
    administrators_are_mailed_before_automatic_deletion_and_at_deletion,
    the_report_judges_each_deadline,
    concurrent_schedulers_take_each_step_once,
);

const DAY_MS: i64 = 86_400_000;

fn day(n: i64) -> Timestamp {
    TEST_EPOCH.plus_millis(n * DAY_MS)
}

fn rfc(at: Timestamp) -> String {
    at.to_rfc3339()
}

async fn spawn_with_policy(engine: TestEngine, policy: &str) -> TestApp {
    let database = Arc::new(TestDatabase::create(engine).await);
    let mut settings = test_settings(&database);
    settings.lifecycle_policy = Policy::built_in(policy).unwrap();
    spawn_with(database, settings, Arc::new(ManualClock::new(TEST_EPOCH))).await
}

/// A fresh administrator with an organization; returns (session token, org ID).
async fn admin_with_org(app: &TestApp, email: &str) -> (String, String) {
    let (_, token) = app.account_with_session(email).await;
    let org = create_org(app, &token, "Lifecycle Co").await;
    (token, org)
}

async fn contract(app: &TestApp, operator: &str, org: &str, body: Value) -> reqwest::Response {
    app.post(
        &format!("/api/v1/operator/orgs/{org}/contract"),
        Some(operator),
        &body,
    )
    .await
}

async fn contract_ok(app: &TestApp, operator: &str, org: &str, body: Value) -> Value {
    json_of(contract(app, operator, org, body).await, 200).await
}

async fn delete_org(app: &TestApp, token: &str, org: &str, password: &str) -> reqwest::Response {
    app.request(
        Method::DELETE,
        &format!("/api/v1/orgs/{org}"),
        Some(token),
        Some(&json!({ "password": password })),
    )
    .await
}

async fn lifecycle(app: &TestApp, token: &str, org: &str) -> Value {
    call(
        app,
        Method::GET,
        &format!("/api/v1/orgs/{org}/lifecycle"),
        token,
        None,
        200,
    )
    .await
}

/// The state of every organization, as the operator's report has it.
async fn states(app: &TestApp, operator: &str) -> BTreeMap<String, Value> {
    let report = json_of(
        app.get("/api/v1/operator/lifecycle/report", Some(operator))
            .await,
        200,
    )
    .await;
    report["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            (
                item["lifecycle"]["org_id"].as_str().unwrap().to_owned(),
                item.clone(),
            )
        })
        .collect()
}

/// A new session for `email` at the clock's current time (sessions lapse as days pass).
async fn session(app: &TestApp, email: &str) -> String {
    app.log_in(email, GOOD_PASSWORD).await.token
}

/// Sets the clock to `at` and runs the scheduler there.
async fn step_to(app: &TestApp, at: Timestamp) {
    app.clock.set(at);
    app.services.run_lifecycle_once(at, false).await.unwrap();
}

/// Adds a member (role `member`) to `org`; returns the member's session token.
async fn add_member(app: &TestApp, admin: &str, org: &str, email: &str) -> String {
    invite(app, admin, org, email, "member").await;
    let token = outbox_token(app, email).await;
    json_of(sign_up_invited(app, email, &token).await, 201).await;
    app.log_in(email, GOOD_PASSWORD).await.token
}

async fn deleting_closes_the_org_to_members_and_apps_at_once_and_answers_the_timeline(
    engine: TestEngine,
) {
    let app = spawn_app(engine).await;
    let (admin, org) = admin_with_org(&app, "owner@example.org").await;
    let member = add_member(&app, &admin, &org, "member@example.org").await;
    let operator = app.operator_token().await;
    let created = call(
        &app,
        Method::POST,
        "/api/v1/operator/apps",
        &operator,
        Some(&json!({ "name": "Tracker" })),
        201,
    )
    .await;
    let (app_id, secret) = (
        created["id"].as_str().unwrap(),
        created["secret"].as_str().unwrap(),
    );
    call(
        &app,
        Method::PUT,
        &format!("/api/v1/orgs/{org}/apps/{app_id}"),
        &admin,
        Some(&json!({ "mode": "all" })),
        200,
    )
    .await;
    let event = json!({ "org_id": org, "action": "doc.viewed" });
    let before = app
        .post("/api/v1/app/audit-events", Some(secret), &event)
        .await;
    assert!(
        before.status().is_success(),
        "{}",
        before.text().await.unwrap()
    );
    let me = call(&app, Method::GET, "/api/v1/me", &admin, None, 200).await;
    let account = me["id"].as_str().unwrap();
    let view = app
        .get(
            &format!("/api/v1/app/orgs/{org}/members/{account}"),
            Some(secret),
        )
        .await;
    assert_eq!(view.status(), 200, "{}", view.text().await.unwrap());
    let before = lifecycle(&app, &member, &org).await;
    assert_eq!(before["state"], "active");
    assert_eq!(before["plan"], "free");
    assert_eq!(before["policy"], "whitepaper-2025");

    let timeline = json_of(delete_org(&app, &admin, &org, GOOD_PASSWORD).await, 202).await;
    assert_eq!(timeline["state"], "deleted", "{timeline}");
    assert_eq!(timeline["deletion_reason"], "admin");
    assert_eq!(timeline["deleted_at"], rfc(day(0)));
    assert_eq!(timeline["purge_starts_at"], rfc(day(180)));
    assert_eq!(timeline["purge_due_by"], rfc(day(190)));
    assert_eq!(timeline["audit_purge_starts_at"], rfc(day(180)));
    assert_eq!(timeline["next_transition"]["to"], "purging");

    // Closed at once: to the administrator, the member and the app.
    for token in [&admin, &member] {
        expect_problem(
            app.get(&format!("/api/v1/orgs/{org}"), Some(token)).await,
            404,
            "not_found",
        )
        .await;
        let orgs = call(&app, Method::GET, "/api/v1/orgs", token, None, 200).await;
        assert!(orgs["items"].as_array().unwrap().is_empty(), "{orgs}");
    }
    let after = app
        .post("/api/v1/app/audit-events", Some(secret), &event)
        .await;
    assert_eq!(after.status(), 404, "{}", after.text().await.unwrap());
    let me = call(&app, Method::GET, "/api/v1/me", &admin, None, 200).await;
    let account = me["id"].as_str().unwrap();
    let view = app
        .get(
            &format!("/api/v1/app/orgs/{org}/members/{account}"),
            Some(secret),
        )
        .await;
    assert_eq!(view.status(), 404, "{}", view.text().await.unwrap());
    // Deleting again is refused: it is no longer open.
    expect_problem(
        delete_org(&app, &admin, &org, GOOD_PASSWORD).await,
        404,
        "not_found",
    )
    .await;
}

async fn wrong_password_or_role_deletes_nothing(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let (admin, org) = admin_with_org(&app, "owner@example.org").await;
    let member = add_member(&app, &admin, &org, "member@example.org").await;
    let problem = expect_problem(
        delete_org(&app, &admin, &org, "not the password at all").await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "password", "{problem}");
    expect_problem(
        delete_org(&app, &member, &org, GOOD_PASSWORD).await,
        403,
        "forbidden",
    )
    .await;
    let missing = app
        .request(
            Method::DELETE,
            &format!("/api/v1/orgs/{org}"),
            Some(&admin),
            Some(&json!({})),
        )
        .await;
    assert_eq!(missing.status(), 422);
    let (_, stranger) = app.account_with_session("stranger@example.org").await;
    expect_problem(
        delete_org(&app, &stranger, &org, GOOD_PASSWORD).await,
        404,
        "not_found",
    )
    .await;
    let view = lifecycle(&app, &member, &org).await;
    assert_eq!(view["state"], "active", "{view}");
    assert!(view["deleted_at"].is_null());
}

async fn contract_events_out_of_order_are_refused_and_change_nothing(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let (_, org) = admin_with_org(&app, "owner@example.org").await;
    let operator = app.operator_token().await;
    app.clock.set(day(10));
    let admin = session(&app, "owner@example.org").await;
    let unchanged = lifecycle(&app, &admin, &org).await;
    // Field errors.
    for (body, field) in [
        (json!({ "event": "upgraded", "at": rfc(day(1)) }), "event"),
        (
            json!({ "event": "subscribed", "at": "yesterday", "period_end": rfc(day(40)) }),
            "at",
        ),
        (
            json!({ "event": "subscribed", "at": rfc(day(11)), "period_end": rfc(day(40)) }),
            "at",
        ),
        (
            json!({ "event": "subscribed", "at": rfc(day(5)) }),
            "period_end",
        ),
        (
            json!({ "event": "trial_started", "at": rfc(day(5)), "period_end": rfc(day(4)) }),
            "period_end",
        ),
        (
            json!({ "event": "suspended", "at": rfc(day(5)), "period_end": rfc(day(9)) }),
            "period_end",
        ),
        (
            json!({ "event": "subscribed", "at": rfc(day(5)), "period_end": rfc(day(40)), "plan": "gold" }),
            "plan",
        ),
        (
            json!({ "event": "subscribed", "at": rfc(day(5)), "period_end": rfc(day(40)), "plan": "trial" }),
            "plan",
        ),
    ] {
        let problem = expect_problem(
            contract(&app, &operator, &org, body.clone()).await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
    }
    // State errors: suspending a free organization, ending a trial that never started,
    // reinstating one not suspended.
    for body in [
        json!({ "event": "suspended", "at": rfc(day(5)) }),
        json!({ "event": "trial_ended", "at": rfc(day(5)) }),
        json!({ "event": "reinstated", "at": rfc(day(5)) }),
        json!({ "event": "renewed", "at": rfc(day(5)), "period_end": rfc(day(50)) }),
    ] {
        expect_problem(
            contract(&app, &operator, &org, body).await,
            409,
            "contract_event_out_of_order",
        )
        .await;
    }
    assert_eq!(lifecycle(&app, &admin, &org).await, unchanged);
    // A trial ending before it started; an event older than the last one.
    contract_ok(
        &app,
        &operator,
        &org,
        json!({ "event": "trial_started", "at": rfc(day(5)), "period_end": rfc(day(35)) }),
    )
    .await;
    let trial = lifecycle(&app, &admin, &org).await;
    expect_problem(
        contract(
            &app,
            &operator,
            &org,
            json!({ "event": "trial_ended", "at": rfc(day(4)) }),
        )
        .await,
        409,
        "contract_event_out_of_order",
    )
    .await;
    assert_eq!(lifecycle(&app, &admin, &org).await, trial);
    // Not an operator: refused.
    let refused = contract(
        &app,
        &admin,
        &org,
        json!({ "event": "cancelled", "at": rfc(day(9)) }),
    )
    .await;
    assert!(
        matches!(refused.status().as_u16(), 401 | 403),
        "{}",
        refused.status()
    );
    // An unknown organization.
    expect_problem(
        contract(
            &app,
            &operator,
            "org_nope",
            json!({ "event": "cancelled", "at": rfc(day(9)) }),
        )
        .await,
        404,
        "not_found",
    )
    .await;
    // The history has the one accepted event; the refused ones left nothing.
    let history = call(
        &app,
        Method::GET,
        &format!("/api/v1/operator/orgs/{org}/lifecycle"),
        &operator,
        None,
        200,
    )
    .await;
    assert_eq!(history["lifecycle"]["plan"], "trial", "{history}");
    let events = history["contract_events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{history}");
    assert_eq!(events[0]["event"], "trial_started");
    assert_eq!(events[0]["at"], rfc(day(5)));
    assert_eq!(events[0]["period_end"], rfc(day(35)));
    // Suspending a deleted organization.
    json_of(delete_org(&app, &admin, &org, GOOD_PASSWORD).await, 202).await;
    let report = states(&app, &operator).await;
    expect_problem(
        contract(
            &app,
            &operator,
            &org,
            json!({ "event": "suspended", "at": rfc(day(10)) }),
        )
        .await,
        409,
        "org_deleted",
    )
    .await;
    assert_eq!(states(&app, &operator).await, report);
    // The contract history outlives the deletion (DEL-5) and the operator still reads it.
    let history = call(
        &app,
        Method::GET,
        &format!("/api/v1/operator/orgs/{org}/lifecycle"),
        &operator,
        None,
        200,
    )
    .await;
    assert_eq!(history["lifecycle"]["state"], "deleted");
    assert_eq!(history["contract_events"].as_array().unwrap().len(), 1);
}

async fn a_deleted_org_is_restored_before_its_purge_but_not_after(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let (admin, org) = admin_with_org(&app, "owner@example.org").await;
    let (other_admin, other) = admin_with_org(&app, "other@example.org").await;
    let operator = app.operator_token().await;
    let restore = |org: String| {
        let app = &app;
        let operator = operator.clone();
        async move {
            app.post(
                &format!("/api/v1/operator/orgs/{org}/restore"),
                Some(&operator),
                &json!({}),
            )
            .await
        }
    };
    expect_problem(restore(org.clone()).await, 409, "org_not_deleted").await;
    json_of(delete_org(&app, &admin, &org, GOOD_PASSWORD).await, 202).await;
    json_of(
        delete_org(&app, &other_admin, &other, GOOD_PASSWORD).await,
        202,
    )
    .await;
    step_to(&app, day(179)).await;
    let restored = json_of(restore(org.clone()).await, 200).await;
    assert_eq!(restored["state"], "active", "{restored}");
    assert!(restored["purge_starts_at"].is_null());
    // Open again to its administrator.
    let admin = session(&app, "owner@example.org").await;
    assert_eq!(lifecycle(&app, &admin, &org).await["state"], "active");
    // The other one's purge starts on day 180; after that there is no way back (DEL-3).
    step_to(&app, day(180)).await;
    let report = states(&app, &operator).await;
    assert_eq!(report[&other]["lifecycle"]["state"], "purging");
    assert_eq!(report[&org]["lifecycle"]["state"], "active");
    expect_problem(restore(other.clone()).await, 409, "org_not_deleted").await;
    // The restore is in the audit trail.
    let restored_events: i64 = {
        use sqlx::Row;
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(app.database.url())
            .await
            .unwrap();
        let n = sqlx::query("SELECT COUNT(*) AS n FROM audit_events WHERE action = 'org.restored'")
            .fetch_one(&pool)
            .await
            .unwrap()
            .get("n");
        pool.close().await;
        n
    };
    assert_eq!(restored_events, 1);
}

/// What a walk expects of one organization: the day it reaches each state.
struct Expect {
    org: String,
    label: &'static str,
    days: Vec<(&'static str, i64)>,
}

/// Steps the clock a day at a time from day 0 to `last` (recording before the first round
/// too) and records the first day each organization was seen in each state; `events` are
/// contract events sent on their day before that day's round. Then compares with the
/// expectations.
async fn walk(
    app: &TestApp,
    operator: &str,
    expects: &[Expect],
    last: i64,
    events: &[(i64, String, Value)],
) {
    let mut seen: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut record = |n: i64, report: BTreeMap<String, Value>| {
        for (org, item) in report {
            let state = item["lifecycle"]["state"].as_str().unwrap().to_owned();
            seen.entry((org, state)).or_insert(n);
        }
    };
    record(0, states(app, operator).await);
    for n in 0..=last {
        app.clock.set(day(n));
        for (_, org, body) in events.iter().filter(|(on, _, _)| *on == n) {
            contract_ok(app, operator, org, body.clone()).await;
        }
        step_to(app, day(n)).await;
        record(n, states(app, operator).await);
    }
    let last_report = states(app, operator).await;
    for expect in expects {
        let lifecycle = &last_report[&expect.org]["lifecycle"];
        for (state, expected_day) in &expect.days {
            // A deletion followed by its purge in the same round is never seen as a state;
            // its date is recorded.
            if *state == "deleted" {
                assert_eq!(
                    lifecycle["deleted_at"].as_str(),
                    Some(rfc(day(*expected_day)).as_str()),
                    "{}: {lifecycle}",
                    expect.label
                );
                continue;
            }
            if *state == "purging" {
                assert_eq!(
                    lifecycle["purge_started_at"].as_str(),
                    Some(rfc(day(*expected_day)).as_str()),
                    "{}: {lifecycle}",
                    expect.label
                );
            }
            let actual = seen.get(&(expect.org.clone(), (*state).to_owned()));
            assert_eq!(
                actual,
                Some(expected_day),
                "{}: reached {state} on day {actual:?}, expected day {expected_day}",
                expect.label
            );
        }
        // Nothing beyond what is expected. The server's own purge loop (every 2 s of real
        // time) runs beside the walk and may finish a purge once it started; the walk's days
        // pass faster than that, so only the order is certain.
        let purging_day = expect
            .days
            .iter()
            .find(|(state, _)| *state == "purging")
            .map(|(_, day)| *day);
        for ((org, state), day) in &seen {
            if *org != expect.org {
                continue;
            }
            if state == "purged" {
                let started = purging_day
                    .unwrap_or_else(|| panic!("{}: purged without a purge", expect.label));
                assert!(
                    *day >= started,
                    "{}: purged on day {day}, before the purge started on day {started}",
                    expect.label
                );
                continue;
            }
            assert!(
                state == "active" || expect.days.iter().any(|(expected, _)| expected == state),
                "{}: unexpected state {state}",
                expect.label
            );
        }
    }
    // Every step that happened did on its day: the report says so.
    let report = json_of(
        app.get("/api/v1/operator/lifecycle/report", Some(operator))
            .await,
        200,
    )
    .await;
    for item in report["items"].as_array().unwrap() {
        for deadline in item["deadlines"].as_array().unwrap() {
            if deadline["name"] != "purge_complete" && !deadline["done_at"].is_null() {
                assert_eq!(deadline["status"], "met", "{item}");
                assert_eq!(deadline["done_at"], deadline["due_at"], "{item}");
            }
        }
    }
}

async fn whitepaper_rows_happen_on_their_day_and_not_a_day_early(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let operator = app.operator_token().await;
    let mut expects = Vec::new();
    // org-deleted: the administrator deletes a free organization on day 0.
    let (admin, org) = admin_with_org(&app, "deleted@example.org").await;
    json_of(delete_org(&app, &admin, &org, GOOD_PASSWORD).await, 202).await;
    expects.push(Expect {
        org,
        label: "org-deleted",
        days: vec![("deleted", 0), ("purging", 180)],
    });
    // trial-ended: a trial ending on day 5 is deleted 30 days later, purged 180 after that.
    let (_, org) = admin_with_org(&app, "trial@example.org").await;
    contract_ok(
        &app,
        &operator,
        &org,
        json!({ "event": "trial_started", "at": rfc(day(0)), "period_end": rfc(day(5)) }),
    )
    .await;
    expects.push(Expect {
        org,
        label: "trial-ended",
        days: vec![("trial_expired", 5), ("deleted", 35), ("purging", 215)],
    });
    // suspended: contract period ends on day 30; deleted 90 days after, purged 180 after that.
    let (_, org) = admin_with_org(&app, "suspended@example.org").await;
    contract_ok(
        &app,
        &operator,
        &org,
        json!({ "event": "subscribed", "at": rfc(day(0)), "period_end": rfc(day(30)) }),
    )
    .await;
    contract_ok(
        &app,
        &operator,
        &org,
        json!({ "event": "suspended", "at": rfc(day(0)) }),
    )
    .await;
    expects.push(Expect {
        org,
        label: "suspended",
        days: vec![("suspended", 0), ("deleted", 120), ("purging", 300)],
    });
    // classic-paid-cancelled: purge 180 days after the contract period end (day 40).
    let (_, org) = admin_with_org(&app, "classicpaid@example.org").await;
    contract_ok(&app, &operator, &org, json!({ "event": "subscribed", "at": rfc(day(0)), "period_end": rfc(day(40)), "plan": "classic_paid" })).await;
    contract_ok(
        &app,
        &operator,
        &org,
        json!({ "event": "cancelled", "at": rfc(day(0)) }),
    )
    .await;
    expects.push(Expect {
        org,
        label: "classic-paid-cancelled",
        days: vec![("deleted", 0), ("purging", 220)],
    });
    // classic-trial-free-cancelled: a classic free space, cancelled on day 0.
    let (_, org) = admin_with_org(&app, "classicfree@example.org").await;
    contract_ok(
        &app,
        &operator,
        &org,
        json!({ "event": "plan_changed", "at": rfc(day(0)), "plan": "classic_free" }),
    )
    .await;
    contract_ok(
        &app,
        &operator,
        &org,
        json!({ "event": "cancelled", "at": rfc(day(0)) }),
    )
    .await;
    expects.push(Expect {
        org,
        label: "classic-trial-free-cancelled",
        days: vec![("deleted", 0), ("purging", 180)],
    });
    // classic-trial-ended: ends on day 10, cancelled 30 days later, purged 180 after that.
    let (_, org) = admin_with_org(&app, "classictrial@example.org").await;
    contract_ok(&app, &operator, &org, json!({ "event": "trial_started", "at": rfc(day(0)), "period_end": rfc(day(10)), "plan": "classic_trial" })).await;
    expects.push(Expect {
        org,
        label: "classic-trial-ended",
        days: vec![("trial_expired", 10), ("deleted", 40), ("purging", 220)],
    });
    // classic-suspended: period ends on day 20; cancelled 90 days after, purged 180 later.
    let (_, org) = admin_with_org(&app, "classicsuspended@example.org").await;
    contract_ok(&app, &operator, &org, json!({ "event": "subscribed", "at": rfc(day(0)), "period_end": rfc(day(20)), "plan": "classic_paid" })).await;
    contract_ok(
        &app,
        &operator,
        &org,
        json!({ "event": "suspended", "at": rfc(day(0)) }),
    )
    .await;
    expects.push(Expect {
        org,
        label: "classic-suspended",
        days: vec![("suspended", 0), ("deleted", 110), ("purging", 290)],
    });
    // A suspension lifted before the deletion, and a trial subscribed in time: kept.
    let (_, reinstated) = admin_with_org(&app, "reinstated@example.org").await;
    contract_ok(
        &app,
        &operator,
        &reinstated,
        json!({ "event": "subscribed", "at": rfc(day(0)), "period_end": rfc(day(10)) }),
    )
    .await;
    contract_ok(
        &app,
        &operator,
        &reinstated,
        json!({ "event": "suspended", "at": rfc(day(0)) }),
    )
    .await;
    expects.push(Expect {
        org: reinstated.clone(),
        label: "reinstated",
        days: vec![("suspended", 0)],
    });
    let (_, subscribed) = admin_with_org(&app, "subscribed@example.org").await;
    contract_ok(
        &app,
        &operator,
        &subscribed,
        json!({ "event": "trial_started", "at": rfc(day(0)), "period_end": rfc(day(3)) }),
    )
    .await;
    expects.push(Expect {
        org: subscribed.clone(),
        label: "subscribed-after-trial",
        days: vec![("trial_expired", 3)],
    });
    // The suspension is lifted the day before its deletion, the trial subscribed then too.
    let events = [
        (
            99,
            reinstated.clone(),
            json!({ "event": "reinstated", "at": rfc(day(99)) }),
        ),
        (
            32,
            subscribed.clone(),
            json!({ "event": "subscribed", "at": rfc(day(32)), "period_end": rfc(day(400)) }),
        ),
    ];
    walk(&app, &operator, &expects, 310, &events).await;
    let report = states(&app, &operator).await;
    assert_eq!(report[&reinstated]["lifecycle"]["state"], "active");
    assert_eq!(report[&subscribed]["lifecycle"]["state"], "active");
}

async fn terms_v3_rows_happen_on_their_day_and_not_a_day_early(engine: TestEngine) {
    let app = spawn_with_policy(engine, "terms-v3").await;
    let operator = app.operator_token().await;
    let mut expects = Vec::new();
    // paid-terminated: 30 days after the day following the termination.
    let (_, org) = admin_with_org(&app, "paid@example.org").await;
    contract_ok(
        &app,
        &operator,
        &org,
        json!({ "event": "subscribed", "at": rfc(day(0)), "period_end": rfc(day(30)) }),
    )
    .await;
    contract_ok(
        &app,
        &operator,
        &org,
        json!({ "event": "cancelled", "at": rfc(day(0)) }),
    )
    .await;
    expects.push(Expect {
        org,
        label: "paid-terminated",
        days: vec![("deleted", 0), ("purging", 31)],
    });
    // paid-suspended: 180 days after the suspension.
    let (_, org) = admin_with_org(&app, "suspended@example.org").await;
    contract_ok(
        &app,
        &operator,
        &org,
        json!({ "event": "subscribed", "at": rfc(day(0)), "period_end": rfc(day(30)) }),
    )
    .await;
    contract_ok(
        &app,
        &operator,
        &org,
        json!({ "event": "suspended", "at": rfc(day(0)) }),
    )
    .await;
    expects.push(Expect {
        org,
        label: "paid-suspended",
        days: vec![("suspended", 0), ("deleted", 180), ("purging", 180)],
    });
    // trial-ended: 180 days after it ends.
    let (_, org) = admin_with_org(&app, "trial@example.org").await;
    contract_ok(
        &app,
        &operator,
        &org,
        json!({ "event": "trial_started", "at": rfc(day(0)), "period_end": rfc(day(7)) }),
    )
    .await;
    expects.push(Expect {
        org,
        label: "trial-ended",
        // Expired and deleted in the same round (no delay between them).
        days: vec![("deleted", 7), ("purging", 187)],
    });
    // trial-deleted: ended by the user on day 0.
    let (admin, org) = admin_with_org(&app, "trialdeleted@example.org").await;
    contract_ok(
        &app,
        &operator,
        &org,
        json!({ "event": "trial_started", "at": rfc(day(0)), "period_end": rfc(day(30)) }),
    )
    .await;
    json_of(delete_org(&app, &admin, &org, GOOD_PASSWORD).await, 202).await;
    expects.push(Expect {
        org,
        label: "trial-deleted",
        days: vec![("deleted", 0), ("purging", 180)],
    });
    // free-requested: on request, at once.
    let (admin, org) = admin_with_org(&app, "free@example.org").await;
    json_of(delete_org(&app, &admin, &org, GOOD_PASSWORD).await, 202).await;
    expects.push(Expect {
        org,
        label: "free-requested",
        days: vec![("deleted", 0), ("purging", 0)],
    });
    // free-unused: asked on day 180, no answer within 30 days: deleted and purged on day 210.
    let (_, org) = admin_with_org(&app, "unused@example.org").await;
    expects.push(Expect {
        org: org.clone(),
        label: "free-unused",
        days: vec![("deleted", 210), ("purging", 210)],
    });
    walk(&app, &operator, &expects, 215, &[]).await;
    let report = states(&app, &operator).await;
    assert_eq!(
        report[&org]["lifecycle"]["continue_asked_at"].as_str(),
        None,
        "cleared at deletion"
    );
    assert_eq!(report[&org]["lifecycle"]["deletion_reason"], "unused");
}

async fn a_free_org_that_confirms_it_continues_is_kept(engine: TestEngine) {
    let app = spawn_with_policy(engine, "terms-v3").await;
    let operator = app.operator_token().await;
    let (admin, org) = admin_with_org(&app, "keeper@example.org").await;
    add_member(&app, &admin, &org, "member@example.org").await;
    step_to(&app, day(179)).await;
    let admin = session(&app, "keeper@example.org").await;
    assert!(lifecycle(&app, &admin, &org).await["continue_asked_at"].is_null());
    step_to(&app, day(180)).await;
    let admin = session(&app, "keeper@example.org").await;
    let member = session(&app, "member@example.org").await;
    let asked = lifecycle(&app, &admin, &org).await;
    assert_eq!(asked["continue_asked_at"], rfc(day(180)), "{asked}");
    // The administrator, and only the administrator, was asked by email, once.
    let asks: Vec<String> = app
        .services
        .outbox(500)
        .await
        .unwrap()
        .into_iter()
        .filter(|entry| entry.kind == "notice.org_continue")
        .filter_map(|entry| entry.mail)
        .map(|mail| {
            assert!(
                mail.body
                    .contains(&format!("/api/v1/orgs/{org}/lifecycle/continue"))
            );
            mail.to
        })
        .collect();
    assert_eq!(asks, vec![String::from("keeper@example.org")]);
    assert_eq!(asked["next_transition"]["to"], "deleted");
    assert_eq!(asked["next_transition"]["at"], rfc(day(210)));
    // Only an administrator answers.
    expect_problem(
        app.post(
            &format!("/api/v1/orgs/{org}/lifecycle/continue"),
            Some(&member),
            &json!({}),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    step_to(&app, day(185)).await;
    let admin = session(&app, "keeper@example.org").await;
    let kept = call(
        &app,
        Method::POST,
        &format!("/api/v1/orgs/{org}/lifecycle/continue"),
        &admin,
        Some(&json!({})),
        200,
    )
    .await;
    assert!(kept["continue_asked_at"].is_null(), "{kept}");
    assert_eq!(kept["next_transition"]["at"], rfc(day(365)));
    for n in 186..=300 {
        step_to(&app, day(n)).await;
    }
    assert_eq!(
        states(&app, &operator).await[&org]["lifecycle"]["state"],
        "active"
    );
    // Use counts as continuing too: a member's action moves the clock on.
    step_to(&app, day(301)).await;
    let admin = session(&app, "keeper@example.org").await;
    call(
        &app,
        Method::POST,
        &format!("/api/v1/orgs/{org}/teams"),
        &admin,
        Some(&json!({ "name": "Still here" })),
        201,
    )
    .await;
    step_to(&app, day(365)).await;
    let admin = session(&app, "keeper@example.org").await;
    let view = lifecycle(&app, &admin, &org).await;
    assert!(view["continue_asked_at"].is_null(), "{view}");
    assert_eq!(view["next_transition"]["at"], rfc(day(301 + 180)), "{view}");
}

const POLL_LIMIT: Duration = Duration::from_secs(20);

/// Delivers the outbox until `address` has a message whose subject contains `subject`.
async fn mail_with_subject(
    app: &TestApp,
    smtp: &SmtpReceiver,
    address: &str,
    subject: &str,
) -> String {
    let deadline = Instant::now() + POLL_LIMIT;
    loop {
        app.services
            .deliver_mail_once(app.clock.now_timestamp())
            .await
            .unwrap();
        let found: Vec<String> = smtp
            .messages_to(address)
            .iter()
            .filter(|mail| mail.header("Subject").is_some_and(|s| s.contains(subject)))
            .map(text_of)
            .collect();
        if let Some(text) = found.first() {
            assert_eq!(found.len(), 1, "one mail {subject:?} to {address}");
            return text.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no mail {subject:?} to {address}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn administrators_are_mailed_before_automatic_deletion_and_at_deletion(engine: TestEngine) {
    let smtp = SmtpReceiver::start().await;
    let database = Arc::new(TestDatabase::create(engine).await);
    let mut settings = test_settings(&database);
    settings.smtp_url = Some(smtp.url());
    let app = spawn_with(database, settings, Arc::new(ManualClock::new(TEST_EPOCH))).await;
    let operator = app.operator_token().await;
    let (admin, org) = admin_with_org(&app, "owner@example.org").await;
    let member = add_member(&app, &admin, &org, "member@example.org").await;
    let _ = member;
    contract_ok(
        &app,
        &operator,
        &org,
        json!({ "event": "trial_started", "at": rfc(day(0)), "period_end": rfc(day(14)) }),
    )
    .await;
    step_to(&app, day(14)).await;
    // Closed to its members at once, before any deletion.
    let admin = session(&app, "owner@example.org").await;
    expect_problem(
        app.get(&format!("/api/v1/orgs/{org}"), Some(&admin)).await,
        404,
        "not_found",
    )
    .await;
    let text = mail_with_subject(
        &app,
        &smtp,
        "owner@example.org",
        "trial of Lifecycle Co has ended",
    )
    .await;
    assert!(
        text.contains("deleted automatically on 2027-01-05"),
        "{text}"
    );
    assert!(text.contains(&org), "{text}");
    step_to(&app, day(44)).await;
    let text =
        mail_with_subject(&app, &smtp, "owner@example.org", "Lifecycle Co was deleted").await;
    assert!(text.contains("purged starting on 2027-07-04"), "{text}");
    assert!(text.contains("completes by 2027-07-14"), "{text}");
    // Running again sends nothing more, and members who are not administrators get nothing.
    step_to(&app, day(45)).await;
    mail_with_subject(&app, &smtp, "owner@example.org", "was deleted").await;
    assert!(smtp.messages_to("member@example.org").iter().all(|mail| {
        let subject = mail.header("Subject").unwrap_or_default();
        !subject.contains("deleted") && !subject.contains("trial")
    }),);
    // A suspension warns too.
    let (_, paid) = admin_with_org(&app, "payer@example.org").await;
    contract_ok(
        &app,
        &operator,
        &paid,
        json!({ "event": "subscribed", "at": rfc(day(45)), "period_end": rfc(day(60)) }),
    )
    .await;
    contract_ok(
        &app,
        &operator,
        &paid,
        json!({ "event": "suspended", "at": rfc(day(45)) }),
    )
    .await;
    let text = mail_with_subject(&app, &smtp, "payer@example.org", "is suspended").await;
    assert!(
        text.contains("deleted automatically on 2027-04-21"),
        "{text}"
    );
}

/// The deadline called `name` in a report item.
fn named<'a>(item: &'a Value, name: &str) -> &'a Value {
    item["deadlines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|deadline| deadline["name"] == name)
        .unwrap_or_else(|| panic!("no {name} deadline in {item}"))
}

async fn the_report_judges_each_deadline(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let operator = app.operator_token().await;
    let (admin, org) = admin_with_org(&app, "owner@example.org").await;
    json_of(delete_org(&app, &admin, &org, GOOD_PASSWORD).await, 202).await;
    let (late_admin, late) = admin_with_org(&app, "late@example.org").await;
    json_of(
        delete_org(&app, &late_admin, &late, GOOD_PASSWORD).await,
        202,
    )
    .await;
    let (_, untouched) = admin_with_org(&app, "untouched@example.org").await;
    // The first is purged on time; the scheduler misses the second's start (it is stepped
    // only for the first, as if it had been down for that organization).
    let report = states(&app, &operator).await;
    assert_eq!(named(&report[&org], "purge_start")["status"], "pending");
    assert_eq!(report[&untouched]["deadlines"], json!([]));
    step_to(&app, day(180)).await;
    // The purge engine stalls on this one: another node holds its lease far beyond the
    // deadline (the server's own purge loop would otherwise finish it on time).
    let pool = app.database.pool().await;
    sqlx::query(
        "UPDATE org_purges SET lease_owner = 'stalled-node', lease_until = $1 WHERE org_id = $2",
    )
    .bind(day(400).as_millis())
    .bind(org.as_str())
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    // The second started three days late: simulate by taking its step at day 183 only.
    let report = states(&app, &operator).await;
    let start = named(&report[&org], "purge_start");
    assert_eq!(start["status"], "met", "{start}");
    assert_eq!(start["done_at"], rfc(day(180)));
    // No purge engine has reported completion: pending while inside the 10 days ...
    let complete = named(&report[&org], "purge_complete");
    assert_eq!(complete["deadline"], rfc(day(190)));
    assert_eq!(complete["status"], "pending", "{complete}");
    // ... and missed after them.
    app.clock.set(day(191));
    let report = json_of(
        app.get("/api/v1/operator/lifecycle/report", Some(&operator))
            .await,
        200,
    )
    .await;
    assert_eq!(report["all_met"], false);
    assert_eq!(report["policy"], "whitepaper-2025");
    let item = report["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["lifecycle"]["org_id"] == org.as_str())
        .unwrap();
    assert_eq!(named(item, "purge_complete")["status"], "missed", "{item}");
    // Only the operator reads it.
    let refused = app
        .get("/api/v1/operator/lifecycle/report", Some(&admin))
        .await;
    assert!(matches!(refused.status().as_u16(), 401 | 403));
    let _ = late;
}

async fn concurrent_schedulers_take_each_step_once(engine: TestEngine) {
    let first = spawn_app(engine).await;
    let second = spawn_with(
        first.database.clone(),
        first.settings.clone(),
        first.clock.clone(),
    )
    .await;
    let mut orgs = Vec::new();
    for n in 0..12 {
        let (admin, org) = admin_with_org(&first, &format!("owner{n}@example.org")).await;
        json_of(delete_org(&first, &admin, &org, GOOD_PASSWORD).await, 202).await;
        orgs.push(org);
    }
    let due = day(180);
    // The servers' own loops run on this clock as well; the test's rounds race them too.
    first.clock.set(due);
    let (a, b, c) = tokio::join!(
        first.services.run_lifecycle_once(due, false),
        second.services.run_lifecycle_once(due, false),
        first.services.run_lifecycle_once(due, false),
    );
    let mut taken: Vec<String> = [a.unwrap(), b.unwrap(), c.unwrap()]
        .into_iter()
        .flat_map(|run| run.actions)
        .filter(|action| action.action == "purge_started")
        .map(|action| action.org_id.to_string())
        .collect();
    taken.sort();
    let mut unique = taken.clone();
    unique.dedup();
    assert_eq!(taken, unique, "a step was taken twice");
    // Each organization's step was taken once overall (by these rounds or the loops).
    let operator = first.operator_token().await;
    let report = states(&first, &operator).await;
    for org in &orgs {
        assert_eq!(report[org]["lifecycle"]["state"], "purging");
        assert_eq!(report[org]["lifecycle"]["purge_started_at"], rfc(due));
    }
    let count: i64 = {
        use sqlx::Row;
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(first.database.url())
            .await
            .unwrap();
        let n = sqlx::query(
            "SELECT COUNT(*) AS n FROM audit_events WHERE action = 'org.lifecycle.changed'",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
        .get("n");
        pool.close().await;
        n
    };
    assert_eq!(
        count,
        orgs.len() as i64,
        "one transition event per organization"
    );
}
