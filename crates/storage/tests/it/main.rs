//! Integration tests of the SQLite store against real database files in temporary folders.

// Helpers outside `#[test]` functions fail loudly too; clippy's test exemption does not reach
// them.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod failures;
mod journal;
mod migrations;
mod open_errors;
mod secrets;
mod support;
mod usage_queries;
mod usage_writer;
mod users;

/// The server shares one store between its workers as a trait object.
#[test]
fn the_store_can_be_shared_as_a_trait_object() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<aiproxy_storage::SqliteStore>();

    let db = support::TestDb::new();
    let store: std::sync::Arc<dyn aiproxy_domain::Store> = std::sync::Arc::new(db.open());
    support::block_on(store.ping()).unwrap();
}
