//! `/api/v1/orgs/{org}/local-accounts/...`: organization-local accounts (ACC-7).

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{AccountAuth, ApiJson, ApiQuery, Context, PageParams};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mamori_api_types::{CreateLocalAccountRequest, LocalAccount, LocalAccountPage, Problem};
use mamori_service::{LocalAccountView, NewLocalAccount};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_local_account, list_local_accounts))
        .routes(routes!(delete_local_account))
        .routes(routes!(reset_local_account_password))
}

fn local_account_body(view: LocalAccountView) -> LocalAccount {
    LocalAccount {
        account_id: view.account_id.to_string(),
        org_id: view.org_id.to_string(),
        login_id: view.login_id,
        email: view.email,
        display_name: view.display_name,
        must_change_password: view.must_change_password,
        initial_password_expires_at: view.initial_password_expires_at.map(|at| at.to_rfc3339()),
        created_at: view.created_at.to_rfc3339(),
    }
}

/// Register an organization-local account (administrators and members who may invite). It
/// becomes a member of this organization only; its initial password is mailed to `email`
/// and never answered here.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/local-accounts", tag = "orgs",
    security(("bearer" = [])), params(("org" = String, Path)),
    request_body = CreateLocalAccountRequest,
    responses((status = 201, body = LocalAccount),
        (status = 403, description = "the caller may not invite", body = Problem),
        (status = 404, body = Problem),
        (status = 409, description = "`login_id_taken`, or `plan_limit_reached`", body = Problem),
        (status = 422, body = Problem)))]
async fn create_local_account(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Context(context): Context,
    Path(org): Path<String>,
    ApiJson(body): ApiJson<CreateLocalAccountRequest>,
) -> Result<(StatusCode, Json<LocalAccount>), ApiError> {
    let access = state.services.org_access(&session, &org).await?;
    let view = state
        .services
        .register_local_account(
            &access,
            &context,
            NewLocalAccount {
                login_id: body.login_id,
                display_name: body.display_name,
                email: body.email,
            },
            state.clock.now(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(local_account_body(view))))
}

/// The organization's local accounts (administrators and members who may invite).
#[utoipa::path(get, path = "/api/v1/orgs/{org}/local-accounts", tag = "orgs",
    security(("bearer" = [])), params(("org" = String, Path), PageParams),
    responses((status = 200, body = LocalAccountPage), (status = 403, body = Problem),
        (status = 404, body = Problem)))]
async fn list_local_accounts(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Path(org): Path<String>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<LocalAccountPage>, ApiError> {
    let access = state.services.org_access(&session, &org).await?;
    let page = state
        .services
        .list_local_accounts(&access, params.cursor.as_deref(), params.limit()?)
        .await?;
    Ok(Json(LocalAccountPage {
        items: page.items.into_iter().map(local_account_body).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Delete a local account as account deletion does: its personal data and data key are
/// destroyed, every session and token ends, and its login ID is free again.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/local-accounts/{account}", tag = "orgs",
    security(("bearer" = [])), params(("org" = String, Path), ("account" = String, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "`last_admin`", body = Problem)))]
async fn delete_local_account(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Context(context): Context,
    Path((org, account)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let access = state.services.org_access(&session, &org).await?;
    state
        .services
        .delete_local_account(&access, &context, &account, state.clock.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Mail a local account a new initial password: every session and token of it ends, and the
/// next log-in must set a new password.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/local-accounts/{account}/password-reset",
    tag = "orgs", security(("bearer" = [])),
    params(("org" = String, Path), ("account" = String, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn reset_local_account_password(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Context(context): Context,
    Path((org, account)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let access = state.services.org_access(&session, &org).await?;
    state
        .services
        .reset_local_account_password(&access, &context, &account, state.clock.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
