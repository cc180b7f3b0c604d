//! `mamori lifecycle purge ORG --confirm ORG` and `mamori lifecycle purge-run [--now]`: the
//! organization purge from the command line (flattened into `mamori lifecycle`).

use anyhow::Context;
use clap::Subcommand;
use mamori_core::{OrgId, Timestamp};
use mamori_server::app::Backend;
use mamori_server::config::Settings;
use mamori_server::{Clock, SystemClock};
use mamori_service::{PurgeStatus, ServiceError};

#[derive(Subcommand)]
pub enum PurgeCommand {
    /// Request the purge of an organization now (erasure on request), due within 10 days:
    /// it is closed to members and apps at once; the purge itself runs in `serve` or with
    /// `purge-run`.
    Purge {
        /// The organization (`org_...`).
        org: String,
        /// The organization's ID again, to confirm.
        #[arg(long, value_name = "ORG")]
        confirm: String,
    },
    /// Run the open purges and deliver due webhooks once (repeating purge rounds until none
    /// makes progress), and print what was done.
    PurgeRun {
        /// The time to run at (RFC 3339); default now.
        #[arg(long)]
        now: Option<String>,
    },
}

fn print_status(status: &PurgeStatus) {
    println!(
        "purge of {}: requested {}, due by {}, {}",
        status.org_id,
        status.requested_at,
        status.due_by,
        match status.finished_at {
            Some(at) => format!("finished {at}"),
            None => String::from("not finished"),
        }
    );
    for step in &status.steps {
        match step.done_at {
            Some(at) => println!("  step {:<15} done {at}  rows {}", step.name, step.rows),
            None => println!("  step {:<15} under way  rows {}", step.name, step.rows),
        }
    }
    for app in &status.apps {
        println!(
            "  app {}  webhook {}  attempts {}  confirmed {}{}",
            app.app_id,
            app.webhook_delivered_at.map_or_else(
                || String::from("not delivered"),
                |at| format!("delivered {at}")
            ),
            app.attempts,
            app.confirmed_at
                .map_or_else(|| String::from("no"), |at| at.to_string()),
            if app.overdue { "  OVERDUE" } else { "" }
        );
    }
}

pub async fn run(settings: &Settings, command: PurgeCommand, now: Timestamp) -> anyhow::Result<()> {
    let backend = Backend::open(settings).await?;
    let services = backend.services.clone();
    let result = async {
        match command {
            PurgeCommand::Purge { org, confirm } => {
                let status = services
                    .request_purge(None, &Default::default(), &org, &confirm, now)
                    .await
                    .map_err(|error| match error {
                        ServiceError::Validation(errors) => anyhow::anyhow!(
                            "{}",
                            errors
                                .iter()
                                .map(|e| format!("--{} {}", e.field, e.message))
                                .collect::<Vec<_>>()
                                .join("; ")
                        ),
                        ServiceError::NotFound => anyhow::anyhow!("no organization {org}"),
                        other => anyhow::anyhow!("{other}"),
                    })?;
                print_status(&status);
                Ok(())
            }
            PurgeCommand::PurgeRun { now: at } => {
                // A given time holds for every round; otherwise each round runs at the current
                // time, so the purge's lease is renewed as time passes.
                let fixed = match at {
                    Some(text) => Some(
                        Timestamp::parse_rfc3339(&text)
                            .with_context(|| format!("--now {text} is not an RFC 3339 time"))?,
                    ),
                    None => None,
                };
                let clock = || fixed.unwrap_or_else(|| SystemClock.now());
                let now = clock();
                let mut touched: Vec<OrgId> = Vec::new();
                let (mut steps, mut rows, mut busy, mut failed) = (0, 0, 0, 0);
                loop {
                    let report = services
                        .run_purges_once(clock())
                        .await
                        .map_err(|error| anyhow::anyhow!("{error}"))?;
                    steps += report.steps_done;
                    rows += report.rows;
                    busy = busy.max(report.busy);
                    failed += report.failed;
                    for org in report.finished.iter().chain(&report.in_progress) {
                        if !touched.contains(org) {
                            touched.push(org.clone());
                        }
                    }
                    if report.in_progress.is_empty() || report.failed > 0 {
                        break;
                    }
                }
                let webhooks = services
                    .deliver_webhooks_once(clock())
                    .await
                    .map_err(|error| anyhow::anyhow!("{error}"))?;
                println!(
                    "at {now}: {steps} purge steps done, {rows} rows removed, {busy} purges held by another node, {failed} failed; webhooks: {} delivered, {} to retry, {} given up",
                    webhooks.delivered, webhooks.retrying, webhooks.gave_up
                );
                for org in &touched {
                    if let Some(status) = services
                        .purge_status(org, clock())
                        .await
                        .map_err(|error| anyhow::anyhow!("{error}"))?
                    {
                        print_status(&status);
                    }
                }
                if failed > 0 {
                    anyhow::bail!("{failed} purges failed a step; see the log");
                }
                Ok(())
            }
        }
    }
    .await;
    backend.close().await;
    result
}
