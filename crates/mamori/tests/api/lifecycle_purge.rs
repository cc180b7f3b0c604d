//! The lifecycle and the purge engine together (issue 6): the scheduler hands a due purge to
//! the engine, the organization's own audit trail goes on its own date (AUD-3), the app
//! confirms, and the evidence report shows every deadline met with the purge's steps.

use crate::orgs::{call, create_org};
use mamori_core::Timestamp;
use mamori_testkit::{GOOD_PASSWORD, TEST_EPOCH, TestApp, TestEngine, json_of, spawn_app};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::Row;

mamori_testkit::engine_tests!(
    a_trial_orgs_audit_trail_goes_on_its_own_day_and_the_purge_completes_the_lifecycle,
);

const DAY_MS: i64 = 86_400_000;

fn day(n: i64) -> Timestamp {
    TEST_EPOCH.plus_millis(n * DAY_MS)
}

/// Events in the organization's own audit chain.
async fn org_events(app: &TestApp, org: &str) -> i64 {
    let pool = app.database.pool().await;
    let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM audit_events WHERE chain = $1")
        .bind(org)
        .fetch_one(&pool)
        .await
        .unwrap()
        .get("n");
    pool.close().await;
    n
}

async fn step_to(app: &TestApp, n: i64) {
    app.clock.set(day(n));
    app.services
        .run_lifecycle_once(day(n), false)
        .await
        .unwrap();
}

async fn report_item(app: &TestApp, operator: &str, org: &str) -> (Value, bool) {
    let report = json_of(
        app.get("/api/v1/operator/lifecycle/report", Some(operator))
            .await,
        200,
    )
    .await;
    let item = report["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["lifecycle"]["org_id"] == org)
        .unwrap()
        .clone();
    (item, report["all_met"].as_bool().unwrap())
}

fn deadline<'a>(item: &'a Value, name: &str) -> &'a Value {
    item["deadlines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|deadline| deadline["name"] == name)
        .unwrap_or_else(|| panic!("no {name} deadline in {item}"))
}

async fn a_trial_orgs_audit_trail_goes_on_its_own_day_and_the_purge_completes_the_lifecycle(
    engine: TestEngine,
) {
    let app = spawn_app(engine).await;
    let operator = app.operator_token().await;
    let (_, admin) = app.account_with_session("trial.owner@example.org").await;
    let org = create_org(&app, &admin, "Trial Holdings").await;
    // Some history in the organization's own trail, and an app that holds its data.
    call(
        &app,
        Method::POST,
        &format!("/api/v1/orgs/{org}/teams"),
        &admin,
        Some(&json!({ "name": "Early Team" })),
        201,
    )
    .await;
    let created = call(
        &app,
        Method::POST,
        "/api/v1/operator/apps",
        &operator,
        Some(&json!({ "name": "Tracker" })),
        201,
    )
    .await;
    let app_id = created["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();
    call(
        &app,
        Method::PUT,
        &format!("/api/v1/orgs/{org}/apps/{app_id}"),
        &admin,
        Some(&json!({ "mode": "all" })),
        200,
    )
    .await;
    // The trial ends on day 5: deleted 30 days later (day 35), and its audit trail goes that
    // day too (AUD-3: 30 days after a trial without subscription ends); the purge starts 180
    // days after the deletion (day 215) and completes within 10.
    call(
        &app,
        Method::POST,
        &format!("/api/v1/operator/orgs/{org}/contract"),
        &operator,
        Some(&json!({
            "event": "trial_started", "at": day(0).to_rfc3339(), "period_end": day(5).to_rfc3339(),
        })),
        200,
    )
    .await;
    for n in 0..=34 {
        step_to(&app, n).await;
    }
    assert!(
        org_events(&app, &org).await > 0,
        "the trail is kept until day 35"
    );
    let (item, _) = report_item(&app, &operator, &org).await;
    assert_eq!(item["lifecycle"]["state"], "trial_expired", "{item}");

    step_to(&app, 35).await;
    assert_eq!(org_events(&app, &org).await, 0, "the trail goes on day 35");
    let (item, _) = report_item(&app, &operator, &org).await;
    assert_eq!(item["lifecycle"]["state"], "deleted", "{item}");
    let audit = deadline(&item, "audit_purge");
    assert_eq!(audit["status"], "met", "{audit}");
    assert_eq!(audit["done_at"], day(35).to_rfc3339());
    // What remains of the chain still verifies: the cut is signed.
    let verdicts = app.services.verify_audit(Some(&org)).await.unwrap();
    assert!(verdicts[0].first_break.is_none(), "{:?}", verdicts[0]);

    for n in 36..=214 {
        step_to(&app, n).await;
    }
    let (item, _) = report_item(&app, &operator, &org).await;
    assert_eq!(
        item["lifecycle"]["state"], "deleted",
        "not a day early: {item}"
    );
    assert_eq!(item["purge"], Value::Null, "{item}");

    // Day 215: the scheduler starts the purge; the engine owes the app its notice.
    step_to(&app, 215).await;
    let (item, _) = report_item(&app, &operator, &org).await;
    assert_eq!(item["lifecycle"]["state"], "purging", "{item}");
    assert_eq!(item["purge"]["due_by"], day(225).to_rfc3339(), "{item}");
    assert_eq!(deadline(&item, "app_confirmed")["status"], "pending");
    assert_eq!(deadline(&item, "app_confirmed")["app_id"], app_id.as_str());
    // The app says it deleted its part.
    let confirmed = json_of(
        app.post(
            "/api/v1/app/purge-confirmations",
            Some(&secret),
            &json!({ "org_id": org }),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(confirmed["org_id"], org.as_str());

    // The engine runs its rounds the next day; the scheduler then records the end.
    app.clock.set(day(216));
    for _ in 0..100 {
        let round = app.services.run_purges_once(day(216)).await.unwrap();
        if round.in_progress.is_empty() {
            break;
        }
    }
    step_to(&app, 216).await;
    let (item, all_met) = report_item(&app, &operator, &org).await;
    assert_eq!(item["lifecycle"]["state"], "purged", "{item}");
    for name in [
        "automatic_deletion",
        "audit_purge",
        "purge_start",
        "purge_complete",
        "app_confirmed",
    ] {
        assert_eq!(deadline(&item, name)["status"], "met", "{name}: {item}");
    }
    let steps: Vec<&str> = item["purge"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["name"].as_str().unwrap())
        .collect();
    assert_eq!(steps.len(), 10, "{item}");
    assert_eq!(steps.last(), Some(&"key"));
    assert!(all_met, "{item}");
    assert!(app.services.keyring().is_destroyed(&org).await.unwrap());
    // The administrator's own account stays (a fresh session: the first one's 30 days are
    // long over), and the organization's door stays shut.
    let admin = app
        .log_in("trial.owner@example.org", GOOD_PASSWORD)
        .await
        .token;
    let closed = app.get(&format!("/api/v1/orgs/{org}"), Some(&admin)).await;
    assert_eq!(closed.status(), 404);
}
