//! The redb store: openraft's conformance suite, and the files it must refuse to open.

use std::path::Path;

use openraft::testing::{StoreBuilder, Suite};
use tempfile::TempDir;

use super::super::types::StorageError;
use super::super::{LogStore, NetworkFactory, StateMachine, Store, StoreError, TypeConfig, open};

/// Builds a fresh store in a temporary directory for every suite case; the guard deletes it.
struct RedbBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for RedbBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        // The suite uses node id 0.
        let store = Store::open(dir.path(), 0, "suite").expect("a fresh store opens");
        let state_machine =
            StateMachine::open(store.clone()).expect("an empty state machine opens");
        Ok((dir, LogStore::new(store), state_machine))
    }
}

#[test]
fn t10_storage_conformance_suite() {
    Suite::test_all(RedbBuilder).expect("the redb store passes openraft's storage suite");
}

fn write_file(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("write a test file");
}

#[test]
fn t20_garbage_file_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let garbage: Vec<u8> = b"this is not a redb database\n"
        .iter()
        .copied()
        .cycle()
        .take(64 * 1024)
        .collect();
    write_file(&dir.path().join("raft.redb"), &garbage);

    let error = Store::open(dir.path(), 1, "c1").expect_err("garbage must not open");
    assert!(
        matches!(error, StoreError::Unreadable { .. }),
        "got {error:?}"
    );
    assert!(
        error.to_string().contains("raft.redb"),
        "the error names the file: {error}"
    );

    // The same through `open`, which starts Raft: an error, not a panic.
    let runtime = super::runtime();
    let result = runtime.block_on(open(dir.path(), 1, "c1", NetworkFactory::new(None)));
    assert!(matches!(result, Err(StoreError::Unreadable { .. })));
}

#[test]
fn t21_truncated_file_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    drop(Store::open(dir.path(), 1, "c1").expect("a fresh store opens"));
    let path = dir.path().join("raft.redb");
    let bytes = std::fs::read(&path).expect("read the store");
    write_file(&path, &bytes[..bytes.len().min(100)]);
    let error = Store::open(dir.path(), 1, "c1").expect_err("a truncated file must not open");
    assert!(
        error.to_string().contains("raft.redb"),
        "the error names the file: {error}"
    );
}

#[test]
fn t22_foreign_redb_file_is_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    {
        let db = redb::Database::create(dir.path().join("raft.redb")).expect("create a redb file");
        let txn = db.begin_write().expect("begin write");
        {
            let table: redb::TableDefinition<&str, &str> =
                redb::TableDefinition::new("someone_elses");
            let mut table = txn.open_table(table).expect("open table");
            table.insert("k", "v").expect("insert");
        }
        txn.commit().expect("commit");
    }
    let error = Store::open(dir.path(), 1, "c1").expect_err("a foreign file must not open");
    assert!(matches!(error, StoreError::Foreign { .. }), "got {error:?}");
}

#[test]
fn t23_other_cluster_or_node_is_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    drop(Store::open(dir.path(), 1, "cluster-a").expect("a fresh store opens"));

    let error = Store::open(dir.path(), 1, "cluster-b").expect_err("another cluster's store");
    assert!(
        matches!(error, StoreError::ClusterMismatch { .. }),
        "got {error:?}"
    );
    let error = Store::open(dir.path(), 2, "cluster-a").expect_err("another node's store");
    assert!(
        matches!(error, StoreError::NodeMismatch { .. }),
        "got {error:?}"
    );

    drop(Store::open(dir.path(), 1, "cluster-a").expect("the right identity reopens"));
}

#[test]
fn t24_second_opener_is_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let _held = Store::open(dir.path(), 1, "c1").expect("a fresh store opens");
    let error = Store::open(dir.path(), 1, "c1").expect_err("the file is held");
    assert!(
        matches!(error, StoreError::AlreadyOpen { .. }),
        "got {error:?}"
    );
}

#[test]
fn t25_a_late_older_snapshot_does_not_replace_a_newer_one() {
    use openraft::RaftSnapshotBuilder;
    use openraft::storage::RaftStateMachine;
    use openraft::testing::blank_ent;

    let dir = tempfile::tempdir().expect("a temporary directory");
    super::runtime().block_on(async {
        let store = Store::open(dir.path(), 1, "c1").expect("a fresh store opens");
        let mut machine = StateMachine::open(store).expect("an empty state machine opens");
        machine
            .apply([blank_ent::<TypeConfig>(1, 1, 1)])
            .await
            .expect("apply");
        let mut older = machine.get_snapshot_builder().await;
        machine
            .apply([
                blank_ent::<TypeConfig>(1, 1, 2),
                blank_ent::<TypeConfig>(1, 1, 3),
            ])
            .await
            .expect("apply");
        let newer = machine
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("build at 3");
        older
            .build_snapshot()
            .await
            .expect("build at 1 (spawned by openraft, may finish late)");
        let current = machine
            .get_current_snapshot()
            .await
            .expect("read")
            .expect("a snapshot");
        assert_eq!(current.meta, newer.meta, "the newer snapshot is kept");
    });
}
