//! Access control for apps' containers (RES-1 to RES-4, ORG-5): relationships
//! `resource#relation@subject` checked against a schema that is data.
//!
//! - [`schema`] holds the schema: container types with their relations and permissions, each
//!   permission a union of terms; the default schema (`project`, `folder`, `topic`); the text
//!   form types are stored and exchanged in; and the parsing of object and subject strings.
//! - [`index`] holds [`index::Index`], the in-memory graph of every relationship plus the
//!   directory facts the rule above all tuples needs (memberships, roles, teams, the apps an
//!   organization enabled and their selected members), with `check`, `explain` and the two
//!   look-ups. Everything in it is interned to integers so a check is a few hash look-ups.
//!
//! Invariants kept here:
//! - **One rule above all tuples (ORG-5).** A check says yes only when the container's
//!   organization is active, the account is a current member of it, and an active member of
//!   the container's app there. No relationship can widen that.
//! - **Guests get only direct grants.** For a guest only relationships naming the account
//!   itself on the checked container count: no team, organization, or nested set, and no
//!   organization role.
//! - **Containers belong to one app and one organization.** Object IDs are scoped per app:
//!   `project:p1` of one app is not `project:p1` of another.
//! - **Evaluation terminates.** Writes that would close a cycle of nested sets are refused
//!   before they are stored ([`index::Index::would_cycle`]); the evaluator also stops at
//!   [`index::MAX_DEPTH`].
//!
//! Pure: no I/O, no clock, no serde. The service keeps an `Index` in step with the store.

pub mod index;
#[cfg(test)]
mod reference;
pub mod schema;
