//! `/api/v1/orgs/...`: organizations, members and invitations; and
//! `POST /api/v1/invitations/accept`.

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{AccountAuth, ApiJson, ApiQuery, Context, PageParams};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mamori_api_types::{
    AcceptInvitationRequest, CreateInvitationRequest, CreateOrgRequest, Invitation, InvitationPage,
    Member, MemberPage, Organization, OrganizationPage, Problem, UpdateMemberRequest,
    UpdateOrgRequest,
};
use mamori_service::{InvitationView, MemberView, NewInvitation, OrgView, RoleChange};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_org, list_orgs))
        .routes(routes!(get_org, update_org))
        .routes(routes!(list_members))
        .routes(routes!(get_member, update_member, remove_member))
        .routes(routes!(create_invitation, list_invitations))
        .routes(routes!(revoke_invitation))
        .routes(routes!(accept_invitation))
}

pub fn org_body(view: OrgView) -> Organization {
    Organization {
        id: view.id.to_string(),
        name: view.name,
        role: view.role.as_str().to_owned(),
        can_invite: view.can_invite,
        require_two_step: view.require_two_step,
        created_at: view.created_at.to_rfc3339(),
        updated_at: view.updated_at.to_rfc3339(),
        require_verified_email: view.require_verified_email,
    }
}

fn member_body(view: MemberView) -> Member {
    Member {
        account_id: view.account_id.to_string(),
        email: view.email,
        display_name: view.display_name,
        role: view.role.as_str().to_owned(),
        can_invite: view.can_invite,
        joined_at: view.joined_at.to_rfc3339(),
    }
}

fn invitation_body(view: InvitationView) -> Invitation {
    Invitation {
        id: view.id.to_string(),
        org_id: view.org_id.to_string(),
        email: view.email,
        role: view.role.as_str().to_owned(),
        can_invite: view.can_invite,
        invited_by: view.invited_by.to_string(),
        status: view.status.to_owned(),
        created_at: view.created_at.to_rfc3339(),
        expires_at: view.expires_at.to_rfc3339(),
    }
}

/// Create an organization; the caller becomes its administrator.
#[utoipa::path(post, path = "/api/v1/orgs", tag = "orgs", security(("bearer" = [])),
    request_body = CreateOrgRequest,
    responses((status = 201, body = Organization), (status = 422, body = Problem)))]
async fn create_org(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Context(context): Context,
    ApiJson(body): ApiJson<CreateOrgRequest>,
) -> Result<(StatusCode, Json<Organization>), ApiError> {
    let view = state
        .services
        .create_org(&session, &context, &body.name, state.clock.now())
        .await?;
    Ok((StatusCode::CREATED, Json(org_body(view))))
}

/// The caller's organizations.
#[utoipa::path(get, path = "/api/v1/orgs", tag = "orgs", security(("bearer" = [])),
    params(PageParams), responses((status = 200, body = OrganizationPage)))]
async fn list_orgs(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<OrganizationPage>, ApiError> {
    let page = state
        .services
        .list_orgs(&session, params.cursor.as_deref(), params.limit()?)
        .await?;
    Ok(Json(OrganizationPage {
        items: page.items.into_iter().map(org_body).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// One organization the caller belongs to; 404 for everyone else.
#[utoipa::path(get, path = "/api/v1/orgs/{org}", tag = "orgs", security(("bearer" = [])),
    params(("org" = String, Path)),
    responses((status = 200, body = Organization), (status = 404, body = Problem)))]
async fn get_org(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Path(org): Path<String>,
) -> Result<Json<Organization>, ApiError> {
    let access = state.services.org_access(&session, &org).await?;
    Ok(Json(org_body(state.services.get_org(&access).await?)))
}

/// Change the organization's settings (administrators).
#[utoipa::path(patch, path = "/api/v1/orgs/{org}", tag = "orgs", security(("bearer" = [])),
    params(("org" = String, Path)), request_body = UpdateOrgRequest,
    responses((status = 200, body = Organization), (status = 403, body = Problem)))]
async fn update_org(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Context(context): Context,
    Path(org): Path<String>,
    ApiJson(body): ApiJson<UpdateOrgRequest>,
) -> Result<Json<Organization>, ApiError> {
    let access = state.services.org_access(&session, &org).await?;
    // The name is checked (and the caller's role) before anything changes.
    let mut view = state
        .services
        .update_org(
            &access,
            &context,
            body.name,
            body.require_two_step,
            state.clock.now(),
        )
        .await?;
    if let Some(required) = body.require_verified_email
        && required != view.require_verified_email
    {
        state
            .services
            .set_require_verified_email(&access, &context, required, state.clock.now())
            .await?;
        view = state.services.get_org(&access).await?;
    }
    Ok(Json(org_body(view)))
}

/// Members with their roles (administrators and members; not guests).
#[utoipa::path(get, path = "/api/v1/orgs/{org}/members", tag = "orgs", security(("bearer" = [])),
    params(("org" = String, Path), PageParams),
    responses((status = 200, body = MemberPage), (status = 403, body = Problem)))]
async fn list_members(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Path(org): Path<String>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<MemberPage>, ApiError> {
    let access = state.services.org_access(&session, &org).await?;
    let page = state
        .services
        .list_members(&access, params.cursor.as_deref(), params.limit()?)
        .await?;
    Ok(Json(MemberPage {
        items: page.items.into_iter().map(member_body).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// One member; guests may read only themselves.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/members/{account}", tag = "orgs",
    security(("bearer" = [])), params(("org" = String, Path), ("account" = String, Path)),
    responses((status = 200, body = Member), (status = 404, body = Problem)))]
async fn get_member(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Path((org, account)): Path<(String, String)>,
) -> Result<Json<Member>, ApiError> {
    let access = state.services.org_access(&session, &org).await?;
    Ok(Json(member_body(
        state.services.get_member(&access, &account).await?,
    )))
}

/// Change a member's role or invite permission (administrators).
#[utoipa::path(patch, path = "/api/v1/orgs/{org}/members/{account}", tag = "orgs",
    security(("bearer" = [])), params(("org" = String, Path), ("account" = String, Path)),
    request_body = UpdateMemberRequest,
    responses((status = 200, body = Member), (status = 403, body = Problem),
        (status = 409, description = "would leave no administrator", body = Problem)))]
async fn update_member(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Context(context): Context,
    Path((org, account)): Path<(String, String)>,
    ApiJson(body): ApiJson<UpdateMemberRequest>,
) -> Result<Json<Member>, ApiError> {
    let access = state.services.org_access(&session, &org).await?;
    let view = state
        .services
        .change_member(
            &access,
            &context,
            &account,
            RoleChange {
                role: body.role,
                can_invite: body.can_invite,
            },
            state.clock.now(),
        )
        .await?;
    Ok(Json(member_body(view)))
}

/// Remove a member (administrators), or leave (oneself). The removed account at once loses
/// every access in this organization.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/members/{account}", tag = "orgs",
    security(("bearer" = [])), params(("org" = String, Path), ("account" = String, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 409, body = Problem)))]
async fn remove_member(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Context(context): Context,
    Path((org, account)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let access = state.services.org_access(&session, &org).await?;
    state
        .services
        .remove_member(&access, &context, &account, state.clock.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Invite an address (anyone with invite permission). The token goes by email only.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/invitations", tag = "orgs",
    security(("bearer" = [])), params(("org" = String, Path)),
    request_body = CreateInvitationRequest,
    responses((status = 201, body = Invitation), (status = 403, body = Problem),
        (status = 409, description = "already a member", body = Problem)))]
async fn create_invitation(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Context(context): Context,
    Path(org): Path<String>,
    ApiJson(body): ApiJson<CreateInvitationRequest>,
) -> Result<(StatusCode, Json<Invitation>), ApiError> {
    let access = state.services.org_access(&session, &org).await?;
    let view = state
        .services
        .invite(
            &access,
            &context,
            NewInvitation {
                email: body.email,
                role: body.role,
                can_invite: body.can_invite,
            },
            state.clock.now(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(invitation_body(view))))
}

/// Pending invitations (those with invite permission).
#[utoipa::path(get, path = "/api/v1/orgs/{org}/invitations", tag = "orgs",
    security(("bearer" = [])), params(("org" = String, Path), PageParams),
    responses((status = 200, body = InvitationPage), (status = 403, body = Problem)))]
async fn list_invitations(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Path(org): Path<String>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<InvitationPage>, ApiError> {
    let access = state.services.org_access(&session, &org).await?;
    let page = state
        .services
        .list_invitations(
            &access,
            params.cursor.as_deref(),
            params.limit()?,
            state.clock.now(),
        )
        .await?;
    Ok(Json(InvitationPage {
        items: page.items.into_iter().map(invitation_body).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Revoke a pending invitation (administrators or its inviter).
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/invitations/{id}", tag = "orgs",
    security(("bearer" = [])), params(("org" = String, Path), ("id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem)))]
async fn revoke_invitation(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Context(context): Context,
    Path((org, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let access = state.services.org_access(&session, &org).await?;
    state
        .services
        .revoke_invitation(&access, &context, &id, state.clock.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Accept an invitation as the logged-in account it was sent to.
#[utoipa::path(post, path = "/api/v1/invitations/accept", tag = "orgs",
    security(("bearer" = [])), request_body = AcceptInvitationRequest,
    responses((status = 200, body = Organization),
        (status = 403, description = "sent to another address", body = Problem),
        (status = 410, description = "expired, used or revoked", body = Problem)))]
async fn accept_invitation(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Context(context): Context,
    ApiJson(body): ApiJson<AcceptInvitationRequest>,
) -> Result<Json<Organization>, ApiError> {
    let view = state
        .services
        .accept_invitation(&session, &context, &body.token, state.clock.now())
        .await?;
    Ok(Json(org_body(view)))
}
