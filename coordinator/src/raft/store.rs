//! The one redb file that holds everything a coordinator node must not forget: the Raft log, the
//! vote, the committed pointer, the last snapshot, and the identity of the data directory.
//!
//! ```text
//!   <data dir>/raft.redb
//!     meta        &str → &str    format_version, cluster_id, node_id   (written once, checked on open)
//!     log         u64  → JSON    Entry<TypeConfig>, keyed by log index
//!     raft_state  &str → JSON    vote, committed, last_purged
//!     snapshot    &str → bytes   meta (JSON SnapshotMeta), data (JSON ClusterState + meta)
//! ```
//!
//! Opening is where disk input is first trusted, so every failure here is a [`StoreError`] naming
//! the file: a corrupt or foreign file, a file of another cluster or another node, a file already
//! held by a running coordinator. Never a panic.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, TableDefinition, TableHandle};

/// The file name of the store inside the data directory.
pub const DATABASE_FILE_NAME: &str = "raft.redb";

/// Bumped when the layout of the tables changes incompatibly.
pub const FORMAT_VERSION: &str = "1";

pub(crate) const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
pub(crate) const RAFT_STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_state");
pub(crate) const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");

pub(crate) const KEY_VOTE: &str = "vote";
pub(crate) const KEY_COMMITTED: &str = "committed";
pub(crate) const KEY_LAST_PURGED: &str = "last_purged";
pub(crate) const KEY_SNAPSHOT_META: &str = "meta";
pub(crate) const KEY_SNAPSHOT_DATA: &str = "data";

const KEY_FORMAT_VERSION: &str = "format_version";
const KEY_CLUSTER_ID: &str = "cluster_id";
const KEY_NODE_ID: &str = "node_id";

/// Why the Raft store could not be opened. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the data directory {path}: {source}")]
    CreateDirectory {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is held by another process{holders}: is a coordinator already running on this data \
         directory? Stop it first"
    )]
    AlreadyOpen {
        path: PathBuf,
        /// `" (by pid N NAME)"` when the holder could be found, else empty.
        holders: String,
    },
    #[error(
        "{path} is not a readable redb database (corrupt, truncated or not a KVS file): {source}"
    )]
    Unreadable {
        path: PathBuf,
        source: Box<redb::DatabaseError>,
    },
    #[error(
        "{path} is a redb database but not a KVS coordinator store (it has tables but no KVS identity)"
    )]
    Foreign { path: PathBuf },
    #[error("{path} has store format version {found}, this binary supports {supported}")]
    FormatVersion {
        path: PathBuf,
        found: String,
        supported: &'static str,
    },
    #[error(
        "{path} belongs to cluster {stored:?}, but this node is configured for cluster {expected:?}"
    )]
    ClusterMismatch {
        path: PathBuf,
        stored: String,
        expected: String,
    },
    #[error("{path} belongs to node {stored}, but this node is configured as node {expected}")]
    NodeMismatch {
        path: PathBuf,
        stored: String,
        expected: u64,
    },
    #[error("{path}: {what}: {source}")]
    Database {
        path: PathBuf,
        what: &'static str,
        source: Box<redb::Error>,
    },
    #[error("{path}: cannot read {what}: {source}")]
    Read {
        path: PathBuf,
        what: &'static str,
        source: Box<StoreIoError>,
    },
    #[error("{path}: cannot decode the stored {what}: {source}")]
    Decode {
        path: PathBuf,
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("invalid Raft configuration: {0}")]
    Config(Box<openraft::ConfigError>),
    #[error("Raft failed to start on {path}: {source}")]
    Start {
        path: PathBuf,
        source: Box<openraft::error::Fatal<u64>>,
    },
}

/// An open, identity-checked store, shared by the log store and the state machine.
#[derive(Clone)]
pub struct Store {
    /// The redb database. redb serializes write transactions internally.
    pub(crate) db: Arc<Database>,
    /// The file path, for error messages.
    pub(crate) path: Arc<Path>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens `<dir>/raft.redb`, creating the directory and the file if needed. A new file is
    /// stamped with `cluster_id` and `node_id`; an existing one must carry the same identity.
    pub fn open(dir: &Path, node_id: u64, cluster_id: &str) -> Result<Store, StoreError> {
        // std::fs, not tokio::fs: tokio::fs uses spawn_blocking, which hangs the simulation.
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDirectory {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(DATABASE_FILE_NAME);
        let db = Database::create(&path).map_err(|source| match source {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::AlreadyOpen {
                holders: super::holder::describe_holders(&path),
                path: path.clone(),
            },
            source => StoreError::Unreadable {
                path: path.clone(),
                source: Box::new(source),
            },
        })?;
        let store = Store {
            db: Arc::new(db),
            path: Arc::from(path.as_path()),
        };
        store.check_identity(node_id, cluster_id)?;
        Ok(store)
    }

    fn check_identity(&self, node_id: u64, cluster_id: &str) -> Result<(), StoreError> {
        let existing = self.read_identity()?;
        let Some(identity) = existing else {
            return self.stamp_identity(node_id, cluster_id);
        };
        let path = self.path.to_path_buf();
        if identity.format_version != FORMAT_VERSION {
            return Err(StoreError::FormatVersion {
                path,
                found: identity.format_version,
                supported: FORMAT_VERSION,
            });
        }
        if identity.cluster_id != cluster_id {
            return Err(StoreError::ClusterMismatch {
                path,
                stored: identity.cluster_id,
                expected: cluster_id.into(),
            });
        }
        if identity.node_id != node_id.to_string() {
            return Err(StoreError::NodeMismatch {
                path,
                stored: identity.node_id,
                expected: node_id,
            });
        }
        Ok(())
    }

    /// The stored identity, `None` for a fresh (table-less) file, `Foreign` for a redb file that
    /// has tables but not ours.
    fn read_identity(&self) -> Result<Option<Identity>, StoreError> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| self.database("begin read", e))?;
        let mut tables = txn
            .list_tables()
            .map_err(|e| self.database("list tables", e))?;
        if !tables.any(|t| t.name() == META.name()) {
            let fresh = txn
                .list_tables()
                .map_err(|e| self.database("list tables", e))?
                .next()
                .is_none();
            return if fresh {
                Ok(None)
            } else {
                Err(StoreError::Foreign {
                    path: self.path.to_path_buf(),
                })
            };
        }
        let table = txn
            .open_table(META)
            .map_err(|e| self.database("open meta table", e))?;
        let get = |key: &str| -> Result<Option<String>, StoreError> {
            let value = table
                .get(key)
                .map_err(|e| self.database("read meta table", e))?;
            Ok(value.map(|v| v.value().to_string()))
        };
        match (
            get(KEY_FORMAT_VERSION)?,
            get(KEY_CLUSTER_ID)?,
            get(KEY_NODE_ID)?,
        ) {
            (Some(format_version), Some(cluster_id), Some(node_id)) => Ok(Some(Identity {
                format_version,
                cluster_id,
                node_id,
            })),
            _ => Err(StoreError::Foreign {
                path: self.path.to_path_buf(),
            }),
        }
    }

    /// Writes the identity and creates every table, in one durable transaction.
    fn stamp_identity(&self, node_id: u64, cluster_id: &str) -> Result<(), StoreError> {
        let txn = self
            .db
            .begin_write()
            .map_err(|e| self.database("begin write", e))?;
        {
            let mut meta = txn
                .open_table(META)
                .map_err(|e| self.database("create meta table", e))?;
            let node_id = node_id.to_string();
            for (key, value) in [
                (KEY_FORMAT_VERSION, FORMAT_VERSION),
                (KEY_CLUSTER_ID, cluster_id),
                (KEY_NODE_ID, node_id.as_str()),
            ] {
                meta.insert(key, value)
                    .map_err(|e| self.database("write meta table", e))?;
            }
            txn.open_table(LOG)
                .map_err(|e| self.database("create log table", e))?;
            txn.open_table(RAFT_STATE)
                .map_err(|e| self.database("create raft_state table", e))?;
            txn.open_table(SNAPSHOT)
                .map_err(|e| self.database("create snapshot table", e))?;
        }
        txn.commit()
            .map_err(|e| self.database("commit identity", e))?;
        tracing::info!(path = %self.path.display(), node_id, cluster_id, "created a new Raft store");
        Ok(())
    }

    fn database(&self, what: &'static str, source: impl Into<redb::Error>) -> StoreError {
        StoreError::Database {
            path: self.path.to_path_buf(),
            what,
            source: Box::new(source.into()),
        }
    }
}

/// The identity stamped into the `meta` table of a store.
struct Identity {
    format_version: String,
    cluster_id: String,
    node_id: String,
}

/// Turns any redb or serde error into an `AnyError` for openraft's `StorageIOError`.
pub(crate) fn any_error(error: impl std::error::Error + 'static) -> openraft::AnyError {
    openraft::AnyError::new(&error)
}

/// One error type for "redb failed or a stored value did not decode" on the running store,
/// converted to openraft's `StorageIOError` at the trait boundary.
#[derive(Debug, thiserror::Error)]
pub enum StoreIoError {
    #[error("redb: {0}")]
    Redb(#[from] redb::Error),
    #[error("stored value does not decode: {0}")]
    Json(#[from] serde_json::Error),
    #[error("log entry stored under index {key} carries index {found}")]
    Mismatch { key: u64, found: u64 },
}

macro_rules! store_io_error_from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreIoError {
            fn from(e: $t) -> Self {
                StoreIoError::Redb(e.into())
            }
        }
    )*};
}
store_io_error_from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
