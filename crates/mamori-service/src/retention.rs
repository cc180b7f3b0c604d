//! Retention (AUD-2, LOG-2): audit events are deleted once they were stored `audit_days` ago
//! (400 by default), access logs after `access_log_days` (545). The job is steppable
//! (`run_retention_once(now)`), idempotent and safe on several nodes; `serve` runs it daily, so
//! deletion completes well within the promised 10 days after an entry falls due.
//!
//! An audit chain loses only a prefix: the longest run of its oldest events that are all due.
//! Its anchor keeps the `seq` and `hash` of the last deleted event, so the rest still
//! verifies, and retention signs that anchor in the same transaction: a chain cut short by
//! anyone else has no such signature, and verification names its anchor. No event is ever deleted before its time, even if clocks of several nodes made
//! `time` not rise strictly along `seq`.

use crate::{ServiceError, Services};
use mamori_core::Timestamp;

/// How long entries are kept, in days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionSettings {
    pub audit_days: i64,
    pub access_log_days: i64,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            audit_days: 400,
            access_log_days: 545,
        }
    }
}

/// What one round of retention deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub audit_events_deleted: u64,
    pub audit_chains_trimmed: u64,
    pub access_logs_deleted: u64,
}

/// Events deleted per transaction.
const PURGE_BATCH: i64 = 20_000;

impl Services {
    pub async fn run_retention_once(
        &self,
        now: Timestamp,
    ) -> Result<RetentionReport, ServiceError> {
        let mut report = RetentionReport::default();
        let cutoff = now.plus_days(-self.retention.audit_days);
        loop {
            let chains = self.store.chains_with_events_before(cutoff, 100).await?;
            let mut progressed = false;
            for chain in &chains {
                let deleted = self.trim_chain(chain, cutoff, now).await?;
                if deleted > 0 {
                    progressed = true;
                    report.audit_chains_trimmed += 1;
                    report.audit_events_deleted += deleted;
                }
            }
            // A chain whose due events sit behind a younger one cannot move; stop there.
            if chains.len() < 100 || !progressed {
                break;
            }
        }
        report.access_logs_deleted = self
            .delete_access_logs_before(now.plus_days(-self.retention.access_log_days))
            .await?;
        Ok(report)
    }

    /// Deletes the due prefix of one chain, in batches; returns how many events went. Each
    /// batch signs its new anchor (see [`crate::audit_trail::anchor_message`]) in the same
    /// transaction, so verifiers can tell this purge from a truncation.
    async fn trim_chain(
        &self,
        chain: &str,
        cutoff: Timestamp,
        now: Timestamp,
    ) -> Result<u64, ServiceError> {
        let signer = self.audit_signer().await?;
        let mut deleted = 0;
        loop {
            let Some(head) = self.store.audit_chain(chain).await? else {
                return Ok(deleted);
            };
            let mut tx = self.store.begin().await?;
            let first_kept = tx.first_audit_seq_at_or_after(chain, cutoff).await?;
            let up_to = (first_kept - 1).min(head.anchor_seq + PURGE_BATCH);
            if up_to <= head.anchor_seq {
                return Ok(deleted);
            }
            let sign = |hash: &str| signer.sign_anchor(chain, up_to, hash, now);
            deleted += tx.purge_audit_prefix(chain, up_to, &sign).await?;
            tx.commit().await?;
        }
    }
}
