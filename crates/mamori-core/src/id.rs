//! Opaque, prefixed identifiers. Each kind of thing has its own newtype so that an account ID
//! can never be passed where an organization ID is expected.
//!
//! An ID is its prefix followed by 26 characters of lowercase base32 (130 random bits). The
//! randomness is supplied by the caller, keeping this module pure.

use std::fmt;

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
/// Number of random bytes an ID is made from. 26 base32 characters carry 130 bits: all of the
/// first 16 bytes and the top two bits of the 17th.
pub const ID_RANDOM_BYTES: usize = 17;
const ID_BODY_LEN: usize = 26;

/// Encodes random bytes as the 26-character body of an ID.
pub fn encode_id_body(random: &[u8; ID_RANDOM_BYTES]) -> String {
    let mut body = String::with_capacity(ID_BODY_LEN);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for byte in random {
        buffer = (buffer << 8) | u32::from(*byte);
        bits += 8;
        while bits >= 5 && body.len() < ID_BODY_LEN {
            bits -= 5;
            let index = ((buffer >> bits) & 31) as usize;
            body.push(char::from(ALPHABET[index]));
        }
    }
    body
}

fn is_valid_body(body: &str) -> bool {
    body.len() == ID_BODY_LEN && body.bytes().all(|b| ALPHABET.contains(&b))
}

macro_rules! define_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A new ID from caller-supplied random bytes.
            pub fn from_random(random: &[u8; ID_RANDOM_BYTES]) -> Self {
                $name(format!("{}{}", $prefix, encode_id_body(random)))
            }

            /// Parses an ID as given by a client; `None` when it is not of this kind.
            pub fn parse(text: &str) -> Option<Self> {
                let body = text.strip_prefix($prefix)?;
                is_valid_body(body).then(|| $name(text.to_owned()))
            }

            /// Wraps an ID read back from storage, where it was written by us.
            pub fn from_stored(text: String) -> Self {
                $name(text)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

define_id!(
    /// A person's account, shared by all the operator's apps.
    AccountId,
    "acc_"
);
define_id!(
    /// A customer organization.
    OrgId,
    "org_"
);
define_id!(
    /// A login session.
    SessionId,
    "ses_"
);
define_id!(
    /// An operator token (the SaaS provider's staff and automation).
    OperatorTokenId,
    "opt_"
);
define_id!(
    /// An app registered by the operator.
    AppId,
    "app_"
);
define_id!(
    /// A team inside an organization.
    TeamId,
    "team_"
);
define_id!(
    /// An invitation to an organization.
    InvitationId,
    "inv_"
);
define_id!(
    /// A message in the outbox.
    MailId,
    "mail_"
);
define_id!(
    /// One event in an audit chain.
    AuditEventId,
    "evt_"
);
define_id!(
    /// A personal access token of an account.
    PersonalTokenId,
    "pat_"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_other_kinds() {
        let id = AccountId::from_random(&[0xff; ID_RANDOM_BYTES]);
        assert_eq!(id.as_str().len(), 4 + 26);
        assert_eq!(AccountId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(OrgId::parse(id.as_str()), None);
        assert_eq!(AccountId::parse("acc_short"), None);
        assert_eq!(AccountId::parse("acc_AAAAAAAAAAAAAAAAAAAAAAAAAA"), None);
    }

    #[test]
    fn every_one_of_the_130_bits_counts() {
        let base = AccountId::from_random(&[0; ID_RANDOM_BYTES]);
        for bit in 0..130 {
            let mut random = [0; ID_RANDOM_BYTES];
            random[bit / 8] |= 0x80 >> (bit % 8);
            assert_ne!(AccountId::from_random(&random), base, "bit {bit}");
        }
    }
}
