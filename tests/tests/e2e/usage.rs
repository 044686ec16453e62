use aiproxy_e2e::{ADMIN_KEY, TestApp, chat_body};

async fn seed(app: &TestApp) -> (String, String) {
    let alice = app.create_user("ua").await;
    let bob = app.create_user("ub").await;
    for text in ["one", "two words", "three more words"] {
        assert_eq!(
            app.chat(&alice, &chat_body("llama3.2", text)).await.status,
            200
        );
    }
    assert_eq!(
        app.chat(&alice, &chat_body("moondream", "look"))
            .await
            .status,
        200
    );
    assert_eq!(
        app.chat(&bob, &chat_body("llama3.2", "hello")).await.status,
        200
    );
    (alice, bob)
}

#[actix_web::test]
async fn my_usage_has_totals_records_and_filters() {
    let app = TestApp::spawn().await;
    let (alice, _) = seed(&app).await;
    let mine = app.get("/v1/usage", Some(&alice)).await;
    assert_eq!(mine.status, 200, "{}", mine.text);
    assert_eq!(mine.json["user_id"], "ua");
    assert_eq!(mine.json["totals"]["requests"], 4);
    let records = mine.json["records"].as_array().unwrap();
    assert_eq!(records.len(), 4);
    assert_eq!(records[0]["model"], "moondream", "newest first");
    let sum: u64 = records
        .iter()
        .map(|r| r["total_tokens"].as_u64().unwrap())
        .sum();
    assert_eq!(mine.json["totals"]["total_tokens"].as_u64(), Some(sum));

    let page = app.get("/v1/usage?limit=2&offset=1", Some(&alice)).await;
    assert_eq!(page.json["records"].as_array().unwrap().len(), 2);
    assert_eq!(page.json["has_more"], true);
    assert_eq!(
        page.json["totals"]["requests"], 4,
        "totals cover the whole filter"
    );

    let by_model = app.get("/v1/usage?model=moondream", Some(&alice)).await;
    assert_eq!(by_model.json["totals"]["requests"], 1);
    let future = app
        .get("/v1/usage?start=2999-01-01T00:00:00Z", Some(&alice))
        .await;
    assert_eq!(future.json["totals"]["requests"], 0);
    let past = app.get("/v1/usage?end=946684800", Some(&alice)).await;
    assert_eq!(past.json["totals"]["requests"], 0);
    app.get("/v1/usage?start=yesterday", Some(&alice))
        .await
        .expect_error(400);
    app.get("/v1/usage?limit=0", Some(&alice))
        .await
        .expect_error(400);
    app.get("/v1/usage?limit=abc", Some(&alice))
        .await
        .expect_error(400);
}

#[actix_web::test]
async fn summaries_group_by_model_day_and_user() {
    let app = TestApp::spawn().await;
    let (alice, _) = seed(&app).await;
    let summary = app.get("/v1/usage/summary", Some(&alice)).await;
    assert_eq!(summary.status, 200, "{}", summary.text);
    let rows = summary.json["data"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let llama = rows.iter().find(|r| r["model"] == "llama3.2").unwrap();
    assert_eq!(llama["requests"], 3);
    assert_eq!(summary.json["totals"]["requests"], 4);

    let daily = app
        .get("/v1/usage/summary?group_by=day", Some(&alice))
        .await;
    let day = daily.json["data"][0]["day"].as_str().unwrap();
    assert_eq!(day.len(), 10, "{day}");
    app.get("/v1/usage/summary?group_by=week", Some(&alice))
        .await
        .expect_error(400);

    let everyone = app.get("/admin/usage/summary", Some(ADMIN_KEY)).await;
    assert_eq!(everyone.status, 200);
    assert_eq!(everyone.json["totals"]["requests"], 5);
    let users: Vec<&str> = everyone.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["user_id"].as_str().unwrap())
        .collect();
    assert!(users.contains(&"ua") && users.contains(&"ub"));
    app.get("/admin/usage/summary", Some(&alice))
        .await
        .expect_error(401);
}

#[actix_web::test]
async fn the_admin_sees_any_users_usage_in_the_same_shape() {
    let app = TestApp::spawn().await;
    let (_, bob) = seed(&app).await;
    let own = app.get("/v1/usage", Some(&bob)).await;
    let admin = app.get("/admin/users/ub/usage", Some(ADMIN_KEY)).await;
    assert_eq!(own.json, admin.json);
    app.get("/admin/users/nobody/usage", Some(ADMIN_KEY))
        .await
        .expect_error(404);
}

#[actix_web::test]
async fn usage_exports_as_csv_and_json_lines() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let csv = app
        .get("/admin/usage/export?format=csv", Some(ADMIN_KEY))
        .await;
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    let lines: Vec<&str> = csv.text.lines().collect();
    assert!(lines[0].starts_with("request_id,user_id,model"));
    assert_eq!(lines.len(), 6);
    let jsonl = app
        .get(
            "/admin/usage/export?format=jsonl&user_id=ub",
            Some(ADMIN_KEY),
        )
        .await;
    let rows: Vec<serde_json::Value> = jsonl
        .text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["user_id"], "ub");
    app.get("/admin/usage/export?format=xml", Some(ADMIN_KEY))
        .await
        .expect_error(400);
}

/// An export longer than one of its batches (1000 records) hands every record once, oldest
/// first, across the batch boundaries, records of the same millisecond included.
#[actix_web::test]
async fn an_export_spans_many_batches_and_hands_every_record_once() {
    use aiproxy_domain::{Endpoint, UnixMillis, UsageRecord, UsageStatus, UsageStore, UserId};

    let mut app = TestApp::spawn().await;
    app.create_user("bulk").await;
    // Seeded straight into the database while the server is stopped (it owns the journal).
    app.stop_server().await;
    let store =
        aiproxy_storage::SqliteStore::open(&app.db_path, aiproxy_storage::StoreOptions::default())
            .unwrap();
    let records = 2_345;
    for i in 0..records {
        store
            .record_usage(UsageRecord {
                request_id: format!("bulk-{i:05}"),
                user_id: UserId::parse("bulk").unwrap(),
                model: "llama3.2".into(),
                endpoint: Endpoint::ChatCompletions,
                backend: None,
                client_request_id: None,
                prompt_tokens: 1,
                completion_tokens: 1,
                status: UsageStatus::Ok,
                duration_ms: 1,
                // Seven records share each millisecond.
                created_at: UnixMillis(1_700_000_000_000 + i / 7),
            })
            .await
            .unwrap();
    }
    store.close();
    drop(store);
    let app = app.restart().await;

    let export = app
        .get(
            "/admin/usage/export?format=jsonl&user_id=bulk",
            Some(ADMIN_KEY),
        )
        .await;
    assert_eq!(export.status, 200);
    let ids: Vec<String> = export
        .text
        .lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            row["request_id"].as_str().unwrap().to_owned()
        })
        .collect();
    let expected: Vec<String> = (0..records).map(|i| format!("bulk-{i:05}")).collect();
    assert_eq!(ids, expected);
}
