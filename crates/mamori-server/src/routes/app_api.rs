//! `/api/v1/app/...`: calls an app makes with its own secret. An app sees only the
//! organizations that enabled it.

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::AppAuth;
use axum::Json;
use axum::extract::{Path, State};
use mamori_api_types::{AppMembership, Problem};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(app_membership))
}

/// The account's role in the organization and whether it is an active member of the calling
/// app; 404 unless the organization enabled the app and the account is a member.
#[utoipa::path(get, path = "/api/v1/app/orgs/{org}/members/{account}", tag = "app",
    security(("bearer" = [])), params(("org" = String, Path), ("account" = String, Path)),
    responses((status = 200, body = AppMembership), (status = 404, body = Problem)))]
async fn app_membership(
    State(state): State<AppState>,
    AppAuth(app): AppAuth,
    Path((org, account)): Path<(String, String)>,
) -> Result<Json<AppMembership>, ApiError> {
    let view = state.services.app_membership(&app, &org, &account).await?;
    Ok(Json(AppMembership {
        org_id: view.org_id.to_string(),
        account_id: view.account_id.to_string(),
        role: view.role.as_str().to_owned(),
        can_invite: view.can_invite,
        active: view.active,
    }))
}
