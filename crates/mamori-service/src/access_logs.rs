//! Access logs (LOG-1, LOG-2, LOG-3): the record of every HTTP request, kept apart from the
//! audit trail.
//!
//! The edge observes each request and hands the records over in batches
//! ([`Services::record_access_logs`]); only an operator reads them
//! ([`Services::access_logs`], which takes the [`OperatorPrincipal`] as proof); retention
//! deletes them in bounded batches ([`Services::delete_access_logs_before`]). Times are UTC
//! `Timestamp`s passed in by the caller.
//!
//! Unlike the use cases that change accounts or organizations, these writes record no audit
//! event: an access log row is itself the record of a request, and logging the logging would
//! never end.

use crate::orgs::{Page, parse_cursor};
use crate::sessions::{Authenticated, OperatorPrincipal};
use crate::tokens::id_random;
use crate::{ServiceError, Services};
use mamori_core::id::encode_id_body;
use mamori_core::{AccountId, AppId, FieldError, OperatorTokenId, OrgId, Timestamp};
use mamori_store::{AccessLogFilter, AccessLogRow, StoreError};

/// User agents are cut to this many characters.
const USER_AGENT_MAX_CHARS: usize = 512;
/// Paths and query strings are cut to this many characters, so a huge URL costs no more than
/// a long one.
const URL_PART_MAX_CHARS: usize = 2048;
const METHOD_MAX_CHARS: usize = 32;
/// Rows deleted per statement by [`Services::delete_access_logs_before`].
const DELETE_BATCH: u32 = 1000;

/// Who made a request, as far as authentication found out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoggedPrincipal {
    Account(AccountId),
    Operator(OperatorTokenId),
    App(AppId),
}

impl LoggedPrincipal {
    /// The principal behind a capability: the account (not the session), the operator token,
    /// or the app.
    pub fn of(authenticated: &Authenticated) -> LoggedPrincipal {
        match authenticated {
            Authenticated::Account(session) => LoggedPrincipal::Account(session.account_id.clone()),
            Authenticated::Operator(operator) => {
                LoggedPrincipal::Operator(operator.token_id.clone())
            }
            Authenticated::App(app) => LoggedPrincipal::App(app.app_id.clone()),
        }
    }

    /// `account`, `operator` or `app`.
    pub fn kind(&self) -> &'static str {
        match self {
            LoggedPrincipal::Account(_) => "account",
            LoggedPrincipal::Operator(_) => "operator",
            LoggedPrincipal::App(_) => "app",
        }
    }

    pub fn id(&self) -> &str {
        match self {
            LoggedPrincipal::Account(id) => id.as_str(),
            LoggedPrincipal::Operator(id) => id.as_str(),
            LoggedPrincipal::App(id) => id.as_str(),
        }
    }

    fn from_stored(kind: &str, id: String) -> Option<LoggedPrincipal> {
        match kind {
            "account" => Some(LoggedPrincipal::Account(AccountId::from_stored(id))),
            "operator" => Some(LoggedPrincipal::Operator(OperatorTokenId::from_stored(id))),
            "app" => Some(LoggedPrincipal::App(AppId::from_stored(id))),
            _ => None,
        }
    }
}

/// One request as the edge saw it. The query string arrives with its secrets already removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogEntry {
    pub logged_at: Timestamp,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub status: u16,
    pub latency_us: i64,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub principal: Option<LoggedPrincipal>,
    pub org_id: Option<OrgId>,
    pub request_id: Option<String>,
}

/// A stored request; `id` is also the cursor of a page that ends with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogView {
    pub id: String,
    pub entry: AccessLogEntry,
}

/// The operator's filters as given; [`Services::access_logs`] checks them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessLogQuery {
    /// RFC 3339; inclusive.
    pub from: Option<String>,
    /// RFC 3339; exclusive.
    pub to: Option<String>,
    pub method: Option<String>,
    pub status: Option<u16>,
    pub path_prefix: Option<String>,
    /// An account, operator token or app ID.
    pub principal: Option<String>,
    pub org: Option<String>,
}

/// A new row ID: the time, zero-padded, then 26 random base32 characters, so IDs sort by time
/// and the time can be read back from the ID alone (which makes the ID a complete cursor).
fn access_log_id(logged_at: Timestamp) -> Result<String, ServiceError> {
    Ok(format!(
        "{:013}_{}",
        logged_at.as_millis(),
        encode_id_body(&id_random()?)
    ))
}

/// Reads a cursor (a row ID) back into its keyset position (time, ID).
fn parse_access_log_cursor(cursor: &str) -> Option<(Timestamp, String)> {
    let (time, body) = cursor.split_once('_')?;
    let valid_body = body.len() == 26
        && body
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b));
    let valid_time = !time.is_empty() && time.bytes().all(|b| b.is_ascii_digit());
    if !(valid_body && valid_time) {
        return None;
    }
    Some((
        Timestamp::from_millis(time.parse().ok()?),
        cursor.to_owned(),
    ))
}

fn cut(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

fn row_of(entry: &AccessLogEntry) -> Result<AccessLogRow, ServiceError> {
    Ok(AccessLogRow {
        id: access_log_id(entry.logged_at)?,
        logged_at: entry.logged_at,
        method: cut(&entry.method, METHOD_MAX_CHARS),
        path: cut(&entry.path, URL_PART_MAX_CHARS),
        query: entry
            .query
            .as_deref()
            .map(|query| cut(query, URL_PART_MAX_CHARS)),
        status: entry.status,
        latency_us: entry.latency_us.max(0),
        client_ip: entry.client_ip.clone(),
        user_agent: entry
            .user_agent
            .as_deref()
            .map(|agent| cut(agent, USER_AGENT_MAX_CHARS)),
        principal_type: entry.principal.as_ref().map(|p| p.kind().to_owned()),
        principal_id: entry.principal.as_ref().map(|p| p.id().to_owned()),
        org_id: entry.org_id.as_ref().map(|org| org.as_str().to_owned()),
        request_id: entry.request_id.clone(),
    })
}

fn view_of(row: AccessLogRow) -> Result<AccessLogView, ServiceError> {
    let principal = match (row.principal_type, row.principal_id) {
        (Some(kind), Some(id)) => Some(
            LoggedPrincipal::from_stored(&kind, id)
                .ok_or_else(|| StoreError::Corrupt(format!("access log principal type {kind}")))?,
        ),
        _ => None,
    };
    Ok(AccessLogView {
        id: row.id,
        entry: AccessLogEntry {
            logged_at: row.logged_at,
            method: row.method,
            path: row.path,
            query: row.query,
            status: row.status,
            latency_us: row.latency_us,
            client_ip: row.client_ip,
            user_agent: row.user_agent,
            principal,
            org_id: row.org_id.map(OrgId::from_stored),
            request_id: row.request_id,
        },
    })
}

/// Checks every filter at once, so the caller hears of all the bad ones together.
fn filter_of(query: &AccessLogQuery) -> Result<AccessLogFilter, ServiceError> {
    let mut errors = Vec::new();
    let mut time = |field: &str, text: &Option<String>| {
        text.as_deref().and_then(|text| {
            let parsed = Timestamp::parse_rfc3339(text);
            if parsed.is_none() {
                errors.push(FieldError::new(
                    field,
                    "must be an RFC 3339 time such as 2026-11-22T03:04:05Z",
                ));
            }
            parsed
        })
    };
    let from = time("from", &query.from);
    let to = time("to", &query.to);
    let method = query.method.as_deref().map(str::to_ascii_uppercase);
    if let Some(method) = &method
        && (method.is_empty()
            || method.len() > METHOD_MAX_CHARS
            || !method.bytes().all(|b| b.is_ascii_uppercase()))
    {
        errors.push(FieldError::new("method", "must be an HTTP method"));
    }
    if let Some(status) = query.status
        && !(100..=599).contains(&status)
    {
        errors.push(FieldError::new("status", "must be from 100 to 599"));
    }
    if let Some(prefix) = &query.path_prefix
        && (!prefix.starts_with('/') || prefix.chars().count() > URL_PART_MAX_CHARS)
    {
        errors.push(FieldError::new(
            "path_prefix",
            "must start with / and be at most 2048 characters",
        ));
    }
    if let Some(principal) = &query.principal
        && AccountId::parse(principal).is_none()
        && OperatorTokenId::parse(principal).is_none()
        && AppId::parse(principal).is_none()
    {
        errors.push(FieldError::new(
            "principal",
            "must be an account, operator token or app ID",
        ));
    }
    if let Some(org) = &query.org
        && OrgId::parse(org).is_none()
    {
        errors.push(FieldError::new("org", "must be an organization ID"));
    }
    if !errors.is_empty() {
        return Err(ServiceError::Validation(errors));
    }
    Ok(AccessLogFilter {
        from,
        to,
        method,
        status: query.status,
        path_prefix: query.path_prefix.clone(),
        principal_id: query.principal.clone(),
        org_id: query.org.clone(),
    })
}

impl Services {
    /// Stores a batch of access log records, each with a new ID. Called by the server's
    /// writer task, never on a request's path.
    pub async fn record_access_logs(&self, entries: &[AccessLogEntry]) -> Result<(), ServiceError> {
        let rows = entries.iter().map(row_of).collect::<Result<Vec<_>, _>>()?;
        self.store.insert_access_logs(&rows).await?;
        Ok(())
    }

    /// Access logs matching `query`, newest first (LOG-1). Only an operator reads them: the
    /// [`OperatorPrincipal`] is the proof.
    pub async fn access_logs(
        &self,
        _operator: &OperatorPrincipal,
        query: &AccessLogQuery,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<AccessLogView>, ServiceError> {
        let filter = filter_of(query);
        let after = parse_cursor(cursor, parse_access_log_cursor);
        let (filter, after) = match (filter, after) {
            (Ok(filter), Ok(after)) => (filter, after),
            (Err(ServiceError::Validation(mut errors)), Err(ServiceError::Validation(more))) => {
                errors.extend(more);
                return Err(ServiceError::Validation(errors));
            }
            (Err(error), _) | (_, Err(error)) => return Err(error),
        };
        let rows = self
            .store
            .access_logs(
                &filter,
                after.as_ref().map(|(time, id)| (*time, id.as_str())),
                limit + 1,
            )
            .await?;
        Page::from_rows(rows, limit, |row| row.id.clone(), view_of)
    }

    /// Deletes every access log row logged before `cutoff` (LOG-2), in bounded batches until
    /// none is left; returns how many. Idempotent: a second call with the same cutoff deletes
    /// nothing, and several nodes may run it at once.
    pub async fn delete_access_logs_before(&self, cutoff: Timestamp) -> Result<u64, ServiceError> {
        let mut deleted = 0;
        loop {
            let batch = self
                .store
                .delete_access_logs_before(cutoff, DELETE_BATCH)
                .await?;
            deleted += batch;
            if batch < u64::from(DELETE_BATCH) {
                return Ok(deleted);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_cursors_that_sort_by_time() {
        let early = access_log_id(Timestamp::from_millis(1_795_305_600_000)).unwrap();
        let late = access_log_id(Timestamp::from_millis(1_795_305_600_001)).unwrap();
        assert!(early < late);
        assert_eq!(early.len(), 13 + 1 + 26);
        let (time, id) = parse_access_log_cursor(&early).unwrap();
        assert_eq!(time, Timestamp::from_millis(1_795_305_600_000));
        assert_eq!(id, early);
        for bad in [
            "",
            "_",
            "1795305600000",
            "1795305600000_short",
            "x795305600000_abcdefghijklmnopqrstuvwxyz",
            "1795305600000_ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            "99999999999999999999_abcdefghijklmnopqrstuvwxyz",
        ] {
            assert_eq!(parse_access_log_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn filters_are_checked_together() {
        let query = AccessLogQuery {
            from: Some(String::from("yesterday")),
            method: Some(String::from("get")),
            status: Some(42),
            path_prefix: Some(String::from("api")),
            principal: Some(String::from("org_abc")),
            org: Some(String::from("acc_abc")),
            ..AccessLogQuery::default()
        };
        let Err(ServiceError::Validation(errors)) = filter_of(&query) else {
            panic!("expected validation errors");
        };
        let fields: Vec<&str> = errors.iter().map(|error| error.field.as_str()).collect();
        assert_eq!(
            fields,
            ["from", "status", "path_prefix", "principal", "org"]
        );
        let good = filter_of(&AccessLogQuery {
            method: Some(String::from("get")),
            to: Some(String::from("2026-11-22T09:00:00+09:00")),
            ..AccessLogQuery::default()
        })
        .unwrap();
        assert_eq!(good.method.as_deref(), Some("GET"));
        assert_eq!(good.to, Timestamp::parse_rfc3339("2026-11-22T00:00:00Z"));
    }
}
