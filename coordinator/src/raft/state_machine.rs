//! The replicated state machine: `ClusterState` in memory, the last snapshot in redb.
//!
//! ```text
//!   committed entries ──apply──► ClusterState (Arc<RwLock>) ──read──► StateHandle (services)
//!                                   │            └── watch::Sender<u64>: last applied index
//!                       build_snapshot / install_snapshot
//!                                   ▼
//!                  redb `snapshot` table (meta + JSON body), durable
//! ```
//!
//! What survives a crash: the state is *not* written on every apply (that would rewrite the whole
//! `ClusterState` per command). Instead the last snapshot is durable, and on startup openraft
//! re-applies the log from the snapshot's last applied index up to the persisted committed index
//! (`StorageHelper::get_initial_state`, openraft 0.9.25, runs before `Raft::new` returns). The log
//! store persists `committed` before entries are applied, and openraft purges the log only up to
//! the last durable snapshot, so every committed command is either in the snapshot or in the log.

use std::io::Cursor;
use std::sync::{Arc, PoisonError, RwLock};

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::store::{
    KEY_SNAPSHOT_DATA, KEY_SNAPSHOT_META, SNAPSHOT, Store, StoreError, StoreIoError, any_error,
};
use super::types::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StorageIoError, StoredMembership,
    TypeConfig,
};
use crate::state::{Applied, ClusterState, CommandOutcome};

/// A cheap, cloneable read handle on the applied `ClusterState`, for the services.
#[derive(Debug, Clone)]
pub struct StateHandle {
    state: Arc<RwLock<ClusterState>>,
    /// The index of the last applied log entry (0 before any); changes after every applied batch.
    applied_index: watch::Receiver<u64>,
}

impl StateHandle {
    /// Runs `f` on the current state under a read lock. Keep `f` short and never block in it:
    /// applying the next command waits for it.
    pub fn read<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        f(&state)
    }

    /// The index of the last applied log entry.
    pub fn applied_index(&self) -> u64 {
        *self.applied_index.borrow()
    }

    /// A receiver that changes after every applied batch; `wait_for(|i| *i >= index)` waits until
    /// a given log index is applied here.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied_index.clone()
    }
}

/// The snapshot body: everything needed to restore the state machine, as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SnapshotBody {
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    state: ClusterState,
}

/// The state machine given to openraft.
#[derive(Debug)]
pub struct StateMachine {
    store: Store,
    /// The applied state, shared with every [`StateHandle`].
    state: Arc<RwLock<ClusterState>>,
    /// The last applied log id (in memory; durable through snapshots plus log re-apply).
    last_applied: Option<LogId>,
    /// The last applied membership config.
    last_membership: StoredMembership,
    /// Bumped with the last applied index after each applied batch.
    applied_index: watch::Sender<u64>,
    /// Makes snapshot ids unique within this process (with the last log id they are unique enough:
    /// two snapshots with the same last log id have the same content).
    snapshot_count: u64,
}

impl StateMachine {
    /// Restores the state machine from the last snapshot in `store`, or starts empty.
    pub fn open(store: Store) -> Result<StateMachine, StoreError> {
        let body = match load_snapshot(&store) {
            Ok(Some((_, data))) => {
                serde_json::from_slice::<SnapshotBody>(&data).map_err(|source| {
                    StoreError::Decode {
                        path: store.path.to_path_buf(),
                        what: "snapshot",
                        source,
                    }
                })?
            }
            Ok(None) => SnapshotBody {
                last_applied: None,
                last_membership: StoredMembership::default(),
                state: ClusterState::default(),
            },
            Err(source) => {
                let path = store.path.to_path_buf();
                return Err(StoreError::Read {
                    path,
                    what: "the last snapshot",
                    source: Box::new(source),
                });
            }
        };
        let index = body.last_applied.map_or(0, |l| l.index);
        Ok(StateMachine {
            store,
            state: Arc::new(RwLock::new(body.state)),
            last_applied: body.last_applied,
            last_membership: body.last_membership,
            applied_index: watch::Sender::new(index),
            snapshot_count: 0,
        })
    }

    /// A read handle for the services.
    pub fn handle(&self) -> StateHandle {
        StateHandle {
            state: Arc::clone(&self.state),
            applied_index: self.applied_index.subscribe(),
        }
    }

    fn publish_applied(&self) {
        self.applied_index
            .send_replace(self.last_applied.map_or(0, |l| l.index));
    }
}

/// Reads the stored snapshot: (meta, data).
fn load_snapshot(store: &Store) -> Result<Option<(SnapshotMeta, Vec<u8>)>, StoreIoError> {
    let txn = store.db.begin_read()?;
    let table = txn.open_table(SNAPSHOT)?;
    let (Some(meta), Some(data)) = (table.get(KEY_SNAPSHOT_META)?, table.get(KEY_SNAPSHOT_DATA)?)
    else {
        return Ok(None);
    };
    let meta: SnapshotMeta = serde_json::from_slice(meta.value())?;
    Ok(Some((meta, data.value().to_vec())))
}

/// Replaces the stored snapshot, durably, in one transaction, unless the stored one is newer.
///
/// openraft builds snapshots in a spawned task, so a slow build can finish after a newer snapshot
/// was installed from the leader (and the log purged up to it). Overwriting would leave a snapshot
/// older than the purged log: after a restart the gap could not be re-applied.
fn save_snapshot(store: &Store, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StoreIoError> {
    let meta_bytes = serde_json::to_vec(meta)?;
    let txn = store.db.begin_write()?;
    {
        let mut table = txn.open_table(SNAPSHOT)?;
        let stored: Option<SnapshotMeta> = match table.get(KEY_SNAPSHOT_META)? {
            Some(stored) => Some(serde_json::from_slice(stored.value())?),
            None => None,
        };
        if let Some(stored) = stored
            && stored.last_log_id > meta.last_log_id
        {
            tracing::info!(%stored, new = %meta, "kept the newer stored snapshot");
            return Ok(());
        }
        table.insert(KEY_SNAPSHOT_META, meta_bytes.as_slice())?;
        table.insert(KEY_SNAPSHOT_DATA, data)?;
    }
    txn.commit()?;
    Ok(())
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandOutcome>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut outcomes = Vec::new();
        {
            let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
            for entry in entries {
                // Paired with openraft's guarantee: entries arrive in order, each applied once.
                debug_assert!(
                    self.last_applied
                        .is_none_or(|l| l.index < entry.log_id.index)
                );
                self.last_applied = Some(entry.log_id);
                let outcome = match entry.payload {
                    EntryPayload::Blank => Ok(Applied::Done),
                    EntryPayload::Normal(command) => state.apply(&command),
                    EntryPayload::Membership(membership) => {
                        self.last_membership =
                            StoredMembership::new(Some(entry.log_id), membership);
                        Ok(Applied::Done)
                    }
                };
                outcomes.push(outcome);
            }
        }
        self.publish_applied();
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        self.snapshot_count += 1;
        let state = self
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        SnapshotBuilder {
            store: self.store.clone(),
            body: SnapshotBody {
                last_applied: self.last_applied,
                last_membership: self.last_membership.clone(),
                state,
            },
            snapshot_count: self.snapshot_count,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let signature = Some(meta.signature());
        let data = snapshot.into_inner();
        let body: SnapshotBody = serde_json::from_slice(&data)
            .map_err(|e| StorageIoError::read_snapshot(signature.clone(), any_error(e)))?;
        if body.last_applied != meta.last_log_id || body.last_membership != meta.last_membership {
            let message = format!(
                "snapshot body ends at {:?}, its meta says {meta}",
                body.last_applied
            );
            return Err(StorageIoError::read_snapshot(
                signature,
                openraft::AnyError::error(message),
            )
            .into());
        }
        save_snapshot(&self.store, meta, &data)
            .map_err(|e| StorageIoError::write_snapshot(signature, any_error(e)))?;
        *self.state.write().unwrap_or_else(PoisonError::into_inner) = body.state;
        self.last_applied = meta.last_log_id;
        self.last_membership = meta.last_membership.clone();
        self.publish_applied();
        tracing::info!(%meta, "installed a snapshot from the leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let stored = load_snapshot(&self.store)
            .map_err(|e| StorageIoError::read_snapshot(None, any_error(e)))?;
        Ok(stored.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

/// A point-in-time copy of the state machine, serialized and stored by `build_snapshot`.
#[derive(Debug)]
pub struct SnapshotBuilder {
    store: Store,
    body: SnapshotBody,
    snapshot_count: u64,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let last = self.body.last_applied;
        let snapshot_id = match last {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, self.snapshot_count),
            None => format!("none-{}", self.snapshot_count),
        };
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: self.body.last_membership.clone(),
            snapshot_id,
        };
        let signature = Some(meta.signature());
        let data = serde_json::to_vec(&self.body)
            .map_err(|e| StorageIoError::write_snapshot(signature.clone(), any_error(e)))?;
        save_snapshot(&self.store, &meta, &data)
            .map_err(|e| StorageIoError::write_snapshot(signature, any_error(e)))?;
        tracing::info!(%meta, bytes = data.len(), "built and stored a snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}
