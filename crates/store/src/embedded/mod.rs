//! The embedded backend: SQLite in one file, durable before it answers.
//!
//! Layout: `log` holds every revision (one row per write; deletes are tombstone rows), `live`
//! maps each existing key to the revision of its newest row, `meta` keeps the current and
//! compacted revisions. One writer thread owns the only writing connection and commits
//! concurrent writes together (group commit, one fsync per batch); reads run on a small pool
//! of read-only connections, which WAL mode lets proceed while the writer commits.

mod reads;
mod watch;
mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{broadcast, oneshot};

use crate::{
    KeyValue, RangeOptions, RangeResult, Result, Revision, Store, StoreError, Watch, WatchEvent,
};
use writer::{Op, Outcome, Request};

/// The database file's name inside the store's directory.
pub const DB_FILE: &str = "state.db";
const LOCK_FILE: &str = "state.lock";
/// `PRAGMA application_id` of r8s databases ("r8s!"), so a foreign SQLite file is refused.
const APPLICATION_ID: i32 = 0x7238_7321;
const SCHEMA_VERSION: i64 = 1;

/// When old revisions are discarded automatically.
#[derive(Clone, Debug)]
pub struct CompactionPolicy {
    /// Keep at least this much history (upstream's API server compacts every 5 minutes).
    pub window: Duration,
    /// But never more than this many revisions of history, so churn cannot grow the file
    /// without bound however fast it writes.
    pub max_revisions: i64,
    /// Off: only explicit [`Store::compact`] calls discard history.
    pub automatic: bool,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(5 * 60),
            max_revisions: 10_000,
            automatic: true,
        }
    }
}

#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    pub compaction: CompactionPolicy,
    /// How often expired keys are looked for.
    pub ttl_sweep_interval: Duration,
    /// How many committed batches are kept for watchers that fall behind before they re-read
    /// the history from disk.
    pub event_backlog: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            compaction: CompactionPolicy::default(),
            ttl_sweep_interval: Duration::from_millis(500),
            event_backlog: 1024,
        }
    }
}

/// State shared by the store handle, the writer thread and watch tasks.
struct Shared {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    /// Reads running at once. Each holds a blocking thread and a connection with its own page
    /// cache; past a few per core they only queue inside SQLite, and at start-up every watch
    /// cache lists at once.
    reading: tokio::sync::Semaphore,
    /// Every committed batch of events, in revision order.
    events: broadcast::Sender<Arc<[WatchEvent]>>,
    current: AtomicI64,
    compacted: AtomicI64,
}

impl Shared {
    fn current(&self) -> Revision {
        self.current.load(Ordering::SeqCst)
    }

    fn compacted(&self) -> Revision {
        self.compacted.load(Ordering::SeqCst)
    }

    fn sqlite_err(&self, source: rusqlite::Error) -> StoreError {
        sqlite_error(&self.path, source)
    }

    /// Runs a read on a pooled read-only connection, off the async threads.
    async fn read<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Shared, &Connection) -> Result<T> + Send + 'static,
    {
        let _permit = self
            .reading
            .acquire()
            .await
            .map_err(|e| StoreError::InvalidArgument(format!("store closed: {e}")))?;
        let shared = self.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = shared.readers.lock().expect("reader pool poisoned").pop();
            let conn = match pooled {
                Some(conn) => conn,
                None => open_reader(&shared.path)?,
            };
            let result = f(&shared, &conn);
            shared
                .readers
                .lock()
                .expect("reader pool poisoned")
                .push(conn);
            result
        })
        .await
        .map_err(|e| StoreError::InvalidArgument(format!("store read task failed: {e}")))?
    }
}

/// Two reads per core.
fn concurrent_reads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) * 2
}

/// The embedded SQLite store. Opening takes an exclusive lock on the directory: one process
/// at a time.
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    requests: Option<std::sync::mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
    _lock: File,
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in directory `dir`.
    pub fn open(dir: &Path, options: EmbeddedOptions) -> Result<Self> {
        let lock = prepare_dir(dir)?;
        let path = dir.join(DB_FILE);
        let conn = open_writer(&path)?;
        let (current, compacted) = read_meta(&conn).map_err(|e| sqlite_error(&path, e))?;
        let (events, _) = broadcast::channel(options.event_backlog.max(1));
        let shared = Arc::new(Shared {
            path: path.clone(),
            readers: Mutex::new(Vec::new()),
            reading: tokio::sync::Semaphore::new(concurrent_reads()),
            events,
            current: AtomicI64::new(current),
            compacted: AtomicI64::new(compacted),
        });
        let (requests, rx) = std::sync::mpsc::channel();
        let writer = writer::Writer::new(conn, shared.clone(), options, current, compacted)
            .map_err(|e| sqlite_error(&path, e))?;
        let handle = std::thread::Builder::new()
            .name("r8s-store-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|cause| StoreError::Io {
                context: "cannot start the store's writer thread".into(),
                cause,
            })?;
        tracing::debug!(path = %path.display(), current, compacted, "embedded store open");
        Ok(Self {
            shared,
            requests: Some(requests),
            writer: Some(handle),
            _lock: lock,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The revision history is kept from (0: never compacted).
    pub fn compacted_revision(&self) -> Revision {
        self.shared.compacted()
    }

    async fn submit(&self, op: Op) -> Result<Outcome> {
        let (reply, rx) = oneshot::channel();
        self.requests
            .as_ref()
            .ok_or(StoreError::Closed)?
            .send(Request {
                op,
                reply: Some(reply),
            })
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish its batch and exit; wait for it so the
        // lock is released only once the database is closed.
        self.requests.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

fn expiry(ttl: Option<Duration>) -> Option<i64> {
    ttl.map(|ttl| unix_millis(SystemTime::now() + ttl))
}

fn unix_millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_owned();
        self.shared
            .read(move |shared, conn| reads::get(conn, &key).map_err(|e| shared.sqlite_err(e)))
            .await
    }

    async fn range(&self, prefix: &str, opts: RangeOptions) -> Result<RangeResult> {
        let prefix = prefix.to_owned();
        self.shared
            .read(move |shared, conn| reads::range(shared, conn, &prefix, &opts))
            .await
    }

    async fn create(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<Revision> {
        check_key(key)?;
        let op = Op::Create {
            key: key.to_owned(),
            value,
            expires_at: expiry(ttl),
        };
        match self.submit(op).await? {
            Outcome::Written(rev) => Ok(rev),
            other => unreachable!("create answered {other:?}"),
        }
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
        ttl: Option<Duration>,
    ) -> Result<Revision> {
        check_key(key)?;
        let op = Op::Update {
            key: key.to_owned(),
            value,
            expected,
            expires_at: expiry(ttl),
        };
        match self.submit(op).await? {
            Outcome::Written(rev) => Ok(rev),
            other => unreachable!("update answered {other:?}"),
        }
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)> {
        let op = Op::Delete {
            key: key.to_owned(),
            expected,
        };
        match self.submit(op).await? {
            Outcome::Deleted(rev, prev) => Ok((rev, prev)),
            other => unreachable!("delete answered {other:?}"),
        }
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<Watch> {
        watch::start(&self.shared, prefix, from)
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.shared.current())
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        match self.submit(Op::Compact { revision }).await? {
            Outcome::Compacted => Ok(()),
            other => unreachable!("compact answered {other:?}"),
        }
    }
}

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(StoreError::InvalidArgument("a key may not be empty".into()));
    }
    Ok(())
}

fn sqlite_error(path: &Path, source: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
    match source.sqlite_error_code() {
        Some(DatabaseCorrupt | NotADatabase) => StoreError::Corrupt {
            path: path.to_owned(),
            message: source.to_string(),
        },
        _ => StoreError::Sqlite {
            path: path.to_owned(),
            cause: source,
        },
    }
}

/// Creates the directory, proves it writable and takes the store's lock.
fn prepare_dir(dir: &Path) -> Result<File> {
    let io = |what: &str, cause| StoreError::Io {
        context: format!("data dir {}: {what}", dir.display()),
        cause,
    };
    std::fs::create_dir_all(dir).map_err(|e| io("cannot create it", e))?;
    // A probe write tells "not writable" apart from a database problem up front.
    let probe = dir.join(".write-probe");
    std::fs::write(&probe, b"r8s")
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|e| io("is not writable", e))?;
    let lock_path = dir.join(LOCK_FILE);
    let lock = File::create(&lock_path).map_err(|e| io("cannot create the lock file", e))?;
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor we own; no memory is shared.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(io(
            "is in use by another r8s process (its lock is held)",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(lock)
}

fn open_writer(path: &Path) -> Result<Connection> {
    let existing = match std::fs::metadata(path) {
        Ok(meta) if meta.len() == 0 => {
            return Err(StoreError::Corrupt {
                path: path.to_owned(),
                message: "the file is empty (truncated?); move it away to start a new store".into(),
            });
        }
        Ok(_) => true,
        Err(_) => false,
    };
    let err = |e| sqlite_error(path, e);
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(err)?;
    if existing {
        let app_id: i32 = conn
            .pragma_query_value(None, "application_id", |r| r.get(0))
            .map_err(err)?;
        if app_id != APPLICATION_ID {
            return Err(StoreError::Corrupt {
                path: path.to_owned(),
                message: format!("application id {app_id:#x} is not r8s's"),
            });
        }
    }
    // auto_vacuum must be chosen before the first table exists.
    conn.execute_batch(
        "PRAGMA auto_vacuum = INCREMENTAL;
         PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA journal_size_limit = 16777216;
         PRAGMA busy_timeout = 10000;",
    )
    .map_err(err)?;
    let check: String = conn
        .pragma_query_value(None, "quick_check", |r| r.get(0))
        .map_err(err)?;
    if check != "ok" {
        return Err(StoreError::Corrupt {
            path: path.to_owned(),
            message: check,
        });
    }
    conn.execute_batch(&format!(
        "PRAGMA application_id = {APPLICATION_ID};
         CREATE TABLE IF NOT EXISTS log (
             rev INTEGER PRIMARY KEY,
             key TEXT NOT NULL,
             create_rev INTEGER NOT NULL,
             prev_rev INTEGER NOT NULL,
             deleted INTEGER NOT NULL,
             value BLOB NOT NULL
         );
         CREATE INDEX IF NOT EXISTS log_key_rev ON log (key, rev);
         CREATE TABLE IF NOT EXISTS live (
             key TEXT PRIMARY KEY,
             rev INTEGER NOT NULL,
             expires_at INTEGER
         ) WITHOUT ROWID;
         CREATE INDEX IF NOT EXISTS live_expiry ON live (expires_at) WHERE expires_at IS NOT NULL;
         CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
         INSERT OR IGNORE INTO meta VALUES ('schema', {SCHEMA_VERSION}), ('rev', 1), ('compacted', 0), ('swept', 0);"
    ))
    .map_err(err)?;
    let schema: i64 = conn
        .query_row("SELECT value FROM meta WHERE name = 'schema'", [], |r| {
            r.get(0)
        })
        .map_err(err)?;
    if schema != SCHEMA_VERSION {
        return Err(StoreError::Corrupt {
            path: path.to_owned(),
            message: format!("schema version {schema}, this r8s reads {SCHEMA_VERSION}"),
        });
    }
    if !existing {
        // Make the new file's directory entry durable too.
        if let Some(dir) = path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|cause| StoreError::Io {
                    context: format!("cannot sync directory {}", dir.display()),
                    cause,
                })?;
        }
    }
    Ok(conn)
}

fn open_reader(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| sqlite_error(path, e))?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(|e| sqlite_error(path, e))?;
    Ok(conn)
}

fn read_meta(conn: &Connection) -> rusqlite::Result<(Revision, Revision)> {
    let get = |name: &str| {
        conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
            r.get::<_, i64>(0)
        })
    };
    Ok((get("rev")?, get("compacted")?))
}

#[cfg(test)]
mod statement_tests {
    use super::*;
    use rusqlite::StatementStatus;

    /// SQLite plans some statements with their bound values (a bound LIMIT, a join on a bound
    /// key) and then re-parses and re-plans them for every new binding: a quarter of the
    /// store's CPU time under load before they were rewritten.
    #[test]
    fn the_stores_queries_are_planned_once_whatever_they_are_bound_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let writer = open_writer(&path).unwrap();
        writer
            .execute("INSERT INTO log VALUES (2, 'a', 2, 0, 0, x'00')", [])
            .unwrap();
        writer
            .execute("INSERT INTO live VALUES ('a', 2, NULL)", [])
            .unwrap();
        let reader = open_reader(&path).unwrap();
        let statements = [
            reads::GET,
            reads::RANGE,
            reads::RANGE_AT,
            reads::HISTORY,
            writer::EXPIRED,
            writer::CURRENT,
        ];
        for sql in statements {
            let mut stmt = reader.prepare(sql).unwrap();
            for round in 0..4i64 {
                for i in 1..=stmt.parameter_count() {
                    let value = if i % 2 == 0 {
                        rusqlite::types::Value::Integer(round * 10 + i as i64)
                    } else {
                        rusqlite::types::Value::Text(format!("{round}/{i}"))
                    };
                    stmt.raw_bind_parameter(i, value).unwrap();
                }
                let mut rows = stmt.raw_query();
                while rows.next().unwrap().is_some() {}
            }
            assert_eq!(
                stmt.get_status(StatementStatus::RePrepare),
                0,
                "re-prepared on new bindings: {sql}"
            );
        }
    }
}

#[cfg(test)]
mod read_tests {
    use super::*;

    /// Every watch cache lists at start-up: the reads queue for a few connections instead of
    /// each taking a blocking thread and a connection (with its page cache) of its own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_reads_all_answer_on_a_bounded_set_of_connections() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
        store
            .create("/k", Bytes::from_static(b"v"), None)
            .await
            .unwrap();
        let store = Arc::new(store);
        let reads = (0..64).map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.get("/k").await })
        });
        for read in futures::future::join_all(reads).await {
            let found = read.unwrap().unwrap().expect("the key is there");
            assert_eq!(&found.value[..], b"v");
        }
        let opened = store.shared.readers.lock().unwrap().len();
        assert!(
            (1..=concurrent_reads()).contains(&opened),
            "{opened} reader connections for at most {} reads at once",
            concurrent_reads()
        );
    }
}
