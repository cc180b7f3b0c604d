//! Access control for apps' containers (RES-1 to RES-4, ORG-5): apps write relationships and
//! ask `check`, `check-bulk`, `lookup-resources` and `lookup-subjects`; the operator adds
//! container types to an app's schema.
//!
//! - Writes go to the store in one transaction under the organization's lock, with their audit
//!   event; the store's change log gives the transaction a revision, returned to the app as a
//!   consistency token (`ct_<revision>`, opaque to apps).
//! - Reads are answered from [`live::LiveIndex`] in memory. A read that carries a consistency
//!   token first brings the index up to that revision; so does any read after this process
//!   committed a change (a membership removal, say), so a node always sees its own writes.
//!   Other nodes' writes arrive through the periodic [`Services::refresh_authz`] or a token.
//! - An app sees only organizations that enabled it, and only its own containers.
//! - Cascades need no call here: the store deletes an account's relationships with its
//!   membership and a team's with the team, in the same transaction, and the rule above all
//!   tuples neutralises the rest (a disabled app, an unselected member, a team member
//!   removed). The organization purge deletes an organization's relationships in batches
//!   (`crate::purge`).

mod live;

pub(crate) use live::LiveIndex;

use crate::audit::{AuditDraft, RequestContext};
use crate::orgs::{ORG_ACTIVE, Page};
use crate::sessions::{AppPrincipal, OperatorPrincipal};
use crate::{ServiceError, Services};
use mamori_core::audit::{ActorKind, action};
use mamori_core::authz::index::{Explanation, SchemaError};
use mamori_core::authz::schema::{ObjectRef, SubjectRef, TypeDef};
use mamori_core::{AccountId, AppId, FieldError, OrgId, TeamId, Timestamp};
use mamori_store::{AuthzObjectRow, AuthzTypeRow, RelationshipRow, StoreError, StoreTx};
use serde_json::json;
use std::collections::BTreeMap;

/// Most writes plus deletes in one batch.
/// (500 relationships of typical size fit the default 64 KiB request body.)
pub const MAX_RELATIONSHIP_CHANGES: usize = 500;
/// Most checks in one `check-bulk`.
pub const MAX_BULK_CHECKS: usize = 100;
const TOKEN_PREFIX: &str = "ct_";

/// One relationship as a client wrote it.
#[derive(Debug, Clone)]
pub struct RelationshipInput {
    pub resource: String,
    pub relation: String,
    pub subject: String,
}

/// One question: may `subject` do `permission` to `resource`?
#[derive(Debug, Clone)]
pub struct CheckInput {
    pub resource: String,
    pub permission: String,
    pub subject: String,
    pub explain: bool,
}

#[derive(Debug, Clone)]
pub struct CheckView {
    pub allowed: bool,
    pub explanation: Option<Explanation>,
}

/// How fresh a read must be, and which page of it.
#[derive(Debug, Clone, Copy)]
pub struct ReadAt<'a> {
    /// A consistency token: the answer reflects at least its revision.
    pub token: Option<&'a str>,
    /// The last item of the previous page.
    pub cursor: Option<&'a str>,
    pub limit: u32,
}

/// A type an app added, as the operator sees it.
#[derive(Debug, Clone)]
pub struct AuthzTypeView {
    pub app_id: AppId,
    pub name: String,
    pub definition: String,
    pub created: bool,
}

/// The opaque token that carries a revision.
pub fn consistency_token(revision: i64) -> String {
    format!("{TOKEN_PREFIX}{revision}")
}

fn parse_token(token: Option<&str>) -> Result<i64, ServiceError> {
    let Some(token) = token else {
        return Ok(0);
    };
    token
        .strip_prefix(TOKEN_PREFIX)
        .and_then(|digits| digits.parse::<i64>().ok())
        .filter(|revision| *revision >= 0)
        .ok_or_else(|| ServiceError::field("consistency_token", "is not a consistency token"))
}

fn unexpected(error: live::LiveError) -> ServiceError {
    ServiceError::Unexpected(anyhow::Error::new(error).context("access-control index"))
}

fn schema_error(field: &str, error: SchemaError) -> ServiceError {
    match error {
        SchemaError::UnknownType => ServiceError::field(field, "names a type the schema lacks"),
        SchemaError::UnknownPermission => {
            ServiceError::field("permission", "is not a permission or relation of the type")
        }
    }
}

fn parse_object(field: &str, text: &str) -> Result<ObjectRef, ServiceError> {
    ObjectRef::parse(text).ok_or_else(|| ServiceError::field(field, "must be type:id"))
}

fn parse_account_subject(text: &str) -> Result<String, ServiceError> {
    match SubjectRef::parse(text) {
        Some(SubjectRef::Account(id)) if AccountId::parse(&id).is_some() => Ok(id),
        _ => Err(ServiceError::field("subject", "must be account:ID")),
    }
}

/// A validated relationship of a batch.
struct Parsed {
    resource: ObjectRef,
    relation: String,
    subject: SubjectRef,
}

impl Parsed {
    fn row(&self, app: &AppId, org: &OrgId) -> RelationshipRow {
        let (subject_type, subject_id, subject_relation) = self.subject.to_parts();
        RelationshipRow {
            app_id: app.as_str().to_owned(),
            org_id: org.as_str().to_owned(),
            resource_type: self.resource.kind.clone(),
            resource_id: self.resource.id.clone(),
            relation: self.relation.clone(),
            subject_type: subject_type.to_owned(),
            subject_id: subject_id.to_owned(),
            subject_relation: subject_relation.to_owned(),
        }
    }
}

impl Services {
    /// Loads the index at start (the server calls it before it listens).
    pub async fn load_authz(&self) -> Result<i64, ServiceError> {
        self.authz
            .ensure(self.store.as_ref(), 0)
            .await
            .map_err(unexpected)
    }

    /// Applies what other nodes committed; the server calls it every second.
    pub async fn refresh_authz(&self) -> Result<i64, ServiceError> {
        self.authz
            .refresh(self.store.as_ref())
            .await
            .map_err(unexpected)
    }

    /// The index's revision, brought up to `token` first; a token newer than anything
    /// committed is refused.
    async fn authz_at(&self, token: Option<&str>) -> Result<i64, ServiceError> {
        let wanted = parse_token(token)?;
        let revision = self
            .authz
            .ensure(self.store.as_ref(), wanted)
            .await
            .map_err(unexpected)?;
        if revision < wanted {
            return Err(ServiceError::field(
                "consistency_token",
                "is not a consistency token this server issued",
            ));
        }
        Ok(revision)
    }

    /// How many relationships and containers the index holds, and its revision.
    pub fn authz_stats(&self) -> Result<(usize, usize, i64), ServiceError> {
        let index = self.authz.read().map_err(unexpected)?;
        Ok((index.len(), index.n_objects(), self.authz.revision()))
    }

    /// Parses one relationship of a batch against the app's schema.
    fn parse_relationship(
        &self,
        app: &AppId,
        org: &OrgId,
        field: &str,
        input: &RelationshipInput,
        errors: &mut Vec<FieldError>,
    ) -> Result<Option<Parsed>, ServiceError> {
        let index = self.authz.read().map_err(unexpected)?;
        let mut fail = |suffix: &str, message: &str| {
            errors.push(FieldError::new(format!("{field}.{suffix}"), message));
            Ok(None)
        };
        let Some(resource) = ObjectRef::parse(&input.resource) else {
            return fail("resource", "must be type:id");
        };
        let Some(def) = index.type_def(app.as_str(), &resource.kind) else {
            return fail("resource", "names a type the schema lacks");
        };
        if !def.is_relation(&input.relation) {
            return fail("relation", "is not a relation of the type");
        }
        let Some(subject) = SubjectRef::parse(&input.subject) else {
            return fail(
                "subject",
                "must be account:ID, team:ID#member, org:ID#member, org:ID#admin or type:id#name",
            );
        };
        match &subject {
            SubjectRef::Account(id) if AccountId::parse(id).is_none() => {
                return fail("subject", "is not an account ID");
            }
            SubjectRef::Team(id) if TeamId::parse(id).is_none() => {
                return fail("subject", "is not a team ID");
            }
            SubjectRef::OrgMembers(id) | SubjectRef::OrgAdmins(id) if id != org.as_str() => {
                return fail("subject", "is another organization");
            }
            SubjectRef::Set(object, name) => {
                let known = index
                    .type_def(app.as_str(), &object.kind)
                    .is_some_and(|def| def.has_name(name));
                if !known {
                    return fail("subject", "names a type or relation the schema lacks");
                }
            }
            _ => {}
        }
        Ok(Some(Parsed {
            resource,
            relation: input.relation.clone(),
            subject,
        }))
    }

    /// Writes and deletes relationships of one organization, all or nothing (deletes first);
    /// writing what exists or deleting what does not is harmless. Returns the consistency
    /// token of the result.
    pub async fn write_relationships(
        &self,
        app: &AppPrincipal,
        context: &RequestContext,
        org: &str,
        writes: &[RelationshipInput],
        deletes: &[RelationshipInput],
        now: Timestamp,
    ) -> Result<String, ServiceError> {
        let org_id = OrgId::parse(org).ok_or(ServiceError::NotFound)?;
        if writes.len() + deletes.len() > MAX_RELATIONSHIP_CHANGES {
            return Err(ServiceError::field(
                "writes",
                &format!("at most {MAX_RELATIONSHIP_CHANGES} writes and deletes in one batch"),
            ));
        }
        if writes.is_empty() && deletes.is_empty() {
            return Err(ServiceError::field(
                "writes",
                "give at least one write or delete",
            ));
        }
        self.app_org(app, &org_id).await?;
        self.authz_at(None).await?;
        let mut errors = Vec::new();
        let mut parsed_writes = Vec::new();
        for (i, input) in writes.iter().enumerate() {
            let field = format!("writes[{i}]");
            if let Some(parsed) =
                self.parse_relationship(&app.app_id, &org_id, &field, input, &mut errors)?
            {
                parsed_writes.push((field, parsed));
            }
        }
        let mut parsed_deletes = Vec::new();
        for (i, input) in deletes.iter().enumerate() {
            let field = format!("deletes[{i}]");
            if let Some(parsed) =
                self.parse_relationship(&app.app_id, &org_id, &field, input, &mut errors)?
            {
                parsed_deletes.push(parsed);
            }
        }
        if !errors.is_empty() {
            return Err(ServiceError::Validation(errors));
        }
        let mut tx = self.store.begin().await?;
        tx.lock_org(&org_id).await.map_err(|error| match error {
            StoreError::NotFound => ServiceError::NotFound,
            other => other.into(),
        })?;
        // Subjects and containers are checked under the organization's lock, so a member
        // removed or a team deleted a moment ago cannot be written back.
        let mut owners: BTreeMap<ObjectRef, bool> = BTreeMap::new();
        for (field, parsed) in &parsed_writes {
            match &parsed.subject {
                SubjectRef::Account(id) => {
                    let account = AccountId::from_stored(id.clone());
                    if tx.membership_in_tx(&org_id, &account).await?.is_none() {
                        errors.push(FieldError::new(
                            format!("{field}.subject"),
                            "is not a member of this organization",
                        ));
                    }
                }
                SubjectRef::Team(id) => {
                    let team = TeamId::from_stored(id.clone());
                    if tx.team_org_in_tx(&team).await?.as_ref() != Some(&org_id) {
                        errors.push(FieldError::new(
                            format!("{field}.subject"),
                            "is not a team of this organization",
                        ));
                    }
                }
                _ => {}
            }
            let mut objects = vec![&parsed.resource];
            if let SubjectRef::Set(object, _) = &parsed.subject {
                objects.push(object);
            }
            for object in objects {
                if owners.contains_key(object) {
                    continue;
                }
                let owner = tx
                    .authz_object_org_in_tx(&app.app_id, &object.kind, &object.id)
                    .await?;
                match owner {
                    Some(owner) if owner != org_id => {
                        errors.push(FieldError::new(
                            format!("{field}.resource"),
                            "belongs to another organization",
                        ));
                        owners.insert(object.clone(), true);
                    }
                    Some(_) => {
                        owners.insert(object.clone(), true);
                    }
                    None => {
                        owners.insert(object.clone(), false);
                    }
                }
            }
        }
        if !errors.is_empty() {
            return Err(ServiceError::Validation(errors));
        }
        let edges: Vec<(ObjectRef, String, ObjectRef, String)> = parsed_writes
            .iter()
            .filter_map(|(_, parsed)| match &parsed.subject {
                SubjectRef::Set(object, name) => Some((
                    parsed.resource.clone(),
                    parsed.relation.clone(),
                    object.clone(),
                    name.clone(),
                )),
                _ => None,
            })
            .collect();
        if !edges.is_empty()
            && self
                .authz
                .read()
                .map_err(unexpected)?
                .would_cycle(app.app_id.as_str(), &edges)
        {
            return Err(ServiceError::refused(
                crate::Refusal::Conflict,
                "relationship_cycle",
                "the batch would make a set include itself",
            ));
        }
        for (object, known) in &owners {
            if !known {
                tx.insert_authz_object(
                    &AuthzObjectRow {
                        app_id: app.app_id.as_str().to_owned(),
                        object_type: object.kind.clone(),
                        object_id: object.id.clone(),
                        org_id: org_id.as_str().to_owned(),
                    },
                    now,
                )
                .await?;
            }
        }
        let mut deleted = 0u64;
        for parsed in &parsed_deletes {
            deleted += u64::from(
                tx.delete_relationship(&parsed.row(&app.app_id, &org_id))
                    .await?,
            );
        }
        let mut written = 0u64;
        for (_, parsed) in &parsed_writes {
            written += u64::from(
                tx.insert_relationship(&parsed.row(&app.app_id, &org_id), now)
                    .await?,
            );
        }
        let mut draft = AuditDraft::new(
            ActorKind::App,
            Some(app.app_id.as_str()),
            action::AUTHZ_RELATIONSHIPS_CHANGED,
        )
        .target("app", app.app_id.as_str())
        .details(json!({
            "writes": writes.len(),
            "deletes": deletes.len(),
            "written": written,
            "deleted": deleted,
        }));
        draft.org = Some(&org_id);
        self.commit_authz(tx, context, draft, now).await
    }

    /// Records the event, commits and brings the local index up to the new revision.
    async fn commit_authz(
        &self,
        mut tx: Box<dyn StoreTx>,
        context: &RequestContext,
        draft: AuditDraft<'_>,
        now: Timestamp,
    ) -> Result<String, ServiceError> {
        self.record(tx.as_mut(), context, draft, now).await?;
        let revision = tx.commit_with_revision().await?;
        let revision = self
            .authz
            .ensure(self.store.as_ref(), revision.unwrap_or(0))
            .await
            .map_err(unexpected)?;
        Ok(consistency_token(revision))
    }

    /// The organization, if it is active and enabled the app; `NotFound` otherwise.
    async fn app_org(&self, app: &AppPrincipal, org: &OrgId) -> Result<(), ServiceError> {
        self.store
            .org_app(org, &app.app_id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let row = self.store.org(org).await?.ok_or(ServiceError::NotFound)?;
        if row.status != ORG_ACTIVE {
            return Err(ServiceError::NotFound);
        }
        Ok(())
    }

    /// Deletes a container with every relationship on it or naming it, in one call.
    pub async fn delete_container(
        &self,
        app: &AppPrincipal,
        context: &RequestContext,
        resource: &str,
        now: Timestamp,
    ) -> Result<String, ServiceError> {
        let object = parse_object("resource", resource)?;
        let row = self
            .store
            .authz_object(&app.app_id, &object.kind, &object.id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let org_id = OrgId::from_stored(row.org_id);
        self.app_org(app, &org_id).await?;
        let mut tx = self.store.begin().await?;
        tx.lock_org(&org_id).await?;
        let removed = tx
            .delete_authz_object(&app.app_id, &object.kind, &object.id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let target = object.to_text();
        let mut draft = AuditDraft::new(
            ActorKind::App,
            Some(app.app_id.as_str()),
            action::AUTHZ_CONTAINER_DELETED,
        )
        .target("container", &target)
        .details(json!({ "relationships_removed": removed }));
        draft.org = Some(&org_id);
        self.commit_authz(tx, context, draft, now).await
    }

    /// May the account do `permission` to `resource`? With `explain`, why.
    pub async fn check_permission(
        &self,
        app: &AppPrincipal,
        input: &CheckInput,
        token: Option<&str>,
    ) -> Result<(CheckView, String), ServiceError> {
        let revision = self.authz_at(token).await?;
        let view = self.check_one(app, input)?;
        Ok((view, consistency_token(revision)))
    }

    fn check_one(&self, app: &AppPrincipal, input: &CheckInput) -> Result<CheckView, ServiceError> {
        let resource = parse_object("resource", &input.resource)?;
        let account = parse_account_subject(&input.subject)?;
        let index = self.authz.read().map_err(unexpected)?;
        if input.explain {
            let explanation = index
                .explain(app.app_id.as_str(), &resource, &input.permission, &account)
                .map_err(|error| schema_error("resource", error))?;
            Ok(CheckView {
                allowed: explanation.allowed,
                explanation: Some(explanation),
            })
        } else {
            let allowed = index
                .check(app.app_id.as_str(), &resource, &input.permission, &account)
                .map_err(|error| schema_error("resource", error))?;
            Ok(CheckView {
                allowed,
                explanation: None,
            })
        }
    }

    /// Several checks against one revision of the index.
    pub async fn check_bulk(
        &self,
        app: &AppPrincipal,
        items: &[CheckInput],
        token: Option<&str>,
    ) -> Result<(Vec<CheckView>, String), ServiceError> {
        if items.is_empty() || items.len() > MAX_BULK_CHECKS {
            return Err(ServiceError::field(
                "items",
                &format!("give 1 to {MAX_BULK_CHECKS} checks"),
            ));
        }
        let revision = self.authz_at(token).await?;
        let mut views = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            views.push(self.check_one(app, item).map_err(|error| {
                match error {
                    ServiceError::Validation(errors) => ServiceError::Validation(
                        errors
                            .into_iter()
                            .map(|e| FieldError::new(format!("items[{i}].{}", e.field), e.message))
                            .collect(),
                    ),
                    other => other,
                }
            })?);
        }
        Ok((views, consistency_token(revision)))
    }

    /// The IDs of the containers of `resource_type` on which the account has `permission`,
    /// by ID, after `cursor`.
    pub async fn lookup_resources(
        &self,
        app: &AppPrincipal,
        subject: &str,
        resource_type: &str,
        permission: &str,
        read: ReadAt<'_>,
    ) -> Result<(Page<String>, String), ServiceError> {
        let account = parse_account_subject(subject)?;
        let revision = self.authz_at(read.token).await?;
        let index = self.authz.read().map_err(unexpected)?;
        let ids = index
            .lookup_resources(app.app_id.as_str(), resource_type, permission, &account)
            .map_err(|error| schema_error("resource_type", error))?;
        let page = page_after(&ids, read.cursor, read.limit, |id| {
            format!("{resource_type}:{id}")
        });
        Ok((page, consistency_token(revision)))
    }

    /// The accounts that have `permission` on `resource`, by ID, after `cursor`.
    pub async fn lookup_subjects(
        &self,
        app: &AppPrincipal,
        resource: &str,
        permission: &str,
        read: ReadAt<'_>,
    ) -> Result<(Page<String>, String), ServiceError> {
        let object = parse_object("resource", resource)?;
        let revision = self.authz_at(read.token).await?;
        let index = self.authz.read().map_err(unexpected)?;
        let ids = index
            .lookup_subjects(app.app_id.as_str(), &object, permission)
            .map_err(|error| schema_error("resource", error))?;
        let page = page_after(&ids, read.cursor, read.limit, |id| format!("account:{id}"));
        Ok((page, consistency_token(revision)))
    }

    /// The operator adds a container type to an app's schema, or replaces one it added.
    /// The default types cannot be replaced.
    pub async fn put_authz_type(
        &self,
        operator: &OperatorPrincipal,
        context: &RequestContext,
        app: &str,
        name: &str,
        definition: &str,
        now: Timestamp,
    ) -> Result<AuthzTypeView, ServiceError> {
        let app_id = AppId::parse(app).ok_or(ServiceError::NotFound)?;
        self.store
            .app(&app_id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        if mamori_core::authz::schema::DEFAULT_TYPES
            .iter()
            .any(|(default, _)| *default == name)
        {
            return Err(ServiceError::field(
                "name",
                "is a type of the default schema",
            ));
        }
        let def = TypeDef::parse(name, definition)?;
        let mut tx = self.store.begin().await?;
        let existed = tx
            .upsert_authz_type(&AuthzTypeRow {
                app_id: app_id.clone(),
                name: def.name.clone(),
                definition: def.to_text(),
                created_at: now,
                updated_at: now,
            })
            .await?;
        self.record(
            tx.as_mut(),
            context,
            AuditDraft::new(
                ActorKind::Operator,
                Some(operator.token_id.as_str()),
                action::AUTHZ_TYPE_PUT,
            )
            .target("app", app_id.as_str())
            .details(json!({ "type": def.name, "replaced": existed })),
            now,
        )
        .await?;
        let revision = tx.commit_with_revision().await?;
        self.authz
            .ensure(self.store.as_ref(), revision.unwrap_or(0))
            .await
            .map_err(unexpected)?;
        Ok(AuthzTypeView {
            app_id,
            definition: def.to_text(),
            name: def.name,
            created: !existed,
        })
    }

    /// Deletes every container and relationship of an organization inside `tx`, in one
    /// transaction and one change-log revision; returns how many relationships went. The
    /// organization purge does not use it: its `relationships` step deletes in bounded
    /// batches (`PurgeStoreTx::purge_org_authz_batch`, see `crate::purge`).
    pub async fn purge_org_authz(
        &self,
        tx: &mut dyn StoreTx,
        org: &OrgId,
    ) -> Result<u64, ServiceError> {
        Ok(tx.delete_org_authz(org).await?)
    }
}

/// A page of sorted `ids` after the cursor (an ID), with the wire form of each item.
fn page_after(
    ids: &[&str],
    cursor: Option<&str>,
    limit: u32,
    wire: impl Fn(&str) -> String,
) -> Page<String> {
    let start = match cursor {
        Some(cursor) => ids.partition_point(|id| *id <= cursor),
        None => 0,
    };
    let rest = &ids[start..];
    let take = rest.len().min(limit as usize);
    let next_cursor = (rest.len() > take && take > 0).then(|| rest[take - 1].to_owned());
    Page {
        items: rest[..take].iter().map(|id| wire(id)).collect(),
        next_cursor,
    }
}
