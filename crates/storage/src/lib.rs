//! SQLite engine for the domain's storage traits: [`SqliteStore`] implements
//! [`aiproxy_domain::Store`] over one database file.
//!
//! It keeps users, their hashed API keys, their limits, their usage and refusal counts; it
//! knows nothing about HTTP, rate-limit arithmetic (that is `aiproxy-ratelimit`, which only
//! reads usage events from here to rebuild its windows) or keys in clear (callers hash them
//! with `aiproxy_domain::ApiKey::hash`).
//!
//! The trait methods are async: SQLite blocks, so their work runs on the store's own threads
//! (no async runtime is needed to drive them). Usage records are the exception: `record_usage`
//! appends the record to a journal file beside the database (`<database>-usage`) on the
//! caller's thread and returns an already-resolved future; a writer thread moves journaled
//! records into SQLite in large transactions, and every read of usage first waits for what is
//! pending, so reads never trail the journal. [`SqliteStore::blocking`] offers the same
//! operations as plain blocking calls, for the admin command line, tests and benchmarks.
//!
//! ```
//! use aiproxy_domain::{ApiKey, NewUser, RateLimits, UnixMillis, UserId};
//! use aiproxy_storage::{SqliteStore, StoreOptions};
//!
//! let dir = tempfile::tempdir()?;
//! let store = SqliteStore::open(&dir.path().join("aiproxy.db"), StoreOptions::default())?;
//!
//! let key = ApiKey::generate();
//! store.blocking().create_user(NewUser {
//!     id: UserId::parse("alice")?,
//!     display_name: Some("Alice".into()),
//!     note: None,
//!     key_hash: key.hash(),
//!     key_prefix: key.prefix(),
//!     key_expires_at: None,
//!     allowed_models: None,
//!     limits: RateLimits::default(),
//!     created_at: UnixMillis::now(),
//! })?;
//!
//! let found = store.blocking().find_user_by_key(&key.hash())?.expect("the key was just stored");
//! assert_eq!(found.id.as_str(), "alice");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

mod connection;
mod error;
mod journal;
mod schema;
mod sql;
mod store;
mod usage;
mod users;
mod workers;
mod writer;

pub use error::{OpenCause, StorageError};
pub use schema::SCHEMA_VERSION;
pub use store::{Blocking, SqliteStore, StoreOptions};
pub use writer::WriterStats;
