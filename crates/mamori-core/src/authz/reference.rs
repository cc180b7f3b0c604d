//! A property test: [`Index`]'s answers against a naive reference evaluator that reads the
//! schema, the directory and a plain list of relationships, on random schemas and random
//! relationship sets (before and after random deletions).
//!
//! The reference follows the rules in their plain words, with no interning, no adjacency
//! maps and no precomputed closures: it scans every relationship at every step.

use super::index::{Index, OrgDirectory};
use super::schema::{ObjectRef, SubjectRef, Term, TypeDef};
use crate::org::{AppMode, OrgRole};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

const APP: &str = "app1";
const ORG: &str = "org1";
const N_ACCOUNTS: usize = 5;
const N_TEAMS: usize = 2;
const N_OBJECTS: usize = 5;

/// Draws choices from the numbers proptest generated (and shrinks).
struct Choices<'a> {
    numbers: &'a [u32],
    at: usize,
}

impl Choices<'_> {
    fn below(&mut self, n: usize) -> usize {
        let value = self.numbers.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        value as usize % n.max(1)
    }

    fn coin(&mut self) -> bool {
        self.below(2) == 1
    }
}

/// A random world: two types, a directory and relationships.
struct World {
    types: Vec<TypeDef>,
    directory: OrgDirectory,
    tuples: Vec<(ObjectRef, String, SubjectRef)>,
    /// Every container a relationship ever named (the index keeps knowing them).
    objects: BTreeSet<ObjectRef>,
}

fn kind_of(object: usize) -> usize {
    object % 2
}

fn object(i: usize) -> ObjectRef {
    ObjectRef {
        kind: format!("k{}", kind_of(i)),
        id: format!("o{i}"),
    }
}

fn world(choices: &mut Choices<'_>) -> World {
    let mut types = Vec::new();
    for k in 0..2 {
        let n_relations = 1 + choices.below(3);
        let mut text = String::new();
        for r in 0..n_relations {
            text.push_str(&format!("relation r{r}\n"));
        }
        // Permission p_i may include relations, earlier permissions and the org roles.
        for p in 0..(1 + choices.below(3)) {
            let mut terms: Vec<String> = Vec::new();
            for r in 0..n_relations {
                if choices.coin() {
                    terms.push(format!("r{r}"));
                }
            }
            for q in 0..p {
                if choices.coin() {
                    terms.push(format!("p{q}"));
                }
            }
            match choices.below(5) {
                0 => terms.push(String::from("org.admin")),
                1 => terms.push(String::from("org.member")),
                _ => {}
            }
            if terms.is_empty() {
                terms.push(String::from("r0"));
            }
            text.push_str(&format!("permission p{p} = {}\n", terms.join(" | ")));
        }
        types.push(TypeDef::parse(&format!("k{k}"), &text).unwrap());
    }
    let roles = [
        None,
        Some(OrgRole::Guest),
        Some(OrgRole::Member),
        Some(OrgRole::Admin),
    ];
    let members: Vec<(String, OrgRole)> = (0..N_ACCOUNTS)
        .filter_map(|a| roles[choices.below(4)].map(|role| (format!("a{a}"), role)))
        .collect();
    let teams = (0..N_TEAMS)
        .map(|t| {
            let in_team = (0..N_ACCOUNTS)
                .filter(|_| choices.coin())
                .map(|a| format!("a{a}"))
                .collect();
            (format!("t{t}"), in_team)
        })
        .collect();
    let mode = if choices.coin() {
        AppMode::All
    } else {
        AppMode::Selected
    };
    let selected = (0..N_ACCOUNTS)
        .filter(|_| choices.coin())
        .map(|a| format!("a{a}"))
        .collect();
    let directory = OrgDirectory {
        active: choices.below(8) != 0,
        members,
        teams,
        apps: if choices.below(8) != 0 {
            vec![(APP.to_owned(), mode, selected)]
        } else {
            Vec::new()
        },
    };
    let mut tuples = Vec::new();
    for _ in 0..(choices.below(14) + 1) {
        let i = choices.below(N_OBJECTS);
        let resource = object(i);
        let def = &types[kind_of(i)];
        let relations: Vec<&String> = def.relations.iter().collect();
        let relation = relations[choices.below(relations.len())].clone();
        let subject = match choices.below(6) {
            0 | 1 => SubjectRef::Account(format!("a{}", choices.below(N_ACCOUNTS))),
            2 => SubjectRef::Team(format!("t{}", choices.below(N_TEAMS))),
            3 => SubjectRef::OrgMembers(ORG.to_owned()),
            4 => SubjectRef::OrgAdmins(ORG.to_owned()),
            // Sets point only to lower-numbered objects, so the graph has no cycle (the
            // service refuses cycles before they are written).
            _ if i > 0 => {
                let j = choices.below(i);
                let target = &types[kind_of(j)];
                let names: Vec<&String> = target
                    .relations
                    .iter()
                    .chain(target.permissions.keys())
                    .collect();
                SubjectRef::Set(object(j), names[choices.below(names.len())].clone())
            }
            _ => SubjectRef::Account(String::from("a0")),
        };
        let tuple = (resource, relation, subject);
        if !tuples.contains(&tuple) {
            tuples.push(tuple);
        }
    }
    let mut objects = BTreeSet::new();
    for (resource, _, subject) in &tuples {
        objects.insert(resource.clone());
        if let SubjectRef::Set(object, _) = subject {
            objects.insert(object.clone());
        }
    }
    World {
        types,
        directory,
        tuples,
        objects,
    }
}

/// The reference: the rules read off the world directly.
fn reference_check(world: &World, resource: &ObjectRef, name: &str, account: &str) -> bool {
    let dir = &world.directory;
    let Some(role) = dir
        .members
        .iter()
        .find(|(a, _)| a == account)
        .map(|(_, role)| *role)
    else {
        return false;
    };
    let app_ok = dir.apps.iter().any(|(app, mode, selected)| {
        app == APP && (*mode == AppMode::All || selected.iter().any(|a| a == account))
    });
    if !dir.active || !app_ok {
        return false;
    }
    // Every object of these worlds is in the one organization; unknown ones grant nothing.
    if !world.objects.contains(resource) {
        return false;
    }
    has(world, resource, name, account, role)
}

fn has(world: &World, resource: &ObjectRef, name: &str, account: &str, role: OrgRole) -> bool {
    let guest = role == OrgRole::Guest;
    let Some(def) = world.types.iter().find(|def| def.name == resource.kind) else {
        return false;
    };
    if def.relations.contains(name) {
        return world
            .tuples
            .iter()
            .filter(|(r, rel, _)| r == resource && rel == name)
            .any(|(_, _, subject)| match subject {
                SubjectRef::Account(a) => a == account,
                _ if guest => false,
                SubjectRef::Team(team) => world
                    .directory
                    .teams
                    .iter()
                    .any(|(t, members)| t == team && members.iter().any(|m| m == account)),
                SubjectRef::OrgMembers(_) => true,
                SubjectRef::OrgAdmins(_) => role == OrgRole::Admin,
                SubjectRef::Set(object, inner) => has(world, object, inner, account, role),
            });
    }
    let Some(terms) = def.permissions.get(name) else {
        return false;
    };
    terms.iter().any(|term| match term {
        Term::Name(inner) => has(world, resource, inner, account, role),
        Term::OrgAdmin => role == OrgRole::Admin,
        Term::OrgMember => !guest,
    })
}

fn build(world: &World) -> Index {
    let mut index = Index::new();
    index.set_app_types(APP, &world.types);
    index.set_org(ORG, &world.directory);
    for (resource, relation, subject) in &world.tuples {
        index.insert(APP, ORG, resource, relation, subject);
    }
    index
}

fn compare(world: &World, index: &Index) -> Result<(), TestCaseError> {
    for i in 0..N_OBJECTS {
        let resource = object(i);
        let def = &world.types[kind_of(i)];
        for name in def.relations.iter().chain(def.permissions.keys()) {
            let mut expected_subjects = Vec::new();
            for a in 0..N_ACCOUNTS {
                let account = format!("a{a}");
                let expected = reference_check(world, &resource, name, &account);
                let actual = index.check(APP, &resource, name, &account).unwrap();
                prop_assert_eq!(
                    actual,
                    expected,
                    "{}#{}@{}",
                    resource.to_text(),
                    name,
                    account
                );
                let explained = index.explain(APP, &resource, name, &account).unwrap();
                prop_assert_eq!(explained.allowed, expected);
                if expected {
                    expected_subjects.push(account.clone());
                }
                let listed = index
                    .lookup_resources(APP, &resource.kind, name, &account)
                    .unwrap();
                prop_assert_eq!(listed.contains(&resource.id.as_str()), expected);
            }
            let subjects = index.lookup_subjects(APP, &resource, name).unwrap();
            prop_assert_eq!(subjects, expected_subjects);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn the_index_agrees_with_the_reference(numbers in proptest::collection::vec(any::<u32>(), 200)) {
        let mut choices = Choices { numbers: &numbers, at: 0 };
        let mut world = world(&mut choices);
        let mut index = build(&world);
        compare(&world, &index)?;
        // Delete a random part, one relationship at a time, and compare again.
        let mut kept = Vec::new();
        for tuple in std::mem::take(&mut world.tuples) {
            if choices.coin() {
                let (resource, relation, subject) = &tuple;
                prop_assert!(index.remove(APP, resource, relation, subject));
            } else {
                kept.push(tuple);
            }
        }
        world.tuples = kept;
        compare(&world, &index)?;
        let unique: BTreeMap<String, ()> = world
            .tuples
            .iter()
            .map(|(r, rel, s)| (format!("{}#{rel}@{}", r.to_text(), s.to_text()), ()))
            .collect();
        prop_assert_eq!(index.len(), unique.len());
    }
}
