//! Behaviour of the embedded backend beyond the shared conformance suite: durability across
//! `kill -9`, clear errors for damaged files, bounded size under churn, slow watchers.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{manual_compaction, next_event};
use r8s_store::embedded::DB_FILE;
use r8s_store::{
    Bytes, CompactionPolicy, EmbeddedOptions, EmbeddedStore, RangeOptions, Store, StoreError,
};

const CHILD_DIR_ENV: &str = "R8S_DURABILITY_CHILD_DIR";

fn open(dir: &Path) -> EmbeddedStore {
    EmbeddedStore::open(dir, manual_compaction()).expect("open embedded store")
}

/// Run by `acknowledged_writes_survive_kill_9` as the process it kills: writes keys from 16
/// tasks and prints each one the store acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of acknowledged_writes_survive_kill_9"]
async fn durability_child() {
    let dir = std::env::var(CHILD_DIR_ENV).expect("run by acknowledged_writes_survive_kill_9");
    let store = Arc::new(open(Path::new(&dir)));
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0.. {
                    let key = format!("/d/{t}-{i}");
                    let rev = store
                        .create(&key, Bytes::from(format!("value of {key}")), None)
                        .await
                        .expect("write");
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "{key} {rev}").unwrap();
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "durability_child", "--ignored", "--nocapture"])
        .env(CHILD_DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = HashMap::new();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some((key, rev)) = line.split_once(' ')
            && key.starts_with("/d/")
        {
            acked.insert(key.to_owned(), rev.parse::<i64>().unwrap());
        }
        if acked.len() >= 2000 {
            break;
        }
    }
    // SIGKILL while the writers are mid-batch.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        acked.len() >= 2000,
        "the child acknowledged only {} writes",
        acked.len()
    );

    let store = open(dir.path());
    for (key, rev) in &acked {
        let kv = store
            .get(key)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged {key} lost"));
        assert_eq!(kv.mod_revision, *rev);
        assert_eq!(kv.value, Bytes::from(format!("value of {key}")));
    }
    let max_acked = acked.values().max().copied().unwrap();
    assert!(store.current_revision().await.unwrap() >= max_acked);
}

#[tokio::test]
async fn reopen_keeps_data_revision_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let (rev, compacted) = {
        let store = open(dir.path());
        let r1 = store.create("/a/x", Bytes::from("1"), None).await.unwrap();
        let r2 = store
            .update("/a/x", Bytes::from("2"), r1, None)
            .await
            .unwrap();
        store.compact(r2).await.unwrap();
        (r2, store.compacted_revision())
    };
    let store = open(dir.path());
    assert_eq!(store.current_revision().await.unwrap(), rev);
    assert_eq!(store.compacted_revision(), compacted);
    assert_eq!(
        store.get("/a/x").await.unwrap().unwrap().value,
        Bytes::from("2")
    );
    let next = store.create("/a/y", Bytes::from("1"), None).await.unwrap();
    assert_eq!(next, rev + 1, "revisions continue after a restart");
}

#[tokio::test]
async fn second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(dir.path());
    let err = EmbeddedStore::open(dir.path(), manual_compaction())
        .err()
        .expect("a second open must fail");
    let message = err.to_string();
    assert!(
        message.contains("in use by another r8s process"),
        "{message}"
    );
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );
}

/// Writes a store with some data, closes it, and returns the database path.
async fn populated_store(dir: &Path) -> std::path::PathBuf {
    let store = open(dir);
    for i in 0..2000 {
        let value = Bytes::from(vec![b'x'; 400]);
        store
            .create(&format!("/c/{i:05}"), value, None)
            .await
            .unwrap();
    }
    store.path().to_owned()
}

fn assert_corrupt_naming(err: StoreError, db: &Path) {
    let message = err.to_string();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{message}");
    assert!(message.contains(&db.display().to_string()), "{message}");
}

#[tokio::test]
async fn corrupt_database_is_a_clear_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = populated_store(dir.path()).await;
    let mut bytes = std::fs::read(&db).unwrap();
    // Scribble over pages past the header: b-tree pages now hold garbage.
    let len = bytes.len();
    for b in &mut bytes[8192..len - 4096] {
        *b = 0xA5;
    }
    std::fs::write(&db, bytes).unwrap();
    let err = EmbeddedStore::open(dir.path(), manual_compaction())
        .err()
        .expect("must fail");
    assert_corrupt_naming(err, &db);
}

#[tokio::test]
async fn truncated_database_is_a_clear_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = populated_store(dir.path()).await;
    let len = std::fs::metadata(&db).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&db)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let err = EmbeddedStore::open(dir.path(), manual_compaction())
        .err()
        .expect("must fail");
    assert_corrupt_naming(err, &db);
}

#[tokio::test]
async fn empty_or_foreign_database_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join(DB_FILE);
    std::fs::write(&db, b"").unwrap();
    let err = EmbeddedStore::open(dir.path(), manual_compaction())
        .err()
        .expect("empty file");
    assert_corrupt_naming(err, &db);

    std::fs::write(
        &db,
        b"this is not a database, just text that is long enough to matter",
    )
    .unwrap();
    let err = EmbeddedStore::open(dir.path(), manual_compaction())
        .err()
        .expect("text file");
    assert_corrupt_naming(err, &db);

    std::fs::remove_file(&db).unwrap();
    let foreign = rusqlite::Connection::open(&db).unwrap();
    foreign
        .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .unwrap();
    drop(foreign);
    let err = EmbeddedStore::open(dir.path(), manual_compaction())
        .err()
        .expect("foreign db");
    assert_corrupt_naming(err, &db);
}

#[tokio::test]
async fn data_dir_that_cannot_be_created_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let target = file.join("db");
    let err = EmbeddedStore::open(&target, manual_compaction())
        .err()
        .expect("must fail");
    let message = err.to_string();
    assert!(message.contains(&target.display().to_string()), "{message}");
    assert!(message.contains("cannot create"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_is_compacted_automatically_and_the_file_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        compaction: CompactionPolicy {
            window: Duration::ZERO,
            max_revisions: 1000,
            automatic: true,
        },
        ..EmbeddedOptions::default()
    };
    let store = Arc::new(EmbeddedStore::open(dir.path(), options).unwrap());
    const KEYS: usize = 100;
    const ROUNDS: usize = 400;
    let tasks: Vec<_> = (0..KEYS)
        .map(|k| {
            let store = store.clone();
            tokio::spawn(async move {
                let key = format!("/churn/{k}");
                let value = Bytes::from(vec![b'v'; 512]);
                let mut rev = store.create(&key, value.clone(), None).await.unwrap();
                for _ in 1..ROUNDS {
                    rev = store.update(&key, value.clone(), rev, None).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let current = store.current_revision().await.unwrap();
    assert!(current as usize > KEYS * ROUNDS);
    // Compaction runs between batches; give it a moment after the last write.
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.compacted_revision() < current - 2000 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        store.compacted_revision() >= current - 2000,
        "compacted {} of {current}",
        store.compacted_revision()
    );
    // 40k writes of 512 bytes (20 MiB written) leave about 1k revisions of history.
    let db = std::fs::metadata(store.path()).unwrap().len();
    assert!(db < 8 << 20, "database is {db} bytes");
    let live = store
        .range("/churn", RangeOptions::default())
        .await
        .unwrap();
    assert_eq!(live.kvs.len(), KEYS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_that_falls_behind_catches_up_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        event_backlog: 2,
        ..manual_compaction()
    };
    let store = Arc::new(EmbeddedStore::open(dir.path(), options).unwrap());
    let mut watch = store.watch("/slow", 0).await.unwrap();
    // Far more events than the watch buffers and the broadcast keeps, unread meanwhile.
    const WRITES: usize = 5000;
    let tasks: Vec<_> = (0..10)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..WRITES / 10 {
                    store
                        .create(&format!("/slow/{t}/{i}"), Bytes::from("v"), None)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let mut last = 0;
    for _ in 0..WRITES {
        let event = next_event(&mut watch).await.unwrap();
        assert_eq!(
            event.revision(),
            if last == 0 {
                event.revision()
            } else {
                last + 1
            }
        );
        last = event.revision();
    }
    assert_eq!(last, store.current_revision().await.unwrap());
}
