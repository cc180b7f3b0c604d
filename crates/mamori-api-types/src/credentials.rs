//! Bodies of two-step verification, the second step of a log-in, and personal access tokens.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What an authenticator app needs; shown once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct TotpEnrolment {
    /// The shared secret in base32, for typing into the app.
    pub secret: String,
    /// `otpauth://totp/...`, the content of the QR code.
    pub otpauth_uri: String,
    /// The QR code of `otpauth_uri` as an SVG document.
    pub qr_svg: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmTotpRequest {
    /// The 6-digit code the app shows now.
    pub code: String,
}

/// Recovery codes, each usable once; shown only in this answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct RecoveryCodes {
    pub recovery_codes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisableTotpRequest {
    pub password: String,
    /// A current code from the app, or a recovery code.
    pub code: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegenerateRecoveryCodesRequest {
    pub password: String,
}

/// The holder's two-step verification state.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct TwoStepStatus {
    pub enabled: bool,
    pub enabled_at: Option<String>,
    pub recovery_codes_left: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecondFactorRequest {
    /// The `challenge` of the `second_factor_required` problem.
    pub challenge: String,
    /// A 6-digit code from the app, or a recovery code.
    pub code: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePersonalTokenRequest {
    /// 1 to 100 characters.
    pub name: String,
    /// `read` (GET, HEAD and OPTIONS only) or `full`.
    pub scope: String,
    /// RFC 3339; at most 366 days ahead; default 90 days from now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct PersonalToken {
    /// `pat_...`
    pub id: String,
    pub name: String,
    pub scope: String,
    pub created_at: String,
    pub expires_at: String,
    pub last_used_at: Option<String>,
}

/// A new personal access token; `token` (`mmp_...`) is shown only in this answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct PersonalTokenCreated {
    pub token: String,
    #[serde(flatten)]
    pub details: PersonalToken,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct PersonalTokenPage {
    pub items: Vec<PersonalToken>,
    pub next_cursor: Option<String>,
}

/// How many sessions a bulk revocation ended.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct SessionsRevoked {
    pub revoked: u64,
}
