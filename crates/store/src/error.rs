use std::path::PathBuf;

use crate::{KeyValue, Revision};

/// What went wrong in a store call. The API server maps these to Kubernetes `Status` codes
/// (AlreadyExists → 409, Conflict → 409, NotFound → 404, Compacted → 410 Gone, …).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key {key:?} already exists")]
    AlreadyExists { key: String },

    #[error("key {key:?} not found")]
    NotFound { key: String },

    #[error("key {key:?} was modified: expected mod revision {expected}, it is {}", current.mod_revision)]
    Conflict {
        key: String,
        expected: Revision,
        current: Box<KeyValue>,
    },

    #[error("revision {requested} has been compacted (history kept from revision {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },

    #[error("revision {requested} is newer than the store's current revision {current}")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },

    #[error("{0}")]
    InvalidArgument(String),

    #[error("database {path} is corrupt or not an r8s database: {message}")]
    Corrupt { path: PathBuf, message: String },

    // The cause is part of the message (not a `source`), so it is printed once either way.
    #[error("{context}: {cause}")]
    Io {
        context: String,
        cause: std::io::Error,
    },

    #[error("database {path}: {cause}")]
    Sqlite {
        path: PathBuf,
        cause: rusqlite::Error,
    },

    #[error("etcd at {endpoints}: {message}")]
    Etcd { endpoints: String, message: String },

    #[error("the store is closed")]
    Closed,
}
