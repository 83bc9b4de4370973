//! Queries on read-only connections: point reads, ranges (current or at a past revision) and
//! the history a watch replays.

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, Row};

use super::Shared;
use crate::{
    EventKind, KeyValue, RangeOptions, RangeResult, Result, Revision, StoreError, WatchEvent,
    prefix_range,
};

fn kv_from(row: &Row, offset: usize) -> rusqlite::Result<KeyValue> {
    Ok(KeyValue {
        key: row.get(offset)?,
        value: Bytes::from(row.get::<_, Vec<u8>>(offset + 1)?),
        create_revision: row.get(offset + 2)?,
        mod_revision: row.get(offset + 3)?,
    })
}

// No statement here binds a LIMIT or joins on a bound key: SQLite plans those with the bound
// values and so re-prepares (re-parses and re-plans) them on every new binding. Limits are
// applied by stopping the row iteration; point reads use a subquery.

pub(super) const GET: &str = "SELECT l.key, l.value, l.create_rev, l.rev FROM log l
     WHERE l.rev = (SELECT rev FROM live WHERE key = ?1)";
pub(super) const RANGE: &str =
    "SELECT l.key, l.value, l.create_rev, l.rev FROM live JOIN log l ON l.rev = live.rev
     WHERE live.key >= ?1 AND live.key < ?2 ORDER BY live.key";
pub(super) const RANGE_AT: &str = "SELECT l.key, l.value, l.create_rev, l.rev FROM
       (SELECT key, max(rev) AS newest FROM log
        WHERE key >= ?1 AND key < ?2 AND rev <= ?3 GROUP BY key) AS m
     JOIN log l ON l.rev = m.newest
     WHERE l.deleted = 0 ORDER BY l.key";
pub(super) const HISTORY: &str = "SELECT l.key, l.value, l.create_rev, l.rev, l.deleted,
            p.key, p.value, p.create_rev, p.rev
     FROM log l LEFT JOIN log p ON p.rev = l.prev_rev
     WHERE l.rev >= ?1 AND l.key >= ?2 AND l.key < ?3 ORDER BY l.rev";

pub(super) fn get(conn: &Connection, key: &str) -> rusqlite::Result<Option<KeyValue>> {
    conn.prepare_cached(GET)?
        .query_row([key], |row| kv_from(row, 0))
        .optional()
}

pub(super) fn range(
    shared: &Shared,
    conn: &Connection,
    prefix: &str,
    opts: &RangeOptions,
) -> Result<RangeResult> {
    let err = |e| shared.sqlite_err(e);
    let (mut start, end) = prefix_range(prefix);
    if let Some(from) = &opts.start
        && *from > start
    {
        start.clone_from(from);
    }
    // One read transaction: the revision and the rows come from the same snapshot.
    let tx = conn.unchecked_transaction().map_err(err)?;
    let current: Revision = tx
        .prepare_cached("SELECT value FROM meta WHERE name = 'rev'")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(err)?;
    let fetch = if opts.limit == 0 {
        usize::MAX
    } else {
        opts.limit + 1
    };
    let mut kvs = match opts.revision {
        None => {
            let mut stmt = tx.prepare_cached(RANGE).map_err(err)?;
            let rows = stmt
                .query_map(rusqlite::params![start, end], |row| kv_from(row, 0))
                .map_err(err)?;
            rows.take(fetch)
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(err)?
        }
        Some(revision) => {
            check_readable(shared, revision, current)?;
            let mut stmt = tx.prepare_cached(RANGE_AT).map_err(err)?;
            let rows = stmt
                .query_map(rusqlite::params![start, end, revision], |row| {
                    kv_from(row, 0)
                })
                .map_err(err)?;
            let kvs = rows
                .take(fetch)
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(err)?;
            // Compaction may have removed rows this read needed while it ran.
            check_readable(shared, revision, current)?;
            kvs
        }
    };
    let more = opts.limit != 0 && kvs.len() > opts.limit;
    kvs.truncate(if more { opts.limit } else { kvs.len() });
    Ok(RangeResult {
        kvs,
        more,
        revision: opts.revision.unwrap_or(current),
    })
}

fn check_readable(shared: &Shared, revision: Revision, current: Revision) -> Result<()> {
    let compacted = shared.compacted();
    if revision < compacted {
        return Err(StoreError::Compacted {
            requested: revision,
            compacted,
        });
    }
    if revision > current {
        return Err(StoreError::FutureRevision {
            requested: revision,
            current,
        });
    }
    Ok(())
}

/// Up to `limit` events under `[start, end)` with revisions from `from` on, in order.
pub(super) fn history(
    conn: &Connection,
    (start, end): (&str, &str),
    from: Revision,
    limit: usize,
) -> rusqlite::Result<Vec<WatchEvent>> {
    let mut stmt = conn.prepare_cached(HISTORY)?;
    let rows = stmt.query_map(rusqlite::params![from, start, end], |row| {
        let kv = kv_from(row, 0)?;
        let deleted: bool = row.get(4)?;
        let prev = match row.get::<_, Option<String>>(5)? {
            Some(_) => Some(kv_from(row, 5)?),
            None => None,
        };
        Ok(WatchEvent {
            kind: if deleted {
                EventKind::Delete
            } else {
                EventKind::Put
            },
            kv,
            prev,
        })
    })?;
    rows.take(limit).collect()
}
