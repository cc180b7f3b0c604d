//! `GET /api/v1/operator/access-logs`: the access log, for the operator's token only (LOG-1).

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{ApiQuery, OperatorAuth, PageParams};
use axum::Json;
use axum::extract::State;
use mamori_api_types::{AccessLog, AccessLogPage, Problem};
use mamori_service::{AccessLogQuery, AccessLogView};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_access_logs))
}

/// `?from=&to=&method=&status=&path_prefix=&principal=&org=&limit=&cursor=`; every filter
/// given must match.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AccessLogParams {
    /// RFC 3339: requests at or after this time.
    pub from: Option<String>,
    /// RFC 3339: requests before this time.
    pub to: Option<String>,
    /// An HTTP method, in any case.
    pub method: Option<String>,
    /// An HTTP status, 100 to 599.
    pub status: Option<u16>,
    /// Paths starting with this (case matters); must start with `/`.
    pub path_prefix: Option<String>,
    /// The account, operator token or app that made the request.
    pub principal: Option<String>,
    /// The organization named in the request's path.
    pub org: Option<String>,
    /// 1 to 500; default 50.
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

fn access_log_body(view: AccessLogView) -> AccessLog {
    let entry = view.entry;
    AccessLog {
        id: view.id,
        logged_at: entry.logged_at.to_rfc3339(),
        method: entry.method,
        path: entry.path,
        query: entry.query,
        status: entry.status,
        latency_us: entry.latency_us,
        client_ip: entry.client_ip,
        user_agent: entry.user_agent,
        principal_type: entry
            .principal
            .as_ref()
            .map(|principal| principal.kind().to_owned()),
        principal_id: entry
            .principal
            .as_ref()
            .map(|principal| principal.id().to_owned()),
        org_id: entry.org_id.map(|org| org.to_string()),
        request_id: entry.request_id,
    }
}

/// The access log, newest first: every HTTP request with its time, method, path, redacted
/// query, status, latency, client IP, user agent, principal, organization and request ID.
#[utoipa::path(get, path = "/api/v1/operator/access-logs", tag = "operator",
    security(("bearer" = [])), params(AccessLogParams),
    responses((status = 200, body = AccessLogPage), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn list_access_logs(
    State(state): State<AppState>,
    OperatorAuth(operator): OperatorAuth,
    ApiQuery(params): ApiQuery<AccessLogParams>,
) -> Result<Json<AccessLogPage>, ApiError> {
    let limit = PageParams {
        limit: params.limit,
        cursor: None,
    }
    .limit()?;
    let query = AccessLogQuery {
        from: params.from,
        to: params.to,
        method: params.method,
        status: params.status,
        path_prefix: params.path_prefix,
        principal: params.principal,
        org: params.org,
    };
    let page = state
        .services
        .access_logs(&operator, &query, params.cursor.as_deref(), limit)
        .await?;
    Ok(Json(AccessLogPage {
        items: page.items.into_iter().map(access_log_body).collect(),
        next_cursor: page.next_cursor,
    }))
}
