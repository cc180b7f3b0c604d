//! `mamori lifecycle ...` as a process over the test's databases: policies shown and checked
//! (errors name the line), the scheduler run by hand with `--now` and `--dry-run`, contract
//! events and the report.

use mamori_testkit::process::run;
use mamori_testkit::{GOOD_PASSWORD, TEST_EPOCH, TestApp, TestEngine, json_of, spawn_app};
use reqwest::Method;
use serde_json::{Value, json};
use std::path::Path;

mamori_testkit::engine_tests!(
    policies_are_shown_and_checked_with_the_line_named,
    the_scheduler_runs_by_hand_dry_or_for_real_and_reports,
    contract_events_from_the_command_line,
);

const DAY_MS: i64 = 86_400_000;

fn day(n: i64) -> String {
    TEST_EPOCH.plus_millis(n * DAY_MS).to_rfc3339()
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

async fn mamori_ok(app: &TestApp, args: &[&str]) -> String {
    let (ok, stdout, stderr) = mamori(app, args).await;
    assert!(ok, "mamori {args:?} failed: {stdout}\n{stderr}");
    stdout
}

async fn mamori_fails(app: &TestApp, args: &[&str]) -> String {
    let (ok, stdout, stderr) = mamori(app, args).await;
    assert!(!ok, "mamori {args:?} succeeded: {stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// An administrator's organization, deleted on day 0; returns its ID.
async fn deleted_org(app: &TestApp, email: &str) -> String {
    let (_, token) = app.account_with_session(email).await;
    let org = json_of(
        app.post(
            "/api/v1/orgs",
            Some(&token),
            &json!({ "name": "Gone Soon" }),
        )
        .await,
        201,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    json_of(
        app.request(
            Method::DELETE,
            &format!("/api/v1/orgs/{org}"),
            Some(&token),
            Some(&json!({ "password": GOOD_PASSWORD })),
        )
        .await,
        202,
    )
    .await;
    org
}

async fn report_item(app: &TestApp, org: &str) -> Value {
    let stdout = mamori_ok(app, &["lifecycle", "report", "--json", "--now", &day(0)]).await;
    let report: Value = serde_json::from_str(&stdout).unwrap();
    report["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["lifecycle"]["org_id"] == org)
        .cloned()
        .unwrap_or_else(|| panic!("{org} not in {report}"))
}

async fn policies_are_shown_and_checked_with_the_line_named(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let shown = mamori_ok(&app, &["lifecycle", "policy", "show"]).await;
    assert!(shown.contains("name = \"whitepaper-2025\""), "{shown}");
    assert!(shown.contains("id = \"classic-paid-cancelled\""), "{shown}");
    assert!(
        shown.contains("trigger = \"managed_account_deleted\""),
        "{shown}"
    );
    assert!(shown.contains("id = \"audit-stored\""), "{shown}");
    let terms = mamori_ok(&app, &["lifecycle", "policy", "show", "terms-v3"]).await;
    assert!(terms.contains("trigger = \"unused\""), "{terms}");
    let stderr = mamori_fails(&app, &["lifecycle", "policy", "show", "nope"]).await;
    assert!(
        stderr.contains("built in: whitepaper-2025, terms-v3"),
        "{stderr}"
    );

    let dir = app.database.data_dir().to_path_buf();
    let good = dir.join("good.toml");
    std::fs::write(&good, &terms).unwrap();
    let stdout = mamori_ok(
        &app,
        &["lifecycle", "policy", "check", good.to_str().unwrap()],
    )
    .await;
    assert!(stdout.contains("policy terms-v3 is valid"), "{stdout}");

    // The rule at line 4 has a negative delay, names an unknown plan, misses a delay.
    let head = "name = \"mine\"\nbackup_retention_days = 30\n\n";
    let rule = "[[rule]]\nid = \"r\"\ndata = \"organization\"\n\
        plans = [\"free\", \"trial\", \"paid\", \"classic_paid\", \"classic_trial\", \"classic_free\"]\n\
        trigger = \"deleted\"\npurge_after_days = 180\npurge_within_days = 10\n";
    for (bad, needle) in [
        (
            rule.replace("= 180", "= -1"),
            "line 4: rule `r`: purge_after_days must not be negative",
        ),
        (
            rule.replace("\"paid\"", "\"gold\""),
            "line 4: unknown plan kind `gold`",
        ),
        (
            rule.replace("purge_within_days = 10\n", ""),
            "line 4: rule `r`: purge_within_days is missing",
        ),
        (
            rule.replace("trigger = \"deleted\"", "trigger = \"whenever\""),
            "line 4: unknown trigger",
        ),
        (format!("{rule}colour = 3\n"), "line 11"),
    ] {
        let file = dir.join("bad.toml");
        std::fs::write(&file, format!("{head}{bad}")).unwrap();
        let stderr = mamori_fails(
            &app,
            &["lifecycle", "policy", "check", file.to_str().unwrap()],
        )
        .await;
        assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
        assert!(stderr.contains("bad.toml"), "{stderr}");
    }
    // A deletion rule must cover every plan kind.
    let file = dir.join("partial.toml");
    std::fs::write(&file, format!("{head}{}", rule.replace("\"free\", ", ""))).unwrap();
    let stderr = mamori_fails(
        &app,
        &["lifecycle", "policy", "check", file.to_str().unwrap()],
    )
    .await;
    assert!(stderr.contains("covers plan `free`"), "{stderr}");
}

async fn the_scheduler_runs_by_hand_dry_or_for_real_and_reports(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let org = deleted_org(&app, "owner@example.org").await;
    // A day early: nothing.
    let stdout = mamori_ok(&app, &["lifecycle", "run", "--now", &day(179)]).await;
    assert!(
        stdout.contains("took 0 lifecycle steps (policy whitepaper-2025)"),
        "{stdout}"
    );
    // A dry run on the day says what it would do and does nothing.
    let stdout = mamori_ok(&app, &["lifecycle", "run", "--dry-run", "--now", &day(180)]).await;
    // The audit trail goes on the day the purge starts (AUD-3: 180 days after deletion),
    // just before it.
    assert!(stdout.contains("would take 2 lifecycle steps"), "{stdout}");
    assert!(
        stdout.contains(&format!("{org} audit_purged: deleted -> deleted")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{org} purge_started: deleted -> purging")),
        "{stdout}"
    );
    assert_eq!(
        report_item(&app, &org).await["lifecycle"]["state"],
        "deleted"
    );
    // For real: once.
    let stdout = mamori_ok(&app, &["lifecycle", "run", "--now", &day(180)]).await;
    assert!(stdout.contains("took 2 lifecycle steps"), "{stdout}");
    assert!(
        stdout.contains(&format!("{org} purge_started: deleted -> purging")),
        "{stdout}"
    );
    let stdout = mamori_ok(&app, &["lifecycle", "run", "--now", &day(181)]).await;
    assert!(stdout.contains("took 0 lifecycle steps"), "{stdout}");
    let item = report_item(&app, &org).await;
    assert_eq!(item["lifecycle"]["state"], "purging", "{item}");
    assert_eq!(item["lifecycle"]["purge_started_at"], day(180));
    // The report in text.
    let stdout = mamori_ok(&app, &["lifecycle", "report", "--now", &day(181)]).await;
    assert!(
        stdout.contains("policy whitepaper-2025: 1 organizations"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{org}  purging  plan free")),
        "{stdout}"
    );
    let start_line = stdout
        .lines()
        .find(|line| line.trim_start().starts_with("purge_start "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(start_line.ends_with("MET"), "{start_line}");
    let stdout = mamori_ok(&app, &["lifecycle", "report", "--now", &day(191)]).await;
    assert!(stdout.contains("DEADLINES MISSED"), "{stdout}");
    // A bad --now.
    let stderr = mamori_fails(&app, &["lifecycle", "run", "--now", "tomorrow"]).await;
    assert!(
        stderr.contains("--now tomorrow is not an RFC 3339 time"),
        "{stderr}"
    );
}

async fn contract_events_from_the_command_line(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let (_, token) = app.account_with_session("owner@example.org").await;
    let org = json_of(
        app.post("/api/v1/orgs", Some(&token), &json!({ "name": "Trial Co" }))
            .await,
        201,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let stdout = mamori_ok(
        &app,
        &[
            "lifecycle",
            "contract",
            &org,
            "--event",
            "trial_started",
            "--at",
            &day(0),
            "--period-end",
            &day(14),
            "--now",
            &day(0),
        ],
    )
    .await;
    assert!(
        stdout.contains(&format!("{org} is active on the trial plan")),
        "{stdout}"
    );
    let stderr = mamori_fails(
        &app,
        &[
            "lifecycle",
            "contract",
            &org,
            "--event",
            "suspended",
            "--now",
            &day(1),
        ],
    )
    .await;
    assert!(stderr.contains("contract_event_out_of_order"), "{stderr}");
    let stdout = mamori_ok(&app, &["lifecycle", "run", "--now", &day(14)]).await;
    assert!(
        stdout.contains(&format!("{org} trial_expired: active -> trial_expired")),
        "{stdout}"
    );
    let item = report_item(&app, &org).await;
    assert_eq!(item["lifecycle"]["deletion_due_at"], day(44), "{item}");
}
