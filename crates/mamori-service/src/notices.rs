//! Security notices by email (issue 4, item 6): one function per kind of notice, each
//! composing the message, and [`Services::send_notice`], which puts it in the outbox inside
//! the use case's transaction, sealed under the account's data key (so a rolled-back change
//! sends nothing, and a deleted account's notices are unreadable).
//!
//! A notice never carries a secret: no token, code or password. It says what happened, when
//! and from where, and what to do if it was not the holder.

use crate::audit::RequestContext;
use crate::mail::{Mail, enqueue};
use crate::{ServiceError, Services};
use mamori_core::{AccountId, Timestamp};
use mamori_keyring::DataKey;
use mamori_store::{AccountRow, StoreTx};

/// A notice as composed, before it is addressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The outbox kind, e.g. `notice.password_changed`.
    pub kind: &'static str,
    pub subject: String,
    /// What happened, in one or two sentences; the common part is added when it is sent.
    pub what: String,
}

pub fn password_changed() -> Notice {
    Notice {
        kind: "notice.password_changed",
        subject: String::from("Your password was changed"),
        what: String::from(
            "The password of your account was changed. Every other session was signed out.",
        ),
    }
}

pub fn password_reset() -> Notice {
    Notice {
        kind: "notice.password_reset",
        subject: String::from("Your password was reset"),
        what: String::from(
            "The password of your account was reset with a link sent to this address. Every \
             session was signed out.",
        ),
    }
}

/// To the current address, when a change to `new_email` is asked for.
pub fn email_change_requested(new_email: &str) -> Notice {
    Notice {
        kind: "notice.email_change_requested",
        subject: String::from("A change of your email address was requested"),
        what: format!(
            "Someone signed in to your account asked to change its email address to \
             {new_email}. The change happens only when the link sent to that address is \
             opened."
        ),
    }
}

/// To the former address, once the change to `new_email` is done.
pub fn email_changed(new_email: &str) -> Notice {
    Notice {
        kind: "notice.email_changed",
        subject: String::from("Your email address was changed"),
        what: format!(
            "The email address of your account was changed to {new_email}. Mail about your \
             account now goes there."
        ),
    }
}

pub fn two_step_enabled() -> Notice {
    Notice {
        kind: "notice.two_step_enabled",
        subject: String::from("Two-step verification was switched on"),
        what: String::from(
            "Two-step verification was switched on for your account: signing in now also \
             needs a code from your authenticator app.",
        ),
    }
}

pub fn two_step_disabled() -> Notice {
    Notice {
        kind: "notice.two_step_disabled",
        subject: String::from("Two-step verification was switched off"),
        what: String::from(
            "Two-step verification was switched off for your account: signing in now needs \
             only the password.",
        ),
    }
}

pub fn recovery_codes_regenerated() -> Notice {
    Notice {
        kind: "notice.recovery_codes_regenerated",
        subject: String::from("New recovery codes were made"),
        what: String::from(
            "A new set of recovery codes was made for your account; the previous codes no \
             longer work.",
        ),
    }
}

/// The full message: what happened, when, from where, and what to do if it was not the
/// holder.
pub fn compose(
    notice: &Notice,
    to: &str,
    public_url: &str,
    context: &RequestContext,
    now: Timestamp,
) -> Mail {
    let from = context
        .ip
        .as_deref()
        .map(|ip| format!(" from the address {ip}"))
        .unwrap_or_default();
    let reset = format!("{}/password-reset", public_url.trim_end_matches('/'));
    Mail {
        to: to.to_owned(),
        subject: notice.subject.clone(),
        body: format!(
            "{what}\n\nWhen: {when}{from}\n\n\
             If this was you, there is nothing to do. If it was not, reset your password at \
             once ({reset}) and tell your administrator.\n",
            what = notice.what,
            when = now.to_rfc3339(),
        ),
    }
}

impl Services {
    /// Puts `notice` for `account`, addressed to `to`, in the outbox inside `tx`.
    pub(crate) async fn send_notice_to(
        &self,
        tx: &mut dyn StoreTx,
        context: &RequestContext,
        (account, key): (&AccountRow, &DataKey),
        to: &str,
        notice: Notice,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        self.send_notice_keyed(tx, context, (&account.id, key), to, notice, now)
            .await
    }

    /// Puts `notice` for the account `id`, whose data key is `key`, addressed to `to`, in the
    /// outbox inside `tx`.
    pub(crate) async fn send_notice_keyed(
        &self,
        tx: &mut dyn StoreTx,
        context: &RequestContext,
        (id, key): (&AccountId, &DataKey),
        to: &str,
        notice: Notice,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        let mail = compose(&notice, to, &self.mail_settings.public_url, context, now);
        enqueue(tx, key, id.as_str(), notice.kind, &mail, now).await
    }

    /// Puts `notice` for the account's current address in the outbox inside `tx`.
    pub(crate) async fn send_notice(
        &self,
        tx: &mut dyn StoreTx,
        context: &RequestContext,
        account: &AccountRow,
        notice: Notice,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        let key = self.keyring.key(account.id.as_str()).await?;
        let to = crate::accounts::view_of(account, &key)?.email;
        self.send_notice_to(tx, context, (account, &key), &to, notice, now)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_says_when_and_from_where_and_carries_no_link_token() {
        let context = RequestContext {
            ip: Some(String::from("203.0.113.7")),
            ..RequestContext::default()
        };
        let mail = compose(
            &password_changed(),
            "ada@example.com",
            "https://id.example.test/",
            &context,
            Timestamp::from_millis(0),
        );
        assert_eq!(mail.to, "ada@example.com");
        assert!(
            mail.body
                .contains("1970-01-01T00:00:00.000Z from the address 203.0.113.7")
        );
        assert!(
            mail.body
                .contains("https://id.example.test/password-reset)")
        );
        assert!(!mail.body.contains('#'));
    }
}
