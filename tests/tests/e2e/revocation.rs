//! Issue 17.3: revoking a key (rotate, disable) is linearizable. Once the admin's call has
//! returned, no request that starts later gets in with what it revoked, even when a request
//! that read the database before the change stores what it read in the key cache after it.

use std::cell::Cell;
use std::sync::{Arc, Mutex};

use actix_web::dev::{Service, ServiceResponse};
use actix_web::{App, test, web};
use aiproxy_api::{ApiSettings, AppState};
use aiproxy_domain::{
    ApiKeyHash, Deleted, NewUser, RateLimits, RefusalCount, RefusalGrouping, RefusalSummaryRow,
    Store, StoreFuture, UnixMillis, UsageCommit, UsageCursor, UsageEvent, UsageFilter,
    UsageGrouping, UsagePage, UsageQuery, UsageRecord, UsageStore, UsageSummaryRow, User, UserId,
    UserPatch, UserQuery, UserStore, UserSummary,
};
use aiproxy_e2e::{ADMIN_KEY, TestApp};
use aiproxy_ratelimit::{LimiterConfig, LocalAdmission, RateLimiter};
use aiproxy_storage::{SqliteStore, StoreOptions};
use serde_json::json;
use tokio::sync::oneshot;
use utoipa_actix_web::AppExt as _;

/// A real SQLite store whose next key lookup, once armed, reads the database and then waits
/// before answering: the moment a lookup has seen the database but not yet filled the cache.
struct PausingStore {
    inner: SqliteStore,
    gate: Mutex<Option<(oneshot::Sender<()>, oneshot::Receiver<()>)>>,
}

impl PausingStore {
    /// Arms the next lookup; it says when it has read and waits to be resumed.
    fn pause_next_lookup(&self) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (read, has_read) = oneshot::channel();
        let (resume, resumed) = oneshot::channel();
        *self.gate.lock().unwrap() = Some((read, resumed));
        (has_read, resume)
    }
}

impl UserStore for PausingStore {
    fn find_user_by_key<'a>(&'a self, key_hash: &'a ApiKeyHash) -> StoreFuture<'a, Option<User>> {
        let gate = self.gate.lock().unwrap().take();
        Box::pin(async move {
            let found = self.inner.find_user_by_key(key_hash).await;
            if let Some((read, resumed)) = gate {
                read.send(()).unwrap();
                resumed.await.unwrap();
            }
            found
        })
    }
    fn create_user(&self, new: NewUser) -> StoreFuture<'_, User> {
        self.inner.create_user(new)
    }
    fn get_user<'a>(&'a self, id: &'a UserId) -> StoreFuture<'a, User> {
        self.inner.get_user(id)
    }
    fn list_users<'a>(&'a self, query: &'a UserQuery) -> StoreFuture<'a, (Vec<UserSummary>, u64)> {
        self.inner.list_users(query)
    }
    fn update_user<'a>(&'a self, id: &'a UserId, patch: &'a UserPatch) -> StoreFuture<'a, User> {
        self.inner.update_user(id, patch)
    }
    fn delete_user<'a>(&'a self, id: &'a UserId) -> StoreFuture<'a, Deleted> {
        self.inner.delete_user(id)
    }
    fn delete_all_users(&self) -> StoreFuture<'_, Deleted> {
        self.inner.delete_all_users()
    }
    fn replace_key<'a>(
        &'a self,
        id: &'a UserId,
        key_hash: ApiKeyHash,
        key_prefix: &'a str,
        key_expires_at: Option<UnixMillis>,
    ) -> StoreFuture<'a, User> {
        self.inner
            .replace_key(id, key_hash, key_prefix, key_expires_at)
    }
    fn set_limits<'a>(&'a self, id: &'a UserId, limits: &'a RateLimits) -> StoreFuture<'a, ()> {
        self.inner.set_limits(id, limits)
    }
    fn change_marker(&self) -> StoreFuture<'_, u64> {
        self.inner.change_marker()
    }
}

impl UsageStore for PausingStore {
    fn record_usage(&self, record: UsageRecord) -> UsageCommit {
        self.inner.record_usage(record)
    }
    fn usage_page<'a>(&'a self, query: &'a UsageQuery) -> StoreFuture<'a, UsagePage> {
        self.inner.usage_page(query)
    }
    fn usage_summary<'a>(
        &'a self,
        filter: &'a UsageFilter,
        grouping: UsageGrouping,
    ) -> StoreFuture<'a, Vec<UsageSummaryRow>> {
        self.inner.usage_summary(filter, grouping)
    }
    fn usage_batch<'a>(
        &'a self,
        filter: &'a UsageFilter,
        after: Option<&'a UsageCursor>,
        limit: u32,
    ) -> StoreFuture<'a, Vec<UsageRecord>> {
        self.inner.usage_batch(filter, after, limit)
    }
    fn usage_events_since(&self, since: UnixMillis) -> StoreFuture<'_, Vec<UsageEvent>> {
        self.inner.usage_events_since(since)
    }
    fn lifetime_tokens(&self) -> StoreFuture<'_, Vec<(UserId, u64)>> {
        self.inner.lifetime_tokens()
    }
    fn delete_usage_before(&self, before: UnixMillis) -> StoreFuture<'_, u64> {
        self.inner.delete_usage_before(before)
    }
    fn record_refusals(&self, counts: Vec<RefusalCount>) -> StoreFuture<'_, ()> {
        self.inner.record_refusals(counts)
    }
    fn refusal_summary<'a>(
        &'a self,
        filter: &'a UsageFilter,
        grouping: RefusalGrouping,
    ) -> StoreFuture<'a, Vec<RefusalSummaryRow>> {
        self.inner.refusal_summary(filter, grouping)
    }
}

impl Store for PausingStore {
    fn ping(&self) -> StoreFuture<'_, ()> {
        self.inner.ping()
    }
}

fn usage_request(key: &str) -> actix_web::test::TestRequest {
    test::TestRequest::get()
        .uri("/v1/usage")
        .insert_header(("Authorization", format!("Bearer {key}")))
}

fn admin(request: actix_web::test::TestRequest) -> actix_web::test::TestRequest {
    request.insert_header(("Authorization", format!("Bearer {ADMIN_KEY}")))
}

async fn body_json(response: ServiceResponse) -> serde_json::Value {
    serde_json::from_slice(&test::read_body(response).await).unwrap()
}

/// How an admin revokes the key a lookup just read.
#[derive(Debug, Clone, Copy)]
enum Revocation {
    Rotate,
    Disable,
}

#[actix_web::test]
async fn a_lookup_that_read_before_a_revocation_does_not_let_the_old_key_in_afterwards() {
    for revocation in [Revocation::Rotate, Revocation::Disable] {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = SqliteStore::open(&dir.path().join("db"), StoreOptions::default()).unwrap();
        let store = Arc::new(PausingStore {
            inner: sqlite.clone(),
            gate: Mutex::new(None),
        });
        let limiter = Arc::new(RateLimiter::new(LimiterConfig::default()));
        let admission = Arc::new(LocalAdmission::new(limiter, store.clone()));
        let state = web::Data::new(AppState::new(
            store.clone(),
            admission,
            ApiSettings {
                admin_api_key: ADMIN_KEY.into(),
                ..ApiSettings::default()
            },
        ));
        let (app, _) = App::new()
            .into_utoipa_app()
            .app_data(state)
            .configure(aiproxy_api::configure)
            .split_for_parts();
        let app = test::init_service(app).await;

        let created = app
            .call(
                admin(
                    test::TestRequest::post()
                        .uri("/admin/users")
                        .set_json(json!({"user_id": "alice"})),
                )
                .to_request(),
            )
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        let old_key = body_json(created).await["api_key"]
            .as_str()
            .unwrap()
            .to_owned();

        // Request A looks the key up, reads alice from the database, and stalls there...
        let (has_read, resume) = store.pause_next_lookup();
        let request_a = app.call(usage_request(&old_key).to_request());
        let revoke_meanwhile = async {
            has_read.await.unwrap();
            // ...while the admin revokes the key, and the call returns.
            let revoked = match revocation {
                Revocation::Rotate => {
                    app.call(
                        admin(test::TestRequest::post().uri("/admin/users/alice/rotate-key"))
                            .to_request(),
                    )
                    .await
                }
                Revocation::Disable => {
                    app.call(
                        admin(
                            test::TestRequest::patch()
                                .uri("/admin/users/alice")
                                .set_json(json!({"disabled": true})),
                        )
                        .to_request(),
                    )
                    .await
                }
            };
            assert_eq!(revoked.unwrap().status(), 200, "{revocation:?}");
            // Only now does A carry on, with what it read before the change.
            resume.send(()).unwrap();
        };
        let (answer_a, ()) = tokio::join!(request_a, revoke_meanwhile);
        // A started before the revocation returned; it may be let in.
        assert_eq!(answer_a.unwrap().status(), 200, "{revocation:?}");

        // B starts after the revocation returned: the old key must not work.
        let answer_b = app
            .call(usage_request(&old_key).to_request())
            .await
            .unwrap();
        assert_eq!(answer_b.status(), 401, "{revocation:?}");
        sqlite.close();
    }
}

/// Revocation under load, through the real server: users hammer the key while the admin
/// disables and re-enables it, and rotates it; after every call that revokes, a request
/// started afterwards must be refused.
#[actix_web::test]
async fn revocation_holds_while_many_requests_use_the_key() {
    const ROUNDS: usize = 150;
    const USERS: usize = 8;
    let app = TestApp::spawn().await;
    let mut key = app.create_user("busy").await;
    let current = std::cell::RefCell::new(key.clone());
    let stop = Cell::new(false);
    let hammer = || async {
        while !stop.get() {
            let key = current.borrow().clone();
            let status = app.get("/v1/usage", Some(&key)).await.status;
            assert!(status == 200 || status == 401, "{status}");
        }
    };
    let hammering = futures_util::future::join_all((0..USERS).map(|_| hammer()));
    let admin_loop = async {
        for round in 0..ROUNDS {
            let revoked = if round % 3 == 2 {
                let rotated = app
                    .post("/admin/users/busy/rotate-key", Some(ADMIN_KEY), &json!({}))
                    .await;
                assert_eq!(rotated.status, 200, "{}", rotated.text);
                let old = std::mem::replace(
                    &mut key,
                    rotated.json["api_key"].as_str().unwrap().to_owned(),
                );
                *current.borrow_mut() = key.clone();
                old
            } else {
                let disabled = app
                    .patch(
                        "/admin/users/busy",
                        Some(ADMIN_KEY),
                        &json!({"disabled": true}),
                    )
                    .await;
                assert_eq!(disabled.status, 200, "{}", disabled.text);
                key.clone()
            };
            for _ in 0..3 {
                let after = app.get("/v1/usage", Some(&revoked)).await;
                assert_eq!(after.status, 401, "round {round}: a revoked key got in");
            }
            let enabled = app
                .patch(
                    "/admin/users/busy",
                    Some(ADMIN_KEY),
                    &json!({"disabled": false}),
                )
                .await;
            assert_eq!(enabled.status, 200, "{}", enabled.text);
        }
        stop.set(true);
    };
    tokio::join!(hammering, admin_loop);
}
