//! openraft's own storage test suite against the sled log store and the Store state machine.

use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};
use openraft::{ErrorSubject, ErrorVerb, StorageIOError};
use parley_raft::types::StorageError;
use parley_raft::{LogStore, NoopListener, StateMachine, TypeConfig};
use parley_storage::Store;
use tempfile::TempDir;

/// Builds both stores on a fresh temp sled db; the `TempDir` guard removes it afterwards.
struct SledBuilder;

fn setup_error(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::new(ErrorSubject::Store, ErrorVerb::Write, &e).into()
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for SledBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().map_err(setup_error)?;
        let db = sled::Config::new().path(dir.path()).temporary(true).open().map_err(setup_error)?;
        let store = Store::open(db.clone()).map_err(setup_error)?;
        let log_store = LogStore::open(db.clone()).map_err(setup_error)?;
        let state_machine = StateMachine::open(db, store, Arc::new(NoopListener)).map_err(setup_error)?;
        Ok((dir, log_store, state_machine))
    }
}

#[test]
fn openraft_storage_suite() {
    if let Err(e) = Suite::test_all(SledBuilder) {
        panic!("storage suite failed: {e}");
    }
}
