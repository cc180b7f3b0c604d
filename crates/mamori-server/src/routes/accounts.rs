//! `POST /api/v1/accounts`: sign up.

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, Context};
use crate::rate_limit::{self, PerIp};
use crate::routes::account_body;
use crate::routes::orgs::org_body;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use mamori_api_types::{Problem, SignUpRequest, SignedUp};
use mamori_service::SignUp;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(sign_up))
}

/// Sign up (ACC-1): anyone creates an account with their own password.
#[utoipa::path(post, path = "/api/v1/accounts", tag = "accounts",
    request_body = SignUpRequest,
    responses(
        (status = 201, body = SignedUp),
        (status = 409, description = "the email has an account", body = Problem),
        (status = 422, description = "invalid email, name or weak password", body = Problem),
        (status = 429, description = "too many sign-ups from this client", body = Problem),
    ))]
async fn sign_up(
    _limit: PerIp<rate_limit::SignUp>,
    State(state): State<AppState>,
    Context(context): Context,
    ApiJson(body): ApiJson<SignUpRequest>,
) -> Result<(StatusCode, Json<SignedUp>), ApiError> {
    let now = state.clock.now();
    let (view, org) = state
        .services
        .sign_up(
            &context,
            SignUp {
                email: body.email,
                password: body.password,
                display_name: body.display_name,
                organization_name: body.organization.map(|org| org.name),
                invitation_token: body.invitation_token,
            },
            now,
        )
        .await?;
    let organization = match org {
        Some(org) => Some(org_body(state.services.org_view_of(&view.id, &org).await?)),
        None => None,
    };
    Ok((
        StatusCode::CREATED,
        Json(SignedUp {
            account: account_body(view),
            organization,
        }),
    ))
}
