//! `/api/v1/orgs/{org}/apps[/{app}[/members/{account}]]`: the apps an organization uses and
//! their selected active members (ORG-5).

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{AccountAuth, ApiJson, ApiQuery, Context, PageParams};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mamori_api_types::{AppMemberPage, EnableAppRequest, OrgApp, OrgAppList, Problem};
use mamori_service::OrgAppView;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_org_apps))
        .routes(routes!(get_org_app, enable_app, disable_app))
        .routes(routes!(list_app_members))
        .routes(routes!(select_app_member, unselect_app_member))
}

fn org_app_body(view: OrgAppView) -> OrgApp {
    OrgApp {
        app_id: view.app_id.to_string(),
        app_name: view.app_name,
        mode: view.mode.as_str().to_owned(),
        enabled_at: view.enabled_at.to_rfc3339(),
    }
}

#[utoipa::path(get, path = "/api/v1/orgs/{org}/apps", tag = "apps", security(("bearer" = [])),
    params(("org" = String, Path)),
    responses((status = 200, body = OrgAppList), (status = 403, body = Problem)))]
async fn list_org_apps(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Path(org): Path<String>,
) -> Result<Json<OrgAppList>, ApiError> {
    let access = state.services.org_access(&session, &org).await?;
    let items = state.services.list_org_apps(&access).await?;
    Ok(Json(OrgAppList {
        items: items.into_iter().map(org_app_body).collect(),
    }))
}

#[utoipa::path(get, path = "/api/v1/orgs/{org}/apps/{app}", tag = "apps",
    security(("bearer" = [])), params(("org" = String, Path), ("app" = String, Path)),
    responses((status = 200, body = OrgApp), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn get_org_app(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Path((org, app)): Path<(String, String)>,
) -> Result<Json<OrgApp>, ApiError> {
    let access = state.services.org_access(&session, &org).await?;
    Ok(Json(org_app_body(
        state.services.org_app(&access, &app).await?,
    )))
}

/// Enable an app for the organization, for all members or selected ones (administrators).
#[utoipa::path(put, path = "/api/v1/orgs/{org}/apps/{app}", tag = "apps",
    security(("bearer" = [])), params(("org" = String, Path), ("app" = String, Path)),
    request_body = EnableAppRequest,
    responses((status = 200, body = OrgApp), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn enable_app(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Context(context): Context,
    Path((org, app)): Path<(String, String)>,
    ApiJson(body): ApiJson<EnableAppRequest>,
) -> Result<Json<OrgApp>, ApiError> {
    let access = state.services.org_access(&session, &org).await?;
    let view = state
        .services
        .enable_app(&access, &context, &app, &body.mode, state.clock.now())
        .await?;
    Ok(Json(org_app_body(view)))
}

/// Disable an app for the organization (administrators).
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/apps/{app}", tag = "apps",
    security(("bearer" = [])), params(("org" = String, Path), ("app" = String, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn disable_app(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Context(context): Context,
    Path((org, app)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let access = state.services.org_access(&session, &org).await?;
    state
        .services
        .disable_app(&access, &context, &app, state.clock.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The app's selected active members (administrators).
#[utoipa::path(get, path = "/api/v1/orgs/{org}/apps/{app}/members", tag = "apps",
    security(("bearer" = [])),
    params(("org" = String, Path), ("app" = String, Path), PageParams),
    responses((status = 200, body = AppMemberPage), (status = 403, body = Problem)))]
async fn list_app_members(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Path((org, app)): Path<(String, String)>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<AppMemberPage>, ApiError> {
    let access = state.services.org_access(&session, &org).await?;
    let page = state
        .services
        .list_app_members(&access, &app, params.cursor.as_deref(), params.limit()?)
        .await?;
    Ok(Json(AppMemberPage {
        items: page.items.iter().map(ToString::to_string).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Select a member as an active member of the app (administrators).
#[utoipa::path(put, path = "/api/v1/orgs/{org}/apps/{app}/members/{account}", tag = "apps",
    security(("bearer" = [])),
    params(("org" = String, Path), ("app" = String, Path), ("account" = String, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn select_app_member(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Context(context): Context,
    Path((org, app, account)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let access = state.services.org_access(&session, &org).await?;
    state
        .services
        .set_app_member(&access, &context, &app, &account, true, state.clock.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Unselect an active member of the app (administrators).
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/apps/{app}/members/{account}", tag = "apps",
    security(("bearer" = [])),
    params(("org" = String, Path), ("app" = String, Path), ("account" = String, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn unselect_app_member(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Context(context): Context,
    Path((org, app, account)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let access = state.services.org_access(&session, &org).await?;
    state
        .services
        .set_app_member(&access, &context, &app, &account, false, state.clock.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
