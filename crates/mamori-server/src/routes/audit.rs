//! The audit trail: `/api/v1/orgs/{org}/audit-events[/export]`, `.../audit-checkpoints`,
//! `.../audit-viewers[/{subject}]`, `/api/v1/audit/public-key`, and the apps' own events at
//! `/api/v1/app/audit-events`.

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{AccountAuth, ApiJson, ApiQuery, AppAuth, Context, PageParams};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mamori_api_types::{
    AuditActor, AuditCheckpoint, AuditCheckpointPage, AuditEvent, AuditEventPage, AuditPublicKey,
    AuditTarget, AuditViewer, AuditViewerList, NewAuditEventRequest, Problem,
};
use mamori_core::Timestamp;
use mamori_service::{AuditEventView, AuditQuery, ExportFormat, NewAppEvent};
use mamori_store::CheckpointRow;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_audit_events))
        .routes(routes!(export_audit_events))
        .routes(routes!(list_audit_checkpoints))
        .routes(routes!(list_audit_viewers))
        .routes(routes!(grant_audit_viewer, revoke_audit_viewer))
        .routes(routes!(audit_public_key))
        .routes(routes!(record_app_event))
}

/// Filters of the trail; every one narrows the result.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditListParams {
    /// Events at or after this time (RFC 3339).
    pub from: Option<String>,
    /// Events before this time (RFC 3339).
    pub to: Option<String>,
    /// Events whose action starts with this, e.g. `org.member`.
    pub action: Option<String>,
    /// The actor's ID.
    pub actor: Option<String>,
    /// The target's ID.
    pub target: Option<String>,
    /// `success` or `failure`.
    pub outcome: Option<String>,
    /// 1 to 500; default 50.
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditExportParams {
    /// `jsonl` (verifiable, with the anchor and signed checkpoints) or `csv`.
    pub format: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub action: Option<String>,
    pub actor: Option<String>,
    pub target: Option<String>,
    pub outcome: Option<String>,
}

fn parse_time(field: &str, text: Option<&String>) -> Result<Option<Timestamp>, ApiError> {
    text.map(|text| {
        Timestamp::parse_rfc3339(text)
            .ok_or_else(|| ApiError::validation(field, "must be an RFC 3339 time"))
    })
    .transpose()
}

#[allow(clippy::too_many_arguments)]
fn audit_query(
    from: Option<&String>,
    to: Option<&String>,
    action: Option<String>,
    actor: Option<String>,
    target: Option<String>,
    outcome: Option<String>,
) -> Result<AuditQuery, ApiError> {
    Ok(AuditQuery {
        from: parse_time("from", from)?,
        to: parse_time("to", to)?,
        action,
        actor,
        target,
        outcome,
    })
}

pub fn event_body(view: AuditEventView) -> AuditEvent {
    let details = view.details();
    let row = view.row;
    AuditEvent {
        id: row.id.to_string(),
        chain: row.chain,
        seq: row.seq,
        org_id: row.org_id,
        actor: AuditActor {
            actor_type: row.actor_type,
            id: row.actor_id,
            name: view.actor_name,
        },
        action: row.action,
        target: AuditTarget {
            target_type: row.target_type,
            id: row.target_id,
        },
        outcome: row.outcome,
        ip: row.ip,
        user_agent: row.user_agent,
        request_id: row.request_id,
        time: row.occurred_at.to_rfc3339(),
        details,
        prev_hash: row.prev_hash,
        hash: row.hash,
    }
}

fn checkpoint_body(row: CheckpointRow) -> AuditCheckpoint {
    AuditCheckpoint {
        chain: row.chain,
        seq: row.seq,
        hash: row.hash,
        time: row.signed_at.to_rfc3339(),
        key_id: row.key_id,
        signature: row.signature,
    }
}

/// The organization's audit trail, newest first (administrators and audit-log viewers).
#[utoipa::path(get, path = "/api/v1/orgs/{org}/audit-events", tag = "audit",
    security(("bearer" = [])), params(("org" = String, Path), AuditListParams),
    responses((status = 200, body = AuditEventPage), (status = 403, body = Problem)))]
async fn list_audit_events(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Path(org): Path<String>,
    ApiQuery(params): ApiQuery<AuditListParams>,
) -> Result<Json<AuditEventPage>, ApiError> {
    let access = state.services.org_access(&session, &org).await?;
    let limit = PageParams {
        limit: params.limit,
        cursor: None,
    }
    .limit()?;
    let query = audit_query(
        params.from.as_ref(),
        params.to.as_ref(),
        params.action,
        params.actor,
        params.target,
        params.outcome,
    )?;
    let page = state
        .services
        .audit_events(&access, &query, params.cursor.as_deref(), limit)
        .await?;
    Ok(Json(AuditEventPage {
        items: page.items.into_iter().map(event_body).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// The trail as a streamed file, oldest first. `jsonl` carries exactly the hashed fields of
/// each event, and, when unfiltered, the chain's anchor, its signed checkpoints and a
/// checkpoint of the head signed at export time, so it can be verified offline.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/audit-events/export", tag = "audit",
    security(("bearer" = [])), params(("org" = String, Path), AuditExportParams),
    responses((status = 200, description = "JSON Lines or CSV", content_type = "application/x-ndjson"),
        (status = 403, body = Problem)))]
async fn export_audit_events(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Context(context): Context,
    Path(org): Path<String>,
    ApiQuery(params): ApiQuery<AuditExportParams>,
) -> Result<Response, ApiError> {
    let access = state.services.org_access(&session, &org).await?;
    let format = match params.format.as_deref() {
        None | Some("jsonl") => ExportFormat::JsonLines,
        Some("csv") => ExportFormat::Csv,
        Some(_) => return Err(ApiError::validation("format", "must be jsonl or csv")),
    };
    let query = audit_query(
        params.from.as_ref(),
        params.to.as_ref(),
        params.action,
        params.actor,
        params.target,
        params.outcome,
    )?;
    let services = state.services.clone();
    let export = services
        .begin_audit_export(&access, &query, format, &context, state.clock.now())
        .await?;
    let stream =
        futures_util::stream::unfold((services, export), |(services, mut export)| async move {
            match services.audit_export_chunk(&mut export).await {
                Ok(Some(text)) => Some((Ok(bytes::Bytes::from(text)), (services, export))),
                Ok(None) => None,
                Err(error) => {
                    tracing::error!(error = %error, "audit export failed part-way");
                    Some((
                        Err(std::io::Error::other("audit export failed")),
                        (services, export),
                    ))
                }
            }
        });
    let (content_type, extension) = match format {
        ExportFormat::JsonLines => ("application/x-ndjson", "jsonl"),
        ExportFormat::Csv => ("text/csv; charset=utf-8", "csv"),
    };
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(value) =
        HeaderValue::from_str(&format!("attachment; filename=\"audit-{org}.{extension}\""))
    {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// The organization's signed checkpoints, oldest first.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/audit-checkpoints", tag = "audit",
    security(("bearer" = [])), params(("org" = String, Path), PageParams),
    responses((status = 200, body = AuditCheckpointPage), (status = 403, body = Problem)))]
async fn list_audit_checkpoints(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Path(org): Path<String>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<AuditCheckpointPage>, ApiError> {
    let access = state.services.org_access(&session, &org).await?;
    let page = state
        .services
        .audit_checkpoints(&access, params.cursor.as_deref(), params.limit()?)
        .await?;
    Ok(Json(AuditCheckpointPage {
        items: page.items.into_iter().map(checkpoint_body).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Who holds the audit-log viewer right (administrators only).
#[utoipa::path(get, path = "/api/v1/orgs/{org}/audit-viewers", tag = "audit",
    security(("bearer" = [])), params(("org" = String, Path)),
    responses((status = 200, body = AuditViewerList), (status = 403, body = Problem)))]
async fn list_audit_viewers(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Path(org): Path<String>,
) -> Result<Json<AuditViewerList>, ApiError> {
    let access = state.services.org_access(&session, &org).await?;
    let viewers = state.services.audit_viewers(&access).await?;
    Ok(Json(AuditViewerList {
        items: viewers
            .into_iter()
            .map(|viewer| AuditViewer {
                subject_type: viewer.subject_type,
                subject_id: viewer.subject_id,
                granted_at: viewer.granted_at.to_rfc3339(),
            })
            .collect(),
    }))
}

/// Grants the audit-log viewer right to a member (`acc_...`) or a team (`team_...`):
/// 201 when new, 204 when it was already held.
#[utoipa::path(put, path = "/api/v1/orgs/{org}/audit-viewers/{subject}", tag = "audit",
    security(("bearer" = [])), params(("org" = String, Path), ("subject" = String, Path)),
    responses((status = 201), (status = 204), (status = 403, body = Problem),
        (status = 404, body = Problem)))]
async fn grant_audit_viewer(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Context(context): Context,
    Path((org, subject)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let access = state.services.org_access(&session, &org).await?;
    let new = state
        .services
        .grant_audit_viewer(&access, &subject, &context, state.clock.now())
        .await?;
    Ok(if new {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    })
}

/// Revokes the audit-log viewer right.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/audit-viewers/{subject}", tag = "audit",
    security(("bearer" = [])), params(("org" = String, Path), ("subject" = String, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn revoke_audit_viewer(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Context(context): Context,
    Path((org, subject)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let access = state.services.org_access(&session, &org).await?;
    state
        .services
        .revoke_audit_viewer(&access, &subject, &context, state.clock.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The Ed25519 key that signs audit checkpoints; no authentication needed.
#[utoipa::path(get, path = "/api/v1/audit/public-key", tag = "audit",
    responses((status = 200, body = AuditPublicKey)))]
async fn audit_public_key(State(state): State<AppState>) -> Result<Json<AuditPublicKey>, ApiError> {
    let key = state.services.audit_public_key().await?;
    Ok(Json(AuditPublicKey {
        algorithm: String::from("Ed25519"),
        key_id: key.key_id,
        public_key: key.public_key,
        public_key_pem: key.public_key_pem,
    }))
}

/// Records an app's event in the trail of an organization that enabled the app; answered
/// once the event is durable. 404 for an organization that did not enable the app; 429 when
/// the app sends faster than allowed.
#[utoipa::path(post, path = "/api/v1/app/audit-events", tag = "app",
    security(("bearer" = [])), request_body = NewAuditEventRequest,
    responses((status = 201, body = AuditEvent), (status = 404, body = Problem),
        (status = 422, body = Problem), (status = 429, body = Problem)))]
async fn record_app_event(
    State(state): State<AppState>,
    AppAuth(app): AppAuth,
    Context(context): Context,
    ApiJson(body): ApiJson<NewAuditEventRequest>,
) -> Result<(StatusCode, Json<AuditEvent>), ApiError> {
    let now = state.clock.now();
    state.app_event_limiter.check(app.app_id.as_str(), now)?;
    let (target_type, target_id) = match body.target {
        Some(target) => (Some(target.target_type), Some(target.id)),
        None => (None, None),
    };
    let view = state
        .services
        .record_app_event(
            &app,
            NewAppEvent {
                org_id: body.org_id,
                action: body.action,
                target_type,
                target_id,
                outcome: body.outcome,
                details: body.details,
            },
            &context,
            now,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(event_body(view))))
}
