//! Issue 17.1: changes made to the database by another process (the admin command line, a
//! second writer) reach a running server within a second, and no request the server answers
//! loses its usage row, even when its user is deleted meanwhile.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure is a failed test"
)]

use std::cell::{Cell, RefCell};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use aiproxy_domain::{UsageFilter, UsageQuery, UserId, UserPatch};
use aiproxy_ollama_sim::{OllamaSim, SimConfig};
use aiproxy_storage::{SqliteStore, StoreOptions};
use serde_json::{Value, json};
use support::Proxy;

mod support;

/// What the server promises: a change made elsewhere applies within this long.
const PROPAGATION: Duration = Duration::from_secs(1);

/// Runs `proxy-server users ARGS` on the database, as an operator would beside the server,
/// and returns what it printed.
fn cli(db: &Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_proxy-server"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_PATH", db)
        .arg("users")
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn key_in(printed: &str) -> String {
    printed
        .lines()
        .find_map(|line| line.strip_prefix("api_key: "))
        .unwrap()
        .to_owned()
}

/// Sends one chat completion; returns the status and, for a 200, the ledger's request id.
async fn chat(client: &awc::Client, proxy: &Proxy, key: &str) -> (u16, Option<String>) {
    let mut response = client
        .post(proxy.url("/v1/chat/completions"))
        .insert_header(("Authorization", format!("Bearer {key}")))
        .send_json(&json!({"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}))
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    let id = body["id"]
        .as_str()
        .and_then(|id| id.strip_prefix("chatcmpl-"))
        .map(str::to_owned);
    (status, id)
}

/// Polls `check` until it holds, failing once `PROPAGATION` has passed since `since`.
async fn within_propagation(what: &str, since: Instant, mut check: impl AsyncFnMut() -> bool) {
    loop {
        if check().await {
            return;
        }
        assert!(
            since.elapsed() < PROPAGATION,
            "{what}: not seen by the server within {PROPAGATION:?}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    }
}

#[actix_web::test]
async fn command_line_changes_reach_a_running_server_within_a_second() {
    let sim = OllamaSim::start(SimConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cli-changes.db");
    let mut proxy = Proxy::start(&db, &sim.base_url(), None).await;
    let client = awc::Client::default();
    let old_key = proxy
        .create_user(
            &client,
            json!({"user_id": "ops", "limits": {"requests_per_minute": null}}),
        )
        .await;
    assert_eq!(chat(&client, &proxy, &old_key).await.0, 200, "cached now");

    // rotate-key: the old key stops working, the new one works.
    let new_key = key_in(&cli(&db, &["rotate-key", "ops"]));
    let rotated = Instant::now();
    within_propagation("the rotated-out key", rotated, async || {
        chat(&client, &proxy, &old_key).await.0 == 401
    })
    .await;
    assert_eq!(chat(&client, &proxy, &new_key).await.0, 200);

    // set-limits: the next requests run under the new limit.
    cli(&db, &["set-limits", "ops", "--requests-per-minute", "1000"]);
    let limited = Instant::now();
    within_propagation("the new requests-per-minute limit", limited, async || {
        let response = client
            .get(proxy.url("/v1/usage"))
            .insert_header(("Authorization", format!("Bearer {new_key}")))
            .send()
            .await
            .unwrap();
        response
            .headers()
            .get("x-ratelimit-limit-requests")
            .is_some_and(|v| v == "1000")
    })
    .await;

    // Disabled by another writer of the file (what the CLI's store is): refused.
    let writer = SqliteStore::open(
        &db,
        StoreOptions {
            share_usage_journal: true,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let ops = UserId::parse("ops").unwrap();
    for disabled in [true, false] {
        writer
            .blocking()
            .update_user(
                &ops,
                &UserPatch {
                    disabled: Some(disabled),
                    ..UserPatch::default()
                },
            )
            .unwrap();
        let changed = Instant::now();
        let expected = if disabled { 401 } else { 200 };
        within_propagation("disabled / enabled", changed, async || {
            chat(&client, &proxy, &new_key).await.0 == expected
        })
        .await;
    }
    writer.close();
    drop(writer);

    // delete while users keep sending: every request sent after the delete that was still
    // answered (the key was cached) must keep its usage row.
    let deleted_at: Cell<Option<Instant>> = Cell::new(None);
    let answered_after_delete = RefCell::new(Vec::new());
    let refused = Cell::new(false);
    let answered = Cell::new(0);
    let hammer = || async {
        while !refused.get() {
            let sent = Instant::now();
            let (status, id) = chat(&client, &proxy, &new_key).await;
            match status {
                200 => {
                    answered.set(answered.get() + 1);
                    if deleted_at.get().is_some_and(|at| sent > at) {
                        answered_after_delete.borrow_mut().push(id.unwrap());
                    }
                }
                401 => refused.set(true),
                other => panic!("status {other}"),
            }
        }
    };
    let delete = async {
        // Once the users are going.
        while answered.get() < 8 {
            actix_web::rt::time::sleep(Duration::from_millis(5)).await;
        }
        let printed = actix_web::rt::task::spawn_blocking({
            let db = db.clone();
            move || cli(&db, &["delete", "ops"])
        })
        .await
        .unwrap();
        assert!(printed.contains("deleted ops"), "{printed}");
        deleted_at.set(Some(Instant::now()));
    };
    tokio::join!(
        futures_util::future::join_all((0..4).map(|_| hammer())),
        delete
    );
    let since = deleted_at.get().unwrap();
    within_propagation("the deleted user's key", since, async || {
        chat(&client, &proxy, &new_key).await.0 == 401
    })
    .await;

    // After a clean stop every journaled row is in the database.
    proxy.stop();
    let store = SqliteStore::open(&db, StoreOptions::default()).unwrap();
    let rows = store
        .blocking()
        .usage_page(&UsageQuery {
            filter: UsageFilter {
                user_id: Some(ops),
                ..UsageFilter::default()
            },
            limit: 1000,
            offset: 0,
        })
        .unwrap();
    let stored: Vec<&str> = rows.records.iter().map(|r| r.request_id.as_str()).collect();
    let answered = answered_after_delete.borrow();
    for id in answered.iter() {
        assert!(
            stored.contains(&id.as_str()),
            "request {id} was answered after the delete but has no usage row"
        );
    }
    println!(
        "{} requests were answered after the delete, all with their row",
        answered.len()
    );
}
