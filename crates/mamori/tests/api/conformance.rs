//! The store conformance suite on both engines, against a real database.

use mamori_store::SqlStore;
use mamori_testkit::{TestDatabase, TestEngine};

mamori_testkit::engine_tests!(store_conformance);

async fn store_conformance(engine: TestEngine) {
    let database = TestDatabase::create(engine).await;
    let store = SqlStore::open(database.url(), 4).await.unwrap();
    mamori_store::conformance::run(&store).await;
    store.close().await;
}
