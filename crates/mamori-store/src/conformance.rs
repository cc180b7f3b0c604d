//! The conformance suite: the behaviour every engine must show, run against a real database
//! by the tests of each engine (see `tests/conformance.rs`). It panics on the first deviation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::{
    AccountRow, AccountStatus, AuditEventRow, CheckpointRow, SessionRow, Store, StoreError,
};
use mamori_core::{AccountId, AuditEventId, SessionId, Timestamp};

/// Before every time used here: no session is excluded as expired.
const EPOCH: Timestamp = Timestamp::from_millis(-1);

fn account(n: u8, email_index: &str) -> AccountRow {
    AccountRow {
        id: AccountId::from_random(&[n; 17]),
        status: AccountStatus::Active,
        email_index: Some(email_index.to_owned()),
        email_sealed: Some(format!("sealed-email-{n}")),
        display_name_sealed: Some(format!("sealed-name-{n}")),
        password_hash: Some(String::from("$argon2id$placeholder")),
        email_verified: false,
        created_at: Timestamp::from_millis(1_000),
        updated_at: Timestamp::from_millis(1_000),
        deleted_at: None,
    }
}

fn session(n: u8, account_id: &AccountId, created_at: i64) -> SessionRow {
    SessionRow {
        id: SessionId::from_random(&[n; 17]),
        token_hash: format!("token-hash-{n}"),
        account_id: account_id.clone(),
        created_at: Timestamp::from_millis(created_at),
        last_seen_at: Timestamp::from_millis(created_at),
        ip: Some(String::from("127.0.0.1")),
        user_agent: None,
    }
}

/// Runs every check on an empty, migrated store.
pub async fn run(store: &dyn Store) {
    store.ping().await.unwrap();
    accounts(store).await;
    sessions(store).await;
    audit_chain(store).await;
    key_destructions(store).await;
    local_accounts(store).await;
    lifecycle(store).await;
}

async fn accounts(store: &dyn Store) {
    let ada = account(1, "index-ada");
    let mut tx = store.begin().await.unwrap();
    tx.insert_account(&ada).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.account(&ada.id).await.unwrap(), Some(ada.clone()));
    assert_eq!(
        store.account_by_email_index("index-ada").await.unwrap(),
        Some(ada.clone())
    );

    // A second account with the same email index is a conflict, and the failed transaction
    // leaves nothing behind.
    let twin = account(2, "index-ada");
    let mut tx = store.begin().await.unwrap();
    let error = tx.insert_account(&twin).await.unwrap_err();
    assert!(matches!(error, StoreError::Conflict { .. }), "{error:?}");
    drop(tx);
    assert_eq!(store.account(&twin.id).await.unwrap(), None);

    // A dropped transaction is rolled back.
    let ghost = account(3, "index-ghost");
    let mut tx = store.begin().await.unwrap();
    tx.insert_account(&ghost).await.unwrap();
    drop(tx);
    assert_eq!(store.account(&ghost.id).await.unwrap(), None);

    // The tombstone frees the email index and clears every personal column.
    let mut tx = store.begin().await.unwrap();
    tx.tombstone_account(&ada.id, Timestamp::from_millis(2_000))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let tombstone = store.account(&ada.id).await.unwrap().unwrap();
    assert_eq!(tombstone.status, AccountStatus::Deleted);
    assert_eq!(tombstone.email_index, None);
    assert_eq!(tombstone.email_sealed, None);
    assert_eq!(tombstone.display_name_sealed, None);
    assert_eq!(tombstone.password_hash, None);
    assert_eq!(tombstone.deleted_at, Some(Timestamp::from_millis(2_000)));
    let mut tx = store.begin().await.unwrap();
    tx.insert_account(&twin).await.unwrap();
    // Updating a deleted account finds nothing.
    let error = tx
        .update_password_hash(&ada.id, "x", Timestamp::from_millis(3_000))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::NotFound));
    tx.commit().await.unwrap();
}

async fn sessions(store: &dyn Store) {
    let owner = account(10, "index-owner");
    let other = account(11, "index-other");
    let mut tx = store.begin().await.unwrap();
    tx.insert_account(&owner).await.unwrap();
    tx.insert_account(&other).await.unwrap();
    for (n, created) in [(20u8, 100i64), (21, 200), (22, 300)] {
        tx.insert_session(&session(n, &owner.id, created))
            .await
            .unwrap();
    }
    tx.insert_session(&session(23, &other.id, 100))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let first_page = store
        .sessions_of(&owner.id, EPOCH, EPOCH, None, 2)
        .await
        .unwrap();
    assert_eq!(first_page.len(), 2);
    assert_eq!(first_page[0].created_at, Timestamp::from_millis(100));
    let second_page = store
        .sessions_of(
            &owner.id,
            EPOCH,
            EPOCH,
            Some((first_page[1].created_at, &first_page[1].id)),
            2,
        )
        .await
        .unwrap();
    assert_eq!(second_page.len(), 1);
    assert_eq!(second_page[0].created_at, Timestamp::from_millis(300));

    let found = store
        .session_by_token_hash("token-hash-21")
        .await
        .unwrap()
        .unwrap();
    store
        .touch_session(&found.id, Timestamp::from_millis(5_000))
        .await
        .unwrap();
    let touched = store
        .session_by_token_hash("token-hash-21")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(touched.last_seen_at, Timestamp::from_millis(5_000));

    // A session cannot be deleted through another account.
    let mut tx = store.begin().await.unwrap();
    assert!(!tx.delete_session(&other.id, &found.id).await.unwrap());
    assert_eq!(
        tx.delete_sessions_of(&owner.id, Some(&found.id))
            .await
            .unwrap(),
        2
    );
    tx.commit().await.unwrap();
    assert_eq!(
        store
            .sessions_of(&owner.id, EPOCH, EPOCH, None, 10)
            .await
            .unwrap()
            .len(),
        1
    );

    // Expiry: the other account's session (seen at 100) is idle-expired at 150.
    let removed = store
        .delete_expired_sessions(Timestamp::from_millis(0), Timestamp::from_millis(150))
        .await
        .unwrap();
    assert_eq!(removed, 1);
    assert!(
        store
            .session_by_token_hash("token-hash-23")
            .await
            .unwrap()
            .is_none()
    );
}

fn test_event(chain: &str, seq: i64, prev_hash: String, at: i64) -> AuditEventRow {
    AuditEventRow {
        id: AuditEventId::from_random(&[seq as u8; 17]),
        chain: chain.to_owned(),
        seq,
        org_id: None,
        actor_type: String::from("system"),
        actor_id: None,
        actor_name_sealed: None,
        action: if seq % 2 == 0 {
            String::from("test.even")
        } else {
            String::from("test.odd_one")
        },
        target_type: None,
        target_id: None,
        outcome: String::from("success"),
        ip: None,
        user_agent: None,
        request_id: None,
        occurred_at: Timestamp::from_millis(at),
        details: String::from("{}"),
        prev_hash,
        hash: format!("hash-{seq}"),
    }
}

async fn audit_chain(store: &dyn Store) {
    for expected_seq in 1..=3i64 {
        let mut tx = store.begin().await.unwrap();
        let position = tx.advance_audit_chain("platform", 1).await.unwrap();
        assert_eq!(position.seq, expected_seq);
        if expected_seq == 1 {
            assert_eq!(position.prev_hash, mamori_core::audit::GENESIS_HASH);
        } else {
            assert_eq!(position.prev_hash, format!("hash-{}", expected_seq - 1));
        }
        let event = test_event("platform", position.seq, position.prev_hash, expected_seq);
        tx.insert_audit_events(&[event]).await.unwrap();
        tx.commit().await.unwrap();
    }
    // A rolled-back append leaves the chain as it was.
    let mut tx = store.begin().await.unwrap();
    tx.advance_audit_chain("platform", 1).await.unwrap();
    drop(tx);
    let events = store.audit_events("platform", 1, 10).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );

    // A batch of 100 in one transaction: more rows than one INSERT takes.
    let mut tx = store.begin().await.unwrap();
    let position = tx.advance_audit_chain("platform", 100).await.unwrap();
    assert_eq!(position.seq, 4);
    assert_eq!(position.prev_hash, "hash-3");
    let batch: Vec<AuditEventRow> = (4..104)
        .map(|seq| test_event("platform", seq, format!("hash-{}", seq - 1), seq))
        .collect();
    tx.insert_audit_events(&batch).await.unwrap();
    tx.commit().await.unwrap();
    let head = store.audit_chain("platform").await.unwrap().unwrap();
    assert_eq!((head.last_seq, head.last_hash.as_str()), (103, "hash-103"));
    assert_eq!(head.anchor_seq, 0);

    // Newest first, filtered by action prefix (an `_` is no wildcard) and by time.
    let filter = crate::AuditFilter {
        action_prefix: Some(String::from("test.odd_")),
        from: Some(Timestamp::from_millis(10)),
        ..Default::default()
    };
    let page = store
        .audit_events_page(
            "platform",
            &filter,
            crate::SeqRange {
                after: None,
                before: Some(99),
            },
            crate::SeqOrder::NewestFirst,
            3,
        )
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![97, 95, 93]
    );
    let none = crate::AuditFilter {
        action_prefix: Some(String::from("test.oddX")),
        ..Default::default()
    };
    assert!(
        store
            .audit_events_page(
                "platform",
                &none,
                crate::SeqRange::default(),
                crate::SeqOrder::OldestFirst,
                5
            )
            .await
            .unwrap()
            .is_empty()
    );

    // Retention: the prefix stored before the cutoff goes, the anchor keeps its last hash.
    assert_eq!(
        store
            .chains_with_events_before(Timestamp::from_millis(50), 10)
            .await
            .unwrap(),
        vec!["platform"]
    );
    let mut tx = store.begin().await.unwrap();
    let first = tx
        .first_audit_seq_at_or_after("platform", Timestamp::from_millis(50))
        .await
        .unwrap();
    assert_eq!(first, 50);
    let sign = |hash: &str| CheckpointRow {
        chain: String::from("platform"),
        seq: 49,
        hash: hash.to_owned(),
        signed_at: Timestamp::from_millis(60),
        key_id: String::from("key"),
        signature: String::from("purge-signature"),
    };
    assert_eq!(
        tx.purge_audit_prefix("platform", first - 1, &sign)
            .await
            .unwrap(),
        49
    );
    tx.commit().await.unwrap();
    // The purge's signature is the checkpoint at the anchor; those before it are gone.
    let kept = store.audit_checkpoints("platform", 0, 10).await.unwrap();
    assert_eq!(
        kept.first().map(|c| (c.seq, c.signature.as_str())),
        Some((49, "purge-signature"))
    );
    let head = store.audit_chain("platform").await.unwrap().unwrap();
    assert_eq!(
        (head.anchor_seq, head.anchor_hash.as_str()),
        (49, "hash-49")
    );
    assert_eq!(
        store.audit_events("platform", 0, 1).await.unwrap()[0].seq,
        50
    );
    assert!(
        store
            .chains_with_events_before(Timestamp::from_millis(50), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let mut tx = store.begin().await.unwrap();
    assert_eq!(
        tx.advance_audit_chain("platform", 1).await.unwrap().seq,
        104
    );
}

async fn key_destructions(store: &dyn Store) {
    let mut tx = store.begin().await.unwrap();
    tx.request_key_destruction("acc_x", Timestamp::from_millis(1))
        .await
        .unwrap();
    // Requesting twice is harmless.
    tx.request_key_destruction("acc_x", Timestamp::from_millis(2))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        store.pending_key_destructions(10).await.unwrap(),
        vec!["acc_x"]
    );
    store.complete_key_destruction("acc_x").await.unwrap();
    assert!(store.pending_key_destructions(10).await.unwrap().is_empty());
}

/// ACC-7: local accounts are found by login name, listed per organization, and deleted all
/// at once with everything that let them in when their organization is purged.
async fn local_accounts(store: &dyn Store) {
    use crate::{LocalAccountRow, LoginChallengeRow, OrgRow, PersonalTokenRow};
    use mamori_core::{OrgId, PersonalTokenId};

    let org = OrgId::from_random(&[70; 17]);
    let other_org = OrgId::from_random(&[71; 17]);
    let local_row = |n: u8, org: &OrgId, account: &AccountId| LocalAccountRow {
        account_id: account.clone(),
        org_id: org.clone(),
        login_index: format!("login-index-{n}"),
        login_id_sealed: format!("sealed-login-{n}"),
        must_change_password: true,
        initial_password_expires_at: Some(Timestamp::from_millis(9_000)),
        created_by: None,
        created_at: Timestamp::from_millis(1_000),
        updated_at: Timestamp::from_millis(1_000),
    };
    let local = |n: u8| {
        let mut row = account(n, "unused");
        row.email_index = None;
        row
    };
    let (a, b, c) = (local(72), local(73), local(74));
    let mut tx = store.begin().await.unwrap();
    for id in [&org, &other_org] {
        tx.insert_org(&OrgRow {
            id: id.clone(),
            name_sealed: String::from("sealed-org"),
            status: String::from("active"),
            require_two_step: false,
            created_at: Timestamp::from_millis(1_000),
            updated_at: Timestamp::from_millis(1_000),
            require_verified_email: false,
        })
        .await
        .unwrap();
    }
    for (n, row, in_org) in [(72, &a, &org), (73, &b, &org), (74, &c, &other_org)] {
        tx.insert_account(row).await.unwrap();
        tx.insert_local_account(&local_row(n, in_org, &row.id))
            .await
            .unwrap();
        tx.insert_session(&session(n, &row.id, 1_000))
            .await
            .unwrap();
        tx.insert_personal_token(&PersonalTokenRow {
            id: PersonalTokenId::from_random(&[n; 17]),
            account_id: row.id.clone(),
            name_sealed: String::from("sealed-token-name"),
            scope: String::from("full"),
            token_hash: format!("pat-hash-{n}"),
            created_at: Timestamp::from_millis(1_000),
            expires_at: Timestamp::from_millis(1_000_000),
            last_used_at: None,
        })
        .await
        .unwrap();
        tx.insert_login_challenge(&LoginChallengeRow {
            challenge_hash: format!("challenge-hash-{n}"),
            account_id: row.id.clone(),
            created_at: Timestamp::from_millis(1_000),
            expires_at: Timestamp::from_millis(1_000_000),
            failures: 0,
        })
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();

    // A login name is one organization's: the same index again is a conflict.
    let mut tx = store.begin().await.unwrap();
    let twin = local(75);
    tx.insert_account(&twin).await.unwrap();
    let error = tx
        .insert_local_account(&local_row(72, &org, &twin.id))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Conflict { .. }), "{error:?}");
    drop(tx);

    let (found, found_account) = store
        .local_account_by_login("login-index-73")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, local_row(73, &org, &b.id));
    assert_eq!(found_account, b);
    assert_eq!(
        store
            .local_account_by_login("login-index-none")
            .await
            .unwrap(),
        None
    );
    let page = store.local_accounts_of_org(&org, None, 1).await.unwrap();
    let first = page[0].0.account_id.clone();
    let rest = store
        .local_accounts_of_org(&org, Some(&first), 10)
        .await
        .unwrap();
    let mut listed: Vec<AccountId> = page
        .iter()
        .chain(rest.iter())
        .map(|(row, _)| row.account_id.clone())
        .collect();
    listed.sort();
    let mut expected = vec![a.id.clone(), b.id.clone()];
    expected.sort();
    assert_eq!(listed, expected);

    // A new initial password revokes what let the account in.
    let mut tx = store.begin().await.unwrap();
    let ended = tx
        .set_initial_password(
            &a.id,
            "$argon2id$new",
            Timestamp::from_millis(50_000),
            Timestamp::from_millis(2_000),
        )
        .await
        .unwrap();
    assert_eq!(ended, 2, "one session and one token");
    tx.commit().await.unwrap();
    assert_eq!(
        store.session_by_token_hash("token-hash-72").await.unwrap(),
        None
    );
    assert_eq!(
        store.personal_token_by_hash("pat-hash-72").await.unwrap(),
        None
    );
    assert_eq!(
        store.login_challenge("challenge-hash-72").await.unwrap(),
        None
    );
    // The holder's own password clears the flag once.
    let mut tx = store.begin().await.unwrap();
    assert!(
        tx.set_own_password(&a.id, "$argon2id$own", Timestamp::from_millis(3_000))
            .await
            .unwrap()
    );
    assert!(
        !tx.set_own_password(&a.id, "$argon2id$again", Timestamp::from_millis(3_000))
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    let row = store.local_account(&a.id).await.unwrap().unwrap();
    assert!(!row.must_change_password);
    assert_eq!(row.initial_password_expires_at, None);
    assert_eq!(
        store
            .account(&a.id)
            .await
            .unwrap()
            .unwrap()
            .password_hash
            .as_deref(),
        Some("$argon2id$own")
    );

    // The purge deletes the organization's local accounts only, and is idempotent.
    let mut tx = store.begin().await.unwrap();
    let mut deleted = tx
        .delete_org_local_accounts(&org, Timestamp::from_millis(4_000))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    deleted.sort();
    assert_eq!(deleted, expected);
    for row in [&a, &b] {
        let tombstone = store.account(&row.id).await.unwrap().unwrap();
        assert_eq!(tombstone.status, AccountStatus::Deleted);
        assert_eq!(tombstone.email_sealed, None);
        assert_eq!(tombstone.password_hash, None);
        assert_eq!(store.local_account(&row.id).await.unwrap(), None);
    }
    assert_eq!(
        store.session_by_token_hash("token-hash-73").await.unwrap(),
        None
    );
    assert_eq!(
        store.personal_token_by_hash("pat-hash-73").await.unwrap(),
        None
    );
    assert_eq!(
        store.login_challenge("challenge-hash-73").await.unwrap(),
        None
    );
    let pending = store.pending_key_destructions(100).await.unwrap();
    assert!(pending.contains(&a.id.to_string()) && pending.contains(&b.id.to_string()));
    assert!(!pending.contains(&c.id.to_string()));
    // The other organization's local account is untouched.
    assert!(
        store
            .session_by_token_hash("token-hash-74")
            .await
            .unwrap()
            .is_some()
    );
    assert!(store.local_account(&c.id).await.unwrap().is_some());
    let mut tx = store.begin().await.unwrap();
    let again = tx
        .delete_org_local_accounts(&org, Timestamp::from_millis(5_000))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(again.is_empty());
}

/// Lifecycle rows are written only over the version read (so of two writers from the same
/// read, one wins and the other changes nothing); the organization's status follows.
async fn lifecycle(store: &dyn Store) {
    use crate::{ContractEventRow, OrgLifecycleRow, OrgRow};
    use mamori_core::OrgId;
    let org = OrgId::from_random(&[7; 17]);
    let at = Timestamp::from_millis(5_000);
    let mut tx = store.begin().await.unwrap();
    tx.insert_org(&OrgRow {
        id: org.clone(),
        name_sealed: String::from("sealed-name"),
        status: String::from("active"),
        require_two_step: false,
        created_at: at,
        updated_at: at,
        require_verified_email: false,
    })
    .await
    .unwrap();
    let mut row = OrgLifecycleRow {
        org_id: org.clone(),
        state: String::from("active"),
        plan: String::from("free"),
        trial_started_at: None,
        trial_ends_at: None,
        period_ends_at: None,
        suspended_at: None,
        deletion_due_at: None,
        deletion_reason: None,
        deleted_at: None,
        purge_starts_at: None,
        purge_due_by: None,
        audit_purge_starts_at: None,
        purge_started_at: None,
        purged_at: None,
        audit_purged_at: None,
        notice_sent_for: None,
        continue_asked_at: None,
        last_confirmed_at: Some(at),
        version: 1,
        updated_at: at,
    };
    assert!(tx.save_org_lifecycle(&row, None).await.unwrap());
    // A second insert changes nothing.
    assert!(!tx.save_org_lifecycle(&row, None).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(store.org_lifecycle(&org).await.unwrap(), Some(row.clone()));

    let mut tx = store.begin().await.unwrap();
    row.state = String::from("deleted");
    row.deleted_at = Some(Timestamp::from_millis(6_000));
    row.purge_starts_at = Some(Timestamp::from_millis(7_000));
    row.version = 2;
    assert!(tx.save_org_lifecycle(&row, Some(1)).await.unwrap());
    tx.set_org_status(&org, "deleted", Timestamp::from_millis(6_000))
        .await
        .unwrap();
    // A writer that read version 1 too is refused.
    let mut stale = row.clone();
    stale.state = String::from("suspended");
    stale.version = 2;
    assert!(!tx.save_org_lifecycle(&stale, Some(1)).await.unwrap());
    tx.insert_contract_event(&ContractEventRow {
        id: String::from("ce_1"),
        org_id: org.clone(),
        event: String::from("cancelled"),
        at: Timestamp::from_millis(6_000),
        period_end: None,
        recorded_at: Timestamp::from_millis(6_000),
        recorded_by: String::from("test"),
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.org_lifecycle(&org).await.unwrap(), Some(row.clone()));
    assert_eq!(store.org(&org).await.unwrap().unwrap().status, "deleted");
    assert_eq!(store.contract_events(&org).await.unwrap().len(), 1);
    assert_eq!(
        store.org_lifecycles(None, 10, true).await.unwrap(),
        vec![row]
    );
    assert!(
        store
            .org_lifecycles(Some(&org), 10, true)
            .await
            .unwrap()
            .is_empty()
    );
}
