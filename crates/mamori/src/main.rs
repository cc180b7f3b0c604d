//! `mamori`: the one binary. `serve` runs the HTTP server and its background jobs; the other
//! subcommands work on the same data store from the command line.
//!
//! Command output goes to standard output (a created secret on its own last line); logs go to
//! standard error.

mod purge_cli;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use mamori_core::Timestamp;
use mamori_server::app::Backend;
use mamori_server::config::{LogFormat, Overrides, Settings, load};
use mamori_server::{Application, Clock, SystemClock};
use std::path::PathBuf;
use std::sync::Arc;

/// jemalloc gives freed memory back to the OS within about a second (the decay settings are
/// built in through `.cargo/config.toml`), so a 19 MiB Argon2 buffer freed after a login storm
/// leaves the resident set, where the system allocator kept it in a thread arena.
#[cfg(all(target_os = "linux", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "mamori",
    version,
    about = "Accounts, access control and data governance for SaaS providers"
)]
struct Cli {
    #[command(flatten)]
    data: DataArgs,
    #[command(subcommand)]
    command: Command,
}

/// Where the data lives; every subcommand takes these.
#[derive(Args)]
struct DataArgs {
    /// Configuration file (default: ./mamori.toml when it exists).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data folder for the embedded SQLite database, the keyring and the master key.
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// sqlite://PATH or postgres://USER@HOST/DB (default: mamori.db in the data dir).
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server and the background jobs.
    Serve(ServeArgs),
    /// Bring the database schema up to date, then exit.
    Migrate,
    /// Operator tokens.
    Operator {
        #[command(subcommand)]
        command: OperatorCommand,
    },
    /// Apps registered by the operator.
    App {
        #[command(subcommand)]
        command: AppCommand,
    },
    /// Background jobs.
    Jobs {
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// Outgoing mail waiting in, or sent from, the outbox.
    Outbox {
        #[command(subcommand)]
        command: OutboxCommand,
    },
    /// The audit trail: verify chains and exports, sign checkpoints, run retention.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The data lifecycle: deletion policies, contract events, the scheduler, the report,
    /// organization purges.
    Lifecycle {
        #[command(subcommand)]
        command: LifecycleCommand,
    },
}

#[derive(Subcommand)]
enum LifecycleCommand {
    #[command(flatten)]
    Purge(purge_cli::PurgeCommand),
    /// Deletion policies.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Record a contract event for an organization (as POST /operator/orgs/{org}/contract).
    Contract {
        /// The organization, `org_...`.
        org: String,
        /// trial_started, trial_ended, subscribed, renewed, suspended, reinstated, cancelled,
        /// plan_changed.
        #[arg(long)]
        event: String,
        /// When it happened (RFC 3339); default now.
        #[arg(long)]
        at: Option<String>,
        /// The trial end or the contract period end (RFC 3339).
        #[arg(long)]
        period_end: Option<String>,
        /// The plan kind, for trial_started, subscribed and plan_changed.
        #[arg(long)]
        plan: Option<String>,
        /// The time to record at (RFC 3339); default now.
        #[arg(long)]
        now: Option<String>,
    },
    /// Restore a deleted organization before its purge starts.
    Restore {
        org: String,
        /// The time to restore at (RFC 3339); default now.
        #[arg(long)]
        now: Option<String>,
    },
    /// Run the scheduler once and print what it did (or, with --dry-run, would do).
    Run {
        /// The time to run at (RFC 3339); default now.
        #[arg(long)]
        now: Option<String>,
        /// Change nothing; print what is due.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print every organization's lifecycle, each deadline and whether it was met.
    Report {
        /// The time to judge at (RFC 3339); default now.
        #[arg(long)]
        now: Option<String>,
        /// Print the report as JSON (as GET /operator/lifecycle/report).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Print a built-in policy (default: the one configured).
    Show { name: Option<String> },
    /// Check a policy file; errors name the line.
    Check { file: PathBuf },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Re-check every chain (or one organization's) and its signed checkpoints in the store;
    /// exits non-zero naming the first bad seq.
    Verify {
        /// Only this organization's chain (`org_...`), or `platform`.
        #[arg(long, value_name = "ID")]
        org: Option<String>,
    },
    /// Verify an exported JSON Lines file offline with the checkpoint public key.
    VerifyExport {
        /// The file from GET /api/v1/orgs/{org}/audit-events/export?format=jsonl.
        file: PathBuf,
        /// The key from GET /api/v1/audit/public-key (base64url or PEM), or a file holding it.
        #[arg(long, value_name = "KEY", allow_hyphen_values = true)]
        public_key: String,
    },
    /// Print the checkpoint public key.
    PublicKey,
    /// Sign the heads of the chains that are due for a checkpoint now.
    Checkpoint {
        /// The time to sign at (RFC 3339); default now.
        #[arg(long)]
        now: Option<String>,
    },
    /// Run retention once: delete audit events and access logs past their retention.
    Retention {
        /// The time to run at (RFC 3339); default now.
        #[arg(long)]
        now: Option<String>,
    },
}

#[derive(Subcommand)]
enum OutboxCommand {
    /// List the newest messages: status, attempts, recipient, subject (and body with --full).
    List {
        /// How many messages, newest first.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print each message's body too (it may hold one-time links).
        #[arg(long)]
        full: bool,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Outgoing mail server, smtp://HOST:PORT.
    #[arg(long, value_name = "URL")]
    smtp_url: Option<String>,
    /// PEM certificate chain; serves HTTPS with HSTS.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

#[derive(Subcommand)]
enum OperatorCommand {
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create an operator token; it is printed once, on the last line.
    Create {
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum AppCommand {
    /// Register an app; prints {"id": ..., "secret": ...} on the last line.
    Create {
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum JobsCommand {
    /// Run one round of the background jobs and print what was done.
    RunOnce {
        /// The time to run at (RFC 3339); default now.
        #[arg(long)]
        now: Option<String>,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut overrides = Overrides {
        data_dir: cli.data.data_dir,
        database_url: cli.data.database_url,
        ..Overrides::default()
    };
    if let Command::Serve(serve) = &cli.command {
        overrides.listen = serve.listen.clone();
        overrides.smtp_url = serve.smtp_url.clone();
        overrides.tls_cert = serve.tls_cert.clone();
        overrides.tls_key = serve.tls_key.clone();
    }
    let settings = load(cli.data.config.as_deref(), overrides)?;
    init_logging(&settings)?;
    let clock = SystemClock;
    match cli.command {
        Command::Serve(_) => serve(settings).await,
        Command::Migrate => {
            let backend = Backend::open(&settings).await?;
            backend.close().await;
            println!("migrations applied");
            Ok(())
        }
        Command::Operator {
            command:
                OperatorCommand::Token {
                    command: TokenCommand::Create { name },
                },
        } => {
            let backend = Backend::open(&settings).await?;
            let token = backend
                .services
                .create_operator_token(&name, clock.now())
                .await
                .map_err(|error| anyhow::anyhow!("{error}"))?;
            backend.close().await;
            println!(
                "operator token {} created; it is shown only once:",
                token.id
            );
            println!("{}", token.token);
            Ok(())
        }
        Command::App {
            command: AppCommand::Create { name },
        } => {
            let backend = Backend::open(&settings).await?;
            let app = backend
                .services
                .create_app(None, &Default::default(), &name, clock.now())
                .await
                .map_err(|error| anyhow::anyhow!("{error}"))?;
            backend.close().await;
            println!("app {} created; its secret is shown only once:", app.name);
            println!(
                "{}",
                serde_json::json!({ "id": app.id.as_str(), "name": app.name, "secret": app.secret })
            );
            Ok(())
        }
        Command::Outbox {
            command: OutboxCommand::List { limit, full },
        } => {
            let backend = Backend::open(&settings).await?;
            let entries = backend
                .services
                .outbox(limit.clamp(1, 10_000))
                .await
                .map_err(|error| anyhow::anyhow!("{error}"))?;
            backend.close().await;
            if entries.is_empty() {
                println!("the outbox is empty");
            }
            for entry in entries {
                let (to, subject) = match &entry.mail {
                    Some(mail) => (mail.to.as_str(), mail.subject.as_str()),
                    None => ("(unreadable: data key destroyed)", ""),
                };
                println!(
                    "{}  {}  {:<7}  attempts {}  {}  to {}  {:?}{}",
                    entry.id,
                    entry.created_at,
                    entry.status,
                    entry.attempts,
                    entry.kind,
                    to,
                    subject,
                    entry
                        .last_error
                        .as_deref()
                        .map(|error| format!("  last error: {error}"))
                        .unwrap_or_default()
                );
                if full && let Some(mail) = &entry.mail {
                    println!("{}\n", mail.body);
                }
            }
            Ok(())
        }
        Command::Audit { command } => audit(&settings, command).await,
        Command::Lifecycle { command } => lifecycle(&settings, command).await,
        Command::Jobs {
            command: JobsCommand::RunOnce { now },
        } => {
            let now = match now {
                Some(text) => Timestamp::parse_rfc3339(&text)
                    .with_context(|| format!("--now {text} is not an RFC 3339 time"))?,
                None => clock.now(),
            };
            let backend = Backend::open(&settings).await?;
            let report = backend
                .services
                .run_jobs_once(now)
                .await
                .map_err(|error| anyhow::anyhow!("{error}"))?;
            backend.close().await;
            println!(
                "at {now}: {} expired sessions removed, {} data keys destroyed, {} finished mails deleted",
                report.sessions_expired, report.keys_destroyed, report.mail_purged
            );
            Ok(())
        }
    }
}

fn parse_now(now: Option<String>, clock: &SystemClock) -> anyhow::Result<Timestamp> {
    match now {
        Some(text) => Timestamp::parse_rfc3339(&text)
            .with_context(|| format!("--now {text} is not an RFC 3339 time")),
        None => Ok(clock.now()),
    }
}

async fn audit(settings: &Settings, command: AuditCommand) -> anyhow::Result<()> {
    let clock = SystemClock;
    if let AuditCommand::VerifyExport { file, public_key } = &command {
        let text = match std::fs::read_to_string(public_key) {
            Ok(text) => text,
            Err(_) => public_key.clone(),
        };
        let key = mamori_service::parse_public_key(&text)
            .context("--public-key is not an Ed25519 public key (base64url or PEM)")?;
        let reader = std::io::BufReader::new(
            std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?,
        );
        let verdict = mamori_service::verify_export(reader, &key)
            .with_context(|| format!("cannot read {}", file.display()))?;
        if let Some(why) = &verdict.malformed {
            anyhow::bail!("{} is not an audit export: {why}", file.display());
        }
        let Some(chain) = verdict.chain.as_ref() else {
            anyhow::bail!("{} holds no events", file.display());
        };
        if let Some(bad) = &chain.first_break {
            anyhow::bail!(
                "chain {}: first bad seq {}: {}",
                chain.chain,
                bad.seq,
                bad.reason
            );
        }
        if !verdict.complete {
            anyhow::bail!(
                "chain {}: events {} to {} verify, but no signed checkpoint covers seq {}: \
                 the export may be incomplete",
                chain.chain,
                chain.first_seq,
                chain.last_seq,
                chain.last_seq
            );
        }
        println!(
            "chain {}: seq {} to {} verified ({} events, {} signed checkpoints); complete",
            chain.chain, chain.first_seq, chain.last_seq, chain.events, chain.checkpoints
        );
        return Ok(());
    }
    let backend = Backend::open(settings).await?;
    let services = backend.services.clone();
    let result = async {
        match command {
            AuditCommand::VerifyExport { .. } => Ok(()),
            AuditCommand::Verify { org } => {
                let verdicts = services
                    .verify_audit(org.as_deref())
                    .await
                    .map_err(|error| anyhow::anyhow!("{error}"))?;
                if org.is_some() && verdicts.is_empty() {
                    anyhow::bail!("no audit chain {}", org.unwrap_or_default());
                }
                let mut first_bad = None;
                for verdict in &verdicts {
                    match &verdict.first_break {
                        None => println!(
                            "chain {}: ok, seq {} to {} ({} events, {} checkpoints)",
                            verdict.chain,
                            verdict.first_seq,
                            verdict.last_seq,
                            verdict.events,
                            verdict.checkpoints
                        ),
                        Some(bad) => {
                            println!(
                                "chain {}: BROKEN at seq {}: {}",
                                verdict.chain, bad.seq, bad.reason
                            );
                            first_bad.get_or_insert((verdict.chain.clone(), bad.clone()));
                        }
                    }
                }
                match first_bad {
                    Some((chain, bad)) => {
                        anyhow::bail!("chain {chain}: first bad seq {}: {}", bad.seq, bad.reason)
                    }
                    None => Ok(()),
                }
            }
            AuditCommand::PublicKey => {
                let key = services
                    .audit_public_key()
                    .await
                    .map_err(|error| anyhow::anyhow!("{error}"))?;
                println!("key id {}", key.key_id);
                print!("{}", key.public_key_pem);
                println!("{}", key.public_key);
                Ok(())
            }
            AuditCommand::Checkpoint { now } => {
                let now = parse_now(now, &clock)?;
                let minutes = settings.audit.checkpoint_every_minutes;
                let signed = services
                    .run_audit_checkpoints_once(
                        settings.audit.checkpoint_every_events,
                        now.plus_millis(-minutes * 60_000),
                        now,
                    )
                    .await
                    .map_err(|error| anyhow::anyhow!("{error}"))?;
                println!("at {now}: {signed} checkpoints signed");
                Ok(())
            }
            AuditCommand::Retention { now } => {
                let now = parse_now(now, &clock)?;
                let report = services
                    .run_retention_once(now)
                    .await
                    .map_err(|error| anyhow::anyhow!("{error}"))?;
                println!(
                    "at {now}: {} audit events deleted from {} chains, {} access logs deleted",
                    report.audit_events_deleted,
                    report.audit_chains_trimmed,
                    report.access_logs_deleted
                );
                Ok(())
            }
        }
    }
    .await;
    backend.close().await;
    result
}

async fn lifecycle(settings: &Settings, command: LifecycleCommand) -> anyhow::Result<()> {
    use mamori_service::lifecycle::policy::{BUILT_IN, Policy};
    let clock = SystemClock;
    let command = match command {
        LifecycleCommand::Purge(command) => {
            return purge_cli::run(settings, command, clock.now()).await;
        }
        LifecycleCommand::Policy {
            command: PolicyCommand::Show { name },
        } => {
            let policy = match name {
                Some(name) => Policy::built_in(&name).with_context(|| {
                    let names: Vec<&str> = BUILT_IN.iter().map(|(name, _)| *name).collect();
                    format!("no built-in policy {name} (built in: {})", names.join(", "))
                })?,
                None => settings.lifecycle_policy.clone(),
            };
            print!("{}", policy.source);
            return Ok(());
        }
        LifecycleCommand::Policy {
            command: PolicyCommand::Check { file },
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let policy = Policy::parse(&text)
                .map_err(|error| anyhow::anyhow!("{}: {error}", file.display()))?;
            println!(
                "{}: policy {} is valid ({} rules)",
                file.display(),
                policy.name,
                policy.rules.len()
            );
            return Ok(());
        }
        other => other,
    };
    let backend = Backend::open(settings).await?;
    let services = backend.services.clone();
    let result = async {
        let fail = |error: mamori_service::ServiceError| anyhow::anyhow!("{error}");
        match command {
            LifecycleCommand::Policy { .. } | LifecycleCommand::Purge(_) => Ok(()),
            LifecycleCommand::Contract {
                org,
                event,
                at,
                period_end,
                plan,
                now,
            } => {
                let now = parse_now(now, &clock)?;
                let parse = |flag: &str, text: String| {
                    Timestamp::parse_rfc3339(&text)
                        .with_context(|| format!("--{flag} {text} is not an RFC 3339 time"))
                };
                let input = mamori_service::lifecycle::ContractEventInput {
                    event,
                    at: at.map(|text| parse("at", text)).transpose()?.unwrap_or(now),
                    period_end: period_end
                        .map(|text| parse("period-end", text))
                        .transpose()?,
                    plan,
                };
                let view = services
                    .record_contract_event(None, &Default::default(), &org, &input, now)
                    .await
                    .map_err(fail)?;
                println!(
                    "{} is {} on the {} plan",
                    view.org_id, view.state, view.plan
                );
                Ok(())
            }
            LifecycleCommand::Restore { org, now } => {
                let now = parse_now(now, &clock)?;
                let view = services
                    .restore_org(None, &Default::default(), &org, now)
                    .await
                    .map_err(fail)?;
                println!("{} restored; it is {}", view.org_id, view.state);
                Ok(())
            }
            LifecycleCommand::Run { now, dry_run } => {
                let now = parse_now(now, &clock)?;
                let run = services
                    .run_lifecycle_once(now, dry_run)
                    .await
                    .map_err(fail)?;
                let verb = if dry_run { "would take" } else { "took" };
                println!(
                    "at {now}: {verb} {} lifecycle steps (policy {})",
                    run.actions.len(),
                    services.lifecycle_policy().name
                );
                for action in run.actions {
                    println!(
                        "{} {}: {} -> {} (due {})",
                        action.org_id, action.action, action.from, action.to, action.due_at
                    );
                }
                Ok(())
            }
            LifecycleCommand::Report { now, json } => {
                let now = parse_now(now, &clock)?;
                let report = services.lifecycle_report(now).await.map_err(fail)?;
                if json {
                    let body = mamori_server::lifecycle_report_body(report);
                    println!("{}", serde_json::to_string_pretty(&body)?);
                    return Ok(());
                }
                println!(
                    "lifecycle report at {now}, policy {}: {} organizations; {}",
                    report.policy,
                    report.items.len(),
                    if report.all_met {
                        "every deadline met so far"
                    } else {
                        "DEADLINES MISSED"
                    }
                );
                let show = |at: Option<Timestamp>| {
                    at.map_or_else(|| String::from("-"), |at| at.to_rfc3339())
                };
                for item in report.items {
                    let view = &item.lifecycle;
                    println!(
                        "{}  {}  plan {}  deleted {} ({})  purge starts {}  due by {}  purged {}",
                        view.org_id,
                        view.state,
                        view.plan,
                        show(view.deleted_at),
                        view.deletion_reason.as_deref().unwrap_or("-"),
                        show(view.purge_starts_at),
                        show(view.purge_due_by),
                        show(view.purged_at),
                    );
                    if let Some(purge) = &item.purge {
                        let steps: Vec<String> = purge
                            .steps
                            .iter()
                            .map(|step| match step.done_at {
                                Some(_) => format!("{} {}", step.name, step.rows),
                                None => format!("{} (under way)", step.name),
                            })
                            .collect();
                        println!(
                            "    purge requested {}  finished {}  steps: {}",
                            purge.requested_at,
                            show(purge.finished_at),
                            if steps.is_empty() {
                                String::from("none yet")
                            } else {
                                steps.join(", ")
                            }
                        );
                    }
                    for deadline in item.deadlines {
                        let name = match &deadline.app_id {
                            Some(app) => format!("{} {app}", deadline.name),
                            None => deadline.name.to_owned(),
                        };
                        println!(
                            "    {:<18} due {}  deadline {}  done {}  {}",
                            name,
                            deadline.due_at,
                            deadline.deadline,
                            show(deadline.done_at),
                            deadline.status.to_uppercase()
                        );
                    }
                }
                Ok(())
            }
        }
    }
    .await;
    backend.close().await;
    result
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let application = Application::build(settings, Arc::new(SystemClock)).await?;
    let scheme = if application.is_tls() {
        "https"
    } else {
        "http"
    };
    let address = application.address();
    tracing::info!(%address, "mamori listening");
    println!("mamori listening on {scheme}://{address}");
    application.run(shutdown_signal()).await
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down; finishing requests in flight");
}

fn init_logging(settings: &Settings) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log_filter)
        .with_context(|| format!("log.filter {} is not a valid filter", settings.log_filter))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match settings.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|error| anyhow::anyhow!("cannot start logging: {error}"))
}
