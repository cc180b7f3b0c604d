//! The data lifecycle (issue 6; DEL-1, DEL-2, DEL-6, AUD-3): each organization's contract
//! state, its lifecycle state (`active`, `trial_expired`, `suspended`, `deleted`, `purging`,
//! `purged`) with the concrete dates the policy gives it, the operator's contract events, the
//! contract administrator's deletion, the operator's restore, and the scheduler
//! ([`Services::run_lifecycle_once`]) that moves organizations along on time.
//!
//! The state is mirrored into `organizations.status`, which is what closes an organization
//! to its members ([`Services::org_access`]) and its apps at once.
//!
//! Several nodes may run the scheduler together: each transition is its own transaction that
//! locks the organization, reads its row again and writes only if the transition is still
//! due, guarded by the row's version. A transition, its audit event and its notices commit
//! together, so each happens once.

pub mod handoff;
pub mod policy;

use crate::accounts::view_of;
use crate::audit::{AuditDraft, RequestContext};
use crate::error::Refusal;
use crate::mail::{Mail, enqueue};
use crate::sessions::{AccountSession, OperatorPrincipal};
use crate::tokens::id_random;
use crate::{ServiceError, Services};
use mamori_core::audit::{ActorKind, action, chain_name};
use mamori_core::org::OrgRole;
use mamori_core::{AccountId, FieldError, OrgId, Timestamp};
use mamori_store::{AccountStatus, ContractEventRow, OrgLifecycleRow, StoreError, StoreTx};
use policy::{Anchor, DataKind, Plan, Policy, Trigger};
use serde_json::json;

pub use policy::{DEFAULT_POLICY, PolicyError};

/// The lifecycle states, as stored and as mirrored into `organizations.status`.
pub const ACTIVE: &str = "active";
pub const TRIAL_EXPIRED: &str = "trial_expired";
pub const SUSPENDED: &str = "suspended";
pub const DELETED: &str = "deleted";
pub const PURGING: &str = "purging";
pub const PURGED: &str = "purged";

/// How late a scheduled step may happen and still count as on time in the report: the
/// scheduler runs every minute, so a day is generous.
const ON_TIME_GRACE_DAYS: i64 = 1;
const PAGE: u32 = 200;
/// Times a step that failed in the store is taken again in the same round.
const STEP_RETRIES: u32 = 2;
const MAX_STEPS_PER_ROUND: usize = 4;

/// The contract events an operator records (DEL-1).
pub const CONTRACT_EVENTS: &[&str] = &[
    "trial_started",
    "trial_ended",
    "subscribed",
    "renewed",
    "suspended",
    "reinstated",
    "cancelled",
    "plan_changed",
];

/// Why an organization was deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// Its contract administrator deleted it.
    Admin,
    /// The operator recorded a cancellation.
    Cancelled,
    TrialExpired,
    Suspended,
    Unused,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Admin => "admin",
            Reason::Cancelled => "cancelled",
            Reason::TrialExpired => "trial_expired",
            Reason::Suspended => "suspended",
            Reason::Unused => "unused",
        }
    }

    fn trigger(self) -> Trigger {
        match self {
            Reason::Admin | Reason::Cancelled => Trigger::Deleted,
            Reason::TrialExpired => Trigger::TrialEnded,
            Reason::Suspended => Trigger::Suspended,
            Reason::Unused => Trigger::Unused,
        }
    }

    fn is_automatic(self) -> bool {
        matches!(
            self,
            Reason::TrialExpired | Reason::Suspended | Reason::Unused
        )
    }

    fn parse(text: &str) -> Option<Reason> {
        [
            Reason::Admin,
            Reason::Cancelled,
            Reason::TrialExpired,
            Reason::Suspended,
            Reason::Unused,
        ]
        .into_iter()
        .find(|reason| reason.as_str() == text)
    }
}

/// An operator's contract event, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractEventInput {
    pub event: String,
    pub at: Timestamp,
    pub period_end: Option<Timestamp>,
    /// For `trial_started`, `subscribed` and `plan_changed`: the plan kind (classic plans
    /// are named here).
    pub plan: Option<String>,
}

/// An organization's lifecycle with its concrete dates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleView {
    pub org_id: OrgId,
    pub state: String,
    pub plan: String,
    pub policy: String,
    pub trial_started_at: Option<Timestamp>,
    pub trial_ends_at: Option<Timestamp>,
    pub period_ends_at: Option<Timestamp>,
    pub suspended_at: Option<Timestamp>,
    /// When the organization is (or was) to be deleted automatically.
    pub deletion_due_at: Option<Timestamp>,
    pub deletion_reason: Option<String>,
    pub deleted_at: Option<Timestamp>,
    pub purge_starts_at: Option<Timestamp>,
    pub purge_due_by: Option<Timestamp>,
    pub audit_purge_starts_at: Option<Timestamp>,
    pub purge_started_at: Option<Timestamp>,
    pub purged_at: Option<Timestamp>,
    pub continue_asked_at: Option<Timestamp>,
    /// The next scheduled transition and when, if any.
    pub next_transition: Option<(String, Timestamp)>,
}

/// One thing the scheduler did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleAction {
    pub org_id: OrgId,
    /// `trial_expired`, `asked_to_continue`, `use_seen`, `deleted`, `purge_started`, `purged`.
    pub action: &'static str,
    pub from: String,
    pub to: String,
    /// When the policy made it due.
    pub due_at: Timestamp,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LifecycleRun {
    pub actions: Vec<LifecycleAction>,
}

/// One deadline in the evidence report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadlineView {
    /// `automatic_deletion`, `purge_start`, `purge_complete`, `app_confirmed`.
    pub name: &'static str,
    /// For `app_confirmed`: which app.
    pub app_id: Option<mamori_core::AppId>,
    /// Not before this.
    pub due_at: Timestamp,
    /// Not after this.
    pub deadline: Timestamp,
    pub done_at: Option<Timestamp>,
    /// `met`, `pending`, `missed` or `early`.
    pub status: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleReportItem {
    pub lifecycle: LifecycleView,
    pub deadlines: Vec<DeadlineView>,
    /// The purge engine's record of this organization's purge, if one was requested: its
    /// steps with their row counts and times, and each app's webhook and confirmation.
    pub purge: Option<crate::PurgeStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleReport {
    pub generated_at: Timestamp,
    pub policy: String,
    pub items: Vec<LifecycleReportItem>,
    /// Every deadline with a verdict was met (pending ones aside).
    pub all_met: bool,
}

/// A step the scheduler found due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    ExpireTrial,
    AskToContinue,
    Delete(Reason),
    StartPurge,
}

fn conflict(code: &'static str, message: impl Into<String>) -> ServiceError {
    ServiceError::refused(Refusal::Conflict, code, message)
}

fn plan_of(row: &OrgLifecycleRow) -> Result<Plan, ServiceError> {
    Plan::parse(&row.plan).ok_or_else(|| {
        ServiceError::Unexpected(anyhow::anyhow!("stored plan kind {} is unknown", row.plan))
    })
}

impl Services {
    pub fn lifecycle_policy(&self) -> &Policy {
        &self.lifecycle_policy
    }

    /// A default row for an organization that has none yet (created before the lifecycle
    /// existed): active on the free plan.
    fn default_lifecycle(org: &OrgId, created_at: Timestamp, now: Timestamp) -> OrgLifecycleRow {
        OrgLifecycleRow {
            org_id: org.clone(),
            state: String::from(ACTIVE),
            plan: String::from(Plan::Free.as_str()),
            trial_started_at: None,
            trial_ends_at: None,
            period_ends_at: None,
            suspended_at: None,
            deletion_due_at: None,
            deletion_reason: None,
            deleted_at: None,
            purge_starts_at: None,
            purge_due_by: None,
            audit_purge_starts_at: None,
            purge_started_at: None,
            purged_at: None,
            audit_purged_at: None,
            notice_sent_for: None,
            continue_asked_at: None,
            last_confirmed_at: Some(created_at),
            version: 0,
            updated_at: now,
        }
    }

    /// Writes the first lifecycle row of a new organization inside `tx`.
    pub(crate) async fn insert_lifecycle_in_tx(
        &self,
        tx: &mut dyn StoreTx,
        org: &OrgId,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        let mut row = Self::default_lifecycle(org, now, now);
        row.version = 1;
        tx.save_org_lifecycle(&row, None).await?;
        Ok(())
    }

    /// Locks the organization and reads its lifecycle row (a default one when it has none);
    /// returns the row and the version to expect when saving (`None`: insert).
    async fn lifecycle_in_tx(
        &self,
        tx: &mut dyn StoreTx,
        org: &OrgId,
        now: Timestamp,
    ) -> Result<(OrgLifecycleRow, Option<i64>), ServiceError> {
        tx.lock_org(org).await.map_err(|error| match error {
            StoreError::NotFound => ServiceError::NotFound,
            other => other.into(),
        })?;
        match tx.org_lifecycle_in_tx(org).await? {
            Some(row) => {
                let version = row.version;
                Ok((row, Some(version)))
            }
            None => {
                let created = self
                    .store
                    .org(org)
                    .await?
                    .ok_or(ServiceError::NotFound)?
                    .created_at;
                Ok((Self::default_lifecycle(org, created, now), None))
            }
        }
    }

    /// Saves `row` (bumping its version) and mirrors its state into the organization.
    async fn save_lifecycle(
        &self,
        tx: &mut dyn StoreTx,
        mut row: OrgLifecycleRow,
        expected: Option<i64>,
        now: Timestamp,
    ) -> Result<OrgLifecycleRow, ServiceError> {
        row.version = expected.unwrap_or(0) + 1;
        row.updated_at = now;
        if !tx.save_org_lifecycle(&row, expected).await? {
            return Err(conflict(
                "lifecycle_changed",
                "the organization's lifecycle changed at the same time; try again",
            ));
        }
        tx.set_org_status(&row.org_id, &row.state, now).await?;
        Ok(row)
    }

    /// The date an organization is deleted automatically after `trigger`, if the policy
    /// says so for its plan.
    fn automatic_deletion_date(
        &self,
        row: &OrgLifecycleRow,
        trigger: Trigger,
        trigger_at: Timestamp,
    ) -> Option<Timestamp> {
        let plan = Plan::parse(&row.plan)?;
        let rule = self.lifecycle_policy.org_rule(plan, trigger)?;
        let anchor = match rule.anchor {
            Anchor::Trigger => trigger_at,
            Anchor::PeriodEnd => row.period_ends_at.unwrap_or(trigger_at),
        };
        Some(anchor.plus_days(rule.delete_after_days.unwrap_or(0)))
    }

    /// An automatic deletion is now on its way (a trial ended, a suspension): its date, and
    /// the date the organization's audit trail goes, which for these triggers the policy
    /// counts from the trigger or the contract period end, not from the deletion (AUD-3).
    fn schedule_automatic_deletion(
        &self,
        row: &mut OrgLifecycleRow,
        trigger: Trigger,
        trigger_at: Timestamp,
    ) {
        row.deletion_due_at = self.automatic_deletion_date(row, trigger, trigger_at);
        if row.audit_purged_at.is_none() {
            row.audit_purge_starts_at = Plan::parse(&row.plan)
                .and_then(|plan| {
                    self.lifecycle_policy
                        .rule(DataKind::AuditLog, plan, trigger)
                })
                .map(|rule| {
                    let anchor = match rule.anchor {
                        Anchor::Trigger => trigger_at,
                        Anchor::PeriodEnd => row.period_ends_at.unwrap_or(trigger_at),
                    };
                    anchor.plus_days(rule.purge_after_days)
                });
        }
    }

    /// The automatic deletion is off (a subscription, a reinstatement): so is the audit
    /// trail's date, unless it already passed and the trail went.
    fn cancel_automatic_deletion(row: &mut OrgLifecycleRow) {
        row.deletion_due_at = None;
        if row.audit_purged_at.is_none() {
            row.audit_purge_starts_at = None;
        }
    }

    /// The row after deleting the organization for `reason` at `now`, with the purge dates
    /// the policy gives.
    fn deleted_row(
        &self,
        mut row: OrgLifecycleRow,
        reason: Reason,
        now: Timestamp,
    ) -> Result<OrgLifecycleRow, ServiceError> {
        let plan = plan_of(&row)?;
        let policy = &self.lifecycle_policy;
        let (purge_starts_at, within) = match policy.org_rule(plan, reason.trigger()) {
            Some(rule) if reason.trigger() == Trigger::Deleted => {
                let anchor = match rule.anchor {
                    Anchor::Trigger => now,
                    Anchor::PeriodEnd => row.period_ends_at.unwrap_or(now),
                };
                (
                    anchor.plus_days(rule.purge_after_days),
                    rule.purge_within_days,
                )
            }
            Some(rule) => (now.plus_days(rule.purge_after_days), rule.purge_within_days),
            None => {
                // An automatic deletion always has its rule; a deletion is covered for every
                // plan (the policy check makes sure).
                let rule = policy.org_rule(plan, Trigger::Deleted).ok_or_else(|| {
                    ServiceError::Unexpected(anyhow::anyhow!("no deletion rule for {plan:?}"))
                })?;
                (now.plus_days(rule.purge_after_days), rule.purge_within_days)
            }
        };
        // A purge never starts before the deletion.
        let purge_starts_at = purge_starts_at.max(now);
        // AUD-3: audit logs on their own schedule, counted from the trigger's date.
        let audit_trigger_at = match reason {
            Reason::TrialExpired => row.trial_ends_at.unwrap_or(now),
            _ => now,
        };
        let audit_purge_starts_at = policy
            .rule(DataKind::AuditLog, plan, reason.trigger())
            .map(|rule| {
                let anchor = match rule.anchor {
                    Anchor::Trigger => audit_trigger_at,
                    Anchor::PeriodEnd => row.period_ends_at.unwrap_or(audit_trigger_at),
                };
                anchor.plus_days(rule.purge_after_days)
            })
            .or_else(|| {
                policy
                    .rule(DataKind::AuditLog, plan, Trigger::Deleted)
                    .map(|rule| now.plus_days(rule.purge_after_days))
            })
            .unwrap_or(purge_starts_at);
        row.state = String::from(DELETED);
        row.deletion_reason = Some(String::from(reason.as_str()));
        row.deleted_at = Some(now);
        row.purge_starts_at = Some(purge_starts_at);
        row.purge_due_by = Some(purge_starts_at.plus_days(within));
        match row.audit_purged_at {
            // The trail already went on (or after) this date.
            Some(done) if audit_purge_starts_at <= done => {}
            // It went on an earlier occasion (a suspension later lifted): again, later.
            Some(_) => {
                row.audit_purged_at = None;
                row.audit_purge_starts_at = Some(audit_purge_starts_at);
            }
            // A date set when the trigger came (trial end, suspension) stands if earlier.
            None => {
                row.audit_purge_starts_at = Some(
                    row.audit_purge_starts_at
                        .map_or(audit_purge_starts_at, |set| set.min(audit_purge_starts_at)),
                );
            }
        }
        row.continue_asked_at = None;
        Ok(row)
    }

    /// The step due for `row` at `now`, and when it fell due.
    fn due_step(&self, row: &OrgLifecycleRow, now: Timestamp) -> Option<(Step, Timestamp)> {
        let plan = Plan::parse(&row.plan)?;
        match row.state.as_str() {
            ACTIVE => {
                if plan.is_trial()
                    && let Some(ends) = row.trial_ends_at
                    && ends <= now
                    && self
                        .lifecycle_policy
                        .org_rule(plan, Trigger::TrialEnded)
                        .is_some()
                {
                    return Some((Step::ExpireTrial, ends));
                }
                let rule = self.lifecycle_policy.org_rule(plan, Trigger::Unused)?;
                match row.continue_asked_at {
                    Some(asked) => {
                        let due = asked.plus_days(rule.confirm_within_days.unwrap_or(0));
                        (due <= now).then_some((Step::Delete(Reason::Unused), due))
                    }
                    None => {
                        let used = row.last_confirmed_at?;
                        let due = used.plus_days(rule.ask_after_days.unwrap_or(0));
                        (due <= now).then_some((Step::AskToContinue, due))
                    }
                }
            }
            TRIAL_EXPIRED => {
                let due = row.deletion_due_at?;
                (due <= now).then_some((Step::Delete(Reason::TrialExpired), due))
            }
            SUSPENDED => {
                let due = row.deletion_due_at?;
                (due <= now).then_some((Step::Delete(Reason::Suspended), due))
            }
            DELETED => {
                let due = row.purge_starts_at?;
                (due <= now).then_some((Step::StartPurge, due))
            }
            _ => None,
        }
    }

    fn next_transition(&self, row: &OrgLifecycleRow) -> Option<(String, Timestamp)> {
        let far = Timestamp::from_millis(i64::MAX / 4);
        let (step, at) = self.due_step(row, far)?;
        let name = match step {
            Step::ExpireTrial => TRIAL_EXPIRED,
            Step::AskToContinue => "asked_to_continue",
            Step::Delete(_) => DELETED,
            Step::StartPurge => PURGING,
        };
        Some((String::from(name), at))
    }

    fn lifecycle_view(&self, row: &OrgLifecycleRow) -> LifecycleView {
        LifecycleView {
            org_id: row.org_id.clone(),
            state: row.state.clone(),
            plan: row.plan.clone(),
            policy: self.lifecycle_policy.name.clone(),
            trial_started_at: row.trial_started_at,
            trial_ends_at: row.trial_ends_at,
            period_ends_at: row.period_ends_at,
            suspended_at: row.suspended_at,
            deletion_due_at: row.deletion_due_at,
            deletion_reason: row.deletion_reason.clone(),
            deleted_at: row.deleted_at,
            purge_starts_at: row.purge_starts_at,
            purge_due_by: row.purge_due_by,
            audit_purge_starts_at: row.audit_purge_starts_at,
            purge_started_at: row.purge_started_at,
            purged_at: row.purged_at,
            continue_asked_at: row.continue_asked_at,
            next_transition: self.next_transition(row),
        }
    }

    async fn read_lifecycle(
        &self,
        org: &OrgId,
        now: Timestamp,
    ) -> Result<OrgLifecycleRow, ServiceError> {
        if let Some(row) = self.store.org_lifecycle(org).await? {
            return Ok(row);
        }
        let created = self
            .store
            .org(org)
            .await?
            .ok_or(ServiceError::NotFound)?
            .created_at;
        Ok(Self::default_lifecycle(org, created, now))
    }

    /// `GET /orgs/{org}/lifecycle`: any member of the (active) organization may read it.
    pub async fn org_lifecycle(
        &self,
        access: &crate::OrgAccess,
        now: Timestamp,
    ) -> Result<LifecycleView, ServiceError> {
        let row = self.read_lifecycle(&access.org_id, now).await?;
        Ok(self.lifecycle_view(&row))
    }

    /// The operator's view of one organization's lifecycle, whatever its state.
    pub async fn operator_org_lifecycle(
        &self,
        _operator: &OperatorPrincipal,
        org: &str,
        now: Timestamp,
    ) -> Result<LifecycleView, ServiceError> {
        let org = OrgId::parse(org).ok_or(ServiceError::NotFound)?;
        let row = self.read_lifecycle(&org, now).await?;
        Ok(self.lifecycle_view(&row))
    }

    /// `DELETE /orgs/{org}`: the contract administrator (an administrator of the
    /// organization, who proves it again with the password) deletes it. It is closed to its
    /// members and apps at once; the answer has the purge dates.
    pub async fn delete_org(
        &self,
        session: &AccountSession,
        access: &crate::OrgAccess,
        context: &RequestContext,
        password: &str,
        now: Timestamp,
    ) -> Result<LifecycleView, ServiceError> {
        if access.membership.role != OrgRole::Admin {
            return Err(ServiceError::forbidden(
                "only an administrator of the organization (its contract administrator) may \
                 delete it",
            ));
        }
        self.verified_account(session, context, password, "password", now)
            .await?;
        let (mut tx, actor) = self.begin_in_org(access).await?;
        if actor.membership.role != OrgRole::Admin {
            return Err(ServiceError::forbidden(
                "only an administrator of the organization (its contract administrator) may \
                 delete it",
            ));
        }
        let (row, expected) = self
            .lifecycle_in_tx(tx.as_mut(), &access.org_id, now)
            .await?;
        if row.state != ACTIVE {
            return Err(conflict(
                "org_not_active",
                format!("the organization is {}", row.state),
            ));
        }
        let from = row.state.clone();
        let row = self.deleted_row(row, Reason::Admin, now)?;
        let row = self.save_lifecycle(tx.as_mut(), row, expected, now).await?;
        let mut draft = AuditDraft::new(
            ActorKind::Account,
            Some(access.account_id.as_str()),
            action::ORG_DELETED,
        )
        .target("org", access.org_id.as_str())
        .details(json!({
            "from": from,
            "purge_starts_at": row.purge_starts_at.map(Timestamp::to_rfc3339),
            "purge_due_by": row.purge_due_by.map(Timestamp::to_rfc3339),
        }));
        draft.org = Some(&access.org_id);
        self.record(tx.as_mut(), context, draft, now).await?;
        self.notify_admins(tx.as_mut(), &row, Notice::Deleted, now)
            .await?;
        tx.commit().await?;
        Ok(self.lifecycle_view(&row))
    }

    /// `POST /orgs/{org}/lifecycle/continue` (terms-v3): an administrator says the
    /// organization is still wanted; the clock of the unused-free-plan rule starts again.
    pub async fn continue_org(
        &self,
        access: &crate::OrgAccess,
        context: &RequestContext,
        now: Timestamp,
    ) -> Result<LifecycleView, ServiceError> {
        let (mut tx, actor) = self.begin_in_org(access).await?;
        if actor.membership.role != OrgRole::Admin {
            return Err(ServiceError::forbidden(
                "only an administrator may confirm that the organization continues",
            ));
        }
        let (mut row, expected) = self
            .lifecycle_in_tx(tx.as_mut(), &access.org_id, now)
            .await?;
        row.last_confirmed_at = Some(now);
        row.continue_asked_at = None;
        let row = self.save_lifecycle(tx.as_mut(), row, expected, now).await?;
        let mut draft = AuditDraft::new(
            ActorKind::Account,
            Some(access.account_id.as_str()),
            action::ORG_LIFECYCLE_CONTINUED,
        )
        .target("org", access.org_id.as_str());
        draft.org = Some(&access.org_id);
        self.record(tx.as_mut(), context, draft, now).await?;
        tx.commit().await?;
        Ok(self.lifecycle_view(&row))
    }

    /// `POST /operator/orgs/{org}/contract`: records a contract event (kept as history, never
    /// purged) and moves the organization's state. Events out of order are refused and
    /// change nothing.
    pub async fn record_contract_event(
        &self,
        operator: Option<&OperatorPrincipal>,
        context: &RequestContext,
        org: &str,
        input: &ContractEventInput,
        now: Timestamp,
    ) -> Result<LifecycleView, ServiceError> {
        let org = OrgId::parse(org).ok_or(ServiceError::NotFound)?;
        let event = input.event.as_str();
        if !CONTRACT_EVENTS.contains(&event) {
            return Err(ServiceError::field(
                "event",
                "must be one of trial_started, trial_ended, subscribed, renewed, suspended, \
                 reinstated, cancelled, plan_changed",
            ));
        }
        if input.at > now {
            return Err(ServiceError::field("at", "must not be in the future"));
        }
        let needs_period_end = matches!(event, "trial_started" | "subscribed" | "renewed");
        match (needs_period_end, input.period_end) {
            (true, None) => {
                return Err(ServiceError::field(
                    "period_end",
                    "is required for this event (the trial end or the contract period end)",
                ));
            }
            (true, Some(end)) if end <= input.at => {
                return Err(ServiceError::field("period_end", "must be after `at`"));
            }
            (false, Some(_)) => {
                return Err(ServiceError::field(
                    "period_end",
                    "applies only to trial_started, subscribed and renewed",
                ));
            }
            _ => {}
        }
        let plan = input
            .plan
            .as_deref()
            .map(|text| {
                Plan::parse(text).ok_or_else(|| {
                    ServiceError::field(
                        "plan",
                        "must be one of free, trial, paid, classic_paid, classic_trial, \
                         classic_free",
                    )
                })
            })
            .transpose()?;
        let mut tx = self.store.begin().await?;
        let (mut row, expected) = self.lifecycle_in_tx(tx.as_mut(), &org, now).await?;
        let current = plan_of(&row)?;
        if matches!(row.state.as_str(), DELETED | PURGING | PURGED) {
            return Err(conflict(
                "org_deleted",
                format!(
                    "the organization is {}; no contract event applies",
                    row.state
                ),
            ));
        }
        // Events come in the order they happened.
        if let Some(last) = self.store.contract_events(&org).await?.last()
            && input.at < last.at
        {
            return Err(conflict(
                "contract_event_out_of_order",
                format!(
                    "`at` is before the last recorded event ({} at {})",
                    last.event,
                    last.at.to_rfc3339()
                ),
            ));
        }
        let from = row.state.clone();
        let state = row.state.clone();
        let out_of_order = |why: &str| conflict("contract_event_out_of_order", why.to_owned());
        let mut notice = None;
        let mut reason = None;
        match event {
            "trial_started" => {
                if state != ACTIVE || current.is_paid() {
                    return Err(out_of_order(
                        "a trial starts only on an active organization without a subscription",
                    ));
                }
                let plan = plan.unwrap_or(if current.is_classic() {
                    Plan::ClassicTrial
                } else {
                    Plan::Trial
                });
                if !plan.is_trial() {
                    return Err(ServiceError::field(
                        "plan",
                        "must be trial or classic_trial",
                    ));
                }
                row.plan = String::from(plan.as_str());
                row.trial_started_at = Some(input.at);
                row.trial_ends_at = input.period_end;
            }
            "trial_ended" => {
                if state != ACTIVE || !current.is_trial() {
                    return Err(out_of_order("only a running trial can end"));
                }
                if row.trial_started_at.is_some_and(|start| input.at < start) {
                    return Err(out_of_order("a trial cannot end before it started"));
                }
                row.trial_ends_at = Some(input.at);
                row.state = String::from(TRIAL_EXPIRED);
                self.schedule_automatic_deletion(&mut row, Trigger::TrialEnded, input.at);
                notice = Some(Notice::TrialExpired);
            }
            "subscribed" => {
                if !matches!(state.as_str(), ACTIVE | TRIAL_EXPIRED) || current.is_paid() {
                    return Err(out_of_order(
                        "a subscription starts on an active or trial-expired organization \
                         without one (a suspended one is reinstated)",
                    ));
                }
                let plan = plan.unwrap_or(if current.is_classic() {
                    Plan::ClassicPaid
                } else {
                    Plan::Paid
                });
                if !plan.is_paid() {
                    return Err(ServiceError::field("plan", "must be paid or classic_paid"));
                }
                row.plan = String::from(plan.as_str());
                row.period_ends_at = input.period_end;
                row.state = String::from(ACTIVE);
                Self::cancel_automatic_deletion(&mut row);
                row.notice_sent_for = None;
            }
            "renewed" => {
                if !current.is_paid() || !matches!(state.as_str(), ACTIVE | SUSPENDED) {
                    return Err(out_of_order("only a subscription can be renewed"));
                }
                if row
                    .period_ends_at
                    .zip(input.period_end)
                    .is_some_and(|(old, new)| new <= old)
                {
                    return Err(out_of_order(
                        "a renewal must move the contract period end later",
                    ));
                }
                row.period_ends_at = input.period_end;
                if state == SUSPENDED {
                    let suspended = row.suspended_at.unwrap_or(input.at);
                    self.schedule_automatic_deletion(&mut row, Trigger::Suspended, suspended);
                }
            }
            "suspended" => {
                if state != ACTIVE || !current.is_paid() {
                    return Err(out_of_order(
                        "only an active organization with a subscription can be suspended",
                    ));
                }
                row.suspended_at = Some(input.at);
                row.state = String::from(SUSPENDED);
                self.schedule_automatic_deletion(&mut row, Trigger::Suspended, input.at);
                notice = Some(Notice::Suspended);
            }
            "reinstated" => {
                if state != SUSPENDED {
                    return Err(out_of_order(
                        "only a suspended organization can be reinstated",
                    ));
                }
                row.state = String::from(ACTIVE);
                row.suspended_at = None;
                Self::cancel_automatic_deletion(&mut row);
                row.notice_sent_for = None;
            }
            "cancelled" => {
                reason = Some(Reason::Cancelled);
            }
            "plan_changed" => {
                let Some(plan) = plan else {
                    return Err(ServiceError::field("plan", "is required for plan_changed"));
                };
                if state != ACTIVE {
                    return Err(out_of_order(
                        "the plan changes only on an active organization",
                    ));
                }
                if !matches!(plan, Plan::Free | Plan::ClassicFree) {
                    return Err(ServiceError::field(
                        "plan",
                        "plan_changed sets free or classic_free; trials and subscriptions \
                         have their own events",
                    ));
                }
                row.plan = String::from(plan.as_str());
                row.trial_started_at = None;
                row.trial_ends_at = None;
                row.period_ends_at = None;
            }
            other => {
                return Err(ServiceError::field(
                    "event",
                    &format!("`{other}` is not a contract event"),
                ));
            }
        }
        if input.plan.is_some() && !matches!(event, "trial_started" | "subscribed" | "plan_changed")
        {
            return Err(ServiceError::field(
                "plan",
                "applies only to trial_started, subscribed and plan_changed",
            ));
        }
        // A contract event is a sign of use, too.
        row.last_confirmed_at = Some(now);
        row.continue_asked_at = None;
        if let Some(reason) = reason {
            row = self.deleted_row(row, reason, now)?;
            notice = Some(Notice::Deleted);
        }
        if notice.is_some() {
            row.notice_sent_for = Some(row.state.clone());
        }
        let row = self.save_lifecycle(tx.as_mut(), row, expected, now).await?;
        tx.insert_contract_event(&ContractEventRow {
            id: format!("ce_{}", hex::encode(id_random()?)),
            org_id: org.clone(),
            event: event.to_owned(),
            at: input.at,
            period_end: input.period_end,
            recorded_at: now,
            recorded_by: operator.map_or_else(
                || String::from("command_line"),
                |operator| operator.token_id.as_str().to_owned(),
            ),
        })
        .await?;
        let draft = AuditDraft::new(
            ActorKind::Operator,
            operator.map(|operator| operator.token_id.as_str()),
            action::ORG_CONTRACT_EVENT,
        )
        .target("org", org.as_str())
        .details(json!({
            "event": event,
            "at": input.at.to_rfc3339(),
            "period_end": input.period_end.map(Timestamp::to_rfc3339),
            "plan": row.plan,
            "from": from,
            "to": row.state,
        }));
        self.record(tx.as_mut(), context, draft, now).await?;
        if let Some(notice) = notice {
            self.notify_admins(tx.as_mut(), &row, notice, now).await?;
        }
        tx.commit().await?;
        Ok(self.lifecycle_view(&row))
    }

    /// The organization's contract history, oldest first (exempt from deletion, DEL-5).
    pub async fn contract_history(
        &self,
        _operator: &OperatorPrincipal,
        org: &str,
    ) -> Result<Vec<ContractEventRow>, ServiceError> {
        let org = OrgId::parse(org).ok_or(ServiceError::NotFound)?;
        Ok(self.store.contract_events(&org).await?)
    }

    /// `POST /operator/orgs/{org}/restore`: a `deleted` organization whose purge has not
    /// started is opened again, as `active` (audited). A lapsed trial becomes the free plan;
    /// a suspension is lifted (record the contract events that follow).
    pub async fn restore_org(
        &self,
        operator: Option<&OperatorPrincipal>,
        context: &RequestContext,
        org: &str,
        now: Timestamp,
    ) -> Result<LifecycleView, ServiceError> {
        let org = OrgId::parse(org).ok_or(ServiceError::NotFound)?;
        let mut tx = self.store.begin().await?;
        let (mut row, expected) = self.lifecycle_in_tx(tx.as_mut(), &org, now).await?;
        if row.state != DELETED {
            return Err(conflict(
                "org_not_deleted",
                format!(
                    "only a deleted organization can be restored; it is {}",
                    row.state
                ),
            ));
        }
        if row.purge_starts_at.is_some_and(|start| start <= now) {
            return Err(conflict(
                "purge_started",
                "the purge of this organization is due or under way; it cannot be restored",
            ));
        }
        let reason = row.deletion_reason.clone();
        row.state = String::from(ACTIVE);
        if Plan::parse(&row.plan).is_some_and(Plan::is_trial)
            && row.trial_ends_at.is_some_and(|end| end <= now)
        {
            let classic = Plan::parse(&row.plan).is_some_and(Plan::is_classic);
            row.plan = String::from(if classic {
                Plan::ClassicFree.as_str()
            } else {
                Plan::Free.as_str()
            });
        }
        row.suspended_at = None;
        row.deletion_due_at = None;
        row.deletion_reason = None;
        row.deleted_at = None;
        row.purge_starts_at = None;
        row.purge_due_by = None;
        if row.audit_purged_at.is_none() {
            row.audit_purge_starts_at = None;
        }
        row.notice_sent_for = None;
        row.continue_asked_at = None;
        row.last_confirmed_at = Some(now);
        let row = self.save_lifecycle(tx.as_mut(), row, expected, now).await?;
        let draft = AuditDraft::new(
            ActorKind::Operator,
            operator.map(|operator| operator.token_id.as_str()),
            action::ORG_RESTORED,
        )
        .target("org", org.as_str())
        .details(json!({ "deletion_reason": reason }));
        self.record(tx.as_mut(), context, draft, now).await?;
        tx.commit().await?;
        Ok(self.lifecycle_view(&row))
    }

    /// One round of the scheduler at `now`: every organization whose next step is due takes
    /// it, once, whichever node gets there first. With `dry_run`, nothing is written and the
    /// answer lists what would happen.
    pub async fn run_lifecycle_once(
        &self,
        now: Timestamp,
        dry_run: bool,
    ) -> Result<LifecycleRun, ServiceError> {
        let mut run = LifecycleRun::default();
        let mut after: Option<OrgId> = None;
        loop {
            let rows = self
                .store
                .org_lifecycles(after.as_ref(), PAGE, false)
                .await?;
            for row in &rows {
                // Steps due at the same time follow each other in one round (a trial ended
                // with no delay before deletion, a purge due on the day of deletion); a few
                // at most, so a bad row cannot hold the round.
                let mut current = row.clone();
                let mut failures = 0;
                for _ in 0..MAX_STEPS_PER_ROUND {
                    match self.step_org(&current, now, dry_run).await {
                        // A dry run goes on past the audit trail's purge to the step that
                        // follows it in the same round, as a real run would.
                        Ok(Some(action)) if dry_run && action.action == "audit_purged" => {
                            run.actions.push(action);
                            current.audit_purged_at = Some(now);
                            continue;
                        }
                        Ok(Some(action)) => run.actions.push(action),
                        // Nothing to take, or another runner (a second node, or `mamori
                        // lifecycle run` beside `serve`) took this step first: the row is
                        // read again, and the round goes on only when it moved, since the
                        // step after it may be due at once (a purge due with the trail's).
                        Ok(None) => match self.store.org_lifecycle(&current.org_id).await? {
                            Some(next) if !dry_run && next.version != current.version => {
                                current = next;
                                continue;
                            }
                            _ => break,
                        },
                        // A step lost to a concurrent transaction (a deadlock or a
                        // serialization failure on PostgreSQL) is taken again at once from
                        // the row as it now is: every step checks the row's version, so a
                        // step another node took meanwhile is not taken twice.
                        Err(ServiceError::Unexpected(error))
                            if failures < STEP_RETRIES && !dry_run =>
                        {
                            failures += 1;
                            let error = format!("{error:#}");
                            tracing::warn!(org = %current.org_id, error, "lifecycle step retried");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                        Err(error) => {
                            // One organization's failure must not stop the others; it is tried
                            // again next round.
                            let error = format!("{error:#}");
                            tracing::error!(org = %current.org_id, error, "lifecycle step failed");
                            break;
                        }
                    }
                    if dry_run {
                        break;
                    }
                    match self.store.org_lifecycle(&current.org_id).await? {
                        Some(next) => current = next,
                        None => break,
                    }
                }
            }
            if rows.len() < PAGE as usize {
                break;
            }
            after = rows.last().map(|row| row.org_id.clone());
        }
        Ok(run)
    }

    /// Takes the step due for one organization, if any.
    async fn step_org(
        &self,
        seen: &OrgLifecycleRow,
        now: Timestamp,
        dry_run: bool,
    ) -> Result<Option<LifecycleAction>, ServiceError> {
        // AUD-3: the organization's own audit trail goes on its own date, which may come
        // before the purge (30 days after a trial's end) or with it.
        if let Some(due_at) = seen.audit_purge_starts_at
            && due_at <= now
            && seen.audit_purged_at.is_none()
        {
            let action = LifecycleAction {
                org_id: seen.org_id.clone(),
                action: "audit_purged",
                from: seen.state.clone(),
                to: seen.state.clone(),
                due_at,
            };
            if dry_run {
                return Ok(Some(action));
            }
            // Idempotent, in batches of its own: a second node finds nothing left.
            let removed = self.purge_org_audit_trail(&seen.org_id, now).await?;
            let mut tx = self.store.begin().await?;
            let (mut row, expected) = self.lifecycle_in_tx(tx.as_mut(), &seen.org_id, now).await?;
            if row.audit_purged_at.is_some() {
                return Ok(None);
            }
            row.audit_purged_at = Some(now);
            let row = self.save_lifecycle(tx.as_mut(), row, expected, now).await?;
            let draft = AuditDraft::new(ActorKind::System, None, action::ORG_AUDIT_TRAIL_PURGED)
                .target("org", row.org_id.as_str())
                .details(json!({
                    "due_at": due_at.to_rfc3339(),
                    "events_removed": removed,
                }));
            self.record(tx.as_mut(), &RequestContext::default(), draft, now)
                .await?;
            tx.commit().await?;
            return Ok(Some(action));
        }
        if seen.state == PURGING {
            let Some(finished) = self.purge_finished(&seen.org_id).await? else {
                return Ok(None);
            };
            let action = LifecycleAction {
                org_id: seen.org_id.clone(),
                action: "purged",
                from: String::from(PURGING),
                to: String::from(PURGED),
                due_at: finished,
            };
            if dry_run {
                return Ok(Some(action));
            }
            let mut tx = self.store.begin().await?;
            let (mut row, expected) = self.lifecycle_in_tx(tx.as_mut(), &seen.org_id, now).await?;
            if row.state != PURGING {
                return Ok(None);
            }
            row.state = String::from(PURGED);
            row.purged_at = Some(finished);
            let row = self.save_lifecycle(tx.as_mut(), row, expected, now).await?;
            self.record_transition(tx.as_mut(), &row, PURGING, "purged", now)
                .await?;
            tx.commit().await?;
            return Ok(Some(action));
        }
        let Some((step, due_at)) = self.due_step(seen, now) else {
            return Ok(None);
        };
        // The free plan's clock (terms-v3) runs from the last use: activity in the
        // organization's audit trail since then moves it on instead of asking.
        if step == Step::AskToContinue
            && let Some(used) = self
                .last_use_since(&seen.org_id, seen.last_confirmed_at)
                .await?
        {
            if !dry_run {
                let mut tx = self.store.begin().await?;
                let (mut row, expected) =
                    self.lifecycle_in_tx(tx.as_mut(), &seen.org_id, now).await?;
                if row.version != seen.version {
                    return Ok(None);
                }
                row.last_confirmed_at = Some(used);
                self.save_lifecycle(tx.as_mut(), row, expected, now).await?;
                tx.commit().await?;
            }
            return Ok(Some(LifecycleAction {
                org_id: seen.org_id.clone(),
                action: "use_seen",
                from: seen.state.clone(),
                to: seen.state.clone(),
                due_at: used,
            }));
        }
        let (name, to) = match step {
            Step::ExpireTrial => ("trial_expired", TRIAL_EXPIRED),
            Step::AskToContinue => ("asked_to_continue", ACTIVE),
            Step::Delete(_) => ("deleted", DELETED),
            Step::StartPurge => ("purge_started", PURGING),
        };
        let action = LifecycleAction {
            org_id: seen.org_id.clone(),
            action: name,
            from: seen.state.clone(),
            to: String::from(to),
            due_at,
        };
        if dry_run {
            return Ok(Some(action));
        }
        let mut tx = self.store.begin().await?;
        let (row, expected) = self.lifecycle_in_tx(tx.as_mut(), &seen.org_id, now).await?;
        // Someone else may have taken the step (another node) or changed the organization
        // (a contract event) since it was read: decide again on the locked row.
        if self.due_step(&row, now).map(|(step, _)| step) != Some(step) {
            return Ok(None);
        }
        let from = row.state.clone();
        let mut row = row;
        let mut notice = None;
        match step {
            Step::ExpireTrial => {
                let ended = row.trial_ends_at.unwrap_or(now);
                row.state = String::from(TRIAL_EXPIRED);
                self.schedule_automatic_deletion(&mut row, Trigger::TrialEnded, ended);
                notice = Some(Notice::TrialExpired);
            }
            Step::AskToContinue => {
                row.continue_asked_at = Some(now);
                notice = Some(Notice::AskToContinue);
            }
            Step::Delete(reason) => {
                row = self.deleted_row(row, reason, now)?;
                notice = Some(Notice::Deleted);
            }
            Step::StartPurge => {
                row.state = String::from(PURGING);
                row.purge_started_at = Some(now);
            }
        }
        if notice.is_some() {
            row.notice_sent_for = Some(String::from(name));
        }
        let row = self.save_lifecycle(tx.as_mut(), row, expected, now).await?;
        if step == Step::StartPurge {
            let due_by = row.purge_due_by.unwrap_or(now);
            self.start_purge_in_tx(tx.as_mut(), &row.org_id, due_by, now)
                .await?;
        }
        self.record_transition(tx.as_mut(), &row, &from, name, now)
            .await?;
        if let Some(notice) = notice {
            self.notify_admins(tx.as_mut(), &row, notice, now).await?;
        }
        tx.commit().await?;
        Ok(Some(action))
    }

    /// When the organization was last used after `since`: the time of the first event in
    /// its own audit trail at or after it (its members' and apps' actions).
    async fn last_use_since(
        &self,
        org: &OrgId,
        since: Option<Timestamp>,
    ) -> Result<Option<Timestamp>, ServiceError> {
        let Some(since) = since else {
            return Ok(None);
        };
        let chain = chain_name(Some(org));
        let Some(head) = self.store.audit_chain(&chain).await? else {
            return Ok(None);
        };
        let cutoff = since.plus_millis(1);
        let first = {
            let mut tx = self.store.begin().await?;
            let first = tx.first_audit_seq_at_or_after(&chain, cutoff).await?;
            drop(tx);
            first
        };
        if first > head.last_seq {
            return Ok(None);
        }
        let newest = self
            .store
            .audit_events(&chain, first.max(head.last_seq), 1)
            .await?;
        Ok(newest.first().map(|event| event.occurred_at.max(cutoff)))
    }

    async fn record_transition(
        &self,
        tx: &mut dyn StoreTx,
        row: &OrgLifecycleRow,
        from: &str,
        step: &str,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        let draft = AuditDraft::new(ActorKind::System, None, action::ORG_LIFECYCLE_CHANGED)
            .target("org", row.org_id.as_str())
            .details(json!({
                "step": step,
                "from": from,
                "to": row.state,
                "reason": row.deletion_reason,
                "purge_starts_at": row.purge_starts_at.map(Timestamp::to_rfc3339),
                "purge_due_by": row.purge_due_by.map(Timestamp::to_rfc3339),
            }));
        self.record(tx, &RequestContext::default(), draft, now)
            .await
    }

    /// Mails every active administrator of the organization about `notice`, inside `tx`.
    async fn notify_admins(
        &self,
        tx: &mut dyn StoreTx,
        row: &OrgLifecycleRow,
        notice: Notice,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        let org_name = match self.store.org(&row.org_id).await? {
            Some(org) => self
                .org_key(&row.org_id)
                .await?
                .open_string("name", &org.name_sealed)?,
            None => String::new(),
        };
        let (kind, subject, body) = notice.compose(&org_name, row, &self.mail_settings.public_url);
        let mut after: Option<AccountId> = None;
        loop {
            let members = self.store.members(&row.org_id, after.as_ref(), 200).await?;
            for (membership, account) in &members {
                if membership.role != OrgRole::Admin || account.status != AccountStatus::Active {
                    continue;
                }
                let key = self.keyring.key(account.id.as_str()).await?;
                let to = view_of(account, &key)?.email;
                let mail = Mail {
                    to,
                    subject: subject.clone(),
                    body: body.clone(),
                };
                enqueue(tx, &key, account.id.as_str(), kind, &mail, now).await?;
            }
            if members.len() < 200 {
                break;
            }
            after = members
                .last()
                .map(|(membership, _)| membership.account_id.clone());
        }
        Ok(())
    }

    /// The evidence report: every organization, its dates, and each deadline with whether
    /// it was met.
    pub async fn lifecycle_report(&self, now: Timestamp) -> Result<LifecycleReport, ServiceError> {
        let mut items = Vec::new();
        let mut after: Option<OrgId> = None;
        loop {
            let rows = self
                .store
                .org_lifecycles(after.as_ref(), PAGE, true)
                .await?;
            for row in &rows {
                let purge = self.purge_status(&row.org_id, now).await?;
                let mut deadlines = deadlines_of(row, now);
                // DEL-7: every app told of the purge confirms by the purge's deadline.
                if let Some(purge) = &purge {
                    deadlines.extend(purge.apps.iter().map(|app| app_deadline(purge, app, now)));
                }
                items.push(LifecycleReportItem {
                    lifecycle: self.lifecycle_view(row),
                    deadlines,
                    purge,
                });
            }
            if rows.len() < PAGE as usize {
                break;
            }
            after = rows.last().map(|row| row.org_id.clone());
        }
        let all_met = items
            .iter()
            .flat_map(|item| &item.deadlines)
            .all(|deadline| matches!(deadline.status, "met" | "pending"));
        Ok(LifecycleReport {
            generated_at: now,
            policy: self.lifecycle_policy.name.clone(),
            items,
            all_met,
        })
    }
}

/// An app's confirmation that it deleted the organization's data (DEL-7), due by the purge's
/// own deadline.
fn app_deadline(
    purge: &crate::PurgeStatus,
    app: &crate::purge::PurgeAppStatus,
    now: Timestamp,
) -> DeadlineView {
    let status = match app.confirmed_at {
        Some(done) if done <= purge.due_by => "met",
        Some(_) => "missed",
        None if now > purge.due_by => "missed",
        None => "pending",
    };
    DeadlineView {
        name: "app_confirmed",
        app_id: Some(app.app_id.clone()),
        due_at: purge.requested_at,
        deadline: purge.due_by,
        done_at: app.confirmed_at,
        status,
    }
}

/// The deadlines of one organization with their verdicts. A scheduled step is on time when
/// it happened on its date or within [`ON_TIME_GRACE_DAYS`] after; before is `early`, later
/// `missed`. A purge completes by its `purge_due_by`.
fn deadlines_of(row: &OrgLifecycleRow, now: Timestamp) -> Vec<DeadlineView> {
    let mut deadlines = Vec::new();
    let scheduled = |name: &'static str, due: Timestamp, done: Option<Timestamp>| {
        let deadline = due.plus_days(ON_TIME_GRACE_DAYS);
        let status = match done {
            Some(done) if done < due => "early",
            Some(done) if done <= deadline => "met",
            Some(_) => "missed",
            None if now > deadline => "missed",
            None => "pending",
        };
        DeadlineView {
            name,
            app_id: None,
            due_at: due,
            deadline,
            done_at: done,
            status,
        }
    };
    let automatic = row
        .deletion_reason
        .as_deref()
        .and_then(Reason::parse)
        .is_none_or(Reason::is_automatic);
    if automatic && let Some(due) = row.deletion_due_at {
        deadlines.push(scheduled("automatic_deletion", due, row.deleted_at));
    }
    if let Some(due) = row.purge_starts_at {
        deadlines.push(scheduled("purge_start", due, row.purge_started_at));
    }
    if let Some(due) = row.audit_purge_starts_at {
        deadlines.push(scheduled("audit_purge", due, row.audit_purged_at));
    }
    if let (Some(start), Some(due_by)) = (row.purge_starts_at, row.purge_due_by) {
        let status = match row.purged_at {
            Some(done) if done <= due_by => "met",
            Some(_) => "missed",
            None if now > due_by => "missed",
            None => "pending",
        };
        deadlines.push(DeadlineView {
            name: "purge_complete",
            app_id: None,
            due_at: start,
            deadline: due_by,
            done_at: row.purged_at,
            status,
        });
    }
    deadlines
}

/// The mails the lifecycle sends to an organization's administrators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Notice {
    TrialExpired,
    Suspended,
    AskToContinue,
    Deleted,
}

fn date(at: Option<Timestamp>) -> String {
    at.map_or_else(
        || String::from("(not set)"),
        |at| at.to_rfc3339()[..10].to_owned(),
    )
}

impl Notice {
    fn compose(
        self,
        org_name: &str,
        row: &OrgLifecycleRow,
        public_url: &str,
    ) -> (&'static str, String, String) {
        let url = public_url.trim_end_matches('/');
        let org = format!("{org_name} ({})", row.org_id.as_str());
        match self {
            Notice::TrialExpired => (
                "notice.org_trial_expired",
                format!("The trial of {org_name} has ended"),
                format!(
                    "The trial of the organization {org} ended on {ended} without a \
                     subscription. Unless it is subscribed, the organization will be deleted \
                     automatically on {due}, and its data purged after that, as the data \
                     deletion policy says.\n",
                    ended = date(row.trial_ends_at),
                    due = date(row.deletion_due_at),
                ),
            ),
            Notice::Suspended => (
                "notice.org_suspended",
                format!("{org_name} is suspended"),
                format!(
                    "The use of the organization {org} was suspended. Unless it is \
                     reinstated, the organization will be deleted automatically on {due}, and \
                     its data purged after that, as the data deletion policy says.\n",
                    due = date(row.deletion_due_at),
                ),
            ),
            Notice::AskToContinue => (
                "notice.org_continue",
                format!("Do you want to keep {org_name}?"),
                format!(
                    "The organization {org} has not been used for a long time. If you want \
                     to keep it, an administrator confirms it at {url}/api/v1/orgs/{id}/lifecycle/continue \
                     (POST, signed in). Without that confirmation it will be deleted \
                     automatically, and its data purged.\n",
                    id = row.org_id.as_str(),
                ),
            ),
            Notice::Deleted => (
                "notice.org_deleted",
                format!("{org_name} was deleted"),
                format!(
                    "The organization {org} was deleted on {deleted} and is closed to its \
                     members and apps. Its data will be purged starting on {start}, and the \
                     purge completes by {due_by}. After that it cannot be restored by anyone. \
                     Backups keep it until they expire.\n",
                    deleted = date(row.deleted_at),
                    start = date(row.purge_starts_at),
                    due_by = date(row.purge_due_by),
                ),
            ),
        }
    }
}

/// Checks that a contract event's plan field is not misplaced (kept for callers that
/// validate before sending).
pub fn parse_plan(text: &str) -> Result<&'static str, FieldError> {
    Plan::parse(text)
        .map(Plan::as_str)
        .ok_or_else(|| FieldError::new("plan", "is not a known plan kind"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    fn at(day: i64) -> Timestamp {
        Timestamp::from_millis(day * DAY)
    }

    fn deleted(purge_started: Option<i64>, purged: Option<i64>) -> OrgLifecycleRow {
        let mut row = Services::default_lifecycle(&OrgId::from_random(&[1; 17]), at(0), at(0));
        row.state = String::from(if purged.is_some() { PURGED } else { DELETED });
        row.deletion_reason = Some(String::from("trial_expired"));
        row.deletion_due_at = Some(at(30));
        row.deleted_at = Some(at(30));
        row.purge_starts_at = Some(at(210));
        row.purge_due_by = Some(at(220));
        row.purge_started_at = purge_started.map(at);
        row.purged_at = purged.map(at);
        row
    }

    fn statuses(row: &OrgLifecycleRow, now: i64) -> Vec<(&'static str, &'static str)> {
        deadlines_of(row, at(now))
            .into_iter()
            .map(|deadline| (deadline.name, deadline.status))
            .collect()
    }

    #[test]
    fn each_deadline_is_judged() {
        // On time, purge finished inside its 10 days.
        assert_eq!(
            statuses(&deleted(Some(210), Some(215)), 300),
            [
                ("automatic_deletion", "met"),
                ("purge_start", "met"),
                ("purge_complete", "met")
            ]
        );
        // Waiting: nothing is late yet.
        assert_eq!(
            statuses(&deleted(None, None), 210),
            [
                ("automatic_deletion", "met"),
                ("purge_start", "pending"),
                ("purge_complete", "pending")
            ]
        );
        // A purge that started late and finished after its deadline.
        assert_eq!(
            statuses(&deleted(Some(214), Some(221)), 300),
            [
                ("automatic_deletion", "met"),
                ("purge_start", "missed"),
                ("purge_complete", "missed")
            ]
        );
        // A purge never started, nor finished, by its deadline.
        assert_eq!(
            statuses(&deleted(None, None), 221),
            [
                ("automatic_deletion", "met"),
                ("purge_start", "missed"),
                ("purge_complete", "missed")
            ]
        );
        // A step taken before its date.
        assert_eq!(
            statuses(&deleted(Some(209), None), 209)[1],
            ("purge_start", "early")
        );
        // A deletion by the administrator has no automatic-deletion deadline.
        let mut by_admin = deleted(None, None);
        by_admin.deletion_reason = Some(String::from("admin"));
        assert_eq!(statuses(&by_admin, 0)[0].0, "purge_start");
    }
}
