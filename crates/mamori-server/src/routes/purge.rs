//! The organization purge (DEL-3, DEL-7): the operator requests a purge and reads its
//! progress, sets apps' webhook URLs; apps confirm they deleted their data.

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, AppAuth, Context, OperatorAuth};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mamori_api_types::{
    Problem, Purge, PurgeApp, PurgeConfirmation, PurgeConfirmationRequest, PurgeRequest, PurgeStep,
    SetWebhookRequest, WebhookSettings,
};
use mamori_core::{OrgId, Timestamp};
use mamori_service::{PurgeStatus, ServiceError};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(request_purge, purge_status))
        .routes(routes!(set_webhook))
        .routes(routes!(confirm_purge))
}

fn time(at: Timestamp) -> String {
    at.to_rfc3339()
}

pub fn purge_body(status: PurgeStatus) -> Purge {
    Purge {
        org_id: status.org_id.to_string(),
        requested_at: time(status.requested_at),
        due_by: time(status.due_by),
        finished_at: status.finished_at.map(time),
        contact_account_id: status.contact_account_id.map(|id| id.to_string()),
        steps: status
            .steps
            .into_iter()
            .map(|step| PurgeStep {
                name: step.name,
                done_at: step.done_at.map(time),
                rows: step.rows,
            })
            .collect(),
        apps: status
            .apps
            .into_iter()
            .map(|app| PurgeApp {
                app_id: app.app_id.to_string(),
                webhook_delivered_at: app.webhook_delivered_at.map(time),
                attempts: app.attempts,
                webhook_gave_up_at: app.webhook_gave_up_at.map(time),
                confirmed_at: app.confirmed_at.map(time),
                overdue: app.overdue,
            })
            .collect(),
    }
}

/// Erasure on request: purge an organization now, due within 10 days. The body repeats the
/// organization's ID. The organization is closed to members and apps at once; asking again
/// changes nothing.
#[utoipa::path(post, path = "/api/v1/operator/orgs/{org}/purge", tag = "operator",
    security(("bearer" = [])), params(("org" = String, Path)), request_body = PurgeRequest,
    responses((status = 202, body = Purge), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn request_purge(
    State(state): State<AppState>,
    OperatorAuth(operator): OperatorAuth,
    Context(context): Context,
    Path(org): Path<String>,
    ApiJson(body): ApiJson<PurgeRequest>,
) -> Result<(StatusCode, Json<Purge>), ApiError> {
    let status = state
        .services
        .request_purge(
            Some(&operator),
            &context,
            &org,
            &body.confirm,
            state.clock.now(),
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(purge_body(status))))
}

/// The purge of an organization: steps done, and each app's webhook and confirmation
/// (`overdue` when not confirmed by the deadline).
#[utoipa::path(get, path = "/api/v1/operator/orgs/{org}/purge", tag = "operator",
    security(("bearer" = [])), params(("org" = String, Path)),
    responses((status = 200, body = Purge), (status = 403, body = Problem),
        (status = 404, body = Problem)))]
async fn purge_status(
    State(state): State<AppState>,
    OperatorAuth(_operator): OperatorAuth,
    Path(org): Path<String>,
) -> Result<Json<Purge>, ApiError> {
    let org = OrgId::parse(&org).ok_or(ServiceError::NotFound)?;
    let status = state
        .services
        .purge_status(&org, state.clock.now())
        .await?
        .ok_or(ServiceError::NotFound)?;
    Ok(Json(purge_body(status)))
}

/// Set (or with `null` clear) the URL that receives an app's webhooks (`http` or `https`).
#[utoipa::path(put, path = "/api/v1/operator/apps/{app}/webhook", tag = "operator",
    security(("bearer" = [])), params(("app" = String, Path)), request_body = SetWebhookRequest,
    responses((status = 200, body = WebhookSettings), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn set_webhook(
    State(state): State<AppState>,
    OperatorAuth(operator): OperatorAuth,
    Context(context): Context,
    Path(app): Path<String>,
    ApiJson(body): ApiJson<SetWebhookRequest>,
) -> Result<Json<WebhookSettings>, ApiError> {
    let signing_secret = state
        .services
        .set_app_webhook_url(
            &operator,
            &context,
            &app,
            body.url.as_deref(),
            state.clock.now(),
        )
        .await?;
    Ok(Json(WebhookSettings {
        url: body
            .url
            .filter(|_| signing_secret.is_some())
            .map(|url| url.trim().to_owned()),
        signing_secret,
    }))
}

/// The app confirms it deleted its data of a purged organization (DEL-7); 404 unless the
/// purge's webhook was owed to this app. Confirming again keeps the first time.
#[utoipa::path(post, path = "/api/v1/app/purge-confirmations", tag = "app",
    security(("bearer" = [])), request_body = PurgeConfirmationRequest,
    responses((status = 200, body = PurgeConfirmation), (status = 404, body = Problem),
        (status = 422, body = Problem)))]
async fn confirm_purge(
    State(state): State<AppState>,
    AppAuth(app): AppAuth,
    Context(context): Context,
    ApiJson(body): ApiJson<PurgeConfirmationRequest>,
) -> Result<Json<PurgeConfirmation>, ApiError> {
    let confirmed_at = state
        .services
        .confirm_purge(&app, &context, &body.org_id, state.clock.now())
        .await?;
    Ok(Json(PurgeConfirmation {
        org_id: body.org_id,
        confirmed_at: time(confirmed_at),
    }))
}
