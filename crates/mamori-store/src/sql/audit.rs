//! [`AuditStore`] and [`AuditStoreTx`] in portable SQL.

use super::{SqlStore, SqlTx, expect_one, row_placeholders, sql, time_at};
use crate::Store as _;
use crate::audit::{SCAN_COLUMNS, SCAN_PAGES_AHEAD, SCAN_TEXT_COLUMNS};
use crate::db::Engine;
use crate::records::*;
use crate::{
    AuditFilter, AuditScan, AuditScanPage, AuditStore, AuditStoreTx, SeqOrder, SeqRange, StoreError,
};
use async_trait::async_trait;
use mamori_core::audit::GENESIS_HASH;
use mamori_core::{AccountId, AuditEventId, OrgId, Timestamp};
use sqlx::Row;
use sqlx::any::AnyRow;
use std::ops::RangeInclusive;

const AUDIT_COLUMNS: &str = "id, chain, seq, org_id, actor_type, actor_id, actor_name_sealed, \
    action, target_type, target_id, outcome, ip, user_agent, request_id, occurred_at, details, \
    prev_hash, hash";
const AUDIT_COLUMN_COUNT: usize = 18;
/// Rows per multi-row `INSERT` (64 x 18 = 1,152 parameters). SQLite's are anonymous (see
/// `row_placeholders`), so a statement's binding cost grows with its parameters, not their
/// square.
const INSERT_CHUNK: usize = 64;
const HEAD_COLUMNS: &str =
    "chain, last_seq, last_hash, anchor_seq, anchor_hash, checkpoint_seq, checkpoint_at";
const CHECKPOINT_COLUMNS: &str = "chain, seq, hash, signed_at, key_id, signature";

/// Reads a chain for [`AuditStore::audit_scan`] on SQLite: rusqlite on a read-only
/// connection of its own, on a blocking thread. Rows are read in place from SQLite's own
/// buffers (sqlx's SQLite driver copies every value of every row into its own allocation and
/// hands each row over between threads, about 5 µs a row, more than hashing the event).
fn scan_sqlite(
    path: &std::path::Path,
    chain: &str,
    seqs: RangeInclusive<i64>,
    pages: &tokio::sync::mpsc::Sender<Result<AuditScanPage, StoreError>>,
) -> Result<(), StoreError> {
    use rusqlite::types::ValueRef;
    let connection = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // A writer holding the lock is waited for, as on the pool's own connections.
    connection.busy_timeout(std::time::Duration::from_secs(10))?;
    // The file's pages are read where the kernel keeps them, not copied into SQLite's cache
    // first (up to 1 GiB of the file; the rest, and the WAL, are read as usual).
    connection.pragma_update(None, "mmap_size", 1_i64 << 30)?;
    let mut statement = connection.prepare(&format!(
        "SELECT {SCAN_COLUMNS} FROM audit_events WHERE chain = ?1 AND seq >= ?2 AND seq <= ?3 \
         ORDER BY seq"
    ))?;
    let mut rows = statement.query(rusqlite::params![chain, seqs.start(), seqs.end()])?;
    let mut page = AuditScanPage::default();
    while let Some(row) = rows.next()? {
        let seq: i64 = row.get(0)?;
        let text = |column: usize| -> Result<Option<&str>, StoreError> {
            match row.get_ref(column + 2)? {
                ValueRef::Null => Ok(None),
                ValueRef::Text(bytes) => std::str::from_utf8(bytes).map(Some).map_err(|_| {
                    StoreError::Corrupt(format!("audit event seq {seq}: text is not UTF-8"))
                }),
                _ => Err(StoreError::Corrupt(format!(
                    "audit event seq {seq}: a text column holds another type"
                ))),
            }
        };
        let mut columns = [None; SCAN_TEXT_COLUMNS];
        for (column, value) in columns.iter_mut().enumerate() {
            *value = text(column)?;
        }
        page.push(seq, row.get(1)?, columns)?;
        if page.is_full() && pages.blocking_send(Ok(page.take())).is_err() {
            // The reader is gone: nothing more to read for.
            return Ok(());
        }
    }
    if !page.is_empty() {
        let _ = pages.blocking_send(Ok(page));
    }
    Ok(())
}

/// Reads a chain for [`AuditStore::audit_scan`] on PostgreSQL: `COPY (SELECT ...) TO STDOUT`
/// in the binary format, parsed as it streams (sqlx's row decoding costs more per row than
/// hashing the event). `COPY` takes no bind parameters: the chain's name goes in as an
/// escaped string literal, the first `seq` as a number.
async fn scan_postgres(
    pool: &sqlx::PgPool,
    chain: &str,
    seqs: RangeInclusive<i64>,
    pages: &tokio::sync::mpsc::Sender<Result<AuditScanPage, StoreError>>,
) -> Result<(), StoreError> {
    use futures_util::TryStreamExt as _;
    use sqlx::postgres::PgPoolCopyExt as _;
    let literal = format!("E'{}'", chain.replace('\\', "\\\\").replace('\'', "''"));
    let statement = format!(
        "COPY (SELECT {SCAN_COLUMNS} FROM audit_events WHERE chain = {literal} \
         AND seq >= {} AND seq <= {} ORDER BY seq) TO STDOUT (FORMAT binary)",
        seqs.start(),
        seqs.end()
    );
    let mut data = pool.copy_out_raw(&statement).await?;
    let mut copy = CopyReader::default();
    let mut page = AuditScanPage::default();
    while let Some(chunk) = data.try_next().await? {
        copy.pending.extend_from_slice(&chunk);
        let consumed = copy.read(&mut page)?;
        copy.pending.drain(..consumed);
        if page.is_full() && pages.send(Ok(page.take())).await.is_err() {
            return Ok(());
        }
    }
    if !copy.ended || !copy.pending.is_empty() {
        return Err(StoreError::Corrupt(String::from(
            "the audit chain's COPY stream ended early",
        )));
    }
    if !page.is_empty() {
        let _ = pages.send(Ok(page)).await;
    }
    Ok(())
}

/// The parser of a binary `COPY` stream of [`SCAN_COLUMNS`] (the format of PostgreSQL's
/// `COPY` documentation: a signature, flags and a header extension, then per row a field
/// count and each field as a length, -1 for NULL, and its bytes; a count of -1 ends it).
#[derive(Default)]
struct CopyReader {
    /// Bytes received and not yet read: at most the start of one row.
    pending: Vec<u8>,
    header_read: bool,
    ended: bool,
}

const COPY_SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// A cursor over the bytes of a binary `COPY` stream; `None` when they stop short.
struct CopyBytes<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> CopyBytes<'a> {
    fn take(&mut self, length: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(length)?;
        let taken = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(taken)
    }

    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    /// A field: `None` when the bytes stop short (nothing is read then), `Some(None)` for
    /// NULL.
    fn field(&mut self) -> Option<Option<&'a [u8]>> {
        let at = self.at;
        let field = match self.i32() {
            Some(-1) => Some(None),
            Some(length) => usize::try_from(length)
                .ok()
                .and_then(|length| self.take(length))
                .map(Some),
            None => None,
        };
        if field.is_none() {
            self.at = at;
        }
        field
    }
}

impl CopyReader {
    /// Reads every whole row of `pending` into `page`; returns the bytes read. A row cut
    /// short waits in `pending` for the rest.
    fn read(&mut self, page: &mut AuditScanPage) -> Result<usize, StoreError> {
        let corrupt = |why: &str| StoreError::Corrupt(format!("audit chain COPY stream: {why}"));
        let mut bytes = CopyBytes {
            bytes: &self.pending,
            at: 0,
        };
        if !self.header_read {
            let Some(signature) = bytes.take(COPY_SIGNATURE.len()) else {
                return Ok(0);
            };
            if signature != COPY_SIGNATURE {
                return Err(corrupt("not the binary format"));
            }
            let (Some(_flags), Some(extension)) = (bytes.i32(), bytes.i32()) else {
                return Ok(0);
            };
            let extension = usize::try_from(extension).map_err(|_| corrupt("bad header"))?;
            if bytes.take(extension).is_none() {
                return Ok(0);
            }
            self.header_read = true;
        }
        let mut read = bytes.at;
        while !self.ended {
            let Some(fields) = bytes.i16() else { break };
            if fields == -1 {
                self.ended = true;
                read = bytes.at;
                break;
            }
            if usize::try_from(fields).ok() != Some(SCAN_TEXT_COLUMNS + 2) {
                return Err(corrupt("a row with another number of columns"));
            }
            let number = |field: Option<Option<&[u8]>>| -> Result<Option<i64>, StoreError> {
                match field {
                    None => Ok(None),
                    Some(None) => Err(corrupt("a NULL seq or time")),
                    Some(Some(bytes)) => Ok(Some(i64::from_be_bytes(
                        bytes
                            .try_into()
                            .map_err(|_| corrupt("a number of another size"))?,
                    ))),
                }
            };
            let Some(seq) = number(bytes.field())? else {
                break;
            };
            let Some(occurred_at) = number(bytes.field())? else {
                break;
            };
            let mut columns = [None; SCAN_TEXT_COLUMNS];
            let mut whole = true;
            for value in &mut columns {
                match bytes.field() {
                    Some(field) => {
                        *value = field
                            .map(|text| {
                                std::str::from_utf8(text)
                                    .map_err(|_| corrupt(&format!("seq {seq}: text is not UTF-8")))
                            })
                            .transpose()?;
                    }
                    None => {
                        whole = false;
                        break;
                    }
                }
            }
            if !whole {
                break;
            }
            page.push(seq, occurred_at, columns)?;
            read = bytes.at;
        }
        Ok(read)
    }
}

fn audit_from(row: &AnyRow) -> Result<AuditEventRow, StoreError> {
    Ok(AuditEventRow {
        id: AuditEventId::from_stored(row.try_get("id")?),
        chain: row.try_get("chain")?,
        seq: row.try_get("seq")?,
        org_id: row.try_get("org_id")?,
        actor_type: row.try_get("actor_type")?,
        actor_id: row.try_get("actor_id")?,
        actor_name_sealed: row.try_get("actor_name_sealed")?,
        action: row.try_get("action")?,
        target_type: row.try_get("target_type")?,
        target_id: row.try_get("target_id")?,
        outcome: row.try_get("outcome")?,
        ip: row.try_get("ip")?,
        user_agent: row.try_get("user_agent")?,
        request_id: row.try_get("request_id")?,
        occurred_at: time_at(row, "occurred_at")?,
        details: row.try_get("details")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

fn head_from(row: &AnyRow) -> Result<ChainHeadRow, StoreError> {
    Ok(ChainHeadRow {
        chain: row.try_get("chain")?,
        last_seq: row.try_get("last_seq")?,
        last_hash: row.try_get("last_hash")?,
        anchor_seq: row.try_get("anchor_seq")?,
        anchor_hash: row.try_get("anchor_hash")?,
        checkpoint_seq: row.try_get("checkpoint_seq")?,
        checkpoint_at: time_at(row, "checkpoint_at")?,
    })
}

fn checkpoint_from(row: &AnyRow) -> Result<CheckpointRow, StoreError> {
    Ok(CheckpointRow {
        chain: row.try_get("chain")?,
        seq: row.try_get("seq")?,
        hash: row.try_get("hash")?,
        signed_at: time_at(row, "signed_at")?,
        key_id: row.try_get("key_id")?,
        signature: row.try_get("signature")?,
    })
}

fn viewer_from(row: &AnyRow) -> Result<AuditViewerRow, StoreError> {
    Ok(AuditViewerRow {
        org_id: OrgId::from_stored(row.try_get("org_id")?),
        subject_type: row.try_get("subject_type")?,
        subject_id: row.try_get("subject_id")?,
        granted_at: time_at(row, "granted_at")?,
    })
}

/// A value bound to a filter's placeholder.
enum Bind {
    Int(i64),
    Text(String),
}

#[async_trait]
impl AuditStore for SqlStore {
    async fn audit_chains(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ChainHeadRow>, StoreError> {
        let rows = sqlx::query(sql(format!(
            "SELECT {HEAD_COLUMNS} FROM audit_chain_heads WHERE chain > $1 ORDER BY chain LIMIT $2"
        )))
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(head_from).collect()
    }

    async fn audit_chain(&self, chain: &str) -> Result<Option<ChainHeadRow>, StoreError> {
        let row = sqlx::query(sql(format!(
            "SELECT {HEAD_COLUMNS} FROM audit_chain_heads WHERE chain = $1"
        )))
        .bind(chain)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(head_from).transpose()
    }

    async fn audit_events(
        &self,
        chain: &str,
        from_seq: i64,
        limit: u32,
    ) -> Result<Vec<AuditEventRow>, StoreError> {
        let rows = sqlx::query(sql(format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE chain = $1 AND seq >= $2 \
             ORDER BY seq LIMIT $3"
        )))
        .bind(chain)
        .bind(from_seq)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(audit_from).collect()
    }

    async fn audit_scan(
        &self,
        chain: &str,
        seqs: RangeInclusive<i64>,
    ) -> Result<AuditScan, StoreError> {
        let (sender, pages) = tokio::sync::mpsc::channel(SCAN_PAGES_AHEAD);
        let chain = chain.to_owned();
        match self.engine() {
            Engine::Sqlite => {
                use std::str::FromStr as _;
                let options = sqlx::sqlite::SqliteConnectOptions::from_str(self.url())?;
                let path = options.get_filename().to_path_buf();
                tokio::task::spawn_blocking(move || {
                    if let Err(error) = scan_sqlite(&path, &chain, seqs, &sender) {
                        let _ = sender.blocking_send(Err(error));
                    }
                });
            }
            Engine::Postgres => {
                let pool = self
                    .scan_pool
                    .get_or_try_init(|| {
                        sqlx::postgres::PgPoolOptions::new()
                            .max_connections(2)
                            .connect(self.url())
                    })
                    .await?
                    .clone();
                tokio::spawn(async move {
                    if let Err(error) = scan_postgres(&pool, &chain, seqs, &sender).await {
                        let _ = sender.send(Err(error)).await;
                    }
                });
            }
        }
        Ok(AuditScan { pages })
    }

    async fn audit_events_page(
        &self,
        chain: &str,
        filter: &AuditFilter,
        seqs: SeqRange,
        order: SeqOrder,
        limit: u32,
    ) -> Result<Vec<AuditEventRow>, StoreError> {
        let mut conditions = vec![String::from("chain = $1")];
        let mut binds: Vec<Bind> = Vec::new();
        let mut add = |condition: &str, bind: Bind| {
            let n = binds.len() + 2;
            conditions.push(condition.replace('?', &format!("${n}")));
            binds.push(bind);
        };
        if let Some(seq) = seqs.after {
            add("seq > ?", Bind::Int(seq));
        }
        if let Some(seq) = seqs.before {
            add("seq < ?", Bind::Int(seq));
        }
        if let Some(from) = filter.from {
            add("occurred_at >= ?", Bind::Int(from.as_millis()));
        }
        if let Some(to) = filter.to {
            add("occurred_at < ?", Bind::Int(to.as_millis()));
        }
        if let Some(prefix) = &filter.action_prefix {
            // substr/length instead of LIKE: action names contain `_`, a LIKE wildcard.
            add(
                "substr(action, 1, length(?)) = ?",
                Bind::Text(prefix.clone()),
            );
        }
        if let Some(actor) = &filter.actor_id {
            add("actor_id = ?", Bind::Text(actor.clone()));
        }
        if let Some(target) = &filter.target_id {
            add("target_id = ?", Bind::Text(target.clone()));
        }
        if let Some(outcome) = &filter.outcome {
            add("outcome = ?", Bind::Text(outcome.clone()));
        }
        let limit_at = binds.len() + 2;
        let text = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE {} ORDER BY seq {} LIMIT ${limit_at}",
            conditions.join(" AND "),
            match order {
                SeqOrder::NewestFirst => "DESC",
                SeqOrder::OldestFirst => "ASC",
            }
        );
        let mut query = sqlx::query(sql(text)).bind(chain);
        for bind in binds {
            query = match bind {
                Bind::Int(value) => query.bind(value),
                Bind::Text(value) => query.bind(value),
            };
        }
        let rows = query.bind(i64::from(limit)).fetch_all(&self.pool).await?;
        rows.iter().map(audit_from).collect()
    }

    async fn audit_checkpoints(
        &self,
        chain: &str,
        from_seq: i64,
        limit: u32,
    ) -> Result<Vec<CheckpointRow>, StoreError> {
        let rows = sqlx::query(sql(format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE chain = $1 AND seq >= $2 \
             ORDER BY seq LIMIT $3"
        )))
        .bind(chain)
        .bind(from_seq)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(checkpoint_from).collect()
    }

    async fn chains_due_for_checkpoint(
        &self,
        min_events: i64,
        stale_before: Timestamp,
        limit: u32,
    ) -> Result<Vec<ChainHeadRow>, StoreError> {
        let rows = sqlx::query(sql(format!(
            "SELECT {HEAD_COLUMNS} FROM audit_chain_heads WHERE last_seq > checkpoint_seq \
             AND (last_seq - checkpoint_seq >= $1 OR checkpoint_at < $2) ORDER BY chain LIMIT $3"
        )))
        .bind(min_events)
        .bind(stale_before.as_millis())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(head_from).collect()
    }

    async fn chains_with_events_before(
        &self,
        cutoff: Timestamp,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT chain FROM audit_events WHERE occurred_at < $1 ORDER BY chain LIMIT $2",
        )
        .bind(cutoff.as_millis())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| row.try_get("chain").map_err(StoreError::from))
            .collect()
    }

    async fn is_audit_viewer(&self, org: &OrgId, account: &AccountId) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 AS granted FROM audit_viewers v WHERE v.org_id = $1 AND ( \
               (v.subject_type = 'account' AND v.subject_id = $2) \
               OR (v.subject_type = 'team' AND v.subject_id IN \
                   (SELECT team_id FROM team_members WHERE org_id = $1 AND account_id = $2))) \
             LIMIT 1",
        )
        .bind(org.as_str())
        .bind(account.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    async fn audit_viewers(&self, org: &OrgId) -> Result<Vec<AuditViewerRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT org_id, subject_type, subject_id, granted_at FROM audit_viewers \
             WHERE org_id = $1 ORDER BY subject_type, subject_id",
        )
        .bind(org.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(viewer_from).collect()
    }
}

#[async_trait]
impl AuditStoreTx for SqlTx {
    async fn advance_audit_chain(
        &mut self,
        chain: &str,
        count: u32,
    ) -> Result<ChainPosition, StoreError> {
        // The UPDATE takes the head's row lock on PostgreSQL, so concurrent appends to one
        // chain queue here and every event sees the hash of the one before it. A chain's
        // first event finds no head: it is made, and the UPDATE runs again.
        let advance = "UPDATE audit_chain_heads SET last_seq = last_seq + $1 WHERE chain = $2 \
             RETURNING last_seq, last_hash";
        let advanced = sqlx::query(advance)
            .bind(i64::from(count))
            .bind(chain)
            .fetch_optional(&mut *self.tx)
            .await?;
        let row = match advanced {
            Some(row) => row,
            None => {
                sqlx::query(
                    "INSERT INTO audit_chain_heads (chain, last_seq, last_hash) \
                     VALUES ($1, 0, $2) ON CONFLICT (chain) DO NOTHING",
                )
                .bind(chain)
                .bind(GENESIS_HASH)
                .execute(&mut *self.tx)
                .await?;
                sqlx::query(advance)
                    .bind(i64::from(count))
                    .bind(chain)
                    .fetch_one(&mut *self.tx)
                    .await?
            }
        };
        let last_seq: i64 = row.try_get("last_seq")?;
        Ok(ChainPosition {
            seq: last_seq - i64::from(count) + 1,
            prev_hash: row.try_get("last_hash")?,
        })
    }

    async fn insert_audit_events(&mut self, events: &[AuditEventRow]) -> Result<(), StoreError> {
        let Some(last) = events.last() else {
            return Ok(());
        };
        for chunk in events.chunks(INSERT_CHUNK) {
            let placeholders = row_placeholders(self.engine, chunk.len(), AUDIT_COLUMN_COUNT);
            let mut query = sqlx::query(sql(format!(
                "INSERT INTO audit_events ({AUDIT_COLUMNS}) VALUES {placeholders}"
            )));
            for event in chunk {
                query = query
                    .bind(event.id.as_str())
                    .bind(event.chain.as_str())
                    .bind(event.seq)
                    .bind(event.org_id.as_deref())
                    .bind(event.actor_type.as_str())
                    .bind(event.actor_id.as_deref())
                    .bind(event.actor_name_sealed.as_deref())
                    .bind(event.action.as_str())
                    .bind(event.target_type.as_deref())
                    .bind(event.target_id.as_deref())
                    .bind(event.outcome.as_str())
                    .bind(event.ip.as_deref())
                    .bind(event.user_agent.as_deref())
                    .bind(event.request_id.as_deref())
                    .bind(event.occurred_at.as_millis())
                    .bind(event.details.as_str())
                    .bind(event.prev_hash.as_str())
                    .bind(event.hash.as_str());
            }
            query.execute(&mut *self.tx).await?;
        }
        let result = sqlx::query(
            "UPDATE audit_chain_heads SET last_hash = $1 WHERE chain = $2 AND last_seq = $3",
        )
        .bind(last.hash.as_str())
        .bind(last.chain.as_str())
        .bind(last.seq)
        .execute(&mut *self.tx)
        .await?;
        expect_one(result.rows_affected())
    }

    async fn actor_name_as_stored(
        &mut self,
        actor_type: &str,
        actor_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let statement = match actor_type {
            "account" => "SELECT display_name_sealed AS name FROM accounts WHERE id = $1",
            "operator" => "SELECT name FROM operator_tokens WHERE id = $1",
            "app" => "SELECT name FROM apps WHERE id = $1",
            _ => return Ok(None),
        };
        let row = sqlx::query(statement)
            .bind(actor_id)
            .fetch_optional(&mut *self.tx)
            .await?;
        Ok(match row {
            Some(row) => row.try_get::<Option<String>, _>("name")?,
            None => None,
        })
    }

    async fn insert_audit_checkpoint(
        &mut self,
        checkpoint: &CheckpointRow,
    ) -> Result<(), StoreError> {
        // The head's row lock first, whether or not it moves, as every writer of a chain
        // takes it (see `purge_audit_prefix`).
        sqlx::query(
            "UPDATE audit_chain_heads SET \
             checkpoint_at = CASE WHEN checkpoint_seq < $1 THEN $2 ELSE checkpoint_at END, \
             checkpoint_seq = CASE WHEN checkpoint_seq < $1 THEN $1 ELSE checkpoint_seq END \
             WHERE chain = $3",
        )
        .bind(checkpoint.seq)
        .bind(checkpoint.signed_at.as_millis())
        .bind(checkpoint.chain.as_str())
        .execute(&mut *self.tx)
        .await?;
        sqlx::query(sql(format!(
            "INSERT INTO audit_checkpoints ({CHECKPOINT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (chain, seq) DO NOTHING"
        )))
        .bind(checkpoint.chain.as_str())
        .bind(checkpoint.seq)
        .bind(checkpoint.hash.as_str())
        .bind(checkpoint.signed_at.as_millis())
        .bind(checkpoint.key_id.as_str())
        .bind(checkpoint.signature.as_str())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn first_audit_seq_at_or_after(
        &mut self,
        chain: &str,
        cutoff: Timestamp,
    ) -> Result<i64, StoreError> {
        // A no-op UPDATE takes the head's row lock first, so appends and purges of one chain
        // do not interleave.
        let head = sqlx::query(
            "UPDATE audit_chain_heads SET anchor_seq = anchor_seq WHERE chain = $1 \
             RETURNING last_seq, anchor_seq",
        )
        .bind(chain)
        .fetch_optional(&mut *self.tx)
        .await?;
        let Some(head) = head else {
            return Ok(1);
        };
        let last_seq: i64 = head.try_get("last_seq")?;
        let anchor_seq: i64 = head.try_get("anchor_seq")?;
        let row = sqlx::query(
            "SELECT MIN(seq) AS first FROM audit_events \
             WHERE chain = $1 AND seq > $2 AND occurred_at >= $3",
        )
        .bind(chain)
        .bind(anchor_seq)
        .bind(cutoff.as_millis())
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(row
            .try_get::<Option<i64>, _>("first")?
            .unwrap_or(last_seq + 1))
    }

    async fn purge_audit_prefix(
        &mut self,
        chain: &str,
        up_to_seq: i64,
        sign: &(dyn for<'h> Fn(&'h str) -> CheckpointRow + Send + Sync),
    ) -> Result<u64, StoreError> {
        // The chain's head first: its appenders, its checkpoints and its cutters all take the
        // head's row lock before the rows behind it, so they queue on it in one order and
        // cannot deadlock (two cutters deleting ranges of different sizes lock the events in
        // different orders on PostgreSQL). A cut another one made meanwhile leaves nothing.
        let head = sqlx::query(
            "UPDATE audit_chain_heads SET anchor_seq = anchor_seq WHERE chain = $1 \
             RETURNING anchor_seq",
        )
        .bind(chain)
        .fetch_optional(&mut *self.tx)
        .await?;
        let Some(head) = head else {
            return Ok(0);
        };
        if head.try_get::<i64, _>("anchor_seq")? >= up_to_seq {
            return Ok(0);
        }
        let anchor = sqlx::query("SELECT hash FROM audit_events WHERE chain = $1 AND seq = $2")
            .bind(chain)
            .bind(up_to_seq)
            .fetch_optional(&mut *self.tx)
            .await?;
        let Some(anchor) = anchor else {
            return Ok(0);
        };
        let anchor_hash: String = anchor.try_get("hash")?;
        let signed = sign(&anchor_hash);
        if signed.chain != chain || signed.seq != up_to_seq || signed.hash != anchor_hash {
            return Err(StoreError::Corrupt(String::from(
                "the purge's signature names another anchor",
            )));
        }
        let deleted = sqlx::query("DELETE FROM audit_events WHERE chain = $1 AND seq <= $2")
            .bind(chain)
            .bind(up_to_seq)
            .execute(&mut *self.tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM audit_checkpoints WHERE chain = $1 AND seq <= $2")
            .bind(chain)
            .bind(up_to_seq)
            .execute(&mut *self.tx)
            .await?;
        sqlx::query(sql(format!(
            "INSERT INTO audit_checkpoints ({CHECKPOINT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (chain, seq) DO UPDATE SET hash = excluded.hash, \
             signed_at = excluded.signed_at, key_id = excluded.key_id, \
             signature = excluded.signature"
        )))
        .bind(signed.chain.as_str())
        .bind(signed.seq)
        .bind(signed.hash.as_str())
        .bind(signed.signed_at.as_millis())
        .bind(signed.key_id.as_str())
        .bind(signed.signature.as_str())
        .execute(&mut *self.tx)
        .await?;
        let result = sqlx::query(
            "UPDATE audit_chain_heads SET anchor_seq = $1, anchor_hash = $2 \
             WHERE chain = $3 AND anchor_seq < $1",
        )
        .bind(up_to_seq)
        .bind(anchor_hash)
        .bind(chain)
        .execute(&mut *self.tx)
        .await?;
        expect_one(result.rows_affected())?;
        Ok(deleted)
    }

    async fn app_may_write(&mut self, org: &str, app: &str) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 AS ok FROM org_apps a JOIN organizations o ON o.id = a.org_id \
             WHERE a.org_id = $1 AND a.app_id = $2 AND o.status = 'active'",
        )
        .bind(org)
        .bind(app)
        .fetch_optional(&mut *self.tx)
        .await?;
        Ok(row.is_some())
    }

    async fn grant_audit_viewer(&mut self, viewer: &AuditViewerRow) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "INSERT INTO audit_viewers (org_id, subject_type, subject_id, granted_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (org_id, subject_type, subject_id) DO NOTHING",
        )
        .bind(viewer.org_id.as_str())
        .bind(viewer.subject_type.as_str())
        .bind(viewer.subject_id.as_str())
        .bind(viewer.granted_at.as_millis())
        .execute(&mut *self.tx)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn revoke_audit_viewer(
        &mut self,
        org: &OrgId,
        subject_type: &str,
        subject_id: &str,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "DELETE FROM audit_viewers WHERE org_id = $1 AND subject_type = $2 AND subject_id = $3",
        )
        .bind(org.as_str())
        .bind(subject_type)
        .bind(subject_id)
        .execute(&mut *self.tx)
        .await?;
        Ok(result.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::audit::ScanText;

    /// A binary COPY stream of `rows` (seq, time, then the text columns), as PostgreSQL
    /// writes it.
    fn stream(rows: &[(i64, i64, [Option<&str>; SCAN_TEXT_COLUMNS])]) -> Vec<u8> {
        let mut out = COPY_SIGNATURE.to_vec();
        out.extend_from_slice(&0_i32.to_be_bytes());
        out.extend_from_slice(&3_i32.to_be_bytes());
        out.extend_from_slice(b"ext");
        for (seq, time, text) in rows {
            out.extend_from_slice(&i16::try_from(SCAN_TEXT_COLUMNS + 2).unwrap().to_be_bytes());
            for number in [seq, time] {
                out.extend_from_slice(&8_i32.to_be_bytes());
                out.extend_from_slice(&number.to_be_bytes());
            }
            for value in text {
                match value {
                    None => out.extend_from_slice(&(-1_i32).to_be_bytes()),
                    Some(value) => {
                        out.extend_from_slice(&i32::try_from(value.len()).unwrap().to_be_bytes());
                        out.extend_from_slice(value.as_bytes());
                    }
                }
            }
        }
        out.extend_from_slice(&(-1_i16).to_be_bytes());
        out
    }

    fn row(seq: i64, details: &str) -> (i64, i64, [Option<&str>; SCAN_TEXT_COLUMNS]) {
        let mut text = [Some("x"); SCAN_TEXT_COLUMNS];
        text[ScanText::OrgId as usize] = None;
        text[ScanText::Details as usize] = Some(details);
        text[ScanText::Id as usize] = Some("evt_ü");
        text[ScanText::UserAgent as usize] = Some("");
        (seq, 1_700_000_000_000 + seq, text)
    }

    /// Feeds `bytes` in pieces of `size`, as the driver hands them over.
    fn read_in_pieces(bytes: &[u8], size: usize) -> Result<(AuditScanPage, bool), StoreError> {
        let mut copy = CopyReader::default();
        let mut page = AuditScanPage::default();
        for piece in bytes.chunks(size) {
            copy.pending.extend_from_slice(piece);
            let read = copy.read(&mut page)?;
            copy.pending.drain(..read);
        }
        Ok((page, copy.ended && copy.pending.is_empty()))
    }

    #[test]
    fn a_copy_stream_reads_the_same_whatever_its_pieces() {
        let rows = [
            row(1, "{}"),
            row(2, "{\"a\":\"ø\"}"),
            row(3, "{\"b\":[1,2]}"),
        ];
        let bytes = stream(&rows);
        for size in 1..=bytes.len() {
            let (page, ended) = read_in_pieces(&bytes, size).unwrap();
            assert!(ended, "pieces of {size}");
            assert_eq!(page.len(), 3, "pieces of {size}");
            for (index, (seq, time, text)) in rows.iter().enumerate() {
                let event = page.event(index).unwrap();
                assert_eq!(event.seq, *seq);
                assert_eq!(event.occurred_at.as_millis(), *time);
                assert_eq!(Some(event.details), text[ScanText::Details as usize]);
                assert_eq!(event.id, "evt_ü");
                assert_eq!(event.org_id, None);
                assert_eq!(event.user_agent, Some(""));
            }
        }
        // Cut before its end: not ended, and the caller refuses it.
        let (page, ended) = read_in_pieces(&bytes[..bytes.len() - 2], 7).unwrap();
        assert!(!ended);
        assert_eq!(page.len(), 3);
        let (page, ended) = read_in_pieces(&bytes[..bytes.len() - 40], 7).unwrap();
        assert!(!ended);
        assert_eq!(page.len(), 2);
    }

    #[test]
    fn a_malformed_copy_stream_is_refused() {
        let good = stream(&[row(1, "{}")]);
        // Another signature.
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(read_in_pieces(&bad, 64).is_err());
        // A required column NULL.
        let mut nulled = row(1, "{}");
        nulled.2[ScanText::Hash as usize] = None;
        assert!(read_in_pieces(&stream(&[nulled]), 64).is_err());
        // Text that is not UTF-8.
        let mut bytes = stream(&[row(1, "{}")]);
        let at = bytes.windows(5).position(|w| w == b"evt_\xc3").unwrap();
        bytes[at + 4] = 0xff;
        assert!(read_in_pieces(&bytes, 64).is_err());
        // Another number of columns.
        let mut bytes = good.clone();
        let at = COPY_SIGNATURE.len() + 4 + 4 + 3;
        bytes[at + 1] = 17;
        assert!(read_in_pieces(&bytes, 64).is_err());
    }
}
