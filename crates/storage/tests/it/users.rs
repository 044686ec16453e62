use aiproxy_domain::{
    ApiKey, LimitsPatch, Page, RateLimits, StoreError, UnixMillis, UsageFilter, UsageQuery,
    UsageStore, UserPatch, UserStore,
};

use crate::support::{T0, TestDb, new_user, record, record_all, uid};

#[test]
fn a_created_user_reads_back_with_every_field() {
    let db = TestDb::new();
    let store = db.open();
    let (mut new, key) = new_user("alice");
    new.note = Some("team ml".into());
    new.key_expires_at = Some(UnixMillis(T0.0 + 1000));
    new.allowed_models = Some(vec!["llama3.2".into(), "moondream".into()]);
    new.limits = RateLimits {
        requests_per_minute: Some(5),
        ..RateLimits::unlimited()
    };

    let created = store.create_user(new.clone()).unwrap();
    let fetched = store.get_user(&uid("alice")).unwrap();
    assert_eq!(created, fetched);
    assert_eq!(fetched.display_name.as_deref(), Some("alice display"));
    assert_eq!(fetched.note.as_deref(), Some("team ml"));
    assert_eq!(fetched.key_prefix, key.prefix());
    assert_eq!(fetched.key_expires_at, new.key_expires_at);
    assert_eq!(fetched.allowed_models, new.allowed_models);
    assert!(!fetched.disabled);
    assert_eq!(fetched.created_at, T0);
    assert_eq!(fetched.limits, new.limits);
    assert_eq!(store.find_user_by_key(&key.hash()).unwrap(), Some(fetched));
}

#[test]
fn an_unknown_user_or_key_is_not_found() {
    let db = TestDb::new();
    let store = db.open();
    assert!(matches!(
        store.get_user(&uid("ghost")),
        Err(StoreError::NotFound { entity: "user", ref id }) if id == "ghost"
    ));
    assert_eq!(
        store.find_user_by_key(&ApiKey::generate().hash()).unwrap(),
        None
    );
    assert!(matches!(
        store.update_user(&uid("ghost"), &UserPatch::default()),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.delete_user(&uid("ghost")),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.set_limits(&uid("ghost"), &RateLimits::default()),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.replace_key(&uid("ghost"), ApiKey::generate().hash(), "sk-x", None),
        Err(StoreError::NotFound { .. })
    ));
}

#[test]
fn a_taken_id_is_a_conflict_on_the_user() {
    let db = TestDb::new();
    let store = db.open();
    store.create_user(new_user("alice").0).unwrap();
    let (again, again_key) = new_user("alice");
    assert!(matches!(
        store.create_user(again),
        Err(StoreError::Conflict { entity: "user", ref id }) if id == "alice"
    ));
    // The refused creation left nothing behind, not even its key.
    assert_eq!(store.find_user_by_key(&again_key.hash()).unwrap(), None);
}

#[test]
fn a_taken_key_hash_is_a_conflict_on_the_key_and_creates_nothing() {
    let db = TestDb::new();
    let store = db.open();
    let (alice, alice_key) = new_user("alice");
    store.create_user(alice).unwrap();
    let (mut bob, _) = new_user("bob");
    bob.key_hash = alice_key.hash();
    bob.key_prefix = alice_key.prefix();
    assert!(matches!(
        store.create_user(bob),
        Err(StoreError::Conflict { entity: "api key", ref id }) if *id == alice_key.prefix()
    ));
    assert!(matches!(
        store.get_user(&uid("bob")),
        Err(StoreError::NotFound { .. })
    ));
}

#[test]
fn listing_pages_in_id_order_with_lifetime_totals_and_the_full_count() {
    let db = TestDb::new();
    let store = db.open();
    for id in ["carol", "alice", "erin", "bob", "dave"] {
        store.create_user(new_user(id).0).unwrap();
    }
    record_all(
        &store,
        [
            record("bob", "m", T0, 10, 1),
            record("bob", "m", T0.plus_millis(1), 20, 2),
            record("dave", "m", T0, 100, 0),
        ],
    );

    let (first, count) = store
        .list_users(Page {
            limit: 2,
            offset: 0,
        })
        .unwrap();
    assert_eq!(count, 5);
    let ids: Vec<_> = first.iter().map(|s| s.user.id.as_str()).collect();
    assert_eq!(ids, ["alice", "bob"]);
    assert_eq!(first[0].totals.requests, 0);
    assert_eq!(first[1].totals.requests, 2);
    assert_eq!(first[1].totals.prompt_tokens, 30);
    assert_eq!(first[1].totals.completion_tokens, 3);
    assert_eq!(first[1].totals.total_tokens, 33);

    let (rest, count) = store
        .list_users(Page {
            limit: 10,
            offset: 2,
        })
        .unwrap();
    assert_eq!(count, 5);
    let ids: Vec<_> = rest.iter().map(|s| s.user.id.as_str()).collect();
    assert_eq!(ids, ["carol", "dave", "erin"]);
    assert_eq!(rest[1].totals.total_tokens, 100);

    let (past_the_end, count) = store
        .list_users(Page {
            limit: 10,
            offset: 50,
        })
        .unwrap();
    assert!(past_the_end.is_empty());
    assert_eq!(count, 5);
}

#[test]
fn updating_changes_only_the_patched_fields_and_can_clear_them() {
    let db = TestDb::new();
    let store = db.open();
    let (mut new, _) = new_user("alice");
    new.note = Some("keep me".into());
    new.allowed_models = Some(vec!["llama3.2".into()]);
    store.create_user(new).unwrap();

    let updated = store
        .update_user(
            &uid("alice"),
            &UserPatch {
                display_name: Some(None),
                disabled: Some(true),
                key_expires_at: Some(Some(UnixMillis(42))),
                ..UserPatch::default()
            },
        )
        .unwrap();
    assert_eq!(updated.display_name, None);
    assert_eq!(updated.note.as_deref(), Some("keep me"));
    assert_eq!(updated.allowed_models, Some(vec!["llama3.2".to_owned()]));
    assert!(updated.disabled);
    assert_eq!(updated.key_expires_at, Some(UnixMillis(42)));
    assert_eq!(store.get_user(&uid("alice")).unwrap(), updated);

    let updated = store
        .update_user(
            &uid("alice"),
            &UserPatch {
                note: Some(None),
                allowed_models: Some(None),
                key_expires_at: Some(None),
                disabled: Some(false),
                ..UserPatch::default()
            },
        )
        .unwrap();
    assert_eq!(updated.note, None);
    assert_eq!(updated.allowed_models, None);
    assert_eq!(updated.key_expires_at, None);
    assert!(!updated.disabled);
    assert_eq!(store.get_user(&uid("alice")).unwrap(), updated);
}

fn usage_of(store: &aiproxy_storage::SqliteStore, user: Option<&str>) -> u64 {
    store
        .usage_page(&UsageQuery {
            filter: UsageFilter {
                user_id: user.map(uid),
                ..UsageFilter::default()
            },
            limit: 1,
            offset: 0,
        })
        .unwrap()
        .totals
        .requests
}

#[test]
fn deleting_a_user_removes_its_key_limits_usage_and_totals_only() {
    let db = TestDb::new();
    let store = db.open();
    let (alice, alice_key) = new_user("alice");
    let (bob, bob_key) = new_user("bob");
    store.create_user(alice).unwrap();
    store.create_user(bob).unwrap();
    store
        .set_limits(&uid("alice"), &RateLimits::unlimited())
        .unwrap();
    record_all(
        &store,
        [record("alice", "m", T0, 1, 1), record("bob", "m", T0, 2, 2)],
    );

    store.delete_user(&uid("alice")).unwrap();

    assert!(matches!(
        store.get_user(&uid("alice")),
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.find_user_by_key(&alice_key.hash()).unwrap(), None);
    assert_eq!(usage_of(&store, Some("alice")), 0);
    assert_eq!(store.lifetime_tokens().unwrap(), [(uid("bob"), 4)]);
    let raw = db.raw();
    for table in ["api_keys", "rate_limits", "usage", "user_totals"] {
        let left: i64 = raw
            .query_row(
                &format!("SELECT count(*) FROM {table} WHERE user_id = 'alice'"),
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(left, 0, "{table} still holds alice's rows");
    }
    // Bob is untouched.
    assert_eq!(
        store.find_user_by_key(&bob_key.hash()).unwrap().unwrap().id,
        uid("bob")
    );
    assert_eq!(usage_of(&store, Some("bob")), 1);

    // A user created again under the same id starts from nothing.
    store.create_user(new_user("alice").0).unwrap();
    assert_eq!(
        store.get_user(&uid("alice")).unwrap().limits,
        RateLimits::default()
    );
    let (users, _) = store
        .list_users(Page {
            limit: 10,
            offset: 0,
        })
        .unwrap();
    assert_eq!(users[0].totals, Default::default());
}

#[test]
fn deleting_all_users_empties_every_table_and_counts_the_users() {
    let db = TestDb::new();
    let store = db.open();
    for id in ["a", "b", "c"] {
        store.create_user(new_user(id).0).unwrap();
    }
    record_all(
        &store,
        [record("a", "m", T0, 1, 1), record("c", "m", T0, 1, 1)],
    );

    assert_eq!(store.delete_all_users().unwrap(), 3);

    let raw = db.raw();
    for table in ["users", "api_keys", "rate_limits", "usage", "user_totals"] {
        let left: i64 = raw
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0, "{table} is not empty");
    }
    assert_eq!(store.delete_all_users().unwrap(), 0);
}

#[test]
fn replacing_a_key_makes_the_old_one_stop_matching_at_once() {
    let db = TestDb::new();
    let store = db.open();
    let (alice, old_key) = new_user("alice");
    store.create_user(alice).unwrap();

    let new_key = ApiKey::generate();
    let expires = Some(UnixMillis(T0.0 + DAY));
    let user = store
        .replace_key(&uid("alice"), new_key.hash(), &new_key.prefix(), expires)
        .unwrap();
    assert_eq!(user.key_prefix, new_key.prefix());
    assert_eq!(user.key_expires_at, expires);

    assert_eq!(store.find_user_by_key(&old_key.hash()).unwrap(), None);
    assert_eq!(store.find_user_by_key(&new_key.hash()).unwrap(), Some(user));
}

const DAY: i64 = 86_400_000;

#[test]
fn replacing_a_key_with_another_users_key_is_a_conflict_and_changes_nothing() {
    let db = TestDb::new();
    let store = db.open();
    let (alice, alice_key) = new_user("alice");
    let (bob, bob_key) = new_user("bob");
    store.create_user(alice).unwrap();
    store.create_user(bob).unwrap();

    let err = store
        .replace_key(&uid("alice"), bob_key.hash(), &bob_key.prefix(), None)
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                entity: "api key",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        store
            .find_user_by_key(&alice_key.hash())
            .unwrap()
            .unwrap()
            .id,
        uid("alice")
    );
    assert_eq!(
        store.find_user_by_key(&bob_key.hash()).unwrap().unwrap().id,
        uid("bob")
    );

    // Its own current key again is no conflict: only prefix and expiry are rewritten.
    let same = store
        .replace_key(
            &uid("alice"),
            alice_key.hash(),
            &alice_key.prefix(),
            Some(UnixMillis(9)),
        )
        .unwrap();
    assert_eq!(same.key_expires_at, Some(UnixMillis(9)));
}

#[test]
fn limits_are_stored_as_set_including_unlimited_fields() {
    let db = TestDb::new();
    let store = db.open();
    store.create_user(new_user("alice").0).unwrap();
    assert_eq!(
        store.get_user(&uid("alice")).unwrap().limits,
        RateLimits::default()
    );

    let limits = LimitsPatch {
        requests_per_minute: Some(None),
        tokens_per_day: Some(Some(5_000)),
        total_token_limit: Some(Some(1_000_000_000_000)),
        ..LimitsPatch::default()
    }
    .apply(RateLimits::default())
    .unwrap();
    store.set_limits(&uid("alice"), &limits).unwrap();
    assert_eq!(store.get_user(&uid("alice")).unwrap().limits, limits);

    store
        .set_limits(&uid("alice"), &RateLimits::unlimited())
        .unwrap();
    assert_eq!(
        store.get_user(&uid("alice")).unwrap().limits,
        RateLimits::unlimited()
    );
}

#[test]
fn a_user_without_a_limits_row_has_the_default_limits() {
    let db = TestDb::new();
    let store = db.open();
    let (mut alice, key) = new_user("alice");
    alice.limits = RateLimits::unlimited();
    store.create_user(alice).unwrap();
    db.raw()
        .execute("DELETE FROM rate_limits WHERE user_id = 'alice'", [])
        .unwrap();

    assert_eq!(
        store.get_user(&uid("alice")).unwrap().limits,
        RateLimits::default()
    );
    assert_eq!(
        store.find_user_by_key(&key.hash()).unwrap().unwrap().limits,
        RateLimits::default()
    );
    let (users, _) = store
        .list_users(Page {
            limit: 1,
            offset: 0,
        })
        .unwrap();
    assert_eq!(users[0].user.limits, RateLimits::default());
}
