//! Rules for the parts of an account a person types in: email, display name, password.

use crate::error::{CoreError, FieldError};
use unicode_normalization::UnicodeNormalization;

pub const EMAIL_MAX_LEN: usize = 254;
pub const EMAIL_LOCAL_MAX_LEN: usize = 64;
pub const DISPLAY_NAME_MAX_CHARS: usize = 200;
pub const PASSWORD_MIN_CHARS: usize = 10;
pub const PASSWORD_MAX_CHARS: usize = 1024;
/// zxcvbn scores run 0 to 4; below this a password counts as guessable.
const PASSWORD_MIN_SCORE: u8 = 3;
/// zxcvbn's cost grows quickly with length; a prefix this long already decides guessability.
const PASSWORD_SCORED_PREFIX_CHARS: usize = 100;

/// An email address as the holder typed it. Equality for look-up is by [`Email::canonical`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(field: &str, text: &str) -> Result<Email, FieldError> {
        let text = text.trim();
        let invalid = |message: &str| FieldError::new(field, message);
        if text.is_empty() {
            return Err(invalid("is required"));
        }
        if text.len() > EMAIL_MAX_LEN {
            return Err(invalid("must be at most 254 characters"));
        }
        let Some((local, domain)) = text.rsplit_once('@') else {
            return Err(invalid("is not a valid email address"));
        };
        // The dot-atom form of RFC 5322: what every mail system can deliver to. Quoted local
        // parts and comments are refused, so an accepted address can always be mailed.
        let local_ok = !local.is_empty()
            && local.len() <= EMAIL_LOCAL_MAX_LEN
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local.chars().all(|c| {
                c.is_ascii_alphanumeric()
                    || "!#$%&'*+/=?^_`{|}~-.".contains(c)
                    || (!c.is_ascii() && c.is_alphanumeric())
            });
        let domain_ok = domain.len() <= 253
            && domain.contains('.')
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            });
        if !local_ok || !domain_ok {
            return Err(invalid("is not a valid email address"));
        }
        Ok(Email(text.to_owned()))
    }

    /// Wraps an address read back from storage, where it was validated on the way in.
    pub fn from_stored(text: String) -> Email {
        Email(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form compared for uniqueness and look-up: lowercase, so comparison is
    /// case-insensitive as people expect of email addresses.
    pub fn canonical(&self) -> String {
        self.0.to_lowercase()
    }
}

/// A display name: 1 to 200 characters, no control characters, trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(field: &str, text: &str) -> Result<DisplayName, FieldError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(FieldError::new(field, "is required"));
        }
        if text.chars().count() > DISPLAY_NAME_MAX_CHARS {
            return Err(FieldError::new(field, "must be at most 200 characters"));
        }
        if text.chars().any(char::is_control) {
            return Err(FieldError::new(
                field,
                "must not contain control characters",
            ));
        }
        Ok(DisplayName(text.to_owned()))
    }

    pub fn from_stored(text: String) -> DisplayName {
        DisplayName(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub const LOGIN_ID_MAX_CHARS: usize = 64;

/// The login ID of an organization-local account (ACC-7): what its holder types, with the
/// organization's ID, instead of an email address. 1 to 64 characters: ASCII letters, digits,
/// `.`, `_` and `-`, starting with a letter or digit; compared without regard to case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginId(String);

impl LoginId {
    pub fn parse(field: &str, text: &str) -> Result<LoginId, FieldError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(FieldError::new(field, "is required"));
        }
        if text.chars().count() > LOGIN_ID_MAX_CHARS {
            return Err(FieldError::new(field, "must be at most 64 characters"));
        }
        if !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(FieldError::new(
                field,
                "may hold only ASCII letters, digits, '.', '_' and '-'",
            ));
        }
        if !text.as_bytes()[0].is_ascii_alphanumeric() {
            return Err(FieldError::new(
                field,
                "must start with a letter or a digit",
            ));
        }
        Ok(LoginId(text.to_ascii_lowercase()))
    }

    pub fn from_stored(text: String) -> LoginId {
        LoginId(text)
    }

    /// The canonical (lowercase) form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password that passed the policy, normalized (NFKC) so that the same characters typed on
/// different keyboards hash the same. It never implements `Display` or `Debug` with content.
pub struct NewPassword(String);

impl std::fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewPassword(..)")
    }
}

impl NewPassword {
    /// Checks a new password per NIST SP 800-63B: 10 to 1024 characters, not common or
    /// guessable (including from the holder's own email and name), no composition rules.
    pub fn parse(field: &str, text: &str, user_inputs: &[&str]) -> Result<NewPassword, FieldError> {
        let normalized = normalize_password(text);
        let n_chars = normalized.chars().count();
        if n_chars < PASSWORD_MIN_CHARS {
            return Err(FieldError::new(field, "must be at least 10 characters"));
        }
        if n_chars > PASSWORD_MAX_CHARS {
            return Err(FieldError::new(field, "must be at most 1024 characters"));
        }
        let scored: String = normalized
            .chars()
            .take(PASSWORD_SCORED_PREFIX_CHARS)
            .collect();
        if made_of_personal_words(&normalized, user_inputs) {
            return Err(FieldError::new(
                field,
                "must not be made of your name or email address",
            ));
        }
        let score = u8::from(zxcvbn::zxcvbn(&scored, user_inputs).score());
        if score < PASSWORD_MIN_SCORE {
            return Err(FieldError::new(
                field,
                "is too common or too easy to guess; use a longer phrase of unrelated words",
            ));
        }
        Ok(NewPassword(normalized))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether the letters of `password`, ignoring case, digits, spaces and punctuation, are only
/// words of the holder's own (name parts, the parts of the email address) run together.
/// zxcvbn alone lets "Given Family 2026" pass, because it scores any password of three or more
/// pieces as hard to guess.
fn made_of_personal_words(password: &str, user_inputs: &[&str]) -> bool {
    let letters: Vec<char> = password
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphabetic())
        .collect();
    if letters.is_empty() {
        return false;
    }
    let words: Vec<Vec<char>> = user_inputs
        .iter()
        .flat_map(|input| {
            input
                .to_lowercase()
                .split(|c: char| !c.is_alphabetic())
                .filter(|word| word.chars().count() >= 3)
                .map(|word| word.chars().collect::<Vec<char>>())
                .collect::<Vec<_>>()
        })
        .collect();
    // reachable[i]: the first i letters split into personal words.
    let mut reachable = vec![false; letters.len() + 1];
    reachable[0] = true;
    for start in 0..letters.len() {
        if !reachable[start] {
            continue;
        }
        for word in &words {
            let end = start + word.len();
            if end <= letters.len() && letters[start..end] == word[..] {
                reachable[end] = true;
            }
        }
    }
    reachable[letters.len()]
}

/// The normalization applied to every password before hashing or verifying.
pub fn normalize_password(text: &str) -> String {
    text.nfkc().collect()
}

/// Words from an email and a name that a password must not be built from.
pub fn personal_words(email: &Email, name: Option<&DisplayName>) -> Vec<String> {
    let mut words = vec![email.canonical()];
    if let Some((local, _)) = email.canonical().split_once('@') {
        words.push(local.to_owned());
    }
    if let Some(name) = name {
        words.extend(name.as_str().split_whitespace().map(str::to_lowercase));
    }
    words
}

/// Collects field errors from several parses into one validation error.
pub fn collect_errors(
    errors: impl IntoIterator<Item = Option<FieldError>>,
) -> Result<(), CoreError> {
    let errors: Vec<FieldError> = errors.into_iter().flatten().collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(CoreError::Validation(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_ids_are_checked_and_lowercased() {
        assert_eq!(
            LoginId::parse("login_id", " Taro.Y-1 ").unwrap().as_str(),
            "taro.y-1"
        );
        for bad in ["", "  ", "-taro", "ta ro", "tarō", "a@b", &"a".repeat(65)] {
            assert!(LoginId::parse("login_id", bad).is_err(), "{bad:?}");
        }
        assert!(LoginId::parse("login_id", &"a".repeat(64)).is_ok());
    }

    #[test]
    fn emails() {
        assert!(Email::parse("email", "Ada@Example.com").is_ok());
        assert!(Email::parse("email", "o'brien+tag@mail.example.co.uk").is_ok());
        assert_eq!(
            Email::parse("email", "Ada@Example.com")
                .unwrap()
                .canonical(),
            "ada@example.com"
        );
        for bad in [
            "",
            "no-at",
            "a@b",
            "@example.com",
            "a b@example.com",
            "a@-x.com",
        ] {
            assert!(Email::parse("email", bad).is_err(), "{bad}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(Email::parse("email", &long).is_err());
    }

    #[test]
    fn passwords() {
        assert!(NewPassword::parse("password", "short", &[]).is_err());
        assert!(NewPassword::parse("password", "password123", &[]).is_err());
        assert!(NewPassword::parse("password", "qwertyuiop", &[]).is_err());
        assert!(NewPassword::parse("password", "correct horse battery staple", &[]).is_ok());
        assert!(NewPassword::parse("password", &"x".repeat(1025), &[]).is_err());
        assert!(NewPassword::parse("password", "ada.lovelace1815", &["ada.lovelace1815"]).is_err());
    }

    #[test]
    fn names() {
        assert!(DisplayName::parse("display_name", " Ada ").is_ok());
        assert!(DisplayName::parse("display_name", "").is_err());
        assert!(DisplayName::parse("display_name", &"n".repeat(201)).is_err());
        assert!(DisplayName::parse("display_name", "a\u{0}b").is_err());
    }
}
