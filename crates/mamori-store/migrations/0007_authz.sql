-- Access control for apps' containers (RES-1 to RES-4): the types apps add to the default
-- schema, the containers (each of one app and one organization), the relationships
-- `resource#relation@subject`, and the change log that keeps every node's in-memory index
-- in step.
--
-- Object IDs and relation names are the apps' own identifiers, stored as given: apps must
-- not put personal data in them. Subjects are stored as (type, id, relation), relation ''
-- for an account.

CREATE TABLE authz_types (
    app_id TEXT NOT NULL REFERENCES apps (id),
    name TEXT NOT NULL,
    definition TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (app_id, name)
);

CREATE TABLE authz_objects (
    app_id TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_id TEXT NOT NULL,
    org_id TEXT NOT NULL REFERENCES organizations (id),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (app_id, object_type, object_id)
);
CREATE INDEX authz_objects_by_org ON authz_objects (org_id);

CREATE TABLE authz_relationships (
    app_id TEXT NOT NULL,
    org_id TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    relation TEXT NOT NULL,
    subject_type TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    subject_relation TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (app_id, resource_type, resource_id, relation, subject_type, subject_id,
        subject_relation)
);
-- Cascades: everything naming an account or team of an organization, or a container as a set.
CREATE INDEX authz_relationships_by_subject
    ON authz_relationships (subject_id, subject_type, org_id);
CREATE INDEX authz_relationships_by_org ON authz_relationships (org_id);

-- One row: the revision of the last committed change. Its UPDATE, the last statement of a
-- transaction before COMMIT, serializes the writers of the change log across nodes, so
-- revisions become visible in order and a reader never skips one.
CREATE TABLE authz_revision (
    id BIGINT PRIMARY KEY,
    revision BIGINT NOT NULL
);
INSERT INTO authz_revision (id, revision) VALUES (1, 0);

-- What each revision changed, as lines of tab-separated fields (see the store's `authz`
-- module). Old revisions are pruned; a node further behind reloads everything.
CREATE TABLE authz_changes (
    revision BIGINT PRIMARY KEY,
    changes TEXT NOT NULL
);
