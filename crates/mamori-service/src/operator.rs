//! The operator's bootstrap: operator tokens and app registration.

use crate::audit::{AuditDraft, RequestContext};
use crate::sessions::OperatorPrincipal;
use crate::tokens::{APP_PREFIX, OPERATOR_PREFIX, id_random, new_secret, secret_hash};
use crate::{ServiceError, Services};
use mamori_core::audit::{ActorKind, action};
use mamori_core::{AppId, OperatorTokenId, Timestamp};
use mamori_store::{AppRow, OperatorTokenRow};

const NAME_MAX_CHARS: usize = 200;

/// A new operator token; `token` is shown once.
#[derive(Debug)]
pub struct NewOperatorToken {
    pub id: OperatorTokenId,
    pub token: String,
}

/// A new app; `secret` is shown once.
#[derive(Debug)]
pub struct NewApp {
    pub id: AppId,
    pub name: String,
    pub secret: String,
}

fn valid_name(name: &str) -> Result<String, ServiceError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ServiceError::field("name", "is required"));
    }
    if name.chars().count() > NAME_MAX_CHARS {
        return Err(ServiceError::field(
            "name",
            "must be at most 200 characters",
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ServiceError::field(
            "name",
            "must not contain control characters",
        ));
    }
    Ok(name.to_owned())
}

impl Services {
    /// Creates an operator token. Only the command line on the server's machine does this:
    /// holding the data store is what entitles one to operator rights.
    pub async fn create_operator_token(
        &self,
        name: &str,
        now: Timestamp,
    ) -> Result<NewOperatorToken, ServiceError> {
        let name = valid_name(name)?;
        let token = new_secret(OPERATOR_PREFIX)?;
        let row = OperatorTokenRow {
            id: OperatorTokenId::from_random(&id_random()?),
            name,
            token_hash: secret_hash(&token),
            created_at: now,
            revoked_at: None,
        };
        let mut tx = self.store.begin().await?;
        tx.insert_operator_token(&row).await?;
        self.record_and_commit(
            tx,
            &RequestContext::default(),
            AuditDraft::new(ActorKind::System, None, action::OPERATOR_TOKEN_CREATED)
                .target("operator_token", row.id.as_str())
                .details(serde_json::json!({ "name": row.name })),
            now,
        )
        .await?;
        Ok(NewOperatorToken { id: row.id, token })
    }

    /// Registers an app, by an operator through the API or from the command line (`None`).
    pub async fn create_app(
        &self,
        operator: Option<&OperatorPrincipal>,
        context: &RequestContext,
        name: &str,
        now: Timestamp,
    ) -> Result<NewApp, ServiceError> {
        let name = valid_name(name)?;
        let secret = new_secret(APP_PREFIX)?;
        let row = AppRow {
            id: AppId::from_random(&id_random()?),
            name,
            secret_hash: secret_hash(&secret),
            created_at: now,
        };
        let (actor_kind, actor_id) = match operator {
            Some(operator) => (ActorKind::Operator, Some(operator.token_id.as_str())),
            None => (ActorKind::System, None),
        };
        let mut tx = self.store.begin().await?;
        tx.insert_app(&row).await?;
        self.record_and_commit(
            tx,
            context,
            AuditDraft::new(actor_kind, actor_id, action::APP_CREATED)
                .target("app", row.id.as_str()),
            now,
        )
        .await?;
        Ok(NewApp {
            id: row.id,
            name: row.name,
            secret,
        })
    }
}
