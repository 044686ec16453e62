//! Opening and configuring one SQLite connection, the same way for the pool and the writer.

use std::time::Duration;

use rusqlite::functions::FunctionFlags;
use rusqlite::{Connection, OpenFlags};

/// How much of the database file each connection reads through a memory map.
pub(crate) const MMAP_BYTES: i64 = 256 * 1024 * 1024;

/// The usage writer's page cache, in KiB (SQLite takes a negative `cache_size` as KiB).
/// Every batch touches one index page per user in two per-user indexes; keeping those pages
/// cached rather than re-reading them more than doubled the writer's bulk speed on a 1M-row
/// table. The pooled connections keep SQLite's 2 MiB default, since the memory map serves
/// their reads.
pub(crate) const WRITER_CACHE_KIB: i64 = 32 * 1024;

/// The per-connection settings every connection gets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionSettings {
    pub(crate) busy_timeout: Duration,
    pub(crate) read_only: bool,
}

impl ConnectionSettings {
    pub(crate) fn open_flags(self) -> OpenFlags {
        let access = if self.read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
        };
        // Each connection is used by one thread at a time (pool checkout or the writer), so
        // SQLite's own mutexes would only cost time. No URI flag: a path is always a path,
        // even one that starts with `file:`.
        access | OpenFlags::SQLITE_OPEN_NO_MUTEX
    }
}

/// Applies the settings to a fresh connection; returns the journal mode SQLite settled on
/// (`"wal"` unless the file system refused it).
pub(crate) fn configure(
    conn: &mut Connection,
    settings: ConnectionSettings,
) -> rusqlite::Result<String> {
    // Set first, so that switching the journal mode below waits for other connections
    // instead of failing at once with SQLITE_BUSY.
    conn.busy_timeout(settings.busy_timeout)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    register_functions(conn)?;
    // Reading through a memory map skips a copy and a system call per page, which halves
    // the time of a user's usage page on a large table; the mapped pages are the operating
    // system's cache, shared by every connection rather than held once per connection.
    conn.pragma_update(None, "mmap_size", MMAP_BYTES)?;
    if settings.read_only {
        // The journal mode is a property of the file; a read-only connection may not change
        // it and uses whatever is recorded.
        return conn.pragma_query_value(None, "journal_mode", |row| row.get(0));
    }
    // WAL lets readers proceed while the usage writer commits, and commits cost no fsync
    // with synchronous=NORMAL (a power cut may lose the last commits, never corrupt the file).
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(mode)
}

/// `aiproxy_contains_folded(text, needle)`: whether `text` contains `needle`, ignoring case
/// for every script (SQLite's own `lower` and `LIKE` fold ASCII only, and display names are
/// not ASCII). NULL text contains nothing.
fn register_functions(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        "aiproxy_contains_folded",
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let text: Option<String> = ctx.get(0)?;
            let needle: String = ctx.get(1)?;
            Ok(text.is_some_and(|text| contains_folded(&text, &needle)))
        },
    )
}

fn contains_folded(text: &str, needle: &str) -> bool {
    text.to_lowercase().contains(&needle.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_search_ignores_case_in_every_script() {
        assert!(contains_folded("Émile Zola", "éMILE"));
        assert!(contains_folded("ALICE", "lic"));
        assert!(contains_folded("anything", ""));
        assert!(!contains_folded("bob", "alice"));
        let conn = Connection::open_in_memory().unwrap();
        register_functions(&conn).unwrap();
        let found: bool = conn
            .query_row(
                "SELECT aiproxy_contains_folded('Ärger', 'äR') AND NOT aiproxy_contains_folded(NULL, 'x')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(found);
    }
}
