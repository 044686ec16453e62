use aiproxy_domain::ApiKey;

use crate::support::{TestDb, new_user, uid};

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every byte the store left on disk: the database and any WAL or shared-memory file.
fn files_bytes(db: &TestDb) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(db.dir.path()).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    bytes
}

#[test]
fn the_database_files_never_hold_a_whole_key() {
    let db = TestDb::new();
    let mut keys = Vec::new();
    let mut hashes = Vec::new();
    {
        let store = db.open();
        for i in 0..5 {
            let (user, key) = new_user(&format!("user{i}"));
            hashes.push(key.hash());
            keys.push(key);
            store.blocking().create_user(user).unwrap();
        }
        let replacement = ApiKey::generate();
        hashes.push(replacement.hash());
        store
            .blocking()
            .replace_key(
                &uid("user0"),
                replacement.hash(),
                &replacement.prefix(),
                None,
            )
            .unwrap();
        keys.push(replacement);

        // Checked while the store is open (the WAL holds the writes) and again after.
        let bytes = files_bytes(&db);
        for key in &keys {
            assert!(
                !contains(&bytes, key.expose().as_bytes()),
                "a key is stored in clear"
            );
        }
    }
    let bytes = files_bytes(&db);
    for key in &keys {
        assert!(
            !contains(&bytes, key.expose().as_bytes()),
            "a key is stored in clear"
        );
    }
    // The search is not vacuous: what is stored (hashes, prefixes) is found the same way.
    assert!(contains(&bytes, &hashes[5].0));
    assert!(contains(&bytes, keys[1].prefix().as_bytes()));
}
