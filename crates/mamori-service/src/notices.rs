//! Security notices (issue 4, item 6): a short mail to the holder when something about their
//! credentials changed, written to the outbox in the same transaction as the change and sealed
//! under the account's data key. One function composes and enqueues every kind, so other
//! notices (password changed, email changed) join here.

use crate::ServiceError;
use crate::mail::{Mail, MailSettings, enqueue};
use mamori_core::{AccountId, Timestamp};
use mamori_keyring::DataKey;
use mamori_store::StoreTx;

/// The outbox `kind` of every security notice.
pub const SECURITY_NOTICE_KIND: &str = "security_notice";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityNotice {
    TwoStepEnabled,
    TwoStepDisabled,
    RecoveryCodesRegenerated,
}

impl SecurityNotice {
    fn subject_and_what(self) -> (&'static str, &'static str) {
        match self {
            SecurityNotice::TwoStepEnabled => (
                "Two-step verification was switched on",
                "two-step verification was switched on for your account",
            ),
            SecurityNotice::TwoStepDisabled => (
                "Two-step verification was switched off",
                "two-step verification was switched off for your account",
            ),
            SecurityNotice::RecoveryCodesRegenerated => (
                "New recovery codes were made",
                "a new set of recovery codes was made for your account; the earlier codes no longer work",
            ),
        }
    }
}

/// Puts a security notice for the account holder at `to` in the outbox, inside `tx`.
pub(crate) async fn enqueue_security_notice(
    tx: &mut dyn StoreTx,
    key: &DataKey,
    account: &AccountId,
    to: &str,
    notice: SecurityNotice,
    settings: &MailSettings,
    now: Timestamp,
) -> Result<(), ServiceError> {
    let (subject, what) = notice.subject_and_what();
    let mail = Mail {
        to: to.to_owned(),
        subject: subject.to_owned(),
        body: format!(
            "Hello,\n\n{what} at {}.\n\nIf this was you, there is nothing to do. If it was not, \
             change your password at once and check your sessions at {}.\n",
            now.to_rfc3339(),
            settings.public_url.trim_end_matches('/'),
        ),
    };
    enqueue(tx, key, account.as_str(), SECURITY_NOTICE_KIND, &mail, now).await
}
