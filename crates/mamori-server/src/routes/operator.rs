//! `/api/v1/operator/...`: calls for the operator's token only.

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, Context, OperatorAuth};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mamori_api_types::{AppCreated, CreateAppRequest, Problem, SetMaxMembersRequest};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_app))
        .routes(routes!(set_max_members))
}

/// Set an organization's plan limit on members of any kind (ACC-7); beyond it, joining is
/// refused with `409 plan_limit_reached`.
#[utoipa::path(put, path = "/api/v1/operator/orgs/{org}/max-members", tag = "operator",
    security(("bearer" = [])), params(("org" = String, Path)),
    request_body = SetMaxMembersRequest,
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem)))]
async fn set_max_members(
    State(state): State<AppState>,
    OperatorAuth(operator): OperatorAuth,
    Context(context): Context,
    Path(org): Path<String>,
    ApiJson(body): ApiJson<SetMaxMembersRequest>,
) -> Result<StatusCode, ApiError> {
    state
        .services
        .set_max_members(
            &operator,
            &context,
            &org,
            body.max_members,
            state.clock.now(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Register an app; its secret is shown once.
#[utoipa::path(post, path = "/api/v1/operator/apps", tag = "operator", security(("bearer" = [])),
    request_body = CreateAppRequest,
    responses((status = 201, body = AppCreated), (status = 403, body = Problem)))]
async fn create_app(
    State(state): State<AppState>,
    OperatorAuth(operator): OperatorAuth,
    Context(context): Context,
    ApiJson(body): ApiJson<CreateAppRequest>,
) -> Result<(StatusCode, Json<AppCreated>), ApiError> {
    let app = state
        .services
        .create_app(Some(&operator), &context, &body.name, state.clock.now())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(AppCreated {
            id: app.id.to_string(),
            name: app.name,
            secret: app.secret,
        }),
    ))
}
