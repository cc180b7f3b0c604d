//! The seam between the lifecycle scheduler and the purge engine (`crate::purge`, issue 6,
//! items 5 and 6). The scheduler calls [`Services::start_purge_in_tx`] inside the
//! transaction that moves a `deleted` organization to `purging`, and asks
//! [`Services::purge_finished`] whether a `purging` organization may become `purged`. An
//! operator's erasure on request goes the other way: the purge engine calls
//! [`Services::note_purge_requested_in_tx`] so the lifecycle says `purging` too, and no later
//! contract event can reopen the organization.

use super::{PURGED, PURGING};
use crate::{ServiceError, Services};
use mamori_core::{OrgId, Timestamp};
use mamori_store::StoreTx;

impl Services {
    /// Starts the purge of `org`, due to finish by `due_by`, inside the scheduler's `tx`.
    pub(crate) async fn start_purge_in_tx(
        &self,
        tx: &mut dyn StoreTx,
        org: &OrgId,
        due_by: Timestamp,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        self.request_purge_in_tx(tx, org, due_by, now).await
    }

    /// When the purge of `org` finished, if it has.
    pub(crate) async fn purge_finished(
        &self,
        org: &OrgId,
    ) -> Result<Option<Timestamp>, ServiceError> {
        Ok(self
            .store
            .org_purge(org)
            .await?
            .and_then(|purge| purge.finished_at))
    }

    /// A purge requested outside the scheduler (the operator's erasure on request): the
    /// organization's lifecycle moves to `purging` in the same transaction, whatever state it
    /// was in, with the purge's dates.
    pub(crate) async fn note_purge_requested_in_tx(
        &self,
        tx: &mut dyn StoreTx,
        org: &OrgId,
        due_by: Timestamp,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        let Some(mut row) = tx.org_lifecycle_in_tx(org).await? else {
            return Ok(());
        };
        if row.state == PURGING || row.state == PURGED {
            return Ok(());
        }
        let expected = Some(row.version);
        row.state = String::from(PURGING);
        row.deleted_at.get_or_insert(now);
        row.deletion_reason
            .get_or_insert_with(|| String::from("erasure_request"));
        row.purge_starts_at = Some(now);
        row.purge_started_at = Some(now);
        row.purge_due_by = Some(due_by);
        row.audit_purge_starts_at = Some(now);
        self.save_lifecycle(tx, row, expected, now).await?;
        Ok(())
    }
}
