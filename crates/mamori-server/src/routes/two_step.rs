//! `/api/v1/me/two-step`: TOTP two-step verification and recovery codes (ACC-6). Sessions
//! only: a personal access token is refused (`session_required`).

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{AccountAuth, ApiJson, Context};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use mamori_api_types::{
    ConfirmTotpRequest, DisableTotpRequest, Problem, RecoveryCodes, RegenerateRecoveryCodesRequest,
    TotpEnrolment, TwoStepStatus,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(two_step_status))
        .routes(routes!(enrol_totp, disable_totp))
        .routes(routes!(confirm_totp))
        .routes(routes!(regenerate_recovery_codes))
}

/// Whether two-step verification is on, and how many recovery codes are left.
#[utoipa::path(get, path = "/api/v1/me/two-step", tag = "two-step", security(("bearer" = [])),
    responses((status = 200, body = TwoStepStatus), (status = 401, body = Problem)))]
async fn two_step_status(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
) -> Result<Json<TwoStepStatus>, ApiError> {
    let status = state.services.two_step_status(&session).await?;
    Ok(Json(TwoStepStatus {
        enabled: status.enabled,
        enabled_at: status.enabled_at.map(|at| at.to_rfc3339()),
        recovery_codes_left: status.recovery_codes_left,
    }))
}

/// Start TOTP enrolment: a new secret with its `otpauth://` URI and QR code, shown once. It
/// takes effect only when confirmed with a code.
#[utoipa::path(post, path = "/api/v1/me/two-step/totp", tag = "two-step", security(("bearer" = [])),
    responses(
        (status = 201, body = TotpEnrolment),
        (status = 409, description = "`two_step_already_enabled`", body = Problem),
    ))]
async fn enrol_totp(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Context(context): Context,
) -> Result<(StatusCode, Json<TotpEnrolment>), ApiError> {
    let enrolment = state
        .services
        .enrol_totp(&session, &context, state.clock.now())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(TotpEnrolment {
            secret: enrolment.secret,
            otpauth_uri: enrolment.otpauth_uri,
            qr_svg: enrolment.qr_svg,
        }),
    ))
}

/// Switch two-step verification on with a current code; answers ten recovery codes, shown
/// only here. A security notice is mailed.
#[utoipa::path(post, path = "/api/v1/me/two-step/totp/confirm", tag = "two-step", security(("bearer" = [])),
    request_body = ConfirmTotpRequest,
    responses(
        (status = 200, body = RecoveryCodes),
        (status = 409, description = "`no_pending_enrolment` or `two_step_already_enabled`", body = Problem),
        (status = 422, description = "wrong code", body = Problem),
    ))]
async fn confirm_totp(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Context(context): Context,
    ApiJson(body): ApiJson<ConfirmTotpRequest>,
) -> Result<Json<RecoveryCodes>, ApiError> {
    let recovery_codes = state
        .services
        .confirm_totp(&session, &context, &body.code, state.clock.now())
        .await?;
    Ok(Json(RecoveryCodes { recovery_codes }))
}

/// Switch two-step verification off, with the password and a current code (or a recovery
/// code). A security notice is mailed.
#[utoipa::path(delete, path = "/api/v1/me/two-step/totp", tag = "two-step", security(("bearer" = [])),
    request_body = DisableTotpRequest,
    responses(
        (status = 204),
        (status = 409, description = "`two_step_not_enabled`", body = Problem),
        (status = 422, description = "wrong password or code", body = Problem),
    ))]
async fn disable_totp(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Context(context): Context,
    ApiJson(body): ApiJson<DisableTotpRequest>,
) -> Result<StatusCode, ApiError> {
    state
        .services
        .disable_totp(
            &session,
            &context,
            &body.password,
            &body.code,
            state.clock.now(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new set of ten recovery codes; the old set stops working. A security notice is mailed.
#[utoipa::path(post, path = "/api/v1/me/two-step/recovery-codes", tag = "two-step", security(("bearer" = [])),
    request_body = RegenerateRecoveryCodesRequest,
    responses(
        (status = 200, body = RecoveryCodes),
        (status = 409, description = "`two_step_not_enabled`", body = Problem),
        (status = 422, description = "wrong password", body = Problem),
    ))]
async fn regenerate_recovery_codes(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Context(context): Context,
    ApiJson(body): ApiJson<RegenerateRecoveryCodesRequest>,
) -> Result<Json<RecoveryCodes>, ApiError> {
    let recovery_codes = state
        .services
        .regenerate_recovery_codes(&session, &context, &body.password, state.clock.now())
        .await?;
    Ok(Json(RecoveryCodes { recovery_codes }))
}
