//! `/api/v1/me`: the holder's own account, password and sessions.

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{AccountAuth, ApiJson, ApiQuery, Context, PageParams};
use crate::routes::account_body;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mamori_api_types::{
    Account, ChangePasswordRequest, DeleteMeRequest, Problem, Session, SessionPage,
    SessionsRevoked, UpdateMeRequest,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_me, update_me, delete_me))
        .routes(routes!(change_password))
        .routes(routes!(list_sessions, revoke_other_sessions))
        .routes(routes!(revoke_session))
}

/// The account making the request.
#[utoipa::path(get, path = "/api/v1/me", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = Account), (status = 401, body = Problem)))]
async fn get_me(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
) -> Result<Json<Account>, ApiError> {
    Ok(Json(account_body(state.services.me(&session).await?)))
}

/// Change the display name, or ask to change the email address (with `password`): a
/// confirmation link goes to the new address and a notice to the current one, and the address
/// changes only when the link is opened (`POST /api/v1/email-verifications/complete`).
#[utoipa::path(patch, path = "/api/v1/me", tag = "me", security(("bearer" = [])),
    request_body = UpdateMeRequest,
    responses((status = 200, body = Account), (status = 422, body = Problem)))]
async fn update_me(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Context(context): Context,
    ApiJson(body): ApiJson<UpdateMeRequest>,
) -> Result<Json<Account>, ApiError> {
    if let Some(name) = body.display_name.as_deref() {
        // Checked first, so a bad name changes nothing, not even the email request.
        mamori_core::account::DisplayName::parse("display_name", name)
            .map_err(mamori_service::ServiceError::from)?;
    }
    if let Some(email) = body.email.as_deref() {
        // ACC-8: the address changes only when the link mailed to it is opened.
        let password = body.password.as_deref().ok_or_else(|| {
            ApiError::validation("password", "is required to change the email address")
        })?;
        state
            .services
            .request_email_change(&session, &context, email, password, state.clock.now())
            .await?;
    }
    let view = state
        .services
        .update_me(&session, &context, body.display_name, state.clock.now())
        .await?;
    Ok(Json(account_body(view)))
}

/// Change the password (ACC-5); every other session of the account ends.
#[utoipa::path(put, path = "/api/v1/me/password", tag = "me", security(("bearer" = [])),
    request_body = ChangePasswordRequest,
    responses((status = 204), (status = 422, description = "wrong current password or weak new one", body = Problem)))]
async fn change_password(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Context(context): Context,
    ApiJson(body): ApiJson<ChangePasswordRequest>,
) -> Result<StatusCode, ApiError> {
    state
        .services
        .change_password(
            &session,
            &context,
            &body.current_password,
            &body.new_password,
            state.clock.now(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Delete the account (ACC-3, ACC-4): personal data is destroyed at once.
#[utoipa::path(delete, path = "/api/v1/me", tag = "me", security(("bearer" = [])),
    request_body = DeleteMeRequest,
    responses((status = 204), (status = 422, description = "wrong password", body = Problem)))]
async fn delete_me(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Context(context): Context,
    ApiJson(body): ApiJson<DeleteMeRequest>,
) -> Result<StatusCode, ApiError> {
    state
        .services
        .delete_me(&session, &context, &body.password, state.clock.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The account's sessions, oldest first.
#[utoipa::path(get, path = "/api/v1/me/sessions", tag = "me", security(("bearer" = [])),
    params(PageParams),
    responses((status = 200, body = SessionPage), (status = 422, body = Problem)))]
async fn list_sessions(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<SessionPage>, ApiError> {
    let limit = params.limit()?;
    let page = state
        .services
        .list_sessions(&session, params.cursor.as_deref(), limit, state.clock.now())
        .await?;
    Ok(Json(SessionPage {
        items: page
            .items
            .into_iter()
            .map(|view| Session {
                id: view.id.to_string(),
                created_at: view.created_at.to_rfc3339(),
                last_seen_at: view.last_seen_at.to_rfc3339(),
                expires_at: view.expires_at.to_rfc3339(),
                ip: view.ip,
                user_agent: view.user_agent,
                current: view.current,
            })
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Revoke one of the account's sessions.
#[utoipa::path(delete, path = "/api/v1/me/sessions/{id}", tag = "me", security(("bearer" = [])),
    params(("id" = String, Path, description = "session ID")),
    responses((status = 204), (status = 404, body = Problem)))]
async fn revoke_session(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Context(context): Context,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .services
        .revoke_session(&session, &context, &id, state.clock.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `?others=true`: the one form of bulk revocation, spelled out so it is never sent by mistake.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct RevokeOthersParams {
    /// Must be `true`: revoke every session but the one making the request.
    others: Option<bool>,
}

/// Revoke every session of the account but the one making the request
/// (`DELETE /api/v1/me/sessions?others=true`).
#[utoipa::path(delete, path = "/api/v1/me/sessions", tag = "me", security(("bearer" = [])),
    params(RevokeOthersParams),
    responses((status = 200, body = SessionsRevoked), (status = 422, description = "`others=true` missing", body = Problem)))]
async fn revoke_other_sessions(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Context(context): Context,
    ApiQuery(params): ApiQuery<RevokeOthersParams>,
) -> Result<Json<SessionsRevoked>, ApiError> {
    if params.others != Some(true) {
        return Err(ApiError::validation(
            "others",
            "must be true: only the other sessions can be revoked at once",
        ));
    }
    let revoked = state
        .services
        .revoke_other_sessions(&session, &context, state.clock.now())
        .await?;
    Ok(Json(SessionsRevoked { revoked }))
}
