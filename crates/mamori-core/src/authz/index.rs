//! [`Index`]: every relationship and the directory facts a check needs, in memory, interned.
//!
//! Strings (app, account, team and organization IDs, type and relation names, object IDs)
//! are interned to `u32` once, when they are written; a check hashes its inputs once to find
//! them and then follows integer adjacency maps:
//!
//! - `forward[(object, relation)]` lists the subjects of that relation (for `check` and
//!   `lookup_subjects`);
//! - `reverse[subject]` lists the `(object, relation)` pairs it appears in (for
//!   `lookup_resources`);
//! - per organization, its state, members with their roles, teams, and the apps it enabled
//!   with their mode and selected members (the rule above all tuples, ORG-5).
//!
//! The index only mirrors the store: it never decides what may be written. The service keeps
//! it in step (see `mamori-service` `authz`). Applying the same change twice is harmless, so a
//! replay of the change log after a full load converges on the store's state.

use super::schema::{ObjectRef, SubjectRef, Term, TypeDef, default_types};
use crate::org::{AppMode, OrgRole};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// How deep nested sets and permissions are followed before a path is given up.
pub const MAX_DEPTH: u32 = 24;

/// A fast hasher for the integer keys of the adjacency maps (never for strings a client
/// chose, which use the standard keyed hasher).
#[derive(Default, Clone, Copy)]
pub struct IntHasher(u64);

impl Hasher for IntHasher {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.add(u64::from(*byte));
        }
    }
    fn write_u8(&mut self, value: u8) {
        self.add(u64::from(value));
    }
    fn write_u32(&mut self, value: u32) {
        self.add(u64::from(value));
    }
    fn write_u64(&mut self, value: u64) {
        self.add(value);
    }
    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

impl IntHasher {
    #[inline]
    fn add(&mut self, value: u64) {
        self.0 = (self.0.rotate_left(5) ^ value).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;
type IntSet<K> = HashSet<K, BuildHasherDefault<IntHasher>>;

/// Strings to dense integers and back.
#[derive(Default)]
struct Interner {
    ids: HashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
}

impl Interner {
    fn get(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }

    fn intern(&mut self, text: &str) -> u32 {
        if let Some(id) = self.ids.get(text) {
            return *id;
        }
        let id = self.names.len() as u32;
        self.names.push(text.into());
        self.ids.insert(text.into(), id);
        id
    }

    fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("", |name| name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Subject {
    Account(u32),
    Team(u32),
    OrgMembers(u32),
    OrgAdmins(u32),
    Set(u32, u32),
}

struct ObjectInfo {
    app: u32,
    kind: u32,
    org: u32,
    id: Box<str>,
}

enum Node {
    Relation,
    Permission(Vec<CTerm>),
}

#[derive(Clone, Copy)]
enum CTerm {
    Name(u32),
    OrgAdmin,
    OrgMember,
}

struct CompiledType {
    nodes: IntMap<u32, Node>,
    /// For each name, the permissions of the type that include it, directly or not.
    includers: IntMap<u32, Vec<u32>>,
    /// For each permission, whether it reaches `org.admin` and whether it reaches
    /// `org.member`, directly or not.
    org_terms: IntMap<u32, (bool, bool)>,
}

#[derive(Default)]
struct CompiledSchema {
    types: IntMap<u32, CompiledType>,
    defs: BTreeMap<String, TypeDef>,
}

struct AppGate {
    mode: AppMode,
    selected: IntSet<u32>,
}

#[derive(Default)]
struct OrgDir {
    active: bool,
    members: IntMap<u32, OrgRole>,
    apps: IntMap<u32, AppGate>,
    teams: Vec<u32>,
}

#[derive(Default)]
struct TeamDir {
    org: u32,
    members: IntSet<u32>,
}

/// One organization's directory as the store has it, to replace the index's copy.
#[derive(Debug, Clone, Default)]
pub struct OrgDirectory {
    /// Not deleted, suspended or otherwise closed.
    pub active: bool,
    pub members: Vec<(String, OrgRole)>,
    /// Teams with their member accounts.
    pub teams: Vec<(String, Vec<String>)>,
    /// Enabled apps with their mode and selected members.
    pub apps: Vec<(String, AppMode, Vec<String>)>,
}

/// A name the schema of the app does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaError {
    UnknownType,
    UnknownPermission,
}

/// Why a check said what it said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub allowed: bool,
    /// In words, for a person reading it.
    pub reason: String,
    /// When allowed, the path from the container to the account, each step a string such as
    /// `folder:f1#view`, `project:p1#member`, `team:T#member` or `account:A`.
    pub path: Vec<String>,
}

#[derive(Clone, Copy)]
enum Step {
    Node(u32, u32),
    Account(u32),
    Team(u32),
    OrgMembers(u32),
    OrgAdmins(u32),
    OrgRole(u32, OrgRole),
}

/// What the rule above all tuples (ORG-5) found for one account and one container.
enum Gate {
    Open { org: u32, role: OrgRole },
    Closed(&'static str),
}

struct Ctx<'a> {
    schema: &'a CompiledSchema,
    account: u32,
    org: u32,
    role: OrgRole,
}

impl Ctx<'_> {
    fn guest(&self) -> bool {
        self.role == OrgRole::Guest
    }
}

/// The in-memory index. Not synchronized: the service wraps it in a lock.
pub struct Index {
    accounts: Interner,
    teams: Interner,
    orgs: Interner,
    apps: Interner,
    names: Interner,
    default_schema: Arc<CompiledSchema>,
    schemas: IntMap<u32, Arc<CompiledSchema>>,
    objects: Vec<ObjectInfo>,
    object_ids: HashMap<(u32, u32), HashMap<Box<str>, u32>>,
    forward: IntMap<(u32, u32), Vec<Subject>>,
    reverse: IntMap<Subject, Vec<(u32, u32)>>,
    org_dirs: Vec<OrgDir>,
    team_dirs: Vec<TeamDir>,
    account_orgs: IntMap<u32, Vec<u32>>,
    org_objects: IntMap<u32, Vec<u32>>,
    n_relationships: usize,
}

impl Default for Index {
    fn default() -> Self {
        Index::new()
    }
}

impl Index {
    /// An empty index with the default schema for every app.
    pub fn new() -> Index {
        let mut index = Index {
            accounts: Interner::default(),
            teams: Interner::default(),
            orgs: Interner::default(),
            apps: Interner::default(),
            names: Interner::default(),
            default_schema: Arc::new(CompiledSchema::default()),
            schemas: IntMap::default(),
            objects: Vec::new(),
            object_ids: HashMap::new(),
            forward: IntMap::default(),
            reverse: IntMap::default(),
            org_dirs: Vec::new(),
            team_dirs: Vec::new(),
            account_orgs: IntMap::default(),
            org_objects: IntMap::default(),
            n_relationships: 0,
        };
        let defaults = default_types();
        index.default_schema = Arc::new(index.compile(&defaults));
        index
    }

    /// How many relationships the index holds.
    pub fn len(&self) -> usize {
        self.n_relationships
    }

    pub fn is_empty(&self) -> bool {
        self.n_relationships == 0
    }

    /// How many containers the index knows.
    pub fn n_objects(&self) -> usize {
        self.objects.len()
    }

    fn compile(&mut self, types: &[TypeDef]) -> CompiledSchema {
        let mut schema = CompiledSchema::default();
        for def in types {
            let kind = self.names.intern(&def.name);
            let mut nodes = IntMap::default();
            for relation in &def.relations {
                nodes.insert(self.names.intern(relation), Node::Relation);
            }
            for (permission, terms) in &def.permissions {
                let terms = terms
                    .iter()
                    .map(|term| match term {
                        Term::Name(name) => CTerm::Name(self.names.intern(name)),
                        Term::OrgAdmin => CTerm::OrgAdmin,
                        Term::OrgMember => CTerm::OrgMember,
                    })
                    .collect();
                nodes.insert(self.names.intern(permission), Node::Permission(terms));
            }
            let mut includers: IntMap<u32, Vec<u32>> = IntMap::default();
            let mut org_terms = IntMap::default();
            let permissions: Vec<u32> = nodes
                .iter()
                .filter(|(_, node)| matches!(node, Node::Permission(_)))
                .map(|(name, _)| *name)
                .collect();
            for permission in permissions {
                let mut stack = vec![permission];
                let mut seen = IntSet::default();
                let (mut reaches_admin, mut reaches_member) = (false, false);
                while let Some(name) = stack.pop() {
                    if let Some(Node::Permission(terms)) = nodes.get(&name) {
                        for term in terms {
                            match term {
                                CTerm::Name(inner) => {
                                    if seen.insert(*inner) {
                                        includers.entry(*inner).or_default().push(permission);
                                        stack.push(*inner);
                                    }
                                }
                                CTerm::OrgAdmin => reaches_admin = true,
                                CTerm::OrgMember => reaches_member = true,
                            }
                        }
                    }
                }
                org_terms.insert(permission, (reaches_admin, reaches_member));
            }
            schema.types.insert(
                kind,
                CompiledType {
                    nodes,
                    includers,
                    org_terms,
                },
            );
            schema.defs.insert(def.name.clone(), def.clone());
        }
        schema
    }

    /// Sets the types an app added to the default schema (replacing what it had).
    pub fn set_app_types(&mut self, app: &str, types: &[TypeDef]) {
        let app = self.apps.intern(app);
        let mut all: BTreeMap<String, TypeDef> = default_types()
            .into_iter()
            .map(|def| (def.name.clone(), def))
            .collect();
        for def in types {
            all.entry(def.name.clone()).or_insert_with(|| def.clone());
        }
        let all: Vec<TypeDef> = all.into_values().collect();
        let compiled = Arc::new(self.compile(&all));
        self.schemas.insert(app, compiled);
    }

    fn schema_of(&self, app: Option<u32>) -> &CompiledSchema {
        app.and_then(|app| self.schemas.get(&app))
            .unwrap_or(&self.default_schema)
    }

    /// The definition of `kind` in the app's schema (default types plus the app's own).
    pub fn type_def(&self, app: &str, kind: &str) -> Option<&TypeDef> {
        self.schema_of(self.apps.get(app)).defs.get(kind)
    }

    /// The organization a container of the app belongs to, when the index knows it.
    pub fn object_org(&self, app: &str, object: &ObjectRef) -> Option<&str> {
        let id = self.object(app, object)?;
        let info = &self.objects[id as usize];
        Some(self.orgs.name(info.org))
    }

    fn object(&self, app: &str, object: &ObjectRef) -> Option<u32> {
        let app = self.apps.get(app)?;
        let kind = self.names.get(&object.kind)?;
        self.object_ids
            .get(&(app, kind))?
            .get(object.id.as_str())
            .copied()
    }

    /// Registers a container of `app` in `org` (nothing when it is known already).
    pub fn register_object(&mut self, app: &str, object: &ObjectRef, org: &str) -> u32 {
        let app = self.apps.intern(app);
        let kind = self.names.intern(&object.kind);
        let org = self.orgs.intern(org);
        self.register(app, kind, &object.id, org)
    }

    fn register(&mut self, app: u32, kind: u32, id: &str, org: u32) -> u32 {
        let ids = self.object_ids.entry((app, kind)).or_default();
        if let Some(existing) = ids.get(id) {
            return *existing;
        }
        let object = self.objects.len() as u32;
        ids.insert(id.into(), object);
        self.objects.push(ObjectInfo {
            app,
            kind,
            org,
            id: id.into(),
        });
        self.org_objects.entry(org).or_default().push(object);
        object
    }

    fn subject_of(&mut self, app: u32, org: u32, subject: &SubjectRef) -> Subject {
        match subject {
            SubjectRef::Account(id) => Subject::Account(self.accounts.intern(id)),
            SubjectRef::Team(id) => Subject::Team(self.intern_team(id)),
            SubjectRef::OrgMembers(id) => Subject::OrgMembers(self.orgs.intern(id)),
            SubjectRef::OrgAdmins(id) => Subject::OrgAdmins(self.orgs.intern(id)),
            SubjectRef::Set(object, relation) => {
                let kind = self.names.intern(&object.kind);
                let object = self.register(app, kind, &object.id, org);
                Subject::Set(object, self.names.intern(relation))
            }
        }
    }

    fn intern_team(&mut self, id: &str) -> u32 {
        let team = self.teams.intern(id);
        if self.team_dirs.len() <= team as usize {
            self.team_dirs
                .resize_with(team as usize + 1, TeamDir::default);
        }
        team
    }

    /// Adds `resource#relation@subject` of `app` in `org`; false when it was there.
    pub fn insert(
        &mut self,
        app: &str,
        org: &str,
        resource: &ObjectRef,
        relation: &str,
        subject: &SubjectRef,
    ) -> bool {
        let app_id = self.apps.intern(app);
        let org_id = self.orgs.intern(org);
        let kind = self.names.intern(&resource.kind);
        let object = self.register(app_id, kind, &resource.id, org_id);
        let relation = self.names.intern(relation);
        let subject = self.subject_of(app_id, org_id, subject);
        let subjects = self.forward.entry((object, relation)).or_default();
        if subjects.contains(&subject) {
            return false;
        }
        subjects.push(subject);
        self.reverse
            .entry(subject)
            .or_default()
            .push((object, relation));
        self.n_relationships += 1;
        true
    }

    /// Removes `resource#relation@subject` of `app`; false when it was not there.
    pub fn remove(
        &mut self,
        app: &str,
        resource: &ObjectRef,
        relation: &str,
        subject: &SubjectRef,
    ) -> bool {
        let Some(object) = self.object(app, resource) else {
            return false;
        };
        let Some(relation) = self.names.get(relation) else {
            return false;
        };
        let subject = match subject {
            SubjectRef::Account(id) => self.accounts.get(id).map(Subject::Account),
            SubjectRef::Team(id) => self.teams.get(id).map(Subject::Team),
            SubjectRef::OrgMembers(id) => self.orgs.get(id).map(Subject::OrgMembers),
            SubjectRef::OrgAdmins(id) => self.orgs.get(id).map(Subject::OrgAdmins),
            SubjectRef::Set(set_object, set_relation) => self
                .object(app, set_object)
                .zip(self.names.get(set_relation))
                .map(|(set_object, set_relation)| Subject::Set(set_object, set_relation)),
        };
        match subject {
            Some(subject) => self.unlink(object, relation, subject),
            None => false,
        }
    }

    fn unlink(&mut self, object: u32, relation: u32, subject: Subject) -> bool {
        let Some(subjects) = self.forward.get_mut(&(object, relation)) else {
            return false;
        };
        let Some(at) = subjects.iter().position(|s| *s == subject) else {
            return false;
        };
        subjects.swap_remove(at);
        if subjects.is_empty() {
            self.forward.remove(&(object, relation));
        }
        if let Some(pairs) = self.reverse.get_mut(&subject) {
            pairs.retain(|pair| *pair != (object, relation));
            if pairs.is_empty() {
                self.reverse.remove(&subject);
            }
        }
        self.n_relationships -= 1;
        true
    }

    /// Forgets a container: every relationship on it and every one naming it as a set goes,
    /// and so does its organization (a container written again later may be another
    /// organization's). Returns how many relationships went.
    pub fn remove_object(&mut self, app: &str, resource: &ObjectRef) -> usize {
        let Some(object) = self.object(app, resource) else {
            return 0;
        };
        let (app_id, kind, org) = {
            let info = &self.objects[object as usize];
            (info.app, info.kind, info.org)
        };
        if let Some(ids) = self.object_ids.get_mut(&(app_id, kind)) {
            ids.remove(resource.id.as_str());
        }
        if let Some(objects) = self.org_objects.get_mut(&org) {
            objects.retain(|o| *o != object);
        }
        let mut removed = 0;
        let own: Vec<(u32, u32, Subject)> = self
            .forward
            .iter()
            .filter(|((o, _), _)| *o == object)
            .flat_map(|((o, r), subjects)| subjects.iter().map(move |s| (*o, *r, *s)))
            .collect();
        for (o, r, s) in own {
            removed += usize::from(self.unlink(o, r, s));
        }
        let as_set: Vec<Subject> = self
            .reverse
            .keys()
            .filter(|s| matches!(s, Subject::Set(o, _) if *o == object))
            .copied()
            .collect();
        for subject in as_set {
            let pairs = self.reverse.get(&subject).cloned().unwrap_or_default();
            for (o, r) in pairs {
                removed += usize::from(self.unlink(o, r, subject));
            }
        }
        removed
    }

    /// Replaces an organization's directory: state, members, teams and enabled apps.
    pub fn set_org(&mut self, org: &str, directory: &OrgDirectory) {
        let org = self.orgs.intern(org);
        if self.org_dirs.len() <= org as usize {
            self.org_dirs.resize_with(org as usize + 1, OrgDir::default);
        }
        let old = std::mem::take(&mut self.org_dirs[org as usize]);
        for account in old.members.keys() {
            if let Some(orgs) = self.account_orgs.get_mut(account) {
                orgs.retain(|o| *o != org);
            }
        }
        for team in old.teams {
            if let Some(dir) = self.team_dirs.get_mut(team as usize) {
                dir.members.clear();
            }
        }
        let mut dir = OrgDir {
            active: directory.active,
            ..OrgDir::default()
        };
        for (account, role) in &directory.members {
            let account = self.accounts.intern(account);
            dir.members.insert(account, *role);
            self.account_orgs.entry(account).or_default().push(org);
        }
        for (team, members) in &directory.teams {
            let team = self.intern_team(team);
            let members = members
                .iter()
                .map(|account| self.accounts.intern(account))
                .collect();
            self.team_dirs[team as usize] = TeamDir { org, members };
            dir.teams.push(team);
        }
        for (app, mode, selected) in &directory.apps {
            let app = self.apps.intern(app);
            let selected = selected
                .iter()
                .map(|account| self.accounts.intern(account))
                .collect();
            dir.apps.insert(
                app,
                AppGate {
                    mode: *mode,
                    selected,
                },
            );
        }
        self.org_dirs[org as usize] = dir;
    }

    /// ORG-5: the organization is active, the account a member, and an active member of the
    /// app. Checked before any relationship.
    fn gate(&self, app: u32, org: u32, account: u32) -> Gate {
        let Some(dir) = self.org_dirs.get(org as usize) else {
            return Gate::Closed("the container's organization is not active");
        };
        if !dir.active {
            return Gate::Closed("the container's organization is not active");
        }
        let Some(role) = dir.members.get(&account) else {
            return Gate::Closed("the account is not a member of the container's organization");
        };
        let Some(gate) = dir.apps.get(&app) else {
            return Gate::Closed("the organization has not enabled the app");
        };
        if gate.mode == AppMode::Selected && !gate.selected.contains(&account) {
            return Gate::Closed("the account is not an active member of the app");
        }
        Gate::Open { org, role: *role }
    }

    fn permission_of(
        &self,
        schema: &CompiledSchema,
        kind: &str,
        permission: &str,
    ) -> Result<(u32, u32), SchemaError> {
        let kind = self.names.get(kind).ok_or(SchemaError::UnknownType)?;
        let compiled = schema.types.get(&kind).ok_or(SchemaError::UnknownType)?;
        let name = self
            .names
            .get(permission)
            .filter(|name| compiled.nodes.contains_key(name))
            .ok_or(SchemaError::UnknownPermission)?;
        Ok((kind, name))
    }

    /// May `account` do `permission` to `resource` of `app`? Unknown containers and
    /// accounts are simply not allowed; unknown types and permissions are errors.
    pub fn check(
        &self,
        app: &str,
        resource: &ObjectRef,
        permission: &str,
        account: &str,
    ) -> Result<bool, SchemaError> {
        let app_id = self.apps.get(app);
        let schema = self.schema_of(app_id);
        let (_, name) = self.permission_of(schema, &resource.kind, permission)?;
        let (Some(app_id), Some(account)) = (app_id, self.accounts.get(account)) else {
            return Ok(false);
        };
        let Some(object) = self.object(app, resource) else {
            return Ok(false);
        };
        Ok(self.check_ids(schema, app_id, object, name, account, &mut Vec::new()))
    }

    fn check_ids(
        &self,
        schema: &CompiledSchema,
        app: u32,
        object: u32,
        name: u32,
        account: u32,
        trace: &mut Vec<Step>,
    ) -> bool {
        let info = &self.objects[object as usize];
        match self.gate(app, info.org, account) {
            Gate::Closed(_) => false,
            Gate::Open { org, role } => {
                let ctx = Ctx {
                    schema,
                    account,
                    org,
                    role,
                };
                self.walk(&ctx, object, name, 0, trace)
            }
        }
    }

    /// As [`Index::check`], saying why: the path that granted access, or the reason none did.
    pub fn explain(
        &self,
        app: &str,
        resource: &ObjectRef,
        permission: &str,
        account: &str,
    ) -> Result<Explanation, SchemaError> {
        let app_id = self.apps.get(app);
        let schema = self.schema_of(app_id);
        let (_, name) = self.permission_of(schema, &resource.kind, permission)?;
        let denied = |reason: &str| Explanation {
            allowed: false,
            reason: reason.to_owned(),
            path: Vec::new(),
        };
        let Some(app_id) = app_id else {
            return Ok(denied("the app has written no relationships"));
        };
        let Some(object) = self.object(app, resource) else {
            return Ok(denied("the container has no relationships"));
        };
        let Some(account) = self.accounts.get(account) else {
            return Ok(denied(
                "the account is not a member of the container's organization",
            ));
        };
        let info = &self.objects[object as usize];
        let (org, role) = match self.gate(app_id, info.org, account) {
            Gate::Closed(reason) => return Ok(denied(reason)),
            Gate::Open { org, role } => (org, role),
        };
        let ctx = Ctx {
            schema,
            account,
            org,
            role,
        };
        let mut trace = Vec::new();
        if self.walk(&ctx, object, name, 0, &mut trace) {
            return Ok(Explanation {
                allowed: true,
                reason: String::from("granted"),
                path: trace.iter().map(|step| self.step_text(*step)).collect(),
            });
        }
        Ok(denied(if ctx.guest() {
            "guests get only what is granted to them directly, and no direct grant gives this"
        } else {
            "no relationship gives this"
        }))
    }

    fn step_text(&self, step: Step) -> String {
        match step {
            Step::Node(object, name) => {
                let info = &self.objects[object as usize];
                format!(
                    "{}:{}#{}",
                    self.names.name(info.kind),
                    info.id,
                    self.names.name(name)
                )
            }
            Step::Account(account) => format!("account:{}", self.accounts.name(account)),
            Step::Team(team) => format!("team:{}#member", self.teams.name(team)),
            Step::OrgMembers(org) => format!("org:{}#member", self.orgs.name(org)),
            Step::OrgAdmins(org) => format!("org:{}#admin", self.orgs.name(org)),
            Step::OrgRole(org, role) => format!("org:{}#{}", self.orgs.name(org), role.as_str()),
        }
    }

    fn walk(
        &self,
        ctx: &Ctx<'_>,
        object: u32,
        name: u32,
        depth: u32,
        trace: &mut Vec<Step>,
    ) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        let info = &self.objects[object as usize];
        let Some(node) = ctx
            .schema
            .types
            .get(&info.kind)
            .and_then(|compiled| compiled.nodes.get(&name))
        else {
            return false;
        };
        trace.push(Step::Node(object, name));
        let found = match node {
            Node::Relation => self.forward.get(&(object, name)).is_some_and(|subjects| {
                subjects
                    .iter()
                    .any(|subject| self.matches(ctx, *subject, depth, trace))
            }),
            Node::Permission(terms) => terms.iter().any(|term| match term {
                CTerm::Name(inner) => self.walk(ctx, object, *inner, depth + 1, trace),
                CTerm::OrgAdmin if ctx.role == OrgRole::Admin => {
                    trace.push(Step::OrgRole(ctx.org, OrgRole::Admin));
                    true
                }
                CTerm::OrgMember if !ctx.guest() => {
                    trace.push(Step::OrgRole(ctx.org, ctx.role));
                    true
                }
                CTerm::OrgAdmin | CTerm::OrgMember => false,
            }),
        };
        if !found {
            trace.pop();
        }
        found
    }

    fn matches(&self, ctx: &Ctx<'_>, subject: Subject, depth: u32, trace: &mut Vec<Step>) -> bool {
        let step = match subject {
            Subject::Account(account) if account == ctx.account => Step::Account(account),
            Subject::Account(_) => return false,
            // Guests: only what names them directly.
            _ if ctx.guest() => return false,
            Subject::Team(team) => {
                let Some(dir) = self.team_dirs.get(team as usize) else {
                    return false;
                };
                if dir.org != ctx.org || !dir.members.contains(&ctx.account) {
                    return false;
                }
                Step::Team(team)
            }
            Subject::OrgMembers(org) if org == ctx.org => Step::OrgMembers(org),
            Subject::OrgAdmins(org) if org == ctx.org && ctx.role == OrgRole::Admin => {
                Step::OrgAdmins(org)
            }
            Subject::OrgMembers(_) | Subject::OrgAdmins(_) => return false,
            Subject::Set(object, name) => {
                let info = &self.objects[object as usize];
                return info.org == ctx.org && self.walk(ctx, object, name, depth + 1, trace);
            }
        };
        trace.push(step);
        true
    }

    /// The IDs of the app's containers of `kind` on which `account` has `permission`, sorted.
    pub fn lookup_resources(
        &self,
        app: &str,
        kind: &str,
        permission: &str,
        account: &str,
    ) -> Result<Vec<&str>, SchemaError> {
        let app_id = self.apps.get(app);
        let schema = self.schema_of(app_id);
        let (kind_id, name) = self.permission_of(schema, kind, permission)?;
        let (Some(app_id), Some(account)) = (app_id, self.accounts.get(account)) else {
            return Ok(Vec::new());
        };
        let orgs: &[u32] = self
            .account_orgs
            .get(&account)
            .map_or(&[][..], Vec::as_slice);
        // Seeds: the account, its teams and its organizations; and every container where an
        // organization role alone gives a permission (as a set, it may give more elsewhere).
        let mut queue = vec![Subject::Account(account)];
        let mut candidates: IntSet<u32> = IntSet::default();
        for org in orgs {
            let dir = &self.org_dirs[*org as usize];
            let role = match dir.members.get(&account) {
                Some(OrgRole::Admin) => {
                    queue.push(Subject::OrgMembers(*org));
                    queue.push(Subject::OrgAdmins(*org));
                    OrgRole::Admin
                }
                Some(OrgRole::Member) => {
                    queue.push(Subject::OrgMembers(*org));
                    OrgRole::Member
                }
                _ => continue,
            };
            for team in &dir.teams {
                if self.team_dirs[*team as usize].members.contains(&account) {
                    queue.push(Subject::Team(*team));
                }
            }
            for object in self.org_objects.get(org).into_iter().flatten() {
                let info = &self.objects[*object as usize];
                if info.app != app_id {
                    continue;
                }
                let Some(compiled) = schema.types.get(&info.kind) else {
                    continue;
                };
                for (permission, (admin, member)) in &compiled.org_terms {
                    if *member || (*admin && role == OrgRole::Admin) {
                        candidates.insert(*object);
                        queue.push(Subject::Set(*object, *permission));
                    }
                }
            }
        }
        let mut seen: IntSet<Subject> = queue.iter().copied().collect();
        while let Some(subject) = queue.pop() {
            let Some(pairs) = self.reverse.get(&subject) else {
                continue;
            };
            for (object, relation) in pairs {
                let info = &self.objects[*object as usize];
                if info.app != app_id {
                    continue;
                }
                candidates.insert(*object);
                let mut push = |name: u32| {
                    let set = Subject::Set(*object, name);
                    if seen.insert(set) {
                        queue.push(set);
                    }
                };
                push(*relation);
                if let Some(compiled) = schema.types.get(&info.kind)
                    && let Some(includers) = compiled.includers.get(relation)
                {
                    includers.iter().for_each(|name| push(*name));
                }
            }
        }
        let mut trace = Vec::new();
        let mut found: Vec<&str> = candidates
            .into_iter()
            .filter(|object| {
                let info = &self.objects[*object as usize];
                info.app == app_id
                    && info.kind == kind_id
                    && self.check_ids(schema, app_id, *object, name, account, &mut trace)
            })
            .map(|object| &*self.objects[object as usize].id)
            .collect();
        found.sort_unstable();
        Ok(found)
    }

    /// The accounts that have `permission` on `resource` of `app`, sorted by ID.
    pub fn lookup_subjects(
        &self,
        app: &str,
        resource: &ObjectRef,
        permission: &str,
    ) -> Result<Vec<&str>, SchemaError> {
        let app_id = self.apps.get(app);
        let schema = self.schema_of(app_id);
        let (_, name) = self.permission_of(schema, &resource.kind, permission)?;
        let (Some(app_id), Some(object)) = (app_id, self.object(app, resource)) else {
            return Ok(Vec::new());
        };
        let mut accounts = IntSet::default();
        let mut seen = IntSet::default();
        self.expand(schema, object, name, 0, &mut accounts, &mut seen);
        let mut trace = Vec::new();
        let mut found: Vec<&str> = accounts
            .into_iter()
            .filter(|account| self.check_ids(schema, app_id, object, name, *account, &mut trace))
            .map(|account| self.accounts.name(account))
            .collect();
        found.sort_unstable();
        Ok(found)
    }

    /// Every account that may reach `object#name`, before the rule above all tuples.
    fn expand(
        &self,
        schema: &CompiledSchema,
        object: u32,
        name: u32,
        depth: u32,
        out: &mut IntSet<u32>,
        seen: &mut IntSet<(u32, u32)>,
    ) {
        if depth > MAX_DEPTH || !seen.insert((object, name)) {
            return;
        }
        let info = &self.objects[object as usize];
        let org = self.org_dirs.get(info.org as usize);
        let Some(node) = schema
            .types
            .get(&info.kind)
            .and_then(|compiled| compiled.nodes.get(&name))
        else {
            return;
        };
        let members = |admins_only: bool, out: &mut IntSet<u32>| {
            if let Some(dir) = org {
                out.extend(
                    dir.members
                        .iter()
                        .filter(|(_, role)| {
                            **role == OrgRole::Admin || (!admins_only && **role == OrgRole::Member)
                        })
                        .map(|(account, _)| *account),
                );
            }
        };
        match node {
            Node::Relation => {
                for subject in self.forward.get(&(object, name)).into_iter().flatten() {
                    match subject {
                        Subject::Account(account) => {
                            out.insert(*account);
                        }
                        Subject::Team(team) => {
                            if let Some(dir) = self.team_dirs.get(*team as usize) {
                                out.extend(dir.members.iter().copied());
                            }
                        }
                        Subject::OrgMembers(_) => members(false, out),
                        Subject::OrgAdmins(_) => members(true, out),
                        Subject::Set(inner, inner_name) => {
                            self.expand(schema, *inner, *inner_name, depth + 1, out, seen);
                        }
                    }
                }
            }
            Node::Permission(terms) => {
                for term in terms {
                    match term {
                        CTerm::Name(inner) => {
                            self.expand(schema, object, *inner, depth + 1, out, seen);
                        }
                        CTerm::OrgAdmin => members(true, out),
                        CTerm::OrgMember => members(false, out),
                    }
                }
            }
        }
    }

    /// Whether writing the nested sets `edges` (`resource#relation@set#set_relation`, in the
    /// app) would close a cycle with what the index holds and with each other.
    pub fn would_cycle(&self, app: &str, edges: &[(ObjectRef, String, ObjectRef, String)]) -> bool {
        type Key = (String, String, String);
        let key = |object: &ObjectRef, name: &str| -> Key {
            (object.kind.clone(), object.id.clone(), name.to_owned())
        };
        let mut extra: HashMap<Key, Vec<Key>> = HashMap::new();
        for (resource, relation, set, set_relation) in edges {
            extra
                .entry(key(resource, relation))
                .or_default()
                .push(key(set, set_relation));
        }
        let schema = self.schema_of(self.apps.get(app));
        for (resource, relation, set, set_relation) in edges {
            let target = key(resource, relation);
            let mut stack = vec![key(set, set_relation)];
            let mut seen: HashSet<Key> = HashSet::new();
            while let Some(node) = stack.pop() {
                if node == target {
                    return true;
                }
                if !seen.insert(node.clone()) || seen.len() > 100_000 {
                    continue;
                }
                let (kind, id, name) = &node;
                if let Some(Node::Permission(terms)) = self
                    .names
                    .get(kind)
                    .and_then(|kind| schema.types.get(&kind))
                    .zip(self.names.get(name))
                    .and_then(|(compiled, name)| compiled.nodes.get(&name))
                {
                    for term in terms {
                        if let CTerm::Name(inner) = term {
                            stack.push((kind.clone(), id.clone(), self.names.name(*inner).into()));
                        }
                    }
                }
                stack.extend(extra.get(&node).into_iter().flatten().cloned());
                let object = ObjectRef {
                    kind: kind.clone(),
                    id: id.clone(),
                };
                if let (Some(object), Some(name)) =
                    (self.object(app, &object), self.names.get(name))
                {
                    for subject in self.forward.get(&(object, name)).into_iter().flatten() {
                        if let Subject::Set(inner, inner_name) = subject {
                            let info = &self.objects[*inner as usize];
                            stack.push((
                                self.names.name(info.kind).to_owned(),
                                info.id.to_string(),
                                self.names.name(*inner_name).to_owned(),
                            ));
                        }
                    }
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(text: &str) -> ObjectRef {
        ObjectRef::parse(text).unwrap()
    }

    fn subject(text: &str) -> SubjectRef {
        SubjectRef::parse(text).unwrap()
    }

    fn org(members: &[(&str, OrgRole)], teams: &[(&str, &[&str])], mode: AppMode) -> OrgDirectory {
        OrgDirectory {
            active: true,
            members: members.iter().map(|(a, r)| ((*a).to_owned(), *r)).collect(),
            teams: teams
                .iter()
                .map(|(t, m)| ((*t).to_owned(), m.iter().map(|a| (*a).to_owned()).collect()))
                .collect(),
            apps: vec![(String::from("app1"), mode, vec![String::from("ann")])],
        }
    }

    #[test]
    fn the_rule_above_all_tuples_and_guests() {
        let mut index = Index::new();
        index.set_org(
            "o1",
            &org(
                &[
                    ("ann", OrgRole::Admin),
                    ("bob", OrgRole::Member),
                    ("gus", OrgRole::Guest),
                ],
                &[("t1", &["bob", "gus"])],
                AppMode::All,
            ),
        );
        let folder = object("folder:f1");
        index.insert("app1", "o1", &folder, "viewer", &subject("team:t1#member"));
        assert!(index.check("app1", &folder, "view", "bob").unwrap());
        // A guest in the team gets nothing through the team.
        assert!(!index.check("app1", &folder, "view", "gus").unwrap());
        index.insert("app1", "o1", &folder, "editor", &subject("account:gus"));
        assert!(index.check("app1", &folder, "view", "gus").unwrap());
        assert!(!index.check("app1", &folder, "manage", "bob").unwrap());
        assert!(index.check("app1", &folder, "manage", "ann").unwrap());
        // Another app sees another namespace.
        assert!(!index.check("app2", &folder, "view", "bob").unwrap());
        // Selected mode: only ann is selected.
        index.set_org(
            "o1",
            &org(
                &[("ann", OrgRole::Admin), ("bob", OrgRole::Member)],
                &[("t1", &["bob"])],
                AppMode::Selected,
            ),
        );
        let why = index.explain("app1", &folder, "view", "bob").unwrap();
        assert!(!why.allowed);
        assert_eq!(why.reason, "the account is not an active member of the app");
        assert_eq!(
            index.check("app1", &folder, "nope", "bob"),
            Err(SchemaError::UnknownPermission)
        );
    }

    #[test]
    fn nested_sets_lookups_and_cycles() {
        let mut index = Index::new();
        index.set_org(
            "o1",
            &org(
                &[("ann", OrgRole::Admin), ("bob", OrgRole::Member)],
                &[],
                AppMode::All,
            ),
        );
        let project = object("project:p1");
        let folder = object("folder:f1");
        index.insert("app1", "o1", &project, "member", &subject("account:bob"));
        index.insert("app1", "o1", &folder, "viewer", &subject("project:p1#view"));
        let why = index.explain("app1", &folder, "view", "bob").unwrap();
        assert!(why.allowed);
        assert_eq!(
            why.path,
            [
                "folder:f1#view",
                "folder:f1#viewer",
                "project:p1#view",
                "project:p1#member",
                "account:bob"
            ]
        );
        assert_eq!(
            index
                .lookup_resources("app1", "folder", "view", "bob")
                .unwrap(),
            ["f1"]
        );
        assert_eq!(
            index.lookup_subjects("app1", &folder, "view").unwrap(),
            ["bob"]
        );
        assert_eq!(
            index
                .lookup_resources("app1", "project", "manage", "ann")
                .unwrap(),
            ["p1"]
        );
        let edge = (
            project.clone(),
            String::from("member"),
            folder.clone(),
            String::from("viewer"),
        );
        assert!(index.would_cycle("app1", &[edge]));
        assert_eq!(index.remove_object("app1", &project), 2);
        assert!(!index.check("app1", &folder, "view", "bob").unwrap());
        assert!(index.is_empty());
    }
}
