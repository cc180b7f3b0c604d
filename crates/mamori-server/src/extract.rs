//! Extractors: JSON bodies and queries with field-level errors, the request context (client
//! IP behind trusted proxies, user agent, request ID), and authentication with the CSRF check
//! for cookie-carried sessions.

use crate::access_log::PrincipalSlot;
use crate::app::AppState;
use crate::error::ApiError;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use bytes::Bytes;
use ipnet::IpNet;
use mamori_core::FieldError;
use mamori_service::{
    AccountSession, AppPrincipal, Authenticated, OperatorPrincipal, RequestContext, ServiceError,
    TokenScope,
};
use serde::de::DeserializeOwned;
use std::net::{IpAddr, SocketAddr};

pub const SESSION_COOKIE: &str = "mamori_session";
const USER_AGENT_MAX: usize = 512;

/// A JSON body, parsed with errors that name the field.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(|value| {
                let essence = value
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                essence == "application/json" || essence.ends_with("+json")
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::MalformedJson(String::from("the body could not be read"))
                }
            })?;
        parse_json(&bytes).map(ApiJson)
    }
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let result: Result<T, _> = serde_path_to_error::deserialize(&mut deserializer);
    let value = match result {
        Ok(value) => value,
        Err(error) => {
            let path = error.path().to_string();
            let inner = error.into_inner();
            return Err(match inner.classify() {
                serde_json::error::Category::Data => {
                    let message = data_message(&inner);
                    let field = match missing_field(&message) {
                        // serde reports a missing field at its parent's path.
                        Some(name) if path == "." => name.to_owned(),
                        Some(name) => format!("{path}.{name}"),
                        None if path == "." => String::from("body"),
                        None => path,
                    };
                    ApiError::Service(ServiceError::Validation(vec![FieldError::new(
                        field, message,
                    )]))
                }
                _ => ApiError::MalformedJson(format!("the body is not valid JSON: {inner}")),
            });
        }
    };
    deserializer.end().map_err(|_| {
        ApiError::MalformedJson(String::from("trailing characters after the JSON value"))
    })?;
    Ok(value)
}

/// The name in serde's "missing field `name`" message.
fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
}

/// serde's message without its " at line 1 column 9" position suffix.
fn data_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(index) => text[..index].to_owned(),
        None => text,
    }
}

/// Query parameters, parsed strictly: unknown parameters are errors.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(query)
            .map(ApiQuery)
            .map_err(|error| {
                ApiError::Service(ServiceError::Validation(vec![FieldError::new(
                    "query",
                    error.to_string(),
                )]))
            })
    }
}

/// `?limit=&cursor=` for lists.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// 1 to 500; default 50.
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

impl PageParams {
    pub fn limit(&self) -> Result<u32, ApiError> {
        match self.limit {
            None => Ok(50),
            Some(limit) if (1..=500).contains(&limit) => Ok(limit),
            Some(_) => Err(ApiError::validation("limit", "must be from 1 to 500")),
        }
    }
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the nearest address
/// in `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |address: &IpAddr| trusted.iter().any(|net| net.contains(address));
    if !is_trusted(&peer) {
        return peer;
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|part| part.trim().parse().ok())
        .collect();
    forwarded
        .into_iter()
        .rev()
        .find(|address| !is_trusted(address))
        .unwrap_or(peer)
}

pub(crate) fn peer_of(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
}

/// Whether the client reached us over TLS (directly, or through a trusted proxy that says so).
pub fn is_https(parts: &Parts, state: &AppState) -> bool {
    if state.tls {
        return true;
    }
    let Some(peer) = peer_of(parts) else {
        return false;
    };
    state.trusted_proxies.iter().any(|net| net.contains(&peer))
        && parts
            .headers
            .get("x-forwarded-proto")
            .and_then(|value| value.to_str().ok())
            .is_some_and(|proto| proto.eq_ignore_ascii_case("https"))
}

/// The request context for the audit trail.
pub struct Context(pub RequestContext);

impl FromRequestParts<AppState> for Context {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let ip = peer_of(parts).map(|peer| client_ip(peer, &parts.headers, &state.trusted_proxies));
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|value| value.to_str().ok())
            .map(|agent| agent.chars().take(USER_AGENT_MAX).collect());
        let request_id = parts
            .headers
            .get("x-request-id")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        Ok(Context(RequestContext {
            ip: ip.map(|ip| ip.to_string()),
            user_agent,
            request_id,
        }))
    }
}

/// Authenticates the caller and notes the principal for the access log, also when the route
/// then refuses that kind of principal.
async fn authenticate(parts: &Parts, state: &AppState) -> Result<Authenticated, ApiError> {
    let authenticated = authenticate_credential(parts, state).await?;
    if let Some(slot) = parts.extensions.get::<PrincipalSlot>() {
        slot.note(&authenticated);
    }
    // A `read` personal access token reads: every route, one check, on the method.
    if let Authenticated::Account(session) = &authenticated
        && session.scope() == TokenScope::Read
        && !is_safe(&parts.method)
    {
        return Err(ApiError::InsufficientScope);
    }
    Ok(authenticated)
}

/// A bearer secret from `Authorization`, or the session cookie (then with a CSRF check on
/// unsafe methods).
async fn authenticate_credential(
    parts: &Parts,
    state: &AppState,
) -> Result<Authenticated, ApiError> {
    let now = state.clock.now();
    if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
        let secret = value
            .to_str()
            .ok()
            .and_then(|text| {
                let (scheme, token) = text.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or(ApiError::Service(ServiceError::Unauthenticated))?;
        return Ok(state.services.authenticate(secret, now).await?);
    }
    let token =
        session_cookie(&parts.headers).ok_or(ApiError::Service(ServiceError::Unauthenticated))?;
    if !is_safe(&parts.method) {
        check_same_origin(&parts.headers)?;
    }
    let session = state.services.authenticate_session(&token, now).await?;
    Ok(Authenticated::Account(session))
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// CSRF defence for cookie-authenticated changes: browsers send `Sec-Fetch-Site` (modern) or
/// `Origin` (older) on every cross-site request; either must say "this site".
fn check_same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    if let Some(site) = headers
        .get("sec-fetch-site")
        .and_then(|value| value.to_str().ok())
    {
        return if site == "same-origin" || site == "none" {
            Ok(())
        } else {
            Err(ApiError::CsrfRejected)
        };
    }
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|value| value.to_str().ok());
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok());
    match (origin, host) {
        (Some(origin), Some(host)) => {
            let origin_host = origin
                .split_once("://")
                .map(|(_, rest)| rest.trim_end_matches('/'))
                .unwrap_or("");
            if origin_host.eq_ignore_ascii_case(host) {
                Ok(())
            } else {
                Err(ApiError::CsrfRejected)
            }
        }
        _ => Err(ApiError::CsrfRejected),
    }
}

/// Defines an extractor that accepts one kind of principal and answers 403 to the others.
macro_rules! principal_extractor {
    ($(#[$meta:meta])* $name:ident($inner:ty) = $variant:ident) => {
        $(#[$meta])*
        pub struct $name(pub $inner);

        impl FromRequestParts<AppState> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &AppState,
            ) -> Result<Self, Self::Rejection> {
                match authenticate(parts, state).await? {
                    Authenticated::$variant(principal) => Ok($name(principal)),
                    _ => Err(ApiError::WrongPrincipal),
                }
            }
        }
    };
}

principal_extractor!(
    /// The caller holds a session of an account.
    AccountAuth(AccountSession) = Account
);
principal_extractor!(
    /// The caller holds an operator token.
    OperatorAuth(OperatorPrincipal) = Operator
);
principal_extractor!(
    /// The caller holds an app's secret.
    AppAuth(AppPrincipal) = App
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ip_honours_only_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.9, 10.0.0.7".parse().unwrap());
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let stranger: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(
            client_ip(proxy, &headers, &trusted).to_string(),
            "203.0.113.9"
        );
        assert_eq!(client_ip(stranger, &headers, &trusted), stranger);
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy);
    }

    #[test]
    fn same_origin_check() {
        let mut headers = HeaderMap::new();
        assert!(check_same_origin(&headers).is_err());
        headers.insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert!(check_same_origin(&headers).is_err());
        headers.insert("sec-fetch-site", "same-origin".parse().unwrap());
        assert!(check_same_origin(&headers).is_ok());
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "id.example.com".parse().unwrap());
        headers.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(check_same_origin(&headers).is_err());
        headers.insert(header::ORIGIN, "https://id.example.com".parse().unwrap());
        assert!(check_same_origin(&headers).is_ok());
    }
}
