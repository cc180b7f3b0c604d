//! `/api/v1/authz/...`: apps write relationships and ask about their containers (RES-1 to
//! RES-4), with their own secret; and `/api/v1/operator/apps/{app}/authz-types/{name}`, where
//! the operator adds container types to an app's schema.

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, AppAuth, Context, OperatorAuth};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mamori_api_types::{
    AuthzType, CheckBulkItemResult, CheckBulkRequest, CheckBulkResult, CheckExplanation,
    CheckRequest, CheckResult, ConsistencyToken, LookupPage, LookupResourcesRequest,
    LookupSubjectsRequest, Problem, PutAuthzTypeRequest, Relationship, WriteRelationshipsRequest,
};
use mamori_core::authz::index::Explanation;
use mamori_service::{CheckInput, ReadAt, RelationshipInput};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(write_relationships))
        .routes(routes!(delete_container))
        .routes(routes!(check))
        .routes(routes!(check_bulk))
        .routes(routes!(lookup_resources))
        .routes(routes!(lookup_subjects))
        .routes(routes!(put_authz_type))
}

fn inputs(relationships: Vec<Relationship>) -> Vec<RelationshipInput> {
    relationships
        .into_iter()
        .map(|r| RelationshipInput {
            resource: r.resource,
            relation: r.relation,
            subject: r.subject,
        })
        .collect()
}

fn explanation_body(explanation: Option<Explanation>) -> Option<CheckExplanation> {
    explanation.map(|e| CheckExplanation {
        reason: e.reason,
        path: e.path,
    })
}

fn limit_of(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit {
        None => Ok(50),
        Some(limit) if (1..=500).contains(&limit) => Ok(limit),
        Some(_) => Err(ApiError::validation("limit", "must be from 1 to 500")),
    }
}

/// Write and delete relationships of one organization, all or nothing; 404 unless the
/// organization enabled the app.
#[utoipa::path(post, path = "/api/v1/authz/relationships", tag = "authz",
    security(("bearer" = [])), request_body = WriteRelationshipsRequest,
    responses((status = 200, body = ConsistencyToken), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn write_relationships(
    State(state): State<AppState>,
    AppAuth(app): AppAuth,
    Context(context): Context,
    ApiJson(body): ApiJson<WriteRelationshipsRequest>,
) -> Result<Json<ConsistencyToken>, ApiError> {
    let token = state
        .services
        .write_relationships(
            &app,
            &context,
            &body.org_id,
            &inputs(body.writes),
            &inputs(body.deletes),
            state.clock.now(),
        )
        .await?;
    Ok(Json(ConsistencyToken {
        consistency_token: token,
    }))
}

/// Delete a container (`type:id`) with every relationship on it or naming it.
#[utoipa::path(delete, path = "/api/v1/authz/containers/{resource}", tag = "authz",
    security(("bearer" = [])), params(("resource" = String, Path)),
    responses((status = 200, body = ConsistencyToken), (status = 404, body = Problem)))]
async fn delete_container(
    State(state): State<AppState>,
    AppAuth(app): AppAuth,
    Context(context): Context,
    Path(resource): Path<String>,
) -> Result<Json<ConsistencyToken>, ApiError> {
    let token = state
        .services
        .delete_container(&app, &context, &resource, state.clock.now())
        .await?;
    Ok(Json(ConsistencyToken {
        consistency_token: token,
    }))
}

/// May the account do `permission` to `resource`? Answered from memory.
#[utoipa::path(post, path = "/api/v1/authz/check", tag = "authz", security(("bearer" = [])),
    request_body = CheckRequest,
    responses((status = 200, body = CheckResult), (status = 422, body = Problem)))]
async fn check(
    State(state): State<AppState>,
    AppAuth(app): AppAuth,
    ApiJson(body): ApiJson<CheckRequest>,
) -> Result<Json<CheckResult>, ApiError> {
    let input = CheckInput {
        resource: body.resource,
        permission: body.permission,
        subject: body.subject,
        explain: body.explain,
    };
    let (view, token) = state
        .services
        .check_permission(&app, &input, body.consistency_token.as_deref())
        .await?;
    Ok(Json(CheckResult {
        allowed: view.allowed,
        explanation: explanation_body(view.explanation),
        consistency_token: token,
    }))
}

/// Up to 100 checks against one revision.
#[utoipa::path(post, path = "/api/v1/authz/check-bulk", tag = "authz",
    security(("bearer" = [])), request_body = CheckBulkRequest,
    responses((status = 200, body = CheckBulkResult), (status = 422, body = Problem)))]
async fn check_bulk(
    State(state): State<AppState>,
    AppAuth(app): AppAuth,
    ApiJson(body): ApiJson<CheckBulkRequest>,
) -> Result<Json<CheckBulkResult>, ApiError> {
    let items: Vec<CheckInput> = body
        .items
        .into_iter()
        .map(|item| CheckInput {
            resource: item.resource,
            permission: item.permission,
            subject: item.subject,
            explain: item.explain,
        })
        .collect();
    let (views, token) = state
        .services
        .check_bulk(&app, &items, body.consistency_token.as_deref())
        .await?;
    Ok(Json(CheckBulkResult {
        items: views
            .into_iter()
            .map(|view| CheckBulkItemResult {
                allowed: view.allowed,
                explanation: explanation_body(view.explanation),
            })
            .collect(),
        consistency_token: token,
    }))
}

/// The containers of a type on which the account has a permission, paginated.
#[utoipa::path(post, path = "/api/v1/authz/lookup-resources", tag = "authz",
    security(("bearer" = [])), request_body = LookupResourcesRequest,
    responses((status = 200, body = LookupPage), (status = 422, body = Problem)))]
async fn lookup_resources(
    State(state): State<AppState>,
    AppAuth(app): AppAuth,
    ApiJson(body): ApiJson<LookupResourcesRequest>,
) -> Result<Json<LookupPage>, ApiError> {
    let limit = limit_of(body.limit)?;
    let (page, token) = state
        .services
        .lookup_resources(
            &app,
            &body.subject,
            &body.resource_type,
            &body.permission,
            ReadAt {
                token: body.consistency_token.as_deref(),
                cursor: body.cursor.as_deref(),
                limit,
            },
        )
        .await?;
    Ok(Json(LookupPage {
        items: page.items,
        next_cursor: page.next_cursor,
        consistency_token: token,
    }))
}

/// The accounts that have a permission on a container, paginated.
#[utoipa::path(post, path = "/api/v1/authz/lookup-subjects", tag = "authz",
    security(("bearer" = [])), request_body = LookupSubjectsRequest,
    responses((status = 200, body = LookupPage), (status = 422, body = Problem)))]
async fn lookup_subjects(
    State(state): State<AppState>,
    AppAuth(app): AppAuth,
    ApiJson(body): ApiJson<LookupSubjectsRequest>,
) -> Result<Json<LookupPage>, ApiError> {
    let limit = limit_of(body.limit)?;
    let (page, token) = state
        .services
        .lookup_subjects(
            &app,
            &body.resource,
            &body.permission,
            ReadAt {
                token: body.consistency_token.as_deref(),
                cursor: body.cursor.as_deref(),
                limit,
            },
        )
        .await?;
    Ok(Json(LookupPage {
        items: page.items,
        next_cursor: page.next_cursor,
        consistency_token: token,
    }))
}

/// Add a container type to an app's schema, or replace one added before (operator).
#[utoipa::path(put, path = "/api/v1/operator/apps/{app}/authz-types/{name}", tag = "operator",
    security(("bearer" = [])), params(("app" = String, Path), ("name" = String, Path)),
    request_body = PutAuthzTypeRequest,
    responses((status = 201, body = AuthzType), (status = 200, body = AuthzType),
        (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn put_authz_type(
    State(state): State<AppState>,
    OperatorAuth(operator): OperatorAuth,
    Context(context): Context,
    Path((app, name)): Path<(String, String)>,
    ApiJson(body): ApiJson<PutAuthzTypeRequest>,
) -> Result<(StatusCode, Json<AuthzType>), ApiError> {
    let view = state
        .services
        .put_authz_type(
            &operator,
            &context,
            &app,
            &name,
            &body.definition,
            state.clock.now(),
        )
        .await?;
    let status = if view.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(AuthzType {
            app_id: view.app_id.to_string(),
            name: view.name,
            definition: view.definition,
        }),
    ))
}
