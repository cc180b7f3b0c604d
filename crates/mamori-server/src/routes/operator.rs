//! `/api/v1/operator/...`: calls for the operator's token only.

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, Context, OperatorAuth};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use mamori_api_types::{AppCreated, CreateAppRequest, Problem};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_app))
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
