//! The organization purge (DEL-3, DEL-5, DEL-7, AUD-3): removes every trace of an organization
//! from every store, step by recorded step, then destroys its data key (crypto-shredding).
//! See `docs/design/purge.md`.
//!
//! - [`Services::request_purge_in_tx`] records the request in the caller's transaction:
//!   the organization is `purging` (closed to members and apps) at its commit, and the
//!   `org.purge_started` webhook is owed to every app enabled for it.
//! - [`Services::run_purges_once`] runs the steps of open purges ([`PURGE_STEPS`], in order),
//!   each batch in its own transaction that also records the step's progress in
//!   `purge_steps`, so a crash resumes at the first step not done and redoing a step is
//!   harmless. A purge is leased to one node at a time (a conditional update, renewed in
//!   every step's transaction); each call does a bounded number of transactions per purge, so
//!   the lease, taken at the call's `now`, stays valid while it runs.
//! - [`Services::deliver_webhooks_once`] sends the webhooks, signed, with backoff for 8 days;
//!   apps confirm with [`Services::confirm_purge`].

use crate::audit::{AuditDraft, RequestContext};
use crate::sessions::{AppPrincipal, OperatorPrincipal};
use crate::{ServiceError, Services};
use hmac::{KeyInit, Mac};
use mamori_core::audit::{ActorKind, action};
use mamori_core::{AccountId, AppId, OrgId, Timestamp};
use mamori_store::{OrgPurgeRow, PurgeWebhookRow, StoreError, StoreTx, WebhookAttempt};
use serde_json::json;
use std::collections::BTreeSet;

/// The steps of a purge, in the order they run. Every store that holds an organization's data
/// has one (ARCHITECTURE.md); the key goes last, once nothing sealed under it is left.
pub const PURGE_STEPS: [&str; 10] = [
    STEP_MEMBERSHIPS,
    STEP_TEAMS,
    STEP_INVITATIONS,
    STEP_APPS,
    STEP_RELATIONSHIPS,
    STEP_LOCAL_ACCOUNTS,
    STEP_MAIL,
    STEP_CONTENT,
    STEP_AUDIT,
    STEP_KEY,
];
const STEP_MEMBERSHIPS: &str = "memberships";
const STEP_TEAMS: &str = "teams";
const STEP_INVITATIONS: &str = "invitations";
const STEP_APPS: &str = "apps";
const STEP_RELATIONSHIPS: &str = "relationships";
const STEP_LOCAL_ACCOUNTS: &str = "local_accounts";
const STEP_MAIL: &str = "mail";
const STEP_CONTENT: &str = "content";
const STEP_AUDIT: &str = "audit";
const STEP_KEY: &str = "key";

/// A purge requested on demand must be done within this many days (DEL-2).
pub const PURGE_WINDOW_DAYS: i64 = 10;
/// How long a node holds a purge without renewing its lease.
const LEASE_MS: i64 = 30_000;
/// Transactions one call runs for one purge before letting the lease be renewed at a later
/// `now` (next call).
const TRANSACTIONS_PER_CALL: u32 = 40;
/// Relationships (then containers) per transaction: one change-log revision each.
const AUTHZ_BATCH: u32 = 2_000;
/// Audit events per transaction, as retention deletes them.
const AUDIT_BATCH: i64 = 20_000;
/// Open purges looked at per call.
const PURGES_PER_CALL: u32 = 100;

/// Webhook delivery: the first retry after a minute, doubling up to 6 hours, for 8 days.
const WEBHOOK_FIRST_RETRY_MS: i64 = 60_000;
const WEBHOOK_MAX_RETRY_MS: i64 = 6 * 3_600_000;
const WEBHOOK_RETRY_FOR_MS: i64 = 8 * 86_400_000;
const WEBHOOK_LEASE_MS: i64 = 60_000;
const WEBHOOK_TIMEOUT_SECS: u64 = 10;
const WEBHOOKS_PER_CALL: u32 = 50;
const WEBHOOK_URL_MAX: usize = 2_048;
/// The event apps receive.
pub const PURGE_STARTED_EVENT: &str = "org.purge_started";
/// Header with the Unix time (seconds) the signature covers.
pub const TIMESTAMP_HEADER: &str = "mamori-webhook-timestamp";
/// Header with `v1=` and the hex HMAC-SHA256 of `timestamp + "." + body`.
pub const SIGNATURE_HEADER: &str = "mamori-webhook-signature";

/// What one call of [`Services::run_purges_once`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeRunReport {
    /// Organizations whose purge finished in this call.
    pub finished: Vec<OrgId>,
    /// Purges this call advanced but did not finish (more next call).
    pub in_progress: Vec<OrgId>,
    /// Purges another node holds.
    pub busy: u64,
    /// Purges whose step failed (logged; retried next call).
    pub failed: u64,
    /// Steps completed in this call, and rows they removed.
    pub steps_done: u64,
    pub rows: u64,
}

impl PurgeRunReport {
    pub fn is_idle(&self) -> bool {
        *self == PurgeRunReport::default()
    }
}

/// A purge as the operator and the evidence report see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeStatus {
    pub org_id: OrgId,
    pub requested_at: Timestamp,
    pub due_by: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// The contract administrator kept despite the purge (DEL-5): the name and contact are
    /// that account's own data, under its own key.
    pub contact_account_id: Option<AccountId>,
    /// Steps started, in the order they ran (`done_at` `None`: under way).
    pub steps: Vec<PurgeStepStatus>,
    pub apps: Vec<PurgeAppStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeStepStatus {
    pub name: String,
    pub done_at: Option<Timestamp>,
    pub rows: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeAppStatus {
    pub app_id: AppId,
    pub webhook_delivered_at: Option<Timestamp>,
    pub attempts: i64,
    /// Delivery stopped after retrying for 8 days.
    pub webhook_gave_up_at: Option<Timestamp>,
    pub confirmed_at: Option<Timestamp>,
    /// Not confirmed by the purge's deadline, as of `now`.
    pub overdue: bool,
}

/// What one call of [`Services::deliver_webhooks_once`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookReport {
    pub delivered: u64,
    pub retrying: u64,
    pub gave_up: u64,
}

impl WebhookReport {
    pub fn is_idle(&self) -> bool {
        *self == WebhookReport::default()
    }
}

/// The prefix of an app's webhook signing secret.
pub const WEBHOOK_SECRET_PREFIX: &str = "mmw_";

/// `v1=` and hex HMAC-SHA256(key, timestamp + "." + body).
pub fn webhook_signature(key: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = match <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key) {
        Ok(mac) => mac,
        // HMAC takes keys of any length.
        Err(_) => return String::new(),
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Why a step stopped short.
enum StepError {
    /// Another node holds the purge now.
    LeaseLost,
    Failed(ServiceError),
}

impl From<ServiceError> for StepError {
    fn from(error: ServiceError) -> Self {
        StepError::Failed(error)
    }
}

impl From<StoreError> for StepError {
    fn from(error: StoreError) -> Self {
        StepError::Failed(error.into())
    }
}

impl From<mamori_keyring::KeyringError> for StepError {
    fn from(error: mamori_keyring::KeyringError) -> Self {
        StepError::Failed(error.into())
    }
}

fn not_found_for_missing(error: StoreError) -> ServiceError {
    match error {
        StoreError::NotFound => ServiceError::NotFound,
        other => other.into(),
    }
}

impl Services {
    /// Records a purge of `org` in the caller's transaction, due by `due_by`: idempotent (a
    /// second request changes nothing). At commit the organization is `purging`, closed to its
    /// members and apps, and the `org.purge_started` webhook is owed to every app enabled for
    /// it. The caller records its own audit event.
    pub async fn request_purge_in_tx(
        &self,
        tx: &mut dyn StoreTx,
        org: &OrgId,
        due_by: Timestamp,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        tx.lock_org(org).await.map_err(not_found_for_missing)?;
        tx.begin_org_purge(org, now, due_by).await?;
        Ok(())
    }

    /// Erasure on request by the operator: `confirm` must repeat the organization's ID. The
    /// purge is due [`PURGE_WINDOW_DAYS`] later and starts at the next purge round.
    pub async fn request_purge(
        &self,
        operator: Option<&OperatorPrincipal>,
        context: &RequestContext,
        org: &str,
        confirm: &str,
        now: Timestamp,
    ) -> Result<PurgeStatus, ServiceError> {
        let org_id = OrgId::parse(org).ok_or(ServiceError::NotFound)?;
        if confirm != org_id.as_str() {
            return Err(ServiceError::field(
                "confirm",
                "must repeat the organization ID",
            ));
        }
        self.store
            .org(&org_id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        if self.store.org_purge(&org_id).await?.is_none() {
            let due_by = now.plus_days(PURGE_WINDOW_DAYS);
            let mut tx = self.store.begin().await?;
            self.request_purge_in_tx(tx.as_mut(), &org_id, due_by, now)
                .await?;
            self.note_purge_requested_in_tx(tx.as_mut(), &org_id, due_by, now)
                .await?;
            let (actor_kind, actor_id) = match operator {
                Some(operator) => (ActorKind::Operator, Some(operator.token_id.as_str())),
                None => (ActorKind::System, None),
            };
            let due_text = due_by.to_rfc3339();
            // In the platform chain: the organization's own chain is purged.
            self.record_and_commit(
                tx,
                context,
                AuditDraft::new(actor_kind, actor_id, action::ORG_PURGE_REQUESTED)
                    .target("org", org_id.as_str())
                    .details(json!({ "due_by": due_text, "reason": "erasure_request" })),
                now,
            )
            .await?;
        }
        self.purge_status(&org_id, now)
            .await?
            .ok_or(ServiceError::NotFound)
    }

    /// The purge of `org`, if one was requested; `overdue` as of `now`.
    pub async fn purge_status(
        &self,
        org: &OrgId,
        now: Timestamp,
    ) -> Result<Option<PurgeStatus>, ServiceError> {
        let Some(purge) = self.store.org_purge(org).await? else {
            return Ok(None);
        };
        let mut steps: Vec<PurgeStepStatus> = self
            .store
            .purge_steps(org)
            .await?
            .into_iter()
            .map(|row| PurgeStepStatus {
                name: row.step,
                done_at: row.done_at,
                rows: row.row_count,
            })
            .collect();
        // In the order they run.
        steps.sort_by_key(|step| {
            PURGE_STEPS
                .iter()
                .position(|name| *name == step.name)
                .unwrap_or(PURGE_STEPS.len())
        });
        let apps = self
            .store
            .purge_webhooks(org)
            .await?
            .into_iter()
            .map(|row| PurgeAppStatus {
                overdue: now > purge.due_by && row.confirmed_at.is_none_or(|at| at > purge.due_by),
                app_id: row.app_id,
                webhook_delivered_at: row.delivered_at,
                attempts: row.attempts,
                webhook_gave_up_at: row.gave_up_at,
                confirmed_at: row.confirmed_at,
            })
            .collect();
        Ok(Some(PurgeStatus {
            org_id: purge.org_id,
            requested_at: purge.requested_at,
            due_by: purge.due_by,
            finished_at: purge.finished_at,
            contact_account_id: purge.contact_account_id,
            steps,
            apps,
        }))
    }

    /// Runs the remaining steps of every open purge this node can lease, a bounded number of
    /// transactions per purge; idempotent and safe on several nodes.
    pub async fn run_purges_once(&self, now: Timestamp) -> Result<PurgeRunReport, ServiceError> {
        let owner = self.purge_node()?;
        let mut report = PurgeRunReport::default();
        for purge in self.store.open_org_purges(PURGES_PER_CALL).await? {
            let org = purge.org_id.clone();
            if !self
                .store
                .claim_org_purge(&org, &owner, now, now.plus_millis(LEASE_MS))
                .await?
            {
                report.busy += 1;
                continue;
            }
            match self.advance_purge(&purge, &owner, now, &mut report).await {
                Ok(true) => report.finished.push(org),
                Ok(false) => report.in_progress.push(org),
                Err(StepError::LeaseLost) => report.busy += 1,
                Err(StepError::Failed(error)) => {
                    tracing::error!(org = %org, %error, "purge step failed; will retry");
                    report.failed += 1;
                    self.store.release_org_purge(&org, &owner).await?;
                }
            }
        }
        Ok(report)
    }

    /// This process's name as a lease holder.
    fn purge_node(&self) -> Result<String, ServiceError> {
        if let Some(node) = self.purge_node.get() {
            return Ok(node.clone());
        }
        let node = format!("node-{}", hex::encode(crate::tokens::random_bytes::<8>()?));
        Ok(self.purge_node.get_or_init(|| node).clone())
    }

    /// Runs steps until the purge is finished (true) or this call's budget is spent.
    async fn advance_purge(
        &self,
        purge: &OrgPurgeRow,
        owner: &str,
        now: Timestamp,
        report: &mut PurgeRunReport,
    ) -> Result<bool, StepError> {
        let org = &purge.org_id;
        let done: BTreeSet<String> = self
            .store
            .purge_steps(org)
            .await?
            .into_iter()
            .filter(|step| step.done_at.is_some())
            .map(|step| step.step)
            .collect();
        let mut budget = TRANSACTIONS_PER_CALL;
        for step in PURGE_STEPS {
            if done.contains(step) {
                continue;
            }
            loop {
                if budget == 0 {
                    return Ok(false);
                }
                budget -= 1;
                let (rows, step_done) = self.purge_step(org, step, owner, now).await?;
                report.rows += rows;
                if step_done {
                    report.steps_done += 1;
                    break;
                }
            }
        }
        let mut tx = self.store.begin().await?;
        if !tx
            .renew_org_purge_lease(org, owner, now.plus_millis(LEASE_MS))
            .await?
        {
            return Err(StepError::LeaseLost);
        }
        tx.finish_org_purge(org, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// AUD-3: cuts the organization's own audit chain to a signed anchor at its head, in
    /// batches of [`AUDIT_BATCH`] events, each its own transaction; returns the events
    /// removed. Idempotent: run again, or by another node at once, it finds nothing left.
    pub async fn purge_org_audit_trail(
        &self,
        org: &OrgId,
        now: Timestamp,
    ) -> Result<u64, ServiceError> {
        let mut removed = 0;
        while let Some((up_to, _)) = self.next_audit_cut(org).await? {
            let mut tx = self.store.begin().await?;
            let cut = self.cut_audit_in_tx(tx.as_mut(), org, up_to, now).await?;
            tx.commit().await?;
            if cut == 0 {
                // Another node cut this batch first (or the chain has a gap there): what is
                // left is for the next round, never a loop.
                break;
            }
            removed += cut;
        }
        Ok(removed)
    }

    /// The next batch of the organization's own audit chain to cut: up to which `seq`, and
    /// whether that is the chain's head. `None` when nothing is left after the anchor.
    async fn next_audit_cut(&self, org: &OrgId) -> Result<Option<(i64, bool)>, ServiceError> {
        Ok(self
            .store
            .audit_chain(org.as_str())
            .await?
            .filter(|head| head.last_seq > head.anchor_seq)
            .map(|head| {
                let up_to = head.last_seq.min(head.anchor_seq + AUDIT_BATCH);
                (up_to, up_to == head.last_seq)
            }))
    }

    /// Cuts the organization's chain up to `up_to` inside `tx`, retention's own way: the new
    /// anchor is signed, so what is left still verifies.
    async fn cut_audit_in_tx(
        &self,
        tx: &mut dyn StoreTx,
        org: &OrgId,
        up_to: i64,
        now: Timestamp,
    ) -> Result<u64, ServiceError> {
        let signer = self.audit_signer().await?;
        let chain = org.as_str();
        let sign = |hash: &str| signer.sign_anchor(chain, up_to, hash, now);
        Ok(tx.purge_audit_prefix(chain, up_to, &sign).await?)
    }

    /// One transaction of one step: returns the rows it removed and whether the step is done.
    async fn purge_step(
        &self,
        org: &OrgId,
        step: &str,
        owner: &str,
        now: Timestamp,
    ) -> Result<(u64, bool), StepError> {
        // Work outside the data store, or reads through the pool, come before `begin`.
        let mut audit_batch = None;
        let mut outside_rows = 0;
        match step {
            // Its own transaction (the accounts' keys are destroyed after it commits);
            // a second run finds nothing and counts 0.
            STEP_LOCAL_ACCOUNTS => outside_rows = self.purge_org_local_accounts(org, now).await?,
            STEP_KEY => {
                // Idempotent: destroying a key that is gone leaves the record and succeeds.
                outside_rows =
                    u64::from(self.keyring.destroy(org.as_str(), now.as_millis()).await?);
            }
            STEP_AUDIT => audit_batch = self.next_audit_cut(org).await?,
            _ => {}
        }
        let mut tx = self.store.begin().await?;
        if !tx
            .renew_org_purge_lease(org, owner, now.plus_millis(LEASE_MS))
            .await?
        {
            return Err(StepError::LeaseLost);
        }
        tx.lock_org(org).await?;
        let (rows, done) = match step {
            STEP_MEMBERSHIPS => (tx.purge_org_memberships(org).await?, true),
            STEP_TEAMS => (tx.purge_org_teams(org).await?, true),
            STEP_INVITATIONS => (tx.purge_org_invitations(org).await?, true),
            STEP_APPS => (tx.purge_org_apps(org).await?, true),
            STEP_RELATIONSHIPS => {
                let rows = tx.purge_org_authz_batch(org, AUTHZ_BATCH).await?;
                (rows, rows == 0)
            }
            STEP_MAIL => (tx.purge_org_mail(org).await?, true),
            STEP_CONTENT => (tx.purge_org_content(org).await?, true),
            STEP_AUDIT => match audit_batch {
                Some((up_to, last)) => (
                    self.cut_audit_in_tx(tx.as_mut(), org, up_to, now).await?,
                    last,
                ),
                None => (0, true),
            },
            _ => (outside_rows, true),
        };
        tx.record_purge_step(org, step, rows, done.then_some(now))
            .await?;
        tx.commit().await?;
        Ok((rows, done))
    }

    /// Sends the due `org.purge_started` webhooks, each leased to one node; a failure is
    /// retried with exponential backoff for 8 days, and every attempt is recorded.
    pub async fn deliver_webhooks_once(
        &self,
        now: Timestamp,
    ) -> Result<WebhookReport, ServiceError> {
        let mut report = WebhookReport::default();
        for hook in self
            .store
            .due_purge_webhooks(now, WEBHOOKS_PER_CALL)
            .await?
        {
            if !self
                .store
                .claim_purge_webhook(
                    &hook.org_id,
                    &hook.app_id,
                    now,
                    now.plus_millis(WEBHOOK_LEASE_MS),
                )
                .await?
            {
                continue;
            }
            let outcome = self.send_webhook(&hook, now).await;
            let attempt = hook.attempts + 1;
            let (delivered, next_attempt_at) = match &outcome {
                Ok(()) => (true, None),
                Err(_) => {
                    let exponent = u32::try_from(attempt - 1).unwrap_or(u32::MAX).min(20);
                    let delay = WEBHOOK_FIRST_RETRY_MS
                        .saturating_mul(1_i64 << exponent)
                        .min(WEBHOOK_MAX_RETRY_MS);
                    let next = now.plus_millis(delay);
                    let give_up = next.millis_since(hook.created_at) > WEBHOOK_RETRY_FOR_MS;
                    (false, (!give_up).then_some(next))
                }
            };
            let outcome_text = match &outcome {
                Ok(()) => String::from("delivered"),
                Err(reason) => reason.clone(),
            };
            let mut tx = self.store.begin().await?;
            tx.record_webhook_attempt(&WebhookAttempt {
                org_id: &hook.org_id,
                app_id: &hook.app_id,
                attempt,
                at: now,
                outcome: &outcome_text,
                delivered,
                next_attempt_at,
            })
            .await?;
            tx.commit().await?;
            match (delivered, next_attempt_at) {
                (true, _) => report.delivered += 1,
                (false, Some(_)) => report.retrying += 1,
                (false, None) => report.gave_up += 1,
            }
        }
        Ok(report)
    }

    /// One POST; `Err` says why it did not arrive (no secret material in it).
    async fn send_webhook(&self, hook: &PurgeWebhookRow, now: Timestamp) -> Result<(), String> {
        let app = match self.store.app(&hook.app_id).await {
            Ok(Some(app)) => app,
            Ok(None) => return Err(String::from("no such app")),
            Err(error) => return Err(format!("store: {error}")),
        };
        let url = match self.store.app_webhook_url(&hook.app_id).await {
            Ok(Some(url)) => url,
            Ok(None) => return Err(String::from("no webhook url")),
            Err(error) => return Err(format!("store: {error}")),
        };
        let key = self.webhook_signing_secret(&app.id);
        let body = json!({
            "type": PURGE_STARTED_EVENT,
            "org_id": hook.org_id.as_str(),
            "purge_due_by": hook.due_by.to_rfc3339(),
        })
        .to_string();
        let timestamp = (now.as_millis().div_euclid(1000)).to_string();
        let signature = webhook_signature(key.as_bytes(), &timestamp, body.as_bytes());
        let client = self
            .webhook_client
            .get_or_try_init(|| async {
                reqwest::Client::builder()
                    .timeout(std::time::Duration::from_secs(WEBHOOK_TIMEOUT_SECS))
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
            })
            .await
            .map_err(|_| String::from("http client unavailable"))?;
        let response = client
            .post(&url)
            .header("content-type", "application/json")
            .header(TIMESTAMP_HEADER, &timestamp)
            .header(SIGNATURE_HEADER, &signature)
            .body(body)
            .send()
            .await
            .map_err(|error| {
                if error.is_timeout() {
                    String::from("timeout")
                } else {
                    String::from("connection failed")
                }
            })?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("http {}", response.status().as_u16()))
        }
    }

    /// An app confirms that it deleted its data of a purged organization (DEL-7); only for
    /// a purge whose webhook is owed to it. Idempotent: the first confirmation's time stays.
    pub async fn confirm_purge(
        &self,
        app: &AppPrincipal,
        context: &RequestContext,
        org: &str,
        now: Timestamp,
    ) -> Result<Timestamp, ServiceError> {
        let org_id = OrgId::parse(org).ok_or(ServiceError::NotFound)?;
        let mut tx = self.store.begin().await?;
        let confirmed_at = tx
            .confirm_purge(&org_id, &app.app_id, now)
            .await?
            .ok_or(ServiceError::NotFound)?;
        if confirmed_at == now {
            self.record(
                tx.as_mut(),
                context,
                AuditDraft::new(
                    ActorKind::App,
                    Some(app.app_id.as_str()),
                    action::ORG_PURGE_CONFIRMED,
                )
                .target("org", org_id.as_str()),
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(confirmed_at)
    }

    /// Sets (or with `None` clears) the URL that receives an app's webhooks: `http` or
    /// `https`, with a host, without credentials.
    pub async fn set_app_webhook_url(
        &self,
        operator: &OperatorPrincipal,
        context: &RequestContext,
        app: &str,
        url: Option<&str>,
        now: Timestamp,
    ) -> Result<Option<String>, ServiceError> {
        let app_id = AppId::parse(app).ok_or(ServiceError::NotFound)?;
        let url = url.map(valid_webhook_url).transpose()?;
        let mut tx = self.store.begin().await?;
        if !tx.set_app_webhook_url(&app_id, url.as_deref()).await? {
            return Err(ServiceError::NotFound);
        }
        self.record_and_commit(
            tx,
            context,
            AuditDraft::new(
                ActorKind::Operator,
                Some(operator.token_id.as_str()),
                action::APP_WEBHOOK_SET,
            )
            .target("app", app_id.as_str())
            .details(json!({ "set": url.is_some() })),
            now,
        )
        .await?;
        Ok(url.map(|_| self.webhook_signing_secret(&app_id)))
    }

    /// The secret an app's webhooks are signed with (HMAC-SHA256 keyed with its bytes):
    /// derived from the master key and the app's ID, so it is stored nowhere, and neither a
    /// copy of the data store (which holds only a hash of the app's own secret) nor the app's
    /// secret can forge a webhook. The operator gets it when setting the webhook URL and hands
    /// it to the app.
    pub fn webhook_signing_secret(&self, app: &AppId) -> String {
        format!(
            "{WEBHOOK_SECRET_PREFIX}{}",
            self.keyring.blind_index("webhook-signing", app.as_str())
        )
    }
}

fn valid_webhook_url(text: &str) -> Result<String, ServiceError> {
    let invalid = |message: &str| ServiceError::field("url", message);
    let text = text.trim();
    if text.is_empty() || text.len() > WEBHOOK_URL_MAX {
        return Err(invalid("must be 1 to 2048 characters"));
    }
    let url = reqwest::Url::parse(text).map_err(|_| invalid("must be an absolute URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("must use http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("must name a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("must not hold credentials"));
    }
    if url.fragment().is_some() {
        return Err(invalid("must not have a fragment"));
    }
    Ok(url.to_string())
}
