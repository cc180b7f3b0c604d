//! `/healthz` (the process answers) and `/readyz` (the databases answer).

use crate::app::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use mamori_api_types::Health;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health {
        status: String::from("ok"),
    })
}

#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let keyring = state.services.keyring().ping().await;
    match state
        .services
        .store()
        .ping()
        .await
        .map_err(anyhow::Error::from)
        .and(keyring.map_err(anyhow::Error::from))
    {
        Ok(()) => (
            StatusCode::OK,
            Json(Health {
                status: String::from("ready"),
            }),
        ),
        Err(error) => {
            tracing::warn!(error = %error, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Health {
                    status: String::from("database unavailable"),
                }),
            )
        }
    }
}
