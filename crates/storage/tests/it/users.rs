use aiproxy_domain::{
    ApiKey, Deleted, LimitsPatch, Page, RateLimits, StoreError, UnixMillis, UsageFilter,
    UsageQuery, UserPatch, UserQuery, UserSort, UserStore,
};
use aiproxy_storage::StoreOptions;

use crate::support::{T0, TestDb, block_on, new_user, record, record_all, uid};

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

    let created = store.blocking().create_user(new.clone()).unwrap();
    let fetched = store.blocking().get_user(&uid("alice")).unwrap();
    assert_eq!(created, fetched);
    assert_eq!(fetched.display_name.as_deref(), Some("alice display"));
    assert_eq!(fetched.note.as_deref(), Some("team ml"));
    assert_eq!(fetched.key_prefix, key.prefix());
    assert_eq!(fetched.key_expires_at, new.key_expires_at);
    assert_eq!(fetched.allowed_models, new.allowed_models);
    assert!(!fetched.disabled);
    assert_eq!(fetched.created_at, T0);
    assert_eq!(fetched.limits, new.limits);
    assert_eq!(
        store.blocking().find_user_by_key(&key.hash()).unwrap(),
        Some(fetched)
    );
}

#[test]
fn an_unknown_user_or_key_is_not_found() {
    let db = TestDb::new();
    let store = db.open();
    assert!(matches!(
        store.blocking().get_user(&uid("ghost")),
        Err(StoreError::NotFound { entity: "user", ref id }) if id == "ghost"
    ));
    assert_eq!(
        store
            .blocking()
            .find_user_by_key(&ApiKey::generate().hash())
            .unwrap(),
        None
    );
    assert!(matches!(
        store
            .blocking()
            .update_user(&uid("ghost"), &UserPatch::default()),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.blocking().delete_user(&uid("ghost")),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store
            .blocking()
            .set_limits(&uid("ghost"), &RateLimits::default()),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store
            .blocking()
            .replace_key(&uid("ghost"), ApiKey::generate().hash(), "sk-x", None),
        Err(StoreError::NotFound { .. })
    ));
}

#[test]
fn a_taken_id_is_a_conflict_on_the_user() {
    let db = TestDb::new();
    let store = db.open();
    store.blocking().create_user(new_user("alice").0).unwrap();
    let (again, again_key) = new_user("alice");
    assert!(matches!(
        store.blocking().create_user(again),
        Err(StoreError::Conflict { entity: "user", ref id }) if id == "alice"
    ));
    // The refused creation left nothing behind, not even its key.
    assert_eq!(
        store
            .blocking()
            .find_user_by_key(&again_key.hash())
            .unwrap(),
        None
    );
}

#[test]
fn a_taken_key_hash_is_a_conflict_on_the_key_and_creates_nothing() {
    let db = TestDb::new();
    let store = db.open();
    let (alice, alice_key) = new_user("alice");
    store.blocking().create_user(alice).unwrap();
    let (mut bob, _) = new_user("bob");
    bob.key_hash = alice_key.hash();
    bob.key_prefix = alice_key.prefix();
    assert!(matches!(
        store.blocking().create_user(bob),
        Err(StoreError::Conflict { entity: "api key", ref id }) if *id == alice_key.prefix()
    ));
    assert!(matches!(
        store.blocking().get_user(&uid("bob")),
        Err(StoreError::NotFound { .. })
    ));
}

#[test]
fn listing_pages_in_id_order_with_lifetime_totals_and_the_full_count() {
    let db = TestDb::new();
    let store = db.open();
    for id in ["carol", "alice", "erin", "bob", "dave"] {
        store.blocking().create_user(new_user(id).0).unwrap();
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
        .blocking()
        .list_users(&aiproxy_domain::UserQuery::page(2, 0))
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
        .blocking()
        .list_users(&aiproxy_domain::UserQuery::page(10, 2))
        .unwrap();
    assert_eq!(count, 5);
    let ids: Vec<_> = rest.iter().map(|s| s.user.id.as_str()).collect();
    assert_eq!(ids, ["carol", "dave", "erin"]);
    assert_eq!(rest[1].totals.total_tokens, 100);

    let (past_the_end, count) = store
        .blocking()
        .list_users(&aiproxy_domain::UserQuery::page(10, 50))
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
    store.blocking().create_user(new).unwrap();

    let updated = store
        .blocking()
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
    assert_eq!(store.blocking().get_user(&uid("alice")).unwrap(), updated);

    let updated = store
        .blocking()
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
    assert_eq!(store.blocking().get_user(&uid("alice")).unwrap(), updated);
}

fn usage_of(store: &aiproxy_storage::SqliteStore, user: Option<&str>) -> u64 {
    store
        .blocking()
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
    store.blocking().create_user(alice).unwrap();
    store.blocking().create_user(bob).unwrap();
    store
        .blocking()
        .set_limits(&uid("alice"), &RateLimits::unlimited())
        .unwrap();
    record_all(
        &store,
        [record("alice", "m", T0, 1, 1), record("bob", "m", T0, 2, 2)],
    );

    assert_eq!(
        store.blocking().delete_user(&uid("alice")).unwrap(),
        Deleted {
            users: 1,
            usage_records: 1
        }
    );

    assert!(matches!(
        store.blocking().get_user(&uid("alice")),
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(
        store
            .blocking()
            .find_user_by_key(&alice_key.hash())
            .unwrap(),
        None
    );
    assert_eq!(usage_of(&store, Some("alice")), 0);
    assert_eq!(
        store.blocking().lifetime_tokens().unwrap(),
        [(uid("bob"), 4)]
    );
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
        store
            .blocking()
            .find_user_by_key(&bob_key.hash())
            .unwrap()
            .unwrap()
            .id,
        uid("bob")
    );
    assert_eq!(usage_of(&store, Some("bob")), 1);

    // A user created again under the same id starts from nothing.
    store.blocking().create_user(new_user("alice").0).unwrap();
    assert_eq!(
        store.blocking().get_user(&uid("alice")).unwrap().limits,
        RateLimits::default()
    );
    let (users, _) = store
        .blocking()
        .list_users(&aiproxy_domain::UserQuery::page(10, 0))
        .unwrap();
    assert_eq!(users[0].totals, Default::default());
}

#[test]
fn deleting_all_users_empties_every_table_and_counts_the_users() {
    let db = TestDb::new();
    let store = db.open();
    for id in ["a", "b", "c"] {
        store.blocking().create_user(new_user(id).0).unwrap();
    }
    record_all(
        &store,
        [record("a", "m", T0, 1, 1), record("c", "m", T0, 1, 1)],
    );

    assert_eq!(
        store.blocking().delete_all_users().unwrap(),
        Deleted {
            users: 3,
            usage_records: 2
        }
    );

    let raw = db.raw();
    for table in [
        "users",
        "api_keys",
        "rate_limits",
        "usage",
        "user_totals",
        "refusals",
    ] {
        let left: i64 = raw
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0, "{table} is not empty");
    }
    assert_eq!(
        store.blocking().delete_all_users().unwrap(),
        Deleted::default()
    );
}

#[test]
fn replacing_a_key_makes_the_old_one_stop_matching_at_once() {
    let db = TestDb::new();
    let store = db.open();
    let (alice, old_key) = new_user("alice");
    store.blocking().create_user(alice).unwrap();

    let new_key = ApiKey::generate();
    let expires = Some(UnixMillis(T0.0 + DAY));
    let user = store
        .blocking()
        .replace_key(&uid("alice"), new_key.hash(), &new_key.prefix(), expires)
        .unwrap();
    assert_eq!(user.key_prefix, new_key.prefix());
    assert_eq!(user.key_expires_at, expires);

    assert_eq!(
        store.blocking().find_user_by_key(&old_key.hash()).unwrap(),
        None
    );
    assert_eq!(
        store.blocking().find_user_by_key(&new_key.hash()).unwrap(),
        Some(user)
    );
}

const DAY: i64 = 86_400_000;

#[test]
fn replacing_a_key_with_another_users_key_is_a_conflict_and_changes_nothing() {
    let db = TestDb::new();
    let store = db.open();
    let (alice, alice_key) = new_user("alice");
    let (bob, bob_key) = new_user("bob");
    store.blocking().create_user(alice).unwrap();
    store.blocking().create_user(bob).unwrap();

    let err = store
        .blocking()
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
            .blocking()
            .find_user_by_key(&alice_key.hash())
            .unwrap()
            .unwrap()
            .id,
        uid("alice")
    );
    assert_eq!(
        store
            .blocking()
            .find_user_by_key(&bob_key.hash())
            .unwrap()
            .unwrap()
            .id,
        uid("bob")
    );

    // Its own current key again is no conflict: only prefix and expiry are rewritten.
    let same = store
        .blocking()
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
    store.blocking().create_user(new_user("alice").0).unwrap();
    assert_eq!(
        store.blocking().get_user(&uid("alice")).unwrap().limits,
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
    store.blocking().set_limits(&uid("alice"), &limits).unwrap();
    assert_eq!(
        store.blocking().get_user(&uid("alice")).unwrap().limits,
        limits
    );

    store
        .blocking()
        .set_limits(&uid("alice"), &RateLimits::unlimited())
        .unwrap();
    assert_eq!(
        store.blocking().get_user(&uid("alice")).unwrap().limits,
        RateLimits::unlimited()
    );
}

#[test]
fn a_user_without_a_limits_row_has_the_default_limits() {
    let db = TestDb::new();
    let store = db.open();
    let (mut alice, key) = new_user("alice");
    alice.limits = RateLimits::unlimited();
    store.blocking().create_user(alice).unwrap();
    db.raw()
        .execute("DELETE FROM rate_limits WHERE user_id = 'alice'", [])
        .unwrap();

    assert_eq!(
        store.blocking().get_user(&uid("alice")).unwrap().limits,
        RateLimits::default()
    );
    assert_eq!(
        store
            .blocking()
            .find_user_by_key(&key.hash())
            .unwrap()
            .unwrap()
            .limits,
        RateLimits::default()
    );
    let (users, _) = store
        .blocking()
        .list_users(&aiproxy_domain::UserQuery::page(1, 0))
        .unwrap();
    assert_eq!(users[0].user.limits, RateLimits::default());
}

/// Issue 17.1: a request still running when its user is deleted (its key was cached, or it
/// was admitted just before) ends after the delete; its row must be stored all the same.
#[test]
fn a_row_recorded_after_its_user_was_deleted_is_kept_and_counted_in_no_total() {
    let db = TestDb::new();
    let store = db.open();
    store.blocking().create_user(new_user("alice").0).unwrap();
    store.blocking().create_user(new_user("bob").0).unwrap();
    record_all(&store, [record("alice", "m", T0, 1, 1)]);

    assert_eq!(
        block_on(store.delete_user(&uid("alice"))).unwrap(),
        Deleted {
            users: 1,
            usage_records: 1
        }
    );
    // Journaled together, so they share a batch with a live user's row.
    let late = record("alice", "m", T0.plus_millis(5), 7, 3);
    record_all(
        &store,
        [late.clone(), record("bob", "m", T0.plus_millis(6), 2, 2)],
    );

    let alices = store
        .blocking()
        .usage_page(&UsageQuery {
            filter: UsageFilter {
                user_id: Some(uid("alice")),
                ..UsageFilter::default()
            },
            limit: 10,
            offset: 0,
        })
        .unwrap();
    assert_eq!(alices.records, [late]);
    assert_eq!(alices.totals.total_tokens, 10);
    // Alice is gone: no lifetime total, no listing; bob counts as before.
    assert_eq!(
        store.blocking().lifetime_tokens().unwrap(),
        [(uid("bob"), 4)]
    );
    assert_eq!(store.writer_stats().records_of_deleted_users, 1);
    assert_eq!(store.writer_stats().records_committed, 3);
    let (users, count) = store
        .blocking()
        .list_users(&UserQuery::page(10, 0))
        .unwrap();
    assert_eq!(count, 1);
    assert_eq!(users[0].totals.requests, 1);
}

fn marker(store: &aiproxy_storage::SqliteStore) -> u64 {
    block_on(store.change_marker()).unwrap()
}

#[test]
fn every_change_to_users_keys_or_limits_moves_the_change_marker_and_usage_does_not() {
    let db = TestDb::new();
    let store = db.open();
    let mut last = marker(&store);
    let mut moved = |what: &str| {
        let now = marker(&store);
        assert_ne!(now, last, "{what} did not move the marker");
        last = now;
    };
    store.blocking().create_user(new_user("alice").0).unwrap();
    moved("create");
    store
        .blocking()
        .update_user(
            &uid("alice"),
            &UserPatch {
                disabled: Some(true),
                ..UserPatch::default()
            },
        )
        .unwrap();
    moved("disable");
    let key = ApiKey::generate();
    store
        .blocking()
        .replace_key(&uid("alice"), key.hash(), &key.prefix(), None)
        .unwrap();
    moved("rotate");
    store
        .blocking()
        .set_limits(&uid("alice"), &RateLimits::unlimited())
        .unwrap();
    moved("set limits");
    // A hand-written statement on the file moves it too: triggers, not this process, count.
    db.raw()
        .execute(
            "UPDATE rate_limits SET requests_per_minute = 1 WHERE user_id = 'alice'",
            [],
        )
        .unwrap();
    moved("a manual SQL edit");
    store.blocking().delete_user(&uid("alice")).unwrap();
    moved("delete");

    // Usage, totals and reads leave it alone: servers do not drop their caches per request.
    store.blocking().create_user(new_user("bob").0).unwrap();
    let before = marker(&store);
    record_all(&store, [record("bob", "m", T0, 1, 1)]);
    store.blocking().lifetime_tokens().unwrap();
    store.blocking().ping().unwrap();
    assert_eq!(marker(&store), before);
}

/// What the admin command line does beside a running server: a second store on the same
/// file (sharing the usage journal) changes a user; the server's store must see the marker
/// move.
#[test]
fn a_second_store_on_the_same_file_moves_the_marker_the_first_reads() {
    let db = TestDb::new();
    let server = db.open();
    server.blocking().create_user(new_user("alice").0).unwrap();
    let seen = marker(&server);

    let cli = db
        .open_with(StoreOptions {
            share_usage_journal: true,
            ..StoreOptions::default()
        })
        .unwrap();
    let key = ApiKey::generate();
    cli.blocking()
        .replace_key(&uid("alice"), key.hash(), &key.prefix(), None)
        .unwrap();
    cli.close();
    drop(cli);

    assert_ne!(marker(&server), seen);
    assert_eq!(
        block_on(server.find_user_by_key(&key.hash()))
            .unwrap()
            .unwrap()
            .id,
        uid("alice")
    );
}

#[test]
fn listing_searches_id_and_display_name_ignoring_case_and_sorts_either_way() {
    let db = TestDb::new();
    let store = db.open();
    for (id, name, at) in [
        ("alice", Some("Alice Martin"), 3),
        ("bob", Some("Émile Bob"), 1),
        ("carol", None, 2),
        ("dave", Some("MARTINA D."), 4),
    ] {
        let (mut new, _) = new_user(id);
        new.display_name = name.map(str::to_owned);
        new.created_at = UnixMillis(at);
        store.blocking().create_user(new).unwrap();
    }
    record_all(
        &store,
        [
            record("carol", "m", T0, 100, 0),
            record("bob", "m", T0, 10, 0),
            record("bob", "m", T0.plus_millis(1), 10, 0),
            record("dave", "m", T0, 1, 0),
        ],
    );
    let list = |search: Option<&str>, sort, descending, limit, offset| {
        let query = UserQuery {
            page: Page { limit, offset },
            search: search.map(str::to_owned),
            sort,
            descending,
        };
        let (users, total) = block_on(store.list_users(&query)).unwrap();
        let ids: Vec<String> = users.iter().map(|s| s.user.id.to_string()).collect();
        (ids, total)
    };

    assert_eq!(
        list(Some("martin"), UserSort::Id, false, 10, 0),
        (vec!["alice".into(), "dave".into()], 2)
    );
    assert_eq!(
        list(Some("éMILE"), UserSort::Id, false, 10, 0),
        (vec!["bob".into()], 1)
    );
    assert_eq!(
        list(Some("CAR"), UserSort::Id, false, 10, 0),
        (vec!["carol".into()], 1)
    );
    assert_eq!(
        list(Some("%"), UserSort::Id, false, 10, 0),
        (vec![], 0),
        "no wildcard"
    );
    assert_eq!(list(Some(""), UserSort::Id, false, 10, 0).1, 4);
    assert_eq!(
        list(None, UserSort::Id, true, 10, 0).0,
        ["dave", "carol", "bob", "alice"]
    );
    assert_eq!(
        list(None, UserSort::CreatedAt, false, 10, 0).0,
        ["bob", "carol", "alice", "dave"]
    );
    assert_eq!(
        list(None, UserSort::TotalTokens, true, 10, 0).0,
        ["carol", "bob", "dave", "alice"]
    );
    // Ties (alice and dave made one request each... no: alice none) break by id.
    assert_eq!(
        list(None, UserSort::Requests, false, 10, 0).0,
        ["alice", "carol", "dave", "bob"]
    );
    assert_eq!(
        list(None, UserSort::Requests, true, 2, 1),
        (vec!["carol".into(), "dave".into()], 4)
    );
}

#[test]
fn the_ollama_option_caps_are_stored_with_the_limits() {
    let db = TestDb::new();
    let store = db.open();
    let (mut alice, key) = new_user("alice");
    alice.limits = RateLimits {
        max_num_ctx: Some(8192),
        max_keep_alive_secs: Some(0),
        ..RateLimits::default()
    };
    store.blocking().create_user(alice.clone()).unwrap();
    assert_eq!(
        block_on(store.find_user_by_key(&key.hash()))
            .unwrap()
            .unwrap()
            .limits,
        alice.limits
    );
    let changed = RateLimits {
        max_num_ctx: None,
        max_keep_alive_secs: Some(300),
        ..RateLimits::unlimited()
    };
    block_on(store.set_limits(&uid("alice"), &changed)).unwrap();
    assert_eq!(
        block_on(store.get_user(&uid("alice"))).unwrap().limits,
        changed
    );
}
