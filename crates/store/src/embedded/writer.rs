//! The writer thread: the only connection that writes. It drains the request queue into one
//! transaction per batch (group commit: one fsync acknowledges them all), publishes the
//! batch's events to watchers, and between batches does the housekeeping that keeps the file
//! bounded: TTL expiry, compaction in small chunks, WAL checkpoints.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use tokio::sync::oneshot;

use super::{EmbeddedOptions, Shared, unix_millis};
use crate::{EventKind, KeyValue, Result, Revision, StoreError, WatchEvent};

/// More requests than this wait for the next commit, bounding a batch's latency.
const MAX_BATCH: usize = 512;
/// Revisions removed per compaction transaction, so writers never wait long behind one.
const COMPACTION_CHUNK: i64 = 4096;
/// Expired keys deleted per sweep transaction.
const TTL_CHUNK: i64 = 1024;
/// How often the revision is sampled to find "the revision of `window` ago".
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// How often the WAL is checked for a truncating checkpoint.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);
/// A WAL larger than this is checkpointed and truncated.
const WAL_LIMIT_BYTES: u64 = 8 << 20;

#[derive(Debug)]
pub(super) enum Op {
    Create {
        key: String,
        value: Bytes,
        expires_at: Option<i64>,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Revision,
        expires_at: Option<i64>,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
    Compact {
        revision: Revision,
    },
}

#[derive(Debug)]
pub(super) enum Outcome {
    Written(Revision),
    Deleted(Revision, KeyValue),
    Compacted,
}

pub(super) struct Request {
    pub op: Op,
    /// `None` for the writer's own requests (TTL expiry).
    pub reply: Option<oneshot::Sender<Result<Outcome>>>,
}

pub(super) struct Writer {
    conn: Connection,
    shared: Arc<Shared>,
    options: EmbeddedOptions,
    rev: Revision,
    compacted: Revision,
    /// Revisions at or below this have been physically compacted.
    swept_to: Revision,
    samples: VecDeque<(Instant, Revision)>,
    next_ttl_sweep: Instant,
    next_checkpoint: Instant,
}

impl Writer {
    pub fn new(
        conn: Connection,
        shared: Arc<Shared>,
        options: EmbeddedOptions,
        rev: Revision,
        compacted: Revision,
    ) -> rusqlite::Result<Self> {
        // Physical compaction may have been cut short by a crash: resume where it stopped.
        let swept_to: Revision =
            conn.query_row("SELECT value FROM meta WHERE name = 'swept'", [], |r| {
                r.get(0)
            })?;
        let now = Instant::now();
        Ok(Self {
            conn,
            shared,
            options,
            rev,
            compacted,
            swept_to,
            samples: VecDeque::from([(now, rev)]),
            next_ttl_sweep: now,
            next_checkpoint: now + CHECKPOINT_EVERY,
        })
    }

    pub fn run(mut self, requests: Receiver<Request>) {
        loop {
            let wait = self
                .next_deadline()
                .saturating_duration_since(Instant::now());
            match requests.recv_timeout(wait) {
                Ok(first) => {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match requests.try_recv() {
                            Ok(request) => batch.push(request),
                            Err(_) => break,
                        }
                    }
                    self.commit(batch);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if let Err(e) = self.housekeeping() {
                tracing::warn!(error = %e, "store housekeeping failed; will retry");
            }
        }
        if let Err(e) = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
            tracing::warn!(error = %e, "final checkpoint failed");
        }
    }

    fn next_deadline(&self) -> Instant {
        if self.swept_to < self.compacted {
            return Instant::now();
        }
        let sample = self.samples.back().map_or(Instant::now(), |s| s.0) + SAMPLE_EVERY;
        sample.min(self.next_ttl_sweep).min(self.next_checkpoint)
    }

    /// Applies a batch in one transaction, then publishes its events and answers each request.
    fn commit(&mut self, batch: Vec<Request>) {
        let mut events = Vec::new();
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut rev = self.rev;
        let mut compacted = self.compacted;
        let result = (|| -> rusqlite::Result<()> {
            let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
            for request in &batch {
                outcomes.push(apply(
                    &tx,
                    &request.op,
                    &mut rev,
                    &mut compacted,
                    &mut events,
                )?);
            }
            if rev != self.rev {
                tx.prepare_cached("UPDATE meta SET value = ?1 WHERE name = 'rev'")?
                    .execute([rev])?;
            }
            if compacted != self.compacted {
                tx.prepare_cached("UPDATE meta SET value = ?1 WHERE name = 'compacted'")?
                    .execute([compacted])?;
            }
            tx.commit()
        })();
        if let Err(e) = result {
            // The transaction rolled back: nothing of this batch happened.
            tracing::error!(error = %e, "store commit failed");
            for request in batch {
                if let Some(reply) = request.reply {
                    let _ = reply.send(Err(self.shared.sqlite_err(clone_sqlite_error(&e))));
                }
            }
            return;
        }
        debug_assert!(rev >= self.rev, "revisions only grow");
        self.rev = rev;
        self.compacted = compacted;
        self.shared.compacted.store(compacted, Ordering::SeqCst);
        self.shared.current.store(rev, Ordering::SeqCst);
        if !events.is_empty() {
            // No receivers is fine: nobody watches.
            let _ = self.shared.events.send(events.into());
        }
        for (request, outcome) in batch.into_iter().zip(outcomes) {
            if let Some(reply) = request.reply {
                let _ = reply.send(outcome);
            }
        }
    }

    fn housekeeping(&mut self) -> rusqlite::Result<()> {
        let now = Instant::now();
        if now >= self.next_ttl_sweep {
            self.next_ttl_sweep = now + self.options.ttl_sweep_interval;
            self.expire_keys()?;
        }
        if self
            .samples
            .back()
            .is_none_or(|s| now >= s.0 + SAMPLE_EVERY)
        {
            self.samples.push_back((now, self.rev));
        }
        if self.options.compaction.automatic {
            self.schedule_compaction(now);
        }
        if self.swept_to < self.compacted {
            self.compact_chunk()?;
            if self.swept_to >= self.compacted {
                self.reclaim_space()?;
            }
        }
        if now >= self.next_checkpoint {
            self.next_checkpoint = now + CHECKPOINT_EVERY;
            let wal = self.shared.path.with_extension("db-wal");
            if std::fs::metadata(wal).is_ok_and(|m| m.len() > WAL_LIMIT_BYTES) {
                self.checkpoint()?;
            }
        }
        Ok(())
    }

    /// Deletes keys whose time to live has passed, through the normal write path so watchers
    /// see delete events.
    fn expire_keys(&mut self) -> rusqlite::Result<()> {
        let now = unix_millis(SystemTime::now());
        let expired: Vec<String> = self
            .conn
            .prepare_cached(EXPIRED)?
            .query_map(params![now], |r| r.get(0))?
            .take(TTL_CHUNK as usize)
            .collect::<rusqlite::Result<_>>()?;
        if !expired.is_empty() {
            if expired.len() as i64 == TTL_CHUNK {
                // More are waiting: come back right away.
                self.next_ttl_sweep = Instant::now();
            }
            let batch = expired
                .into_iter()
                .map(|key| Request {
                    op: Op::Delete {
                        key,
                        expected: None,
                    },
                    reply: None,
                })
                .collect();
            self.commit(batch);
        }
        Ok(())
    }

    /// Picks the newest revision the policy lets go: older than the window, or beyond the
    /// revision budget, whichever discards more.
    fn schedule_compaction(&mut self, now: Instant) {
        let policy = &self.options.compaction;
        while self.samples.len() > 1 && now.duration_since(self.samples[1].0) >= policy.window {
            self.samples.pop_front();
        }
        let by_time = match self.samples.front() {
            Some(&(at, rev)) if now.duration_since(at) >= policy.window => rev,
            _ => 0,
        };
        let by_count = self.rev - policy.max_revisions;
        let target = by_time.max(by_count).min(self.rev);
        // Compact in steps of a tenth of the budget, not after every write.
        let step = (policy.max_revisions / 10).max(1);
        if target > self.compacted && (target - self.compacted >= step || by_time > self.compacted)
        {
            self.commit(vec![Request {
                op: Op::Compact { revision: target },
                reply: None,
            }]);
        }
    }

    /// Removes the rows superseded by the writes of one chunk of revisions. Losing it in a crash costs nothing (it is redone),
    /// so it commits without waiting for the disk.
    fn compact_chunk(&mut self) -> rusqlite::Result<()> {
        let from = self.swept_to;
        let to = (from + COMPACTION_CHUNK).min(self.compacted);
        self.conn.execute_batch("PRAGMA synchronous = NORMAL;")?;
        let result = (|| {
            let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
            // A row is superseded exactly when a later row names it as its predecessor;
            // tombstones themselves go too.
            tx.prepare_cached(
                "DELETE FROM log WHERE rev IN (
                     SELECT prev_rev FROM log WHERE rev > ?1 AND rev <= ?2 AND prev_rev > 0)",
            )?
            .execute(params![from, to])?;
            tx.prepare_cached("DELETE FROM log WHERE rev > ?1 AND rev <= ?2 AND deleted = 1")?
                .execute(params![from, to])?;
            tx.prepare_cached("UPDATE meta SET value = ?1 WHERE name = 'swept'")?
                .execute([to])?;
            tx.commit()
        })();
        self.conn.execute_batch("PRAGMA synchronous = FULL;")?;
        result?;
        self.swept_to = to;
        Ok(())
    }

    /// After a compaction pass: give free pages back when they are most of the file, and
    /// truncate the WAL.
    fn reclaim_space(&mut self) -> rusqlite::Result<()> {
        let pages: i64 = self
            .conn
            .pragma_query_value(None, "page_count", |r| r.get(0))?;
        let free: i64 = self
            .conn
            .pragma_query_value(None, "freelist_count", |r| r.get(0))?;
        if free * 2 > pages {
            self.conn.execute_batch("PRAGMA incremental_vacuum;")?;
        }
        self.checkpoint()
    }

    fn checkpoint(&mut self) -> rusqlite::Result<()> {
        // Busy (a reader holds an old snapshot) is not an error: the next round retries.
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
    }
}

// As in `reads`: no bound LIMIT and no join on a bound key, which SQLite re-prepares for every
// new binding.
pub(super) const EXPIRED: &str =
    "SELECT key FROM live WHERE expires_at IS NOT NULL AND expires_at <= ?1";
pub(super) const CURRENT: &str = "SELECT l.create_rev, l.rev, l.value FROM log l
     WHERE l.rev = (SELECT rev FROM live WHERE key = ?1)";

/// Applies one request inside the batch's transaction. Rule violations (conflicts, missing
/// keys) answer that request only; SQLite errors abort the whole batch.
fn apply(
    tx: &Transaction,
    op: &Op,
    rev: &mut Revision,
    compacted: &mut Revision,
    events: &mut Vec<WatchEvent>,
) -> rusqlite::Result<Result<Outcome>> {
    match op {
        Op::Create {
            key,
            value,
            expires_at,
        } => {
            if current(tx, key)?.is_some() {
                return Ok(Err(StoreError::AlreadyExists { key: key.clone() }));
            }
            *rev += 1;
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: *rev,
                mod_revision: *rev,
            };
            put(tx, &kv, 0, *expires_at)?;
            events.push(WatchEvent {
                kind: EventKind::Put,
                kv,
                prev: None,
            });
            Ok(Ok(Outcome::Written(*rev)))
        }
        Op::Update {
            key,
            value,
            expected,
            expires_at,
        } => {
            let prev = match current(tx, key)? {
                None => return Ok(Err(StoreError::NotFound { key: key.clone() })),
                Some(prev) if prev.mod_revision != *expected => {
                    return Ok(Err(StoreError::Conflict {
                        key: key.clone(),
                        expected: *expected,
                        current: Box::new(prev),
                    }));
                }
                Some(prev) => prev,
            };
            *rev += 1;
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: prev.create_revision,
                mod_revision: *rev,
            };
            put(tx, &kv, prev.mod_revision, *expires_at)?;
            events.push(WatchEvent {
                kind: EventKind::Put,
                kv,
                prev: Some(prev),
            });
            Ok(Ok(Outcome::Written(*rev)))
        }
        Op::Delete { key, expected } => {
            let prev = match current(tx, key)? {
                None => return Ok(Err(StoreError::NotFound { key: key.clone() })),
                Some(prev) if expected.is_some_and(|e| e != prev.mod_revision) => {
                    return Ok(Err(StoreError::Conflict {
                        key: key.clone(),
                        expected: expected.unwrap_or_default(),
                        current: Box::new(prev),
                    }));
                }
                Some(prev) => prev,
            };
            *rev += 1;
            tx.prepare_cached(
                "INSERT INTO log (rev, key, create_rev, prev_rev, deleted, value)
                 VALUES (?1, ?2, ?3, ?4, 1, x'')",
            )?
            .execute(params![*rev, key, prev.create_revision, prev.mod_revision])?;
            tx.prepare_cached("DELETE FROM live WHERE key = ?1")?
                .execute([key])?;
            events.push(WatchEvent {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key: key.clone(),
                    value: Bytes::new(),
                    create_revision: prev.create_revision,
                    mod_revision: *rev,
                },
                prev: Some(prev.clone()),
            });
            Ok(Ok(Outcome::Deleted(*rev, prev)))
        }
        Op::Compact { revision } => {
            if *revision > *rev {
                return Ok(Err(StoreError::FutureRevision {
                    requested: *revision,
                    current: *rev,
                }));
            }
            if *revision <= *compacted {
                return Ok(Err(StoreError::Compacted {
                    requested: *revision,
                    compacted: *compacted,
                }));
            }
            *compacted = *revision;
            Ok(Ok(Outcome::Compacted))
        }
    }
}

fn current(tx: &Transaction, key: &str) -> rusqlite::Result<Option<KeyValue>> {
    tx.prepare_cached(CURRENT)?
        .query_row([key], |r| {
            Ok(KeyValue {
                key: key.to_owned(),
                create_revision: r.get(0)?,
                mod_revision: r.get(1)?,
                value: Bytes::from(r.get::<_, Vec<u8>>(2)?),
            })
        })
        .optional()
}

fn put(
    tx: &Transaction,
    kv: &KeyValue,
    prev_rev: Revision,
    expires_at: Option<i64>,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO log (rev, key, create_rev, prev_rev, deleted, value)
         VALUES (?1, ?2, ?3, ?4, 0, ?5)",
    )?
    .execute(params![
        kv.mod_revision,
        kv.key,
        kv.create_revision,
        prev_rev,
        &kv.value[..]
    ])?;
    tx.prepare_cached(
        "INSERT INTO live (key, rev, expires_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (key) DO UPDATE SET rev = excluded.rev, expires_at = excluded.expires_at",
    )?
    .execute(params![kv.key, kv.mod_revision, expires_at])?;
    Ok(())
}

/// rusqlite errors are not `Clone`; a failed batch answers each request with its own copy.
fn clone_sqlite_error(e: &rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::SqliteFailure(code, msg) => {
            rusqlite::Error::SqliteFailure(*code, msg.clone())
        }
        other => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    }
}
