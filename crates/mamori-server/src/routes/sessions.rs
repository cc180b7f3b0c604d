//! `POST /api/v1/sessions` (log in) and `DELETE /api/v1/sessions/current` (log out).

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{AccountAuth, ApiJson, Context, SESSION_COOKIE, is_https};
use crate::rate_limit::{Login, PerIp, SecondFactor};
use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mamori_api_types::{
    LogInRequest, PasswordChangeRequest, Problem, SecondFactorRequest, SessionCreated,
};
use mamori_service::NewSession;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(log_in))
        .routes(routes!(second_factor))
        .routes(routes!(password_change))
        .routes(routes!(log_out))
}

/// Whether cookies must be marked `Secure`.
pub struct Https(bool);

impl FromRequestParts<AppState> for Https {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Https(is_https(parts, state)))
    }
}

fn session_cookie(token: &str, max_age_seconds: i64, secure: bool) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_seconds}{secure}"
    ))
    .ok()
}

/// Log in with email and password, or, for an organization-local account, with `org_id`,
/// `login_id` and password. Answers the token and sets the `mamori_session` cookie.
#[utoipa::path(post, path = "/api/v1/sessions", tag = "sessions",
    request_body = LogInRequest,
    responses(
        (status = 201, body = SessionCreated),
        (status = 401, description = "wrong email, login ID or password (`invalid_credentials`); `second_factor_required` with a `challenge` when two-step verification is on; `initial_password_expired` for a local account whose initial password is past its 7 days", body = Problem),
        (status = 403, description = "`password_change_required` with a `challenge`: a local account's initial password was right; set a new one at /api/v1/sessions/password-change", body = Problem),
        (status = 422, description = "`email`, or `org_id` with `login_id`, missing or malformed", body = Problem),
        (status = 429, description = "too many attempts from this client (`rate_limited`) or for this login name (`account_locked`); see Retry-After", body = Problem),
    ))]
async fn log_in(
    _limit: PerIp<Login>,
    State(state): State<AppState>,
    Context(context): Context,
    Https(https): Https,
    ApiJson(body): ApiJson<LogInRequest>,
) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let new_session = match (body.email, body.org_id, body.login_id) {
        (Some(email), None, None) => {
            state
                .services
                .log_in(&context, &email, &body.password, now)
                .await?
        }
        (None, Some(org_id), Some(login_id)) => {
            state
                .services
                .log_in_local(&context, &org_id, &login_id, &body.password, now)
                .await?
        }
        (None, Some(_), None) => return Err(ApiError::validation("login_id", "is required")),
        (None, None, Some(_)) => return Err(ApiError::validation("org_id", "is required")),
        (None, None, None) => return Err(ApiError::validation("email", "is required")),
        (Some(_), _, _) => {
            return Err(ApiError::validation(
                "email",
                "cannot be combined with org_id and login_id",
            ));
        }
    };
    Ok(session_response(&state, new_session, https))
}

/// Finish a log-in with an organization-local account's initial password: the challenge of
/// `password_change_required` and the holder's new password. Answers as a log-in does.
#[utoipa::path(post, path = "/api/v1/sessions/password-change", tag = "sessions",
    request_body = PasswordChangeRequest,
    responses(
        (status = 201, body = SessionCreated),
        (status = 401, description = "`invalid_challenge` (unknown, used or expired: log in again); or `second_factor_required` with a `challenge` when two-step verification is on", body = Problem),
        (status = 422, description = "the new password breaks the password rules (nothing changes; the challenge stays usable)", body = Problem),
        (status = 429, description = "too many attempts from this client (`rate_limited`); see Retry-After", body = Problem),
    ))]
async fn password_change(
    _limit: PerIp<Login>,
    State(state): State<AppState>,
    Context(context): Context,
    Https(https): Https,
    ApiJson(body): ApiJson<PasswordChangeRequest>,
) -> Result<Response, ApiError> {
    let new_session = state
        .services
        .complete_password_change(
            &context,
            &body.challenge,
            &body.new_password,
            state.clock.now(),
        )
        .await?;
    Ok(session_response(&state, new_session, https))
}

/// Finish a two-step log-in: the challenge from `second_factor_required` and a TOTP code or a
/// recovery code. Answers as a log-in does.
#[utoipa::path(post, path = "/api/v1/sessions/second-factor", tag = "sessions",
    request_body = SecondFactorRequest,
    responses(
        (status = 201, body = SessionCreated),
        (status = 401, description = "`invalid_challenge` (unknown, used or expired: log in again) or `invalid_code`", body = Problem),
        (status = 422, description = "the code has neither shape", body = Problem),
        (status = 429, description = "too many attempts from this client (`rate_limited`); see Retry-After", body = Problem),
    ))]
async fn second_factor(
    _limit: PerIp<SecondFactor>,
    State(state): State<AppState>,
    Context(context): Context,
    Https(https): Https,
    ApiJson(body): ApiJson<SecondFactorRequest>,
) -> Result<Response, ApiError> {
    let new_session = state
        .services
        .complete_second_factor(&context, &body.challenge, &body.code, state.clock.now())
        .await?;
    Ok(session_response(&state, new_session, https))
}

/// 201 with the token, and the session cookie.
fn session_response(state: &AppState, new_session: NewSession, https: bool) -> Response {
    let max_age = state.services.session_policy().absolute_lifetime_ms / 1000;
    let cookie = session_cookie(&new_session.token, max_age, https);
    let body = SessionCreated {
        token: new_session.token,
        expires_at: new_session.session.expires_at.to_rfc3339(),
        account_id: new_session.session.account_id.to_string(),
        session_id: new_session
            .session
            .session_id()
            .map(ToString::to_string)
            .unwrap_or_default(),
    };
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    if let Some(cookie) = cookie {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// Log out: ends the session making the request and clears the cookie.
#[utoipa::path(delete, path = "/api/v1/sessions/current", tag = "sessions",
    security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem)))]
async fn log_out(
    State(state): State<AppState>,
    Context(context): Context,
    Https(https): Https,
    AccountAuth(session): AccountAuth,
) -> Result<Response, ApiError> {
    state
        .services
        .log_out(&session, &context, state.clock.now())
        .await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some(cookie) = session_cookie("", 0, https) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}
