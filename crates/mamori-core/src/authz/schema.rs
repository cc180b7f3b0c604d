//! The authorization schema as data, and the textual forms of objects and subjects.
//!
//! A schema is a set of container types. Each type has **relations** (what a relationship can
//! name: `admin`, `viewer`, ...) and **permissions** (what a check asks: `view`, `manage`,
//! ...). A permission is a union of terms: another relation or permission of the same type,
//! `org.admin` (an administrator of the container's organization) or `org.member` (an
//! administrator or member of it, not a guest).
//!
//! A type is written in a small text form, one declaration a line:
//!
//! ```text
//! relation owner
//! relation viewer
//! permission view = viewer | owner | org.admin
//! ```
//!
//! Objects are written `type:id` and subjects `account:ID`, `team:ID#member`,
//! `org:ID#member`, `org:ID#admin` or `type:id#name` (everyone who has `name` on that
//! container of the same app).

use crate::error::FieldError;
use std::collections::{BTreeMap, BTreeSet};

/// Longest type, relation or permission name.
pub const MAX_NAME_LEN: usize = 63;
/// Longest object ID.
pub const MAX_OBJECT_ID_LEN: usize = 128;
/// Most relations plus permissions in one type.
pub const MAX_NAMES_PER_TYPE: usize = 64;
/// Type names the directory owns; apps cannot declare them.
pub const RESERVED_TYPES: [&str; 4] = ["account", "team", "org", "app"];

/// One term of a permission's union.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Term {
    /// A relation or another permission of the same type.
    Name(String),
    /// An administrator of the container's organization.
    OrgAdmin,
    /// An administrator or member (not a guest) of the container's organization.
    OrgMember,
}

impl Term {
    fn as_text(&self) -> &str {
        match self {
            Term::Name(name) => name,
            Term::OrgAdmin => "org.admin",
            Term::OrgMember => "org.member",
        }
    }
}

/// One container type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeDef {
    pub name: String,
    pub relations: BTreeSet<String>,
    pub permissions: BTreeMap<String, Vec<Term>>,
}

/// Whether `text` is a valid type, relation or permission name: a lowercase letter, then
/// lowercase letters, digits or `_`.
pub fn is_valid_name(text: &str) -> bool {
    let mut bytes = text.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && text.len() <= MAX_NAME_LEN
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Whether `text` is a valid object ID: 1 to 128 of `A-Z a-z 0-9 _ - . @ =`.
pub fn is_valid_object_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_OBJECT_ID_LEN
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@' | b'='))
}

impl TypeDef {
    /// Parses the text form and checks it: valid unique names, every term known, no
    /// permission that includes itself.
    pub fn parse(name: &str, text: &str) -> Result<TypeDef, FieldError> {
        let bad = |message: String| FieldError::new("definition", message);
        if !is_valid_name(name) || RESERVED_TYPES.contains(&name) {
            return Err(FieldError::new(
                "name",
                "must be a lowercase name (a-z, 0-9, _) that is not account, team, org or app",
            ));
        }
        let mut def = TypeDef {
            name: name.to_owned(),
            relations: BTreeSet::new(),
            permissions: BTreeMap::new(),
        };
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |message: &str| bad(format!("line {}: {message}", number + 1));
            if let Some(rest) = line.strip_prefix("relation ") {
                let relation = rest.trim();
                if !is_valid_name(relation) {
                    return Err(at("a relation name is a-z, 0-9 and _"));
                }
                if def.has_name(relation) {
                    return Err(at("the name is declared twice"));
                }
                def.relations.insert(relation.to_owned());
            } else if let Some(rest) = line.strip_prefix("permission ") {
                let Some((permission, expression)) = rest.split_once('=') else {
                    return Err(at("write: permission NAME = TERM | TERM"));
                };
                let permission = permission.trim();
                if !is_valid_name(permission) {
                    return Err(at("a permission name is a-z, 0-9 and _"));
                }
                if def.has_name(permission) {
                    return Err(at("the name is declared twice"));
                }
                let mut terms = Vec::new();
                for term in expression.split('|') {
                    let term = match term.trim() {
                        "org.admin" => Term::OrgAdmin,
                        "org.member" => Term::OrgMember,
                        other if is_valid_name(other) => Term::Name(other.to_owned()),
                        _ => return Err(at("a term is a name, org.admin or org.member")),
                    };
                    if !terms.contains(&term) {
                        terms.push(term);
                    }
                }
                def.permissions.insert(permission.to_owned(), terms);
            } else {
                return Err(at("a line starts with relation or permission"));
            }
        }
        if def.relations.len() + def.permissions.len() > MAX_NAMES_PER_TYPE {
            return Err(bad(format!(
                "at most {MAX_NAMES_PER_TYPE} relations and permissions"
            )));
        }
        if def.relations.is_empty() {
            return Err(bad(String::from("a type needs at least one relation")));
        }
        for (permission, terms) in &def.permissions {
            for term in terms {
                if let Term::Name(name) = term
                    && !def.has_name(name)
                {
                    return Err(bad(format!("{permission} names unknown {name}")));
                }
            }
            if def.reaches(permission, permission, &mut BTreeSet::new()) {
                return Err(bad(format!("{permission} includes itself")));
            }
        }
        Ok(def)
    }

    /// The text form: relations first, then permissions, in name order.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        for relation in &self.relations {
            text.push_str("relation ");
            text.push_str(relation);
            text.push('\n');
        }
        for (permission, terms) in &self.permissions {
            text.push_str("permission ");
            text.push_str(permission);
            text.push_str(" =");
            for (i, term) in terms.iter().enumerate() {
                text.push_str(if i == 0 { " " } else { " | " });
                text.push_str(term.as_text());
            }
            text.push('\n');
        }
        text
    }

    pub fn has_name(&self, name: &str) -> bool {
        self.relations.contains(name) || self.permissions.contains_key(name)
    }

    pub fn is_relation(&self, name: &str) -> bool {
        self.relations.contains(name)
    }

    /// Whether expanding `from` reaches `target` through permission terms.
    fn reaches(&self, from: &str, target: &str, seen: &mut BTreeSet<String>) -> bool {
        let Some(terms) = self.permissions.get(from) else {
            return false;
        };
        for term in terms {
            if let Term::Name(name) = term {
                if name == target {
                    return true;
                }
                if seen.insert(name.clone()) && self.reaches(name, target, seen) {
                    return true;
                }
            }
        }
        false
    }
}

/// The default schema, documented in `docs/authz-schema.md`: projects (RES-1), folders
/// (RES-2) and topics (RES-3). Organization administrators hold `manage` on every container.
pub const DEFAULT_TYPES: [(&str, &str); 3] = [
    (
        "project",
        "relation admin\nrelation member\n\
         permission manage = admin | org.admin\n\
         permission edit = member | admin\n\
         permission view = member | admin\n",
    ),
    (
        "folder",
        "relation owner\nrelation editor\nrelation viewer\n\
         permission manage = owner | org.admin\n\
         permission edit = editor | owner\n\
         permission view = viewer | editor | owner\n",
    ),
    (
        "topic",
        "relation participant\nrelation creator\n\
         permission view = participant\n\
         permission post = participant\n\
         permission manage = creator | org.admin\n",
    ),
];

/// The default types, parsed.
pub fn default_types() -> Vec<TypeDef> {
    DEFAULT_TYPES
        .iter()
        .filter_map(|(name, text)| TypeDef::parse(name, text).ok())
        .collect()
}

/// An object: `type:id`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    pub kind: String,
    pub id: String,
}

impl ObjectRef {
    /// Parses `type:id`; the type is checked against a schema later.
    pub fn parse(text: &str) -> Option<ObjectRef> {
        let (kind, id) = text.split_once(':')?;
        (is_valid_name(kind) && is_valid_object_id(id)).then(|| ObjectRef {
            kind: kind.to_owned(),
            id: id.to_owned(),
        })
    }

    pub fn to_text(&self) -> String {
        format!("{}:{}", self.kind, self.id)
    }
}

/// Who a relationship is granted to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SubjectRef {
    Account(String),
    /// Every member of a team.
    Team(String),
    /// Every administrator and member (not guest) of an organization.
    OrgMembers(String),
    /// Every administrator of an organization.
    OrgAdmins(String),
    /// Everyone who has `relation` (a relation or permission) on a container of the same app.
    Set(ObjectRef, String),
}

impl SubjectRef {
    /// Parses a subject string; ID formats of accounts, teams and organizations are checked by
    /// the caller, which knows the ID types.
    pub fn parse(text: &str) -> Option<SubjectRef> {
        let (object, relation) = match text.split_once('#') {
            Some((object, relation)) => (object, Some(relation)),
            None => (text, None),
        };
        let object = ObjectRef::parse(object)?;
        match (object.kind.as_str(), relation) {
            ("account", None) => Some(SubjectRef::Account(object.id)),
            ("team", Some("member")) => Some(SubjectRef::Team(object.id)),
            ("org", Some("member")) => Some(SubjectRef::OrgMembers(object.id)),
            ("org", Some("admin")) => Some(SubjectRef::OrgAdmins(object.id)),
            (kind, Some(relation))
                if !RESERVED_TYPES.contains(&kind) && is_valid_name(relation) =>
            {
                Some(SubjectRef::Set(object, relation.to_owned()))
            }
            _ => None,
        }
    }

    pub fn to_text(&self) -> String {
        match self {
            SubjectRef::Account(id) => format!("account:{id}"),
            SubjectRef::Team(id) => format!("team:{id}#member"),
            SubjectRef::OrgMembers(id) => format!("org:{id}#member"),
            SubjectRef::OrgAdmins(id) => format!("org:{id}#admin"),
            SubjectRef::Set(object, relation) => format!("{}#{relation}", object.to_text()),
        }
    }

    /// The stored triple: (subject type, subject ID, subject relation or "").
    pub fn to_parts(&self) -> (&str, &str, &str) {
        match self {
            SubjectRef::Account(id) => ("account", id, ""),
            SubjectRef::Team(id) => ("team", id, "member"),
            SubjectRef::OrgMembers(id) => ("org", id, "member"),
            SubjectRef::OrgAdmins(id) => ("org", id, "admin"),
            SubjectRef::Set(object, relation) => (&object.kind, &object.id, relation),
        }
    }

    /// The inverse of [`SubjectRef::to_parts`].
    pub fn from_parts(kind: &str, id: &str, relation: &str) -> Option<SubjectRef> {
        if relation.is_empty() {
            SubjectRef::parse(&format!("{kind}:{id}"))
        } else {
            SubjectRef::parse(&format!("{kind}:{id}#{relation}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_types_parse_and_round_trip() {
        let types = default_types();
        assert_eq!(types.len(), 3);
        for def in types {
            let again = TypeDef::parse(&def.name, &def.to_text()).unwrap();
            assert_eq!(again, def);
        }
    }

    #[test]
    fn bad_definitions_are_refused() {
        assert!(TypeDef::parse("team", "relation a").is_err());
        assert!(TypeDef::parse("doc", "").is_err());
        assert!(TypeDef::parse("doc", "relation a\nrelation a").is_err());
        assert!(TypeDef::parse("doc", "relation a\npermission v = b").is_err());
        assert!(TypeDef::parse("doc", "relation a\npermission v = w\npermission w = v").is_err());
        assert!(TypeDef::parse("doc", "relation a\nwhat").is_err());
        assert!(TypeDef::parse("doc", "relation a\npermission v = a | org.admin").is_ok());
    }

    #[test]
    fn objects_and_subjects_parse() {
        assert_eq!(
            SubjectRef::parse("team:t1#member"),
            Some(SubjectRef::Team(String::from("t1")))
        );
        assert!(SubjectRef::parse("team:t1").is_none());
        assert!(SubjectRef::parse("account:a#member").is_none());
        assert!(SubjectRef::parse("folder:f 1#viewer").is_none());
        let set = SubjectRef::parse("project:p1#member").unwrap();
        let (kind, id, relation) = set.to_parts();
        assert_eq!(SubjectRef::from_parts(kind, id, relation), Some(set));
        assert!(ObjectRef::parse("Project:p1").is_none());
        assert!(ObjectRef::parse("project:").is_none());
    }
}
