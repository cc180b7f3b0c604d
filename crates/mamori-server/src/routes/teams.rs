//! `/api/v1/orgs/{org}/teams[/{team}[/members/{account}]]`.

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{AccountAuth, ApiJson, ApiQuery, Context, PageParams};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mamori_api_types::{Problem, Team, TeamMember, TeamMemberPage, TeamPage, TeamRequest};
use mamori_service::TeamView;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_team, list_teams))
        .routes(routes!(get_team, rename_team, delete_team))
        .routes(routes!(list_team_members))
        .routes(routes!(add_team_member, remove_team_member))
}

fn team_body(view: TeamView) -> Team {
    Team {
        id: view.id.to_string(),
        name: view.name,
        created_by: view.created_by.to_string(),
        created_at: view.created_at.to_rfc3339(),
        updated_at: view.updated_at.to_rfc3339(),
        can_manage: view.can_manage,
    }
}

/// Create a team (administrators and members); the creator manages it.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/teams", tag = "teams", security(("bearer" = [])),
    params(("org" = String, Path)), request_body = TeamRequest,
    responses((status = 201, body = Team), (status = 403, body = Problem)))]
async fn create_team(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Context(context): Context,
    Path(org): Path<String>,
    ApiJson(body): ApiJson<TeamRequest>,
) -> Result<(StatusCode, Json<Team>), ApiError> {
    let access = state.services.org_access(&session, &org).await?;
    let view = state
        .services
        .create_team(&access, &context, &body.name, state.clock.now())
        .await?;
    Ok((StatusCode::CREATED, Json(team_body(view))))
}

/// Teams: all of them for administrators and members; a guest's own for guests.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/teams", tag = "teams", security(("bearer" = [])),
    params(("org" = String, Path), PageParams), responses((status = 200, body = TeamPage)))]
async fn list_teams(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Path(org): Path<String>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<TeamPage>, ApiError> {
    let access = state.services.org_access(&session, &org).await?;
    let page = state
        .services
        .list_teams(&access, params.cursor.as_deref(), params.limit()?)
        .await?;
    Ok(Json(TeamPage {
        items: page.items.into_iter().map(team_body).collect(),
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(get, path = "/api/v1/orgs/{org}/teams/{team}", tag = "teams",
    security(("bearer" = [])), params(("org" = String, Path), ("team" = String, Path)),
    responses((status = 200, body = Team), (status = 404, body = Problem)))]
async fn get_team(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Path((org, team)): Path<(String, String)>,
) -> Result<Json<Team>, ApiError> {
    let access = state.services.org_access(&session, &org).await?;
    Ok(Json(team_body(
        state.services.get_team(&access, &team).await?,
    )))
}

/// Rename a team (its creator or an administrator).
#[utoipa::path(patch, path = "/api/v1/orgs/{org}/teams/{team}", tag = "teams",
    security(("bearer" = [])), params(("org" = String, Path), ("team" = String, Path)),
    request_body = TeamRequest,
    responses((status = 200, body = Team), (status = 403, body = Problem)))]
async fn rename_team(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Context(context): Context,
    Path((org, team)): Path<(String, String)>,
    ApiJson(body): ApiJson<TeamRequest>,
) -> Result<Json<Team>, ApiError> {
    let access = state.services.org_access(&session, &org).await?;
    let view = state
        .services
        .rename_team(&access, &context, &team, &body.name, state.clock.now())
        .await?;
    Ok(Json(team_body(view)))
}

/// Delete a team (its creator or an administrator).
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/teams/{team}", tag = "teams",
    security(("bearer" = [])), params(("org" = String, Path), ("team" = String, Path)),
    responses((status = 204), (status = 403, body = Problem)))]
async fn delete_team(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Context(context): Context,
    Path((org, team)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let access = state.services.org_access(&session, &org).await?;
    state
        .services
        .delete_team(&access, &context, &team, state.clock.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/orgs/{org}/teams/{team}/members", tag = "teams",
    security(("bearer" = [])),
    params(("org" = String, Path), ("team" = String, Path), PageParams),
    responses((status = 200, body = TeamMemberPage), (status = 404, body = Problem)))]
async fn list_team_members(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Path((org, team)): Path<(String, String)>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<TeamMemberPage>, ApiError> {
    let access = state.services.org_access(&session, &org).await?;
    let page = state
        .services
        .list_team_members(&access, &team, params.cursor.as_deref(), params.limit()?)
        .await?;
    Ok(Json(TeamMemberPage {
        items: page
            .items
            .into_iter()
            .map(|member| TeamMember {
                account_id: member.account_id.to_string(),
                added_at: member.added_at.to_rfc3339(),
            })
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Add one of the organization's members to the team (its manager).
#[utoipa::path(put, path = "/api/v1/orgs/{org}/teams/{team}/members/{account}", tag = "teams",
    security(("bearer" = [])),
    params(("org" = String, Path), ("team" = String, Path), ("account" = String, Path)),
    responses((status = 204), (status = 403, body = Problem),
        (status = 422, description = "not a member of the organization", body = Problem)))]
async fn add_team_member(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Context(context): Context,
    Path((org, team, account)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let access = state.services.org_access(&session, &org).await?;
    state
        .services
        .add_team_member(&access, &context, &team, &account, state.clock.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove a member from the team (its manager), or leave it (oneself).
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/teams/{team}/members/{account}", tag = "teams",
    security(("bearer" = [])),
    params(("org" = String, Path), ("team" = String, Path), ("account" = String, Path)),
    responses((status = 204), (status = 404, body = Problem)))]
async fn remove_team_member(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Context(context): Context,
    Path((org, team, account)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let access = state.services.org_access(&session, &org).await?;
    state
        .services
        .remove_team_member(&access, &context, &team, &account, state.clock.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
