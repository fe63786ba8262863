//! The Raft log, vote and committed pointer on redb: openraft's `RaftLogStorage` (v2).
//!
//! ```text
//!   openraft ── append(entries, callback) ──► one redb write transaction ── commit (fsync) ──► callback
//!           ── save_vote / save_committed ─► one redb write transaction ── commit (fsync) ──► Ok
//!           ── truncate / purge ───────────► one redb write transaction (last_purged + deletes)
//! ```
//!
//! Every write is a committed transaction with redb's default `Durability::Immediate`, so when
//! openraft is told "flushed" the bytes are on disk: a `kill -9` loses nothing that was
//! acknowledged. Writes are serialized by redb (one write transaction at a time) and by openraft
//! (it calls `&mut self`), which is the ordering `RaftLogStorage` requires.
//!
//! redb is synchronous; its calls run on the Raft core task. A control-plane log sees a few writes
//! per second, so the short blocking fsync is acceptable and keeps us off `spawn_blocking` (which
//! hangs the turmoil simulation).

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogId, RaftLogReader};
use redb::{ReadableDatabase, ReadableTable};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::store::{
    KEY_COMMITTED, KEY_LAST_PURGED, KEY_VOTE, LOG, RAFT_STATE, Store, StoreIoError, any_error,
};
use super::types::{Entry, LogId, StorageError, StorageIoError, TypeConfig, Vote};

/// The log store. Cloning is cheap (it shares the database); the clone is also the log reader
/// handed to replication tasks.
#[derive(Debug, Clone)]
pub struct LogStore {
    store: Store,
}

impl LogStore {
    pub fn new(store: Store) -> LogStore {
        LogStore { store }
    }

    /// Reads one JSON value from the `raft_state` table.
    fn read_state<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreIoError> {
        let txn = self.store.db.begin_read()?;
        let table = txn.open_table(RAFT_STATE)?;
        let Some(bytes) = table.get(key)? else {
            return Ok(None);
        };
        Ok(Some(serde_json::from_slice(bytes.value())?))
    }

    /// Writes one JSON value to the `raft_state` table, durably.
    fn write_state<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StoreIoError> {
        let bytes = serde_json::to_vec(value)?;
        let txn = self.store.db.begin_write()?;
        {
            let mut table = txn.open_table(RAFT_STATE)?;
            table.insert(key, bytes.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    fn append_entries(&self, entries: impl IntoIterator<Item = Entry>) -> Result<(), StoreIoError> {
        let txn = self.store.db.begin_write()?;
        {
            let mut table = txn.open_table(LOG)?;
            for entry in entries {
                let bytes = serde_json::to_vec(&entry)?;
                table.insert(entry.get_log_id().index, bytes.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Deletes the entries with index in `range`; with `last_purged` also records the purge
    /// pointer, in the same transaction (so the log never has an unrecorded hole).
    fn delete_entries(
        &self,
        range: impl RangeBounds<u64>,
        last_purged: Option<&LogId>,
    ) -> Result<(), StoreIoError> {
        let txn = self.store.db.begin_write()?;
        {
            if let Some(log_id) = last_purged {
                let bytes = serde_json::to_vec(log_id)?;
                txn.open_table(RAFT_STATE)?
                    .insert(KEY_LAST_PURGED, bytes.as_slice())?;
            }
            let mut table = txn.open_table(LOG)?;
            table.retain_in::<u64, _>(range, |_, _| false)?;
        }
        txn.commit()?;
        Ok(())
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId>, StoreIoError> {
        let txn = self.store.db.begin_read()?;
        let table = txn.open_table(LOG)?;
        let Some((_, bytes)) = table.last()? else {
            return Ok(None);
        };
        let entry: Entry = serde_json::from_slice(bytes.value())?;
        Ok(Some(*entry.get_log_id()))
    }

    fn read_entries(&self, start: Bound<u64>, end: Bound<u64>) -> Result<Vec<Entry>, StoreIoError> {
        if range_is_empty(start, end) {
            return Ok(Vec::new());
        }
        let txn = self.store.db.begin_read()?;
        let table = txn.open_table(LOG)?;
        let mut entries = Vec::new();
        for item in table.range::<u64>((start, end))? {
            let (index, bytes) = item?;
            let entry: Entry = serde_json::from_slice(bytes.value())?;
            // Paired with the key written in `append_entries`.
            if entry.get_log_id().index != index.value() {
                return Err(StoreIoError::Mismatch {
                    key: index.value(),
                    found: entry.get_log_id().index,
                });
            }
            entries.push(entry);
        }
        Ok(entries)
    }
}

/// True when no u64 can satisfy both bounds (redb, like `BTreeMap`, dislikes inverted ranges).
fn range_is_empty(start: Bound<u64>, end: Bound<u64>) -> bool {
    let first = match start {
        Bound::Included(s) => s,
        Bound::Excluded(s) => match s.checked_add(1) {
            Some(s) => s,
            None => return true,
        },
        Bound::Unbounded => 0,
    };
    match end {
        Bound::Included(e) => first > e,
        Bound::Excluded(e) => first >= e,
        Bound::Unbounded => false,
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = range.start_bound().cloned();
        let end = range.end_bound().cloned();
        self.read_entries(start, end)
            .map_err(|e| StorageIoError::read_logs(any_error(e)).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let read = || -> Result<_, StoreIoError> {
            let last_purged_log_id: Option<LogId> = self.read_state(KEY_LAST_PURGED)?;
            let last_log_id = self.last_entry_log_id()?.or(last_purged_log_id);
            Ok(LogState {
                last_purged_log_id,
                last_log_id,
            })
        };
        read().map_err(|e| StorageIoError::read_logs(any_error(e)).into())
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.write_state(KEY_VOTE, vote)
            .map_err(|e| StorageIoError::write_vote(any_error(e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.read_state(KEY_VOTE)
            .map_err(|e| StorageIoError::read_vote(any_error(e)).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.write_state(KEY_COMMITTED, &committed)
            .map_err(|e| StorageIoError::write(any_error(e)).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let committed: Option<Option<LogId>> = self
            .read_state(KEY_COMMITTED)
            .map_err(|e| StorageIoError::read(any_error(e)))?;
        Ok(committed.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // The transaction commit is the flush: report it before returning.
        match self.append_entries(entries) {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIoError::write_logs(any_error(e)).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(%log_id, "truncate the log from this id on");
        self.delete_entries(log_id.index.., None)
            .map_err(|e| StorageIoError::write_logs(any_error(e)).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(%log_id, "purge the log up to this id");
        self.delete_entries(..=log_id.index, Some(&log_id))
            .map_err(|e| StorageIoError::write_logs(any_error(e)).into())
    }
}
