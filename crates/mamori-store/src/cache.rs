//! The credential cache: the rows every authenticated request reads (the session or token
//! behind a bearer secret, and the account), kept in memory so that a request needs no
//! database round trip.
//!
//! Invariants:
//! - **Only positive answers are cached.** A secret that matches nothing is looked up again
//!   every time, so a credential made a moment ago on another node works at once.
//! - **A transaction that revokes or changes a credential or an account evicts it here at
//!   commit** (`SqlTx::evictions`), so on this node a revocation
//!   takes effect before the revoking request answers. Each such transaction also bumps the
//!   data store's `credential_epoch` row.
//! - **Other processes' revocations arrive within one sync.** [`CredentialCache::synced`]
//!   (called by `SqlStore::sync_credential_cache`, every 250 ms while `serve` runs) reads the
//!   epoch; if anyone else bumped it, everything cached is dropped. The cache answers only
//!   while the last successful sync is younger than [`MAX_SYNC_AGE`]: with no sync running
//!   (the command line, a stalled task, a lost database) every read goes to the database.
//! - **A read that raced an eviction is not kept.** Each fill carries the generation it
//!   started under; an eviction bumps the generation, and a fill from an older one is dropped.
//! - **Entries are refreshed after [`MAX_ENTRY_AGE`]** whatever happens, and each map is
//!   bounded by [`MAX_ENTRIES`] (full: it starts again empty).
//!
//! The cache never decides anything: callers check expiry and status on what it returns as
//! they would on a row from the database, and ask the database again before refusing.

use crate::StoreError;
use crate::credentials::PersonalTokenRow;
use crate::records::{AccountRow, AppRow, OperatorTokenRow, SessionRow};
use mamori_core::{AccountId, Timestamp};
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

/// How old the last successful sync may be for the cache to answer.
pub const MAX_SYNC_AGE: Duration = Duration::from_millis(1500);
/// How long one entry is trusted before it is read again.
pub const MAX_ENTRY_AGE: Duration = Duration::from_secs(60);
/// Entries per map.
pub const MAX_ENTRIES: usize = 100_000;

/// What a transaction asks the cache to forget when it commits: everything cached for these
/// accounts (their row, sessions and personal access tokens).
#[derive(Debug, Default)]
pub(crate) struct Evictions {
    accounts: Vec<AccountId>,
}

impl Evictions {
    pub fn account(&mut self, account: &AccountId) {
        if !self.accounts.contains(account) {
            self.accounts.push(account.clone());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }
}

struct Entry<T> {
    row: T,
    filled_at: Instant,
}

struct Map<K, T> {
    rows: HashMap<K, Entry<T>>,
}

impl<K: Eq + Hash, T: Clone> Map<K, T> {
    fn new() -> Self {
        Map {
            rows: HashMap::new(),
        }
    }

    fn get(&self, key: &K, now: Instant) -> Option<T> {
        self.rows
            .get(key)
            .filter(|entry| now.duration_since(entry.filled_at) < MAX_ENTRY_AGE)
            .map(|entry| entry.row.clone())
    }

    fn put(&mut self, key: K, row: T, now: Instant) {
        if self.rows.len() >= MAX_ENTRIES {
            self.rows.clear();
        }
        self.rows.insert(
            key,
            Entry {
                row,
                filled_at: now,
            },
        );
    }
}

struct Maps {
    /// By token hash.
    sessions: Map<String, SessionRow>,
    /// Session ID to token hash, for touches.
    session_hashes: HashMap<String, String>,
    /// By token hash.
    personal_tokens: Map<String, PersonalTokenRow>,
    /// Token ID to token hash, for touches.
    personal_token_hashes: HashMap<String, String>,
    accounts: Map<AccountId, AccountRow>,
    /// By token hash.
    operator_tokens: Map<String, OperatorTokenRow>,
    /// By secret hash.
    apps: Map<String, AppRow>,
}

impl Maps {
    fn new() -> Self {
        Maps {
            sessions: Map::new(),
            session_hashes: HashMap::new(),
            personal_tokens: Map::new(),
            personal_token_hashes: HashMap::new(),
            accounts: Map::new(),
            operator_tokens: Map::new(),
            apps: Map::new(),
        }
    }
}

/// See the module documentation.
pub struct CredentialCache {
    maps: RwLock<Maps>,
    generation: AtomicU64,
    /// When the last sync succeeded, and the epoch it saw.
    sync: Mutex<SyncState>,
}

struct SyncState {
    last_ok: Option<Instant>,
    epoch: Option<i64>,
}

/// A generation taken before a database read; the fill is kept only if nothing was evicted
/// meanwhile.
#[derive(Clone, Copy)]
pub(crate) struct Ticket(u64);

impl Default for CredentialCache {
    fn default() -> Self {
        CredentialCache {
            maps: RwLock::new(Maps::new()),
            generation: AtomicU64::new(0),
            sync: Mutex::new(SyncState {
                last_ok: None,
                epoch: None,
            }),
        }
    }
}

impl CredentialCache {
    /// Whether the cache may answer now.
    fn live(&self, now: Instant) -> bool {
        self.sync.lock().is_ok_and(|sync| {
            sync.last_ok
                .is_some_and(|at| now.duration_since(at) < MAX_SYNC_AGE)
        })
    }

    fn read<R>(&self, pick: impl FnOnce(&Maps, Instant) -> Option<R>) -> Option<R> {
        let now = Instant::now();
        if !self.live(now) {
            return None;
        }
        let maps = self.maps.read().ok()?;
        pick(&maps, now)
    }

    /// Read-through: `cached` when the cache had the row, otherwise the row `load` reads,
    /// kept by `fill` unless an eviction raced the read (the ticket is taken before `load`
    /// runs; futures do nothing until awaited).
    pub(crate) async fn read_through<R>(
        &self,
        cached: Option<R>,
        load: impl Future<Output = Result<Option<R>, StoreError>>,
        fill: impl FnOnce(&Self, Ticket, &R),
    ) -> Result<Option<R>, StoreError> {
        if cached.is_some() {
            return Ok(cached);
        }
        let ticket = self.ticket();
        let row = load.await?;
        if let Some(row) = &row {
            fill(self, ticket, row);
        }
        Ok(row)
    }

    pub(crate) fn ticket(&self) -> Ticket {
        Ticket(self.generation.load(Ordering::SeqCst))
    }

    fn fill(&self, ticket: Ticket, put: impl FnOnce(&mut Maps, Instant)) {
        let now = Instant::now();
        if !self.live(now) {
            return;
        }
        let Ok(mut maps) = self.maps.write() else {
            return;
        };
        // Checked under the write lock: an eviction bumps the generation under it too.
        if self.generation.load(Ordering::SeqCst) == ticket.0 {
            put(&mut maps, now);
        }
    }

    pub(crate) fn session(&self, token_hash: &str) -> Option<SessionRow> {
        self.read(|maps, now| maps.sessions.get(&token_hash.to_owned(), now))
    }

    pub(crate) fn fill_session(&self, ticket: Ticket, row: &SessionRow) {
        self.fill(ticket, |maps, now| {
            if maps.session_hashes.len() >= MAX_ENTRIES {
                maps.session_hashes.clear();
            }
            maps.session_hashes
                .insert(row.id.as_str().to_owned(), row.token_hash.clone());
            maps.sessions.put(row.token_hash.clone(), row.clone(), now);
        });
    }

    /// A session was seen: the cached row carries the new time, so the next request does not
    /// write it again.
    pub(crate) fn touch_session(&self, id: &str, now: Timestamp) {
        if let Ok(mut maps) = self.maps.write() {
            let Maps {
                sessions,
                session_hashes,
                ..
            } = &mut *maps;
            if let Some(entry) = session_hashes
                .get(id)
                .and_then(|hash| sessions.rows.get_mut(hash))
                .filter(|entry| entry.row.id.as_str() == id && entry.row.last_seen_at < now)
            {
                entry.row.last_seen_at = now;
            }
        }
    }

    pub(crate) fn personal_token(&self, token_hash: &str) -> Option<PersonalTokenRow> {
        self.read(|maps, now| maps.personal_tokens.get(&token_hash.to_owned(), now))
    }

    pub(crate) fn fill_personal_token(&self, ticket: Ticket, row: &PersonalTokenRow) {
        self.fill(ticket, |maps, now| {
            if maps.personal_token_hashes.len() >= MAX_ENTRIES {
                maps.personal_token_hashes.clear();
            }
            maps.personal_token_hashes
                .insert(row.id.as_str().to_owned(), row.token_hash.clone());
            maps.personal_tokens
                .put(row.token_hash.clone(), row.clone(), now);
        });
    }

    pub(crate) fn touch_personal_token(&self, id: &str, now: Timestamp) {
        if let Ok(mut maps) = self.maps.write() {
            let Maps {
                personal_tokens,
                personal_token_hashes,
                ..
            } = &mut *maps;
            if let Some(entry) = personal_token_hashes
                .get(id)
                .and_then(|hash| personal_tokens.rows.get_mut(hash))
                .filter(|entry| entry.row.id.as_str() == id)
            {
                entry.row.last_used_at = Some(now);
            }
        }
    }

    pub(crate) fn account(&self, id: &AccountId) -> Option<AccountRow> {
        self.read(|maps, now| maps.accounts.get(id, now))
    }

    pub(crate) fn fill_account(&self, ticket: Ticket, row: &AccountRow) {
        self.fill(ticket, |maps, now| {
            maps.accounts.put(row.id.clone(), row.clone(), now);
        });
    }

    pub(crate) fn operator_token(&self, token_hash: &str) -> Option<OperatorTokenRow> {
        self.read(|maps, now| maps.operator_tokens.get(&token_hash.to_owned(), now))
    }

    pub(crate) fn fill_operator_token(&self, ticket: Ticket, row: &OperatorTokenRow) {
        self.fill(ticket, |maps, now| {
            maps.operator_tokens
                .put(row.token_hash.clone(), row.clone(), now);
        });
    }

    pub(crate) fn app(&self, secret_hash: &str) -> Option<AppRow> {
        self.read(|maps, now| maps.apps.get(&secret_hash.to_owned(), now))
    }

    pub(crate) fn fill_app(&self, ticket: Ticket, row: &AppRow) {
        self.fill(ticket, |maps, now| {
            maps.apps.put(row.secret_hash.clone(), row.clone(), now);
        });
    }

    /// Forgets what a committed transaction changed.
    pub(crate) fn evict(&self, evictions: &Evictions) {
        if evictions.is_empty() {
            return;
        }
        let Ok(mut maps) = self.maps.write() else {
            return;
        };
        self.generation.fetch_add(1, Ordering::SeqCst);
        let gone = |account: &AccountId| evictions.accounts.contains(account);
        maps.sessions
            .rows
            .retain(|_, entry| !gone(&entry.row.account_id));
        maps.personal_tokens
            .rows
            .retain(|_, entry| !gone(&entry.row.account_id));
        maps.accounts.rows.retain(|id, _| !gone(id));
        let Maps {
            sessions,
            session_hashes,
            personal_tokens,
            personal_token_hashes,
            ..
        } = &mut *maps;
        session_hashes.retain(|_, hash| sessions.rows.contains_key(hash));
        personal_token_hashes.retain(|_, hash| personal_tokens.rows.contains_key(hash));
    }

    /// Forgets everything.
    pub(crate) fn clear(&self) {
        match self.maps.write() {
            Ok(mut maps) => {
                self.generation.fetch_add(1, Ordering::SeqCst);
                *maps = Maps::new();
            }
            Err(poisoned) => {
                self.generation.fetch_add(1, Ordering::SeqCst);
                let mut maps = poisoned.into_inner();
                *maps = Maps::new();
                self.maps.clear_poison();
            }
        }
    }

    /// This process committed the bump of the epoch from `epoch - 1` to `epoch` (and evicted
    /// what it changed). If the epoch it knew was older, someone else bumped it in between:
    /// forget everything.
    pub(crate) fn bumped_here(&self, epoch: i64) {
        let foreign = match self.sync.lock() {
            Ok(mut sync) => {
                let foreign = sync.epoch.is_some_and(|known| known + 1 < epoch);
                if sync.epoch.is_none_or(|known| known < epoch) {
                    sync.epoch = Some(epoch);
                }
                foreign
            }
            Err(_) => true,
        };
        if foreign {
            self.clear();
        }
    }

    /// A sync read the epoch; anything newer than what this process knows was someone else's.
    pub(crate) fn synced(&self, epoch: i64) {
        let foreign = match self.sync.lock() {
            Ok(mut sync) => {
                let foreign = sync.epoch != Some(epoch) && sync.epoch.is_none_or(|k| k < epoch);
                if foreign || sync.epoch.is_none() {
                    sync.epoch = Some(epoch);
                }
                foreign
            }
            Err(_) => true,
        };
        if foreign {
            self.clear();
        }
        if let Ok(mut sync) = self.sync.lock() {
            sync.last_ok = Some(Instant::now());
        }
    }

    /// A sync failed: stop answering until one succeeds.
    pub(crate) fn sync_failed(&self) {
        if let Ok(mut sync) = self.sync.lock() {
            sync.last_ok = None;
        }
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mamori_core::SessionId;

    fn session(account: &str, hash: &str) -> SessionRow {
        SessionRow {
            id: SessionId::from_stored(format!("ses_{hash}")),
            token_hash: hash.to_owned(),
            account_id: AccountId::from_stored(account.to_owned()),
            created_at: Timestamp::from_millis(1),
            last_seen_at: Timestamp::from_millis(1),
            ip: None,
            user_agent: None,
        }
    }

    #[test]
    fn answers_only_while_synced() {
        let cache = CredentialCache::default();
        let row = session("acc_a", "h1");
        cache.fill_session(cache.ticket(), &row);
        assert_eq!(
            cache.session("h1"),
            None,
            "never synced: no answers, no fills"
        );
        cache.synced(0);
        cache.fill_session(cache.ticket(), &row);
        assert_eq!(cache.session("h1"), Some(row));
        cache.sync_failed();
        assert_eq!(cache.session("h1"), None);
    }

    #[test]
    fn a_fill_that_raced_an_eviction_is_dropped() {
        let cache = CredentialCache::default();
        cache.synced(0);
        let ticket = cache.ticket();
        let mut evictions = Evictions::default();
        evictions.account(&AccountId::from_stored("acc_a".to_owned()));
        cache.evict(&evictions);
        cache.fill_session(ticket, &session("acc_a", "h1"));
        assert_eq!(cache.session("h1"), None);
    }

    #[test]
    fn eviction_forgets_only_that_account() {
        let cache = CredentialCache::default();
        cache.synced(0);
        cache.fill_session(cache.ticket(), &session("acc_a", "h1"));
        cache.fill_session(cache.ticket(), &session("acc_b", "h2"));
        let mut evictions = Evictions::default();
        evictions.account(&AccountId::from_stored("acc_a".to_owned()));
        cache.evict(&evictions);
        assert_eq!(cache.session("h1"), None);
        assert!(cache.session("h2").is_some());
    }

    #[test]
    fn a_foreign_epoch_bump_forgets_everything() {
        let cache = CredentialCache::default();
        cache.synced(4);
        cache.fill_session(cache.ticket(), &session("acc_a", "h1"));
        cache.bumped_here(5);
        assert!(cache.session("h1").is_some(), "our own bump");
        cache.bumped_here(7);
        assert_eq!(cache.session("h1"), None, "6 was someone else's");
        cache.fill_session(cache.ticket(), &session("acc_a", "h1"));
        cache.synced(7);
        assert!(cache.session("h1").is_some());
        cache.synced(8);
        assert_eq!(cache.session("h1"), None);
    }
}
