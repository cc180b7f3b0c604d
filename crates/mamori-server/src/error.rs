//! The one conversion from failures to HTTP: RFC 9457 `application/problem+json` with a stable
//! `code`. Internal details go to the log with the request ID, never to the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mamori_api_types::{FieldProblem, Problem};
use mamori_core::FieldError;
use mamori_service::{Refusal, ServiceError};

#[derive(Debug)]
pub enum ApiError {
    Service(ServiceError),
    MalformedJson(String),
    UnsupportedMediaType,
    PayloadTooLarge,
    CsrfRejected,
    WrongPrincipal,
    /// A `read` personal access token was used for a change.
    InsufficientScope,
    RouteNotFound,
    MethodNotAllowed,
    Timeout,
    /// Too many requests; try again after this many seconds.
    RateLimited {
        retry_after_seconds: u64,
    },
    Internal(anyhow::Error),
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        ApiError::Service(error)
    }
}

impl ApiError {
    pub fn validation(field: &str, message: &str) -> ApiError {
        ApiError::Service(ServiceError::field(field, message))
    }

    fn parts(
        &self,
    ) -> (
        StatusCode,
        &'static str,
        &'static str,
        String,
        Vec<FieldError>,
    ) {
        use ServiceError as S;
        match self {
            ApiError::Service(S::Validation(errors)) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "Validation failed",
                describe_fields(errors),
                errors.clone(),
            ),
            ApiError::Service(S::InvalidCredentials) => (
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "Invalid credentials",
                String::from("the email or the password is wrong"),
                Vec::new(),
            ),
            ApiError::Service(S::Unauthenticated) => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "Not authenticated",
                String::from("a valid session or token is required; log in again"),
                Vec::new(),
            ),
            ApiError::Service(S::Forbidden(message)) => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "Forbidden",
                message.clone(),
                Vec::new(),
            ),
            ApiError::WrongPrincipal => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "Forbidden",
                String::from("this credential may not do that"),
                Vec::new(),
            ),
            ApiError::InsufficientScope => (
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                "Insufficient scope",
                String::from("this personal access token has the read scope: it may only read"),
                Vec::new(),
            ),
            ApiError::Service(S::SecondFactorRequired { .. }) => (
                StatusCode::UNAUTHORIZED,
                "second_factor_required",
                "Second factor required",
                String::from(
                    "two-step verification is on: send the challenge with a code to /api/v1/sessions/second-factor",
                ),
                Vec::new(),
            ),
            ApiError::Service(S::PasswordChangeRequired { .. }) => (
                StatusCode::FORBIDDEN,
                "password_change_required",
                "Password change required",
                String::from(
                    "the password is an initial one: send the challenge with a new password to /api/v1/sessions/password-change",
                ),
                Vec::new(),
            ),
            ApiError::Service(S::Refused {
                kind,
                code,
                message,
            }) => (
                match kind {
                    Refusal::Forbidden => StatusCode::FORBIDDEN,
                    Refusal::Conflict => StatusCode::CONFLICT,
                    Refusal::Gone => StatusCode::GONE,
                    Refusal::Unauthenticated => StatusCode::UNAUTHORIZED,
                },
                code,
                match kind {
                    Refusal::Forbidden => "Forbidden",
                    Refusal::Conflict => "Conflict",
                    Refusal::Gone => "No longer valid",
                    Refusal::Unauthenticated => "Not authenticated",
                },
                message.clone(),
                Vec::new(),
            ),
            ApiError::Service(S::NotFound) | ApiError::RouteNotFound => (
                StatusCode::NOT_FOUND,
                "not_found",
                "Not found",
                String::from("no such resource"),
                Vec::new(),
            ),
            ApiError::Service(S::Conflict(message)) => (
                StatusCode::CONFLICT,
                "conflict",
                "Conflict",
                message.clone(),
                Vec::new(),
            ),
            ApiError::MalformedJson(message) => (
                StatusCode::BAD_REQUEST,
                "malformed_json",
                "Malformed JSON",
                message.clone(),
                Vec::new(),
            ),
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
                String::from("send the body as application/json"),
                Vec::new(),
            ),
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Payload too large",
                String::from("the request body is larger than allowed"),
                Vec::new(),
            ),
            ApiError::CsrfRejected => (
                StatusCode::FORBIDDEN,
                "csrf_rejected",
                "Cross-site request refused",
                String::from(
                    "a cookie-authenticated change must come from this site (Origin or Sec-Fetch-Site)",
                ),
                Vec::new(),
            ),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
                String::from("this path does not take that method"),
                Vec::new(),
            ),
            ApiError::Timeout => (
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "Request timed out",
                String::from("the request took too long; try again"),
                Vec::new(),
            ),
            ApiError::RateLimited {
                retry_after_seconds,
            } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "Too many requests",
                format!("slow down; try again in {retry_after_seconds} s"),
                Vec::new(),
            ),
            ApiError::Service(S::Locked {
                retry_after_seconds,
            }) => (
                StatusCode::TOO_MANY_REQUESTS,
                "account_locked",
                "Too many attempts",
                format!(
                    "too many log-in attempts for this email address; try again in \
                     {retry_after_seconds} s, or reset the password"
                ),
                Vec::new(),
            ),
            ApiError::Service(S::Unexpected(_)) | ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Internal error",
                String::from(
                    "something went wrong on our side; the request ID identifies it in our logs",
                ),
                Vec::new(),
            ),
        }
    }
}

fn describe_fields(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|error| format!("{} {}", error.field, error.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Service(ServiceError::Unexpected(error)) | ApiError::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "request failed");
            }
            _ => {}
        }
        let (status, code, title, detail, errors) = self.parts();
        let mut response = match &self {
            ApiError::Service(
                ServiceError::SecondFactorRequired { challenge }
                | ServiceError::PasswordChangeRequired { challenge },
            ) => {
                problem_response_with(status, code, title, detail, errors, Some(challenge.clone()))
            }
            _ => problem_response(status, code, title, detail, errors),
        };
        let retry_after = match &self {
            ApiError::RateLimited {
                retry_after_seconds,
            }
            | ApiError::Service(ServiceError::Locked {
                retry_after_seconds,
            }) => Some(*retry_after_seconds),
            _ => None,
        };
        if let Some(retry_after_seconds) = retry_after
            && let Ok(value) = HeaderValue::from_str(&retry_after_seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        if matches!(self, ApiError::PayloadTooLarge) {
            // The rest of the body is not read, so this connection cannot carry another request.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

pub fn problem_response(
    status: StatusCode,
    code: &str,
    title: &str,
    detail: String,
    errors: Vec<FieldError>,
) -> Response {
    problem_response_with(status, code, title, detail, errors, None)
}

fn problem_response_with(
    status: StatusCode,
    code: &str,
    title: &str,
    detail: String,
    errors: Vec<FieldError>,
    challenge: Option<String>,
) -> Response {
    let problem = Problem {
        challenge,
        type_uri: format!("https://mamori.dev/problems/{code}"),
        title: title.to_owned(),
        status: status.as_u16(),
        detail,
        code: code.to_owned(),
        errors: errors
            .into_iter()
            .map(|error| FieldProblem {
                field: error.field,
                message: error.message,
            })
            .collect(),
    };
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}
