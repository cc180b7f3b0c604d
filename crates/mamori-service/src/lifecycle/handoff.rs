//! The seam between the lifecycle scheduler and the purge engine (issue 6, items 5 and 6).
//! The scheduler calls [`Services::start_purge_in_tx`] inside the transaction that moves a
//! `deleted` organization to `purging`, and asks [`Services::purge_finished`] whether a
//! `purging` organization may become `purged`. Kept tiny on purpose: the merge replaces the
//! two bodies with calls to the purge engine.

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
        // merge: self.request_purge_in_tx(tx, org, due_by, now).await
        // Until then the transition to `purging` (recorded by the caller) is all that happens.
        let _ = (tx, org, due_by, now);
        Ok(())
    }

    /// Whether the purge of `org` has finished, and when.
    pub(crate) async fn purge_finished(
        &self,
        org: &OrgId,
    ) -> Result<Option<Timestamp>, ServiceError> {
        // merge: read `self.purge_status(org)` and return its finish time.
        let _ = org;
        Ok(None)
    }
}
