//! The data lifecycle (issue 6): `DELETE /api/v1/orgs/{org}`, `GET /api/v1/orgs/{org}/lifecycle`,
//! `POST /api/v1/orgs/{org}/lifecycle/continue`, and the operator's contract events, restore
//! and evidence report.

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{AccountAuth, ApiJson, Context, OperatorAuth};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mamori_api_types::{
    ContractEvent, ContractEventRequest, Deadline, DeleteOrgRequest, Lifecycle, LifecycleReport,
    LifecycleReportItem, NextTransition, OperatorLifecycle, Problem,
};
use mamori_core::Timestamp;
use mamori_service::ServiceError;
use mamori_service::lifecycle::{self, ContractEventInput, LifecycleView};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(delete_org))
        .routes(routes!(get_lifecycle))
        .routes(routes!(continue_org))
        .routes(routes!(contract_event))
        .routes(routes!(restore_org))
        .routes(routes!(operator_lifecycle))
        .routes(routes!(report))
}

fn time(at: Option<Timestamp>) -> Option<String> {
    at.map(Timestamp::to_rfc3339)
}

pub fn lifecycle_body(view: LifecycleView) -> Lifecycle {
    Lifecycle {
        org_id: view.org_id.to_string(),
        state: view.state,
        plan: view.plan,
        policy: view.policy,
        trial_started_at: time(view.trial_started_at),
        trial_ends_at: time(view.trial_ends_at),
        period_ends_at: time(view.period_ends_at),
        suspended_at: time(view.suspended_at),
        deletion_due_at: time(view.deletion_due_at),
        deletion_reason: view.deletion_reason,
        deleted_at: time(view.deleted_at),
        purge_starts_at: time(view.purge_starts_at),
        purge_due_by: time(view.purge_due_by),
        audit_purge_starts_at: time(view.audit_purge_starts_at),
        purge_started_at: time(view.purge_started_at),
        purged_at: time(view.purged_at),
        continue_asked_at: time(view.continue_asked_at),
        next_transition: view.next_transition.map(|(to, at)| NextTransition {
            to,
            at: at.to_rfc3339(),
        }),
    }
}

pub fn report_body(report: lifecycle::LifecycleReport) -> LifecycleReport {
    LifecycleReport {
        generated_at: report.generated_at.to_rfc3339(),
        policy: report.policy,
        all_met: report.all_met,
        items: report
            .items
            .into_iter()
            .map(|item| LifecycleReportItem {
                lifecycle: lifecycle_body(item.lifecycle),
                deadlines: item
                    .deadlines
                    .into_iter()
                    .map(|deadline| Deadline {
                        name: deadline.name.to_owned(),
                        app_id: deadline.app_id.map(|app| app.as_str().to_owned()),
                        due_at: deadline.due_at.to_rfc3339(),
                        deadline: deadline.deadline.to_rfc3339(),
                        done_at: time(deadline.done_at),
                        status: deadline.status.to_owned(),
                    })
                    .collect(),
                purge: item.purge.map(crate::routes::purge::purge_body),
            })
            .collect(),
    }
}

fn parse_time(field: &str, text: &str) -> Result<Timestamp, ApiError> {
    Timestamp::parse_rfc3339(text)
        .ok_or_else(|| ApiError::Service(ServiceError::field(field, "must be an RFC 3339 time")))
}

/// Delete the organization (its contract administrator: an administrator, with the
/// password). It is closed to its members and apps at once; the answer has the timeline:
/// when the purge starts and by when it completes.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}", tag = "lifecycle", security(("bearer" = [])),
    params(("org" = String, Path)), request_body = DeleteOrgRequest,
    responses((status = 202, body = Lifecycle), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem),
        (status = 422, body = Problem)))]
async fn delete_org(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Context(context): Context,
    Path(org): Path<String>,
    ApiJson(body): ApiJson<DeleteOrgRequest>,
) -> Result<(StatusCode, Json<Lifecycle>), ApiError> {
    let access = state.services.org_access(&session, &org).await?;
    let view = state
        .services
        .delete_org(
            &session,
            &access,
            &context,
            &body.password,
            state.clock.now(),
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(lifecycle_body(view))))
}

/// The organization's lifecycle state and its concrete dates (members).
#[utoipa::path(get, path = "/api/v1/orgs/{org}/lifecycle", tag = "lifecycle",
    security(("bearer" = [])), params(("org" = String, Path)),
    responses((status = 200, body = Lifecycle), (status = 404, body = Problem)))]
async fn get_lifecycle(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Path(org): Path<String>,
) -> Result<Json<Lifecycle>, ApiError> {
    let access = state.services.org_access(&session, &org).await?;
    let view = state
        .services
        .org_lifecycle(&access, state.clock.now())
        .await?;
    Ok(Json(lifecycle_body(view)))
}

/// Confirm that the organization continues (terms-v3's unused free plan; administrators).
#[utoipa::path(post, path = "/api/v1/orgs/{org}/lifecycle/continue", tag = "lifecycle",
    security(("bearer" = [])), params(("org" = String, Path)),
    responses((status = 200, body = Lifecycle), (status = 403, body = Problem),
        (status = 404, body = Problem)))]
async fn continue_org(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Context(context): Context,
    Path(org): Path<String>,
) -> Result<Json<Lifecycle>, ApiError> {
    let access = state.services.org_access(&session, &org).await?;
    let view = state
        .services
        .continue_org(&access, &context, state.clock.now())
        .await?;
    Ok(Json(lifecycle_body(view)))
}

/// Record a contract event (DEL-1); kept as history, exempt from deletion. Events out of
/// order are refused with `409 contract_event_out_of_order` (or `org_deleted`).
#[utoipa::path(post, path = "/api/v1/operator/orgs/{org}/contract", tag = "lifecycle",
    security(("bearer" = [])), params(("org" = String, Path)),
    request_body = ContractEventRequest,
    responses((status = 200, body = Lifecycle), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem),
        (status = 422, body = Problem)))]
async fn contract_event(
    State(state): State<AppState>,
    OperatorAuth(operator): OperatorAuth,
    Context(context): Context,
    Path(org): Path<String>,
    ApiJson(body): ApiJson<ContractEventRequest>,
) -> Result<Json<Lifecycle>, ApiError> {
    let input = ContractEventInput {
        event: body.event,
        at: parse_time("at", &body.at)?,
        period_end: body
            .period_end
            .as_deref()
            .map(|text| parse_time("period_end", text))
            .transpose()?,
        plan: body.plan,
    };
    let view = state
        .services
        .record_contract_event(Some(&operator), &context, &org, &input, state.clock.now())
        .await?;
    Ok(Json(lifecycle_body(view)))
}

/// Restore a deleted organization before its purge starts (audited).
#[utoipa::path(post, path = "/api/v1/operator/orgs/{org}/restore", tag = "lifecycle",
    security(("bearer" = [])), params(("org" = String, Path)),
    responses((status = 200, body = Lifecycle), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn restore_org(
    State(state): State<AppState>,
    OperatorAuth(operator): OperatorAuth,
    Context(context): Context,
    Path(org): Path<String>,
) -> Result<Json<Lifecycle>, ApiError> {
    let view = state
        .services
        .restore_org(Some(&operator), &context, &org, state.clock.now())
        .await?;
    Ok(Json(lifecycle_body(view)))
}

/// Every organization's lifecycle with each deadline and whether it was met.
#[utoipa::path(get, path = "/api/v1/operator/lifecycle/report", tag = "lifecycle",
    security(("bearer" = [])),
    responses((status = 200, body = LifecycleReport), (status = 403, body = Problem)))]
async fn report(
    State(state): State<AppState>,
    OperatorAuth(_operator): OperatorAuth,
) -> Result<Json<LifecycleReport>, ApiError> {
    let report = state.services.lifecycle_report(state.clock.now()).await?;
    Ok(Json(report_body(report)))
}

/// An organization's lifecycle in any state, with its contract history (operator).
#[utoipa::path(get, path = "/api/v1/operator/orgs/{org}/lifecycle", tag = "lifecycle",
    security(("bearer" = [])), params(("org" = String, Path)),
    responses((status = 200, body = OperatorLifecycle), (status = 403, body = Problem),
        (status = 404, body = Problem)))]
async fn operator_lifecycle(
    State(state): State<AppState>,
    OperatorAuth(operator): OperatorAuth,
    Path(org): Path<String>,
) -> Result<Json<OperatorLifecycle>, ApiError> {
    let now = state.clock.now();
    let view = state
        .services
        .operator_org_lifecycle(&operator, &org, now)
        .await?;
    let history = state.services.contract_history(&operator, &org).await?;
    Ok(Json(OperatorLifecycle {
        lifecycle: lifecycle_body(view),
        contract_events: history
            .into_iter()
            .map(|event| ContractEvent {
                event: event.event,
                at: event.at.to_rfc3339(),
                period_end: time(event.period_end),
                recorded_at: event.recorded_at.to_rfc3339(),
                recorded_by: event.recorded_by,
            })
            .collect(),
    }))
}
