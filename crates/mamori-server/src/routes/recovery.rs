//! Password reset and email confirmation (issue 4, items 4 and 5):
//! `POST /api/v1/password-resets`, `POST /api/v1/password-resets/complete`,
//! `POST /api/v1/email-verifications/complete` and `POST /api/v1/me/email-verification`.
//!
//! Tokens arrive only in request bodies, never in a query string or a path.

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{AccountAuth, ApiJson, Context};
use crate::rate_limit::{PasswordReset, PerIp};
use axum::extract::State;
use axum::http::StatusCode;
use mamori_api_types::{
    EmailVerificationCompleteRequest, PasswordResetCompleteRequest, PasswordResetRequest, Problem,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(request_password_reset))
        .routes(routes!(complete_password_reset))
        .routes(routes!(complete_email_verification))
        .routes(routes!(resend_email_verification))
}

/// Ask for a password reset link. The answer is 202 whether or not the address has an
/// account; if it has, a link valid 30 minutes is mailed to it.
#[utoipa::path(post, path = "/api/v1/password-resets", tag = "accounts",
    request_body = PasswordResetRequest,
    responses(
        (status = 202, description = "accepted, whatever the address"),
        (status = 422, description = "not an email address", body = Problem),
        (status = 429, description = "too many requests from this client", body = Problem),
    ))]
async fn request_password_reset(
    _limit: PerIp<PasswordReset>,
    State(state): State<AppState>,
    Context(context): Context,
    ApiJson(body): ApiJson<PasswordResetRequest>,
) -> Result<StatusCode, ApiError> {
    state
        .services
        .request_password_reset(&context, &body.email, state.clock.now())
        .await?;
    Ok(StatusCode::ACCEPTED)
}

/// Set a new password with the token of a reset link: every session ends, the lock-out of
/// the address is cleared, and a notice is mailed.
#[utoipa::path(post, path = "/api/v1/password-resets/complete", tag = "accounts",
    request_body = PasswordResetCompleteRequest,
    responses(
        (status = 204),
        (status = 410, description = "`token_invalid`, `token_used` or `token_expired`", body = Problem),
        (status = 422, description = "weak new password", body = Problem),
        (status = 429, body = Problem),
    ))]
async fn complete_password_reset(
    _limit: PerIp<PasswordReset>,
    State(state): State<AppState>,
    Context(context): Context,
    ApiJson(body): ApiJson<PasswordResetCompleteRequest>,
) -> Result<StatusCode, ApiError> {
    state
        .services
        .complete_password_reset(&context, &body.token, &body.new_password, state.clock.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Confirm an email address with the token of a mailed link: the account's own address, or
/// the new address of a requested change, which then takes effect.
#[utoipa::path(post, path = "/api/v1/email-verifications/complete", tag = "accounts",
    request_body = EmailVerificationCompleteRequest,
    responses(
        (status = 204),
        (status = 409, description = "`email_taken`: another account has the new address now", body = Problem),
        (status = 410, description = "`token_invalid`, `token_used` or `token_expired`", body = Problem),
        (status = 429, body = Problem),
    ))]
async fn complete_email_verification(
    _limit: PerIp<PasswordReset>,
    State(state): State<AppState>,
    Context(context): Context,
    ApiJson(body): ApiJson<EmailVerificationCompleteRequest>,
) -> Result<StatusCode, ApiError> {
    state
        .services
        .complete_email_verification(&context, &body.token, state.clock.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Mail a new verification link to the holder's address (at most one a minute).
#[utoipa::path(post, path = "/api/v1/me/email-verification", tag = "me",
    security(("bearer" = [])),
    responses(
        (status = 202),
        (status = 409, description = "`email_already_verified`", body = Problem),
    ))]
async fn resend_email_verification(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
) -> Result<StatusCode, ApiError> {
    state
        .services
        .resend_email_verification(&session, state.clock.now())
        .await?;
    Ok(StatusCode::ACCEPTED)
}
