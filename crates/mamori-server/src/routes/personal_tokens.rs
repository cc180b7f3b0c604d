//! `/api/v1/me/tokens`: personal access tokens. Managed only from a session: a personal access
//! token cannot make, list or revoke tokens (`session_required`).

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{AccountAuth, ApiJson, ApiQuery, Context, PageParams};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mamori_api_types::{
    CreatePersonalTokenRequest, PersonalToken, PersonalTokenCreated, PersonalTokenPage, Problem,
};
use mamori_service::PersonalTokenView;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_token, list_tokens))
        .routes(routes!(revoke_token))
}

fn token_body(view: PersonalTokenView) -> PersonalToken {
    PersonalToken {
        id: view.id.to_string(),
        name: view.name,
        scope: view.scope.as_str().to_owned(),
        created_at: view.created_at.to_rfc3339(),
        expires_at: view.expires_at.to_rfc3339(),
        last_used_at: view.last_used_at.map(|at| at.to_rfc3339()),
    }
}

/// Make a personal access token (`mmp_...`), shown only in this answer. Use it as
/// `Authorization: Bearer`; `read` tokens may only use GET, HEAD and OPTIONS
/// (`403 insufficient_scope`), and no token manages the password, two-step verification,
/// sessions, tokens or the account's deletion (`403 session_required`).
#[utoipa::path(post, path = "/api/v1/me/tokens", tag = "me", security(("bearer" = [])),
    request_body = CreatePersonalTokenRequest,
    responses(
        (status = 201, body = PersonalTokenCreated),
        (status = 403, description = "`session_required`", body = Problem),
        (status = 422, body = Problem),
    ))]
async fn create_token(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Context(context): Context,
    ApiJson(body): ApiJson<CreatePersonalTokenRequest>,
) -> Result<(StatusCode, Json<PersonalTokenCreated>), ApiError> {
    let created = state
        .services
        .create_personal_token(
            &session,
            &context,
            &body.name,
            &body.scope,
            body.expires_at.as_deref(),
            state.clock.now(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(PersonalTokenCreated {
            token: created.token,
            details: token_body(created.view),
        }),
    ))
}

/// The account's personal access tokens, oldest first (never the secrets).
#[utoipa::path(get, path = "/api/v1/me/tokens", tag = "me", security(("bearer" = [])),
    params(PageParams),
    responses((status = 200, body = PersonalTokenPage), (status = 403, body = Problem)))]
async fn list_tokens(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<PersonalTokenPage>, ApiError> {
    let limit = params.limit()?;
    let page = state
        .services
        .list_personal_tokens(&session, params.cursor.as_deref(), limit)
        .await?;
    Ok(Json(PersonalTokenPage {
        items: page.items.into_iter().map(token_body).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Revoke a personal access token; it stops working at once.
#[utoipa::path(delete, path = "/api/v1/me/tokens/{id}", tag = "me", security(("bearer" = [])),
    params(("id" = String, Path, description = "token ID (`pat_...`)")),
    responses((status = 204), (status = 404, body = Problem)))]
async fn revoke_token(
    State(state): State<AppState>,
    AccountAuth(session): AccountAuth,
    Context(context): Context,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .services
        .revoke_personal_token(&session, &context, &id, state.clock.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
