//! The storage conformance suite against the embedded redb backend.

use std::sync::Arc;

use zenkoctl::server::storage::conformance::Opener;
use zenkoctl::server::storage::redb_store::RedbStore;
use zenkoctl::server::storage::{Store, StoreFuture};

struct RedbOpener(tempfile::TempDir);

impl RedbOpener {
    fn new() -> Self {
        RedbOpener(tempfile::tempdir().expect("tempdir"))
    }
}

impl Opener for RedbOpener {
    fn open(&self) -> StoreFuture<'_, Arc<dyn Store>> {
        Box::pin(async move {
            let s: Arc<dyn Store> = Arc::new(RedbStore::open(&self.0.path().join("db.redb"))?);
            Ok(s)
        })
    }
}

zenkoctl::storage_conformance_tests!(RedbOpener::new());
