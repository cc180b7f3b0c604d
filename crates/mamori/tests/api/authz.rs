//! Access control for apps' containers through the running server (RES-1 to RES-4, ORG-3,
//! ORG-5): each container kind's rules, team and organization subjects, nested sets, guests,
//! removal cascades, app gating, consistency tokens (also across two nodes), explain,
//! look-ups, container deletion, the operator's types, and bad input that changes nothing.

use crate::orgs::{call, create_org, invite, outbox_token, person, sign_up_invited};
use mamori_testkit::{GOOD_PASSWORD, TestApp, TestEngine, expect_problem, json_of, spawn_app};
use reqwest::{Method, Response};
use serde_json::{Value, json};
use sqlx::Row;

mamori_testkit::engine_tests!(
    projects_folders_and_topics_follow_their_rules,
    guests_get_only_direct_grants,
    lookups_list_what_an_account_may_see_and_who_may_see_it,
    removing_a_member_or_team_member_takes_access_at_once,
    deleting_an_account_leaves_no_relationship_behind,
    apps_are_gated_by_the_organization,
    containers_are_deleted_with_their_relationships,
    bad_input_is_refused_and_writes_nothing,
    consistency_tokens_reach_a_second_node,
    the_index_is_rebuilt_at_start,
    the_operator_adds_container_types,
);

// ---------------------------------------------------------------------------------------
// A world: an organization with an administrator (ann), two members (bob, cat), a guest
// (gus), a team holding cat and gus, and an app enabled for everyone.

struct World {
    app: TestApp,
    org: String,
    admin: String,
    ann: String,
    bob: String,
    cat: String,
    gus: String,
    team: String,
    app_id: String,
    secret: String,
}

async fn join(app: &TestApp, admin: &str, org: &str, email: &str, role: &str) -> String {
    invite(app, admin, org, email, role).await;
    let token = outbox_token(app, email).await;
    let joined = json_of(sign_up_invited(app, email, &token).await, 201).await;
    joined["id"].as_str().unwrap().to_owned()
}

async fn register_app(app: &TestApp, name: &str) -> (String, String) {
    let operator = app.operator_token().await;
    let created = call(
        app,
        Method::POST,
        "/api/v1/operator/apps",
        &operator,
        Some(&json!({ "name": name })),
        201,
    )
    .await;
    (
        created["id"].as_str().unwrap().to_owned(),
        created["secret"].as_str().unwrap().to_owned(),
    )
}

async fn set_app_mode(app: &TestApp, admin: &str, org: &str, app_id: &str, mode: &str) {
    call(
        app,
        Method::PUT,
        &format!("/api/v1/orgs/{org}/apps/{app_id}"),
        admin,
        Some(&json!({ "mode": mode })),
        200,
    )
    .await;
}

async fn world(engine: TestEngine) -> World {
    let app = spawn_app(engine).await;
    let (ann, admin) = person(&app, "ann@example.com").await;
    let org = create_org(&app, &admin, "Acme").await;
    let bob = join(&app, &admin, &org, "bob@example.com", "member").await;
    let cat = join(&app, &admin, &org, "cat@example.com", "member").await;
    let gus = join(&app, &admin, &org, "gus@example.com", "guest").await;
    let team = call(
        &app,
        Method::POST,
        &format!("/api/v1/orgs/{org}/teams"),
        &admin,
        Some(&json!({ "name": "Design" })),
        201,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for account in [&cat, &gus] {
        let response = app
            .request(
                Method::PUT,
                &format!("/api/v1/orgs/{org}/teams/{team}/members/{account}"),
                Some(&admin),
                None,
            )
            .await;
        assert!(response.status().is_success(), "{}", response.status());
    }
    let (app_id, secret) = register_app(&app, "Projects").await;
    set_app_mode(&app, &admin, &org, &app_id, "all").await;
    World {
        app,
        org,
        admin,
        ann,
        bob,
        cat,
        gus,
        team,
        app_id,
        secret,
    }
}

impl World {
    async fn post(&self, path: &str, body: &Value) -> Response {
        self.app.post(path, Some(&self.secret), body).await
    }

    /// Writes relationships `(resource, relation, subject)`; returns the consistency token.
    async fn write(&self, writes: &[(&str, &str, &str)]) -> String {
        self.change(writes, &[]).await
    }

    async fn change(
        &self,
        writes: &[(&str, &str, &str)],
        deletes: &[(&str, &str, &str)],
    ) -> String {
        let body = json!({ "org_id": self.org, "writes": rels(writes), "deletes": rels(deletes) });
        let answer = json_of(self.post("/api/v1/authz/relationships", &body).await, 200).await;
        answer["consistency_token"].as_str().unwrap().to_owned()
    }

    async fn check(&self, resource: &str, permission: &str, account: &str) -> bool {
        let body = json!({
            "resource": resource, "permission": permission, "subject": format!("account:{account}"),
        });
        let answer = json_of(self.post("/api/v1/authz/check", &body).await, 200).await;
        answer["allowed"].as_bool().unwrap()
    }

    async fn explain(&self, resource: &str, permission: &str, account: &str) -> Value {
        let body = json!({
            "resource": resource, "permission": permission,
            "subject": format!("account:{account}"), "explain": true,
        });
        json_of(self.post("/api/v1/authz/check", &body).await, 200).await
    }

    /// Asserts who of `accounts` may do `permission` to `resource`.
    async fn expect(&self, resource: &str, permission: &str, allowed: &[&str], denied: &[&str]) {
        for account in allowed {
            assert!(
                self.check(resource, permission, account).await,
                "{account} should {permission} {resource}"
            );
        }
        for account in denied {
            assert!(
                !self.check(resource, permission, account).await,
                "{account} should not {permission} {resource}"
            );
        }
    }

    async fn count_relationships(&self) -> i64 {
        self.count(
            "SELECT COUNT(*) AS n FROM authz_relationships WHERE $1 = ''",
            "",
        )
        .await
    }

    async fn relationships_naming(&self, subject_id: &str) -> i64 {
        self.count(
            "SELECT COUNT(*) AS n FROM authz_relationships WHERE subject_id = $1",
            subject_id,
        )
        .await
    }

    async fn count(&self, query: &'static str, bind: &str) -> i64 {
        let pool = self.app.database.pool().await;
        let n = sqlx::query(query)
            .bind(bind)
            .fetch_one(&pool)
            .await
            .unwrap()
            .try_get::<i64, _>("n")
            .unwrap();
        pool.close().await;
        n
    }
}

fn rels(items: &[(&str, &str, &str)]) -> Vec<Value> {
    items
        .iter()
        .map(|(resource, relation, subject)| {
            json!({ "resource": resource, "relation": relation, "subject": subject })
        })
        .collect()
}

fn account(id: &str) -> String {
    format!("account:{id}")
}

// ---------------------------------------------------------------------------------------

async fn projects_folders_and_topics_follow_their_rules(engine: TestEngine) {
    let w = world(engine).await;
    let (bob, cat, ann) = (w.bob.as_str(), w.cat.as_str(), w.ann.as_str());
    let team = format!("team:{}#member", w.team);
    w.write(&[
        ("project:p1", "admin", &account(bob)),
        ("project:p1", "member", &team),
        ("folder:f1", "owner", &account(bob)),
        ("folder:f1", "viewer", "project:p1#member"),
        ("folder:f2", "editor", &format!("org:{}#member", w.org)),
        ("topic:t1", "participant", &account(cat)),
        ("topic:t1", "creator", &account(bob)),
    ])
    .await;
    // RES-1: project administrators manage; members (here through a team) edit and view;
    // organization administrators manage every container.
    w.expect("project:p1", "manage", &[bob, ann], &[cat]).await;
    w.expect("project:p1", "edit", &[bob, cat], &[ann]).await;
    w.expect("project:p1", "view", &[bob, cat], &[ann]).await;
    // RES-2: owner, editor and view-only; project members see the folder through a set.
    w.expect("folder:f1", "manage", &[bob, ann], &[cat]).await;
    w.expect("folder:f1", "edit", &[bob], &[cat, ann]).await;
    w.expect("folder:f1", "view", &[bob, cat], &[ann]).await;
    // Every member of the organization edits f2; its administrator too (a member of it).
    w.expect("folder:f2", "edit", &[bob, cat, ann], &[]).await;
    w.expect("folder:f2", "manage", &[ann], &[bob, cat]).await;
    // RES-3: participants view and post; the creator and organization administrators manage.
    w.expect("topic:t1", "view", &[cat], &[bob, ann]).await;
    w.expect("topic:t1", "post", &[cat], &[bob]).await;
    w.expect("topic:t1", "manage", &[bob, ann], &[cat]).await;
    // Explain: the path that granted access, or why none did.
    let answer = w.explain("folder:f1", "view", cat).await;
    assert_eq!(answer["allowed"], true);
    assert_eq!(
        answer["explanation"]["path"],
        json!([
            "folder:f1#view",
            "folder:f1#viewer",
            "project:p1#member",
            format!("team:{}#member", w.team),
        ])
    );
    let answer = w.explain("folder:f1", "edit", cat).await;
    assert_eq!(answer["allowed"], false);
    assert_eq!(
        answer["explanation"]["reason"],
        "no relationship gives this"
    );
    assert_eq!(answer["explanation"]["path"], json!([]));
    // Check-bulk answers several against one revision.
    let bulk = json_of(
        w.post(
            "/api/v1/authz/check-bulk",
            &json!({ "items": [
                { "resource": "project:p1", "permission": "manage", "subject": account(bob) },
                { "resource": "project:p1", "permission": "manage", "subject": account(cat) },
            ]}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(bulk["items"][0]["allowed"], true);
    assert_eq!(bulk["items"][1]["allowed"], false);
    // Deleting a relationship takes its access at once.
    w.change(&[], &[("topic:t1", "participant", &account(cat))])
        .await;
    w.expect("topic:t1", "view", &[], &[cat]).await;
    // Every write is audited in the organization's chain, by the app.
    let pool = w.app.database.pool().await;
    let rows = sqlx::query(
        "SELECT actor_type, actor_id FROM audit_events WHERE chain = $1 \
         AND action = 'authz.relationships.changed' ORDER BY seq",
    )
    .bind(&w.org)
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].try_get::<String, _>("actor_type").unwrap(), "app");
    assert_eq!(rows[0].try_get::<String, _>("actor_id").unwrap(), w.app_id);
}

async fn guests_get_only_direct_grants(engine: TestEngine) {
    let w = world(engine).await;
    let gus = w.gus.as_str();
    let team = format!("team:{}#member", w.team);
    w.write(&[
        ("project:p1", "member", &team),
        ("folder:f1", "viewer", &format!("org:{}#member", w.org)),
        ("folder:f2", "viewer", "project:p1#member"),
        ("folder:f3", "editor", &account(gus)),
    ])
    .await;
    // Through a team, the organization or a nested set: nothing; the cat in the same team
    // gets it.
    w.expect("project:p1", "view", &[&w.cat], &[gus]).await;
    w.expect("folder:f1", "view", &[&w.cat], &[gus]).await;
    w.expect("folder:f2", "view", &[&w.cat], &[gus]).await;
    // Directly: what the grant gives, and no more.
    w.expect("folder:f3", "view", &[gus], &[]).await;
    w.expect("folder:f3", "edit", &[gus], &[]).await;
    w.expect("folder:f3", "manage", &[], &[gus]).await;
    let answer = w.explain("project:p1", "view", gus).await;
    assert_eq!(answer["allowed"], false);
    assert!(
        answer["explanation"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("guests get only"),
        "{answer}"
    );
}

async fn lookups_list_what_an_account_may_see_and_who_may_see_it(engine: TestEngine) {
    let w = world(engine).await;
    let team = format!("team:{}#member", w.team);
    w.write(&[
        ("project:p1", "member", &team),
        ("folder:f1", "viewer", "project:p1#view"),
        ("folder:f2", "viewer", &account(&w.cat)),
        ("folder:f3", "owner", &account(&w.cat)),
        ("folder:f4", "owner", &account(&w.bob)),
        ("folder:f5", "viewer", &account(&w.gus)),
    ])
    .await;
    let lookup = |cursor: Option<String>| {
        let w = &w;
        async move {
            json_of(
                w.post(
                    "/api/v1/authz/lookup-resources",
                    &json!({ "subject": account(&w.cat), "resource_type": "folder",
                             "permission": "view", "limit": 2, "cursor": cursor }),
                )
                .await,
                200,
            )
            .await
        }
    };
    let first = lookup(None).await;
    assert_eq!(first["items"], json!(["folder:f1", "folder:f2"]));
    let second = lookup(first["next_cursor"].as_str().map(str::to_owned)).await;
    assert_eq!(second["items"], json!(["folder:f3"]));
    assert_eq!(second["next_cursor"], Value::Null);
    // Organization administrators manage every folder of the organization.
    let managed = json_of(
        w.post(
            "/api/v1/authz/lookup-resources",
            &json!({ "subject": account(&w.ann), "resource_type": "folder",
                     "permission": "manage" }),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(
        managed["items"],
        json!([
            "folder:f1",
            "folder:f2",
            "folder:f3",
            "folder:f4",
            "folder:f5"
        ])
    );
    // Who may view f1: the team's members, but not its guest.
    let subjects = json_of(
        w.post(
            "/api/v1/authz/lookup-subjects",
            &json!({ "resource": "folder:f1", "permission": "view" }),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(subjects["items"], json!([account(&w.cat)]));
    let subjects = json_of(
        w.post(
            "/api/v1/authz/lookup-subjects",
            &json!({ "resource": "folder:f5", "permission": "view" }),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(subjects["items"], json!([account(&w.gus)]));
}

async fn removing_a_member_or_team_member_takes_access_at_once(engine: TestEngine) {
    let w = world(engine).await;
    let team = format!("team:{}#member", w.team);
    w.write(&[
        ("project:p1", "member", &team),
        ("project:p1", "admin", &account(&w.bob)),
        ("folder:f1", "owner", &account(&w.bob)),
    ])
    .await;
    w.expect("project:p1", "view", &[&w.cat, &w.bob], &[]).await;
    // A team member removed: the team's grant no longer reaches cat; no token needed, the
    // node sees its own write.
    let response = w
        .app
        .request(
            Method::DELETE,
            &format!("/api/v1/orgs/{}/teams/{}/members/{}", w.org, w.team, w.cat),
            Some(&w.admin),
            None,
        )
        .await;
    assert_eq!(response.status(), 204);
    w.expect("project:p1", "view", &[], &[&w.cat]).await;
    // ORG-3: a removed member loses everything at once, and the relationships naming it go.
    assert_eq!(w.relationships_naming(&w.bob).await, 2);
    let response = w
        .app
        .request(
            Method::DELETE,
            &format!("/api/v1/orgs/{}/members/{}", w.org, w.bob),
            Some(&w.admin),
            None,
        )
        .await;
    assert_eq!(response.status(), 204);
    w.expect("project:p1", "manage", &[], &[&w.bob]).await;
    w.expect("folder:f1", "view", &[], &[&w.bob]).await;
    assert_eq!(w.relationships_naming(&w.bob).await, 0);
    let answer = w.explain("folder:f1", "view", &w.bob).await;
    assert_eq!(
        answer["explanation"]["reason"],
        "the account is not a member of the container's organization"
    );
    // Deleting the team deletes the relationships granted to it.
    let response = w
        .app
        .request(
            Method::DELETE,
            &format!("/api/v1/orgs/{}/teams/{}", w.org, w.team),
            Some(&w.admin),
            None,
        )
        .await;
    assert_eq!(response.status(), 204);
    assert_eq!(w.relationships_naming(&w.team).await, 0);
    assert_eq!(w.count_relationships().await, 0);
}

async fn deleting_an_account_leaves_no_relationship_behind(engine: TestEngine) {
    let w = world(engine).await;
    w.write(&[
        ("project:p1", "admin", &account(&w.cat)),
        ("topic:t1", "participant", &account(&w.cat)),
        ("topic:t1", "participant", &account(&w.bob)),
    ])
    .await;
    let session = w.app.log_in("cat@example.com", GOOD_PASSWORD).await;
    let response = w
        .app
        .request(
            Method::DELETE,
            "/api/v1/me",
            Some(&session.token),
            Some(&json!({ "password": GOOD_PASSWORD })),
        )
        .await;
    assert_eq!(response.status(), 204);
    assert_eq!(w.relationships_naming(&w.cat).await, 0);
    assert_eq!(w.count_relationships().await, 1);
    w.expect("topic:t1", "view", &[&w.bob], &[&w.cat]).await;
}

async fn apps_are_gated_by_the_organization(engine: TestEngine) {
    let w = world(engine).await;
    w.write(&[
        ("project:p1", "member", &account(&w.bob)),
        ("project:p1", "member", &account(&w.cat)),
    ])
    .await;
    // ORG-5: in "selected" mode only selected members are active members of the app.
    set_app_mode(&w.app, &w.admin, &w.org, &w.app_id, "selected").await;
    w.expect("project:p1", "view", &[], &[&w.bob, &w.cat]).await;
    let answer = w.explain("project:p1", "view", &w.bob).await;
    assert_eq!(
        answer["explanation"]["reason"],
        "the account is not an active member of the app"
    );
    call(
        &w.app,
        Method::PUT,
        &format!("/api/v1/orgs/{}/apps/{}/members/{}", w.org, w.app_id, w.bob),
        &w.admin,
        None,
        204,
    )
    .await;
    w.expect("project:p1", "view", &[&w.bob], &[&w.cat]).await;
    // Disabled: every check says no, the relationships are kept (neutralised) and count
    // again once the app is enabled again.
    let response = w
        .app
        .request(
            Method::DELETE,
            &format!("/api/v1/orgs/{}/apps/{}", w.org, w.app_id),
            Some(&w.admin),
            None,
        )
        .await;
    assert_eq!(response.status(), 204);
    w.expect("project:p1", "view", &[], &[&w.bob, &w.cat]).await;
    // An app writes only to organizations that enabled it: the same answer as for none.
    let body =
        json!({ "org_id": w.org, "writes": rels(&[("project:p2", "member", &account(&w.bob))]) });
    expect_problem(
        w.post("/api/v1/authz/relationships", &body).await,
        404,
        "not_found",
    )
    .await;
    set_app_mode(&w.app, &w.admin, &w.org, &w.app_id, "all").await;
    w.expect("project:p1", "view", &[&w.bob, &w.cat], &[]).await;
    // Another app has its own namespace: it sees none of these containers.
    let (other_id, other_secret) = register_app(&w.app, "Chat").await;
    let check = json!({ "resource": "project:p1", "permission": "view",
                        "subject": account(&w.bob) });
    let answer = json_of(
        w.app
            .post("/api/v1/authz/check", Some(&other_secret), &check)
            .await,
        200,
    )
    .await;
    assert_eq!(answer["allowed"], false);
    let body =
        json!({ "org_id": w.org, "writes": rels(&[("project:p1", "member", &account(&w.bob))]) });
    expect_problem(
        w.app
            .post("/api/v1/authz/relationships", Some(&other_secret), &body)
            .await,
        404,
        "not_found",
    )
    .await;
    // Only an app's secret opens these routes.
    expect_problem(
        w.app
            .post("/api/v1/authz/check", Some(&w.admin), &check)
            .await,
        403,
        "forbidden",
    )
    .await;
    expect_problem(
        w.app.post("/api/v1/authz/check", None, &check).await,
        401,
        "unauthenticated",
    )
    .await;
    let _ = other_id;
}

async fn containers_are_deleted_with_their_relationships(engine: TestEngine) {
    let w = world(engine).await;
    w.write(&[
        ("project:p1", "member", &account(&w.bob)),
        ("folder:f1", "viewer", "project:p1#member"),
        ("folder:f1", "owner", &account(&w.cat)),
    ])
    .await;
    w.expect("folder:f1", "view", &[&w.bob, &w.cat], &[]).await;
    let answer = json_of(
        w.app
            .request(
                Method::DELETE,
                "/api/v1/authz/containers/project:p1",
                Some(&w.secret),
                None,
            )
            .await,
        200,
    )
    .await;
    assert!(
        answer["consistency_token"]
            .as_str()
            .unwrap()
            .starts_with("ct_")
    );
    // The project's own relationship and the set naming it are gone; the folder's owner stays.
    assert_eq!(w.count_relationships().await, 1);
    w.expect("folder:f1", "view", &[&w.cat], &[&w.bob]).await;
    w.expect("project:p1", "view", &[], &[&w.bob]).await;
    expect_problem(
        w.app
            .request(
                Method::DELETE,
                "/api/v1/authz/containers/project:p1",
                Some(&w.secret),
                None,
            )
            .await,
        404,
        "not_found",
    )
    .await;
    let pool = w.app.database.pool().await;
    let row = sqlx::query(
        "SELECT target_id, details FROM audit_events WHERE chain = $1 \
         AND action = 'authz.container.deleted'",
    )
    .bind(&w.org)
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    assert_eq!(row.try_get::<String, _>("target_id").unwrap(), "project:p1");
    assert_eq!(
        row.try_get::<String, _>("details").unwrap(),
        r#"{"relationships_removed":2}"#
    );
}

async fn bad_input_is_refused_and_writes_nothing(engine: TestEngine) {
    let w = world(engine).await;
    w.write(&[("project:p1", "member", &account(&w.bob))]).await;
    let (_, stranger_token) = person(&w.app, "stranger@example.com").await;
    let other_org = create_org(&w.app, &stranger_token, "Other").await;
    let stranger_team = call(
        &w.app,
        Method::POST,
        &format!("/api/v1/orgs/{other_org}/teams"),
        &stranger_token,
        Some(&json!({ "name": "Theirs" })),
        201,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob = account(&w.bob);
    let cases: Vec<(Value, &str)> = vec![
        (json!(["widget:w1", "member", bob]), "writes[1].resource"),
        (json!(["project", "member", bob]), "writes[1].resource"),
        (json!(["project:p 1", "member", bob]), "writes[1].resource"),
        (json!(["project:p2", "view", bob]), "writes[1].relation"),
        (json!(["project:p2", "owner", bob]), "writes[1].relation"),
        (
            json!(["project:p2", "member", "account:nobody"]),
            "writes[1].subject",
        ),
        (
            json!(["project:p2", "member", "team:x#owner"]),
            "writes[1].subject",
        ),
        (
            json!(["project:p2", "member", format!("org:{other_org}#member")]),
            "writes[1].subject",
        ),
        (
            json!([
                "project:p2",
                "member",
                format!("team:{stranger_team}#member")
            ]),
            "writes[1].subject",
        ),
        (
            json!(["folder:f1", "viewer", "project:p1#nothing"]),
            "writes[1].subject",
        ),
    ];
    for (bad, field) in cases {
        let body = json!({ "org_id": w.org, "writes": [
            { "resource": "project:p9", "relation": "member", "subject": bob },
            { "resource": bad[0], "relation": bad[1], "subject": bad[2] },
        ]});
        let problem = expect_problem(
            w.post("/api/v1/authz/relationships", &body).await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
        // All or nothing: the good write of the batch is not there either.
        assert_eq!(w.count_relationships().await, 1, "{problem}");
    }
    // A member of another organization is not a subject here.
    let (stranger, _) = (
        w.app.sign_up("x@example.com", GOOD_PASSWORD, "X").await.id,
        (),
    );
    let body = json!({ "org_id": w.org, "writes": rels(&[("project:p2", "member", &account(&stranger))]) });
    let problem = expect_problem(
        w.post("/api/v1/authz/relationships", &body).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(
        problem["errors"][0]["message"],
        "is not a member of this organization"
    );
    // A container belongs to one organization.
    let (app2_id, _) = (w.app_id.clone(), ());
    set_app_mode(&w.app, &stranger_token, &other_org, &app2_id, "all").await;
    let body = json!({ "org_id": other_org, "writes": rels(&[("project:p1", "member", &format!("org:{other_org}#member"))]) });
    let problem = expect_problem(
        w.post("/api/v1/authz/relationships", &body).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(
        problem["errors"][0]["message"],
        "belongs to another organization"
    );
    // Cycles of nested sets, within a batch or with what is stored.
    w.write(&[("folder:f1", "viewer", "project:p1#member")])
        .await;
    let body =
        json!({ "org_id": w.org, "writes": rels(&[("project:p1", "member", "folder:f1#view")]) });
    expect_problem(
        w.post("/api/v1/authz/relationships", &body).await,
        409,
        "relationship_cycle",
    )
    .await;
    let body = json!({ "org_id": w.org, "writes": rels(&[
        ("folder:f7", "viewer", "folder:f8#viewer"), ("folder:f8", "viewer", "folder:f7#view"),
    ]) });
    expect_problem(
        w.post("/api/v1/authz/relationships", &body).await,
        409,
        "relationship_cycle",
    )
    .await;
    assert_eq!(w.count_relationships().await, 2);
    // Batches over the size limit, and empty ones.
    let many: Vec<Value> = (0..=mamori_service::MAX_RELATIONSHIP_CHANGES)
        .map(|i| json!({ "resource": format!("project:q{i}"), "relation": "member", "subject": bob }))
        .collect();
    let body = json!({ "org_id": w.org, "writes": many });
    expect_problem(
        w.post("/api/v1/authz/relationships", &body).await,
        422,
        "validation_failed",
    )
    .await;
    let body = json!({ "org_id": w.org });
    expect_problem(
        w.post("/api/v1/authz/relationships", &body).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(w.count_relationships().await, 2);
    // Checks: unknown types and permissions, subjects that are not accounts, bad tokens.
    for (body, field) in [
        (
            json!({ "resource": "widget:w", "permission": "view", "subject": bob }),
            "resource",
        ),
        (
            json!({ "resource": "project:p1", "permission": "fly", "subject": bob }),
            "permission",
        ),
        (
            json!({ "resource": "project:p1", "permission": "view", "subject": "team:t#member" }),
            "subject",
        ),
        (
            json!({ "resource": "p1", "permission": "view", "subject": bob }),
            "resource",
        ),
        (
            json!({ "resource": "project:p1", "permission": "view", "subject": bob, "consistency_token": "yesterday" }),
            "consistency_token",
        ),
        (
            json!({ "resource": "project:p1", "permission": "view", "subject": bob, "consistency_token": "ct_999999" }),
            "consistency_token",
        ),
    ] {
        let problem = expect_problem(
            w.post("/api/v1/authz/check", &body).await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    expect_problem(
        w.post("/api/v1/authz/check", &json!({ "resource": "project:p1" }))
            .await,
        422,
        "validation_failed",
    )
    .await;
    expect_problem(
        w.post("/api/v1/authz/check-bulk", &json!({ "items": [] }))
            .await,
        422,
        "validation_failed",
    )
    .await;
}

async fn consistency_tokens_reach_a_second_node(engine: TestEngine) {
    let w = world(engine).await;
    // A second node on the same databases, started before the write.
    let mut settings = w.app.settings.clone();
    settings.listen = "127.0.0.1:0".parse().unwrap();
    let node_b =
        mamori_testkit::spawn_with(w.app.database.clone(), settings, w.app.clock.clone()).await;
    let first = w.write(&[("project:p1", "member", &account(&w.bob))]).await;
    let second = w.write(&[("project:p1", "admin", &account(&w.cat))]).await;
    let revision = |token: &str| token.strip_prefix("ct_").unwrap().parse::<i64>().unwrap();
    assert!(revision(&second) > revision(&first), "{first} {second}");
    let check = json!({ "resource": "project:p1", "permission": "manage",
                        "subject": account(&w.cat), "consistency_token": second });
    let answer = json_of(
        node_b
            .post("/api/v1/authz/check", Some(&w.secret), &check)
            .await,
        200,
    )
    .await;
    assert_eq!(answer["allowed"], true, "{answer}");
    assert!(revision(answer["consistency_token"].as_str().unwrap()) >= revision(&second));
    // A directory change made on node B reaches node A with B's token.
    let response = node_b
        .request(
            Method::DELETE,
            &format!("/api/v1/orgs/{}/members/{}", w.org, w.cat),
            Some(&w.admin),
            None,
        )
        .await;
    assert_eq!(response.status(), 204);
    let token = node_b.services.refresh_authz().await.unwrap();
    let check = json!({ "resource": "project:p1", "permission": "manage",
                        "subject": account(&w.cat),
                        "consistency_token": mamori_service::consistency_token(token) });
    let answer = json_of(w.post("/api/v1/authz/check", &check).await, 200).await;
    assert_eq!(answer["allowed"], false, "{answer}");
}

async fn the_index_is_rebuilt_at_start(engine: TestEngine) {
    let w = world(engine).await;
    let team = format!("team:{}#member", w.team);
    w.write(&[
        ("project:p1", "member", &team),
        ("folder:f1", "viewer", "project:p1#member"),
    ])
    .await;
    let World {
        app,
        secret,
        cat,
        gus,
        ..
    } = w;
    let app = app.restart().await;
    let (relationships, objects, _) = app.services.authz_stats().unwrap();
    assert_eq!((relationships, objects), (2, 2));
    for (account_id, allowed) in [(&cat, true), (&gus, false)] {
        let check = json!({ "resource": "folder:f1", "permission": "view",
                            "subject": account(account_id) });
        let answer = json_of(
            app.post("/api/v1/authz/check", Some(&secret), &check).await,
            200,
        )
        .await;
        assert_eq!(answer["allowed"], allowed, "{answer}");
    }
}

async fn the_operator_adds_container_types(engine: TestEngine) {
    let w = world(engine).await;
    let operator = w.app.operator_token().await;
    let path = format!("/api/v1/operator/apps/{}/authz-types/board", w.app_id);
    let definition = "relation moderator\nrelation reader\n\
                      permission read = reader | moderator | org.member\n\
                      permission moderate = moderator | org.admin\n";
    let created = call(
        &w.app,
        Method::PUT,
        &path,
        &operator,
        Some(&json!({ "definition": definition })),
        201,
    )
    .await;
    assert_eq!(created["name"], "board");
    w.write(&[("board:b1", "moderator", &account(&w.bob))])
        .await;
    w.expect("board:b1", "moderate", &[&w.bob, &w.ann], &[&w.cat])
        .await;
    w.expect("board:b1", "read", &[&w.bob, &w.cat], &[&w.gus])
        .await;
    // Replacing it answers 200; a bad definition, a default type or a wrong credential does
    // not change the schema.
    call(
        &w.app,
        Method::PUT,
        &path,
        &operator,
        Some(&json!({ "definition": definition })),
        200,
    )
    .await;
    for (bad_path, body, status, code) in [
        (
            path.clone(),
            json!({ "definition": "relation a\npermission b = c" }),
            422,
            "validation_failed",
        ),
        (
            path.clone(),
            json!({ "definition": "" }),
            422,
            "validation_failed",
        ),
        (
            format!("/api/v1/operator/apps/{}/authz-types/project", w.app_id),
            json!({ "definition": "relation a" }),
            422,
            "validation_failed",
        ),
        (
            String::from("/api/v1/operator/apps/app_nope/authz-types/board"),
            json!({ "definition": "relation a" }),
            404,
            "not_found",
        ),
    ] {
        let response = w
            .app
            .request(Method::PUT, &bad_path, Some(&operator), Some(&body))
            .await;
        expect_problem(response, status, code).await;
    }
    let response = w
        .app
        .request(
            Method::PUT,
            &path,
            Some(&w.secret),
            Some(&json!({ "definition": "relation a" })),
        )
        .await;
    expect_problem(response, 403, "forbidden").await;
    w.expect("board:b1", "read", &[&w.cat], &[]).await;
    // Another app does not have the type.
    let (_, other_secret) = register_app(&w.app, "Other").await;
    let check = json!({ "resource": "board:b1", "permission": "read", "subject": account(&w.bob) });
    expect_problem(
        w.app
            .post("/api/v1/authz/check", Some(&other_secret), &check)
            .await,
        422,
        "validation_failed",
    )
    .await;
}
