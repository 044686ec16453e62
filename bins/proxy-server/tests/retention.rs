//! `USAGE_RETENTION_DAYS`: the server purges old usage records on its own, and lifetime
//! totals still count them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure is a failed test"
)]

use std::time::{Duration, Instant};

use aiproxy_domain::{
    ApiKey, Endpoint, NewUser, RateLimits, UnixMillis, UsageFilter, UsageQuery, UsageRecord,
    UsageStatus, UsageStore, UserId,
};
use aiproxy_storage::{SqliteStore, StoreOptions};
use proxy_server::{Application, Settings};

const DAY_MILLIS: i64 = 24 * 60 * 60 * 1000;

fn record(request_id: &str, user: &UserId, created_at: UnixMillis) -> UsageRecord {
    UsageRecord {
        request_id: request_id.into(),
        user_id: user.clone(),
        model: "llama3.2".into(),
        endpoint: Endpoint::ChatCompletions,
        backend: None,
        client_request_id: None,
        prompt_tokens: 10,
        completion_tokens: 5,
        status: UsageStatus::Ok,
        duration_ms: 12,
        created_at,
    }
}

/// The request ids of the user's records, newest first.
fn request_ids(store: &SqliteStore, user: &UserId) -> Vec<String> {
    let page = store
        .blocking()
        .usage_page(&UsageQuery {
            filter: UsageFilter {
                user_id: Some(user.clone()),
                ..UsageFilter::default()
            },
            limit: 100,
            offset: 0,
        })
        .unwrap();
    page.records.into_iter().map(|r| r.request_id).collect()
}

#[actix_web::test]
async fn old_usage_is_purged_at_start_up_and_lifetime_totals_keep_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("retention.db");
    let user = UserId::parse("retained").unwrap();
    let now = UnixMillis::now();

    let store = SqliteStore::open(&db, StoreOptions::default()).unwrap();
    let key = ApiKey::generate();
    store
        .blocking()
        .create_user(NewUser {
            id: user.clone(),
            display_name: None,
            note: None,
            key_hash: key.hash(),
            key_prefix: key.prefix(),
            key_expires_at: None,
            allowed_models: None,
            limits: RateLimits::default(),
            created_at: now,
        })
        .unwrap();
    store
        .record_usage(record("old", &user, now.plus_millis(-40 * DAY_MILLIS)))
        .await
        .unwrap();
    store
        .record_usage(record("new", &user, now.plus_millis(-DAY_MILLIS / 2)))
        .await
        .unwrap();
    assert_eq!(request_ids(&store, &user), ["new", "old"]);
    store.close();
    drop(store);

    let app = Application::build(Settings {
        host: "127.0.0.1".into(),
        port: 0,
        database_path: db.clone(),
        ollama_base_url: "http://127.0.0.1:9".into(),
        workers: 1,
        shutdown_grace_secs: 1,
        usage_retention_days: 30,
        ..Settings::default()
    })
    .unwrap();
    let handle = app.handle();
    let running = actix_web::rt::spawn(app.run_until_stopped());

    // A second store on the same file sees the server's deletes (WAL allows many readers);
    // like the admin CLI, it shares the journal the server owns.
    let observer = SqliteStore::open(
        &db,
        StoreOptions {
            share_usage_journal: true,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut ids = request_ids(&observer, &user);
    while ids != ["new"] {
        assert!(
            Instant::now() < deadline,
            "the old record was not purged; records now: {ids:?}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        ids = request_ids(&observer, &user);
    }
    assert_eq!(
        observer.blocking().lifetime_tokens().unwrap(),
        [(user.clone(), 30)],
        "the lifetime total still counts the purged record"
    );
    observer.close();

    // Stopping must also end the retention task, or this would never return.
    handle.stop(true).await;
    running.await.unwrap().unwrap();
}
