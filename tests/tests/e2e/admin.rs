use aiproxy_e2e::{ADMIN_KEY, TestApp, chat_body};
use serde_json::json;

#[actix_web::test]
async fn admin_routes_need_the_admin_key() {
    let app = TestApp::spawn().await;
    let user_key = app.create_user("ann").await;
    for key in [None, Some("wrong"), Some(user_key.as_str())] {
        app.get("/admin/users", key).await.expect_error(401);
        // The same 401 whether or not the user exists: nothing leaks.
        app.get("/admin/users/ann", key).await.expect_error(401);
        app.get("/admin/users/nobody", key).await.expect_error(401);
    }
}

#[actix_web::test]
async fn users_are_created_listed_fetched_and_deleted() {
    let app = TestApp::spawn().await;
    let created = app
        .post(
            "/admin/users",
            Some(ADMIN_KEY),
            &json!({"user_id": "bea", "display_name": "Bea", "note": "lab 3", "limits": {"requests_per_minute": 5}}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let key = created.json["api_key"].as_str().unwrap().to_owned();
    assert_eq!(created.json["limits"]["requests_per_minute"], 5);
    assert_eq!(created.json["limits"]["requests_per_day"], 1000);
    assert_eq!(created.json["key_prefix"].as_str().unwrap(), &key[..12]);

    app.post("/admin/users", Some(ADMIN_KEY), &json!({"user_id": "bea"}))
        .await
        .expect_error(409);
    app.post("/admin/users", Some(ADMIN_KEY), &json!({"user_id": ""}))
        .await
        .expect_error(400);
    app.post("/admin/users", Some(ADMIN_KEY), &json!({"user_id": "a/b"}))
        .await
        .expect_error(400);
    app.post(
        "/admin/users",
        Some(ADMIN_KEY),
        &json!({"user_id": "x".repeat(65)}),
    )
    .await
    .expect_error(400);

    let got = app.get("/admin/users/bea", Some(ADMIN_KEY)).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json["display_name"], "Bea");
    assert!(
        got.json.get("api_key").is_none(),
        "the whole key is shown only once"
    );
    app.get("/admin/users/nobody", Some(ADMIN_KEY))
        .await
        .expect_error(404);

    app.create_user("cid").await;
    let list = app.get("/admin/users?limit=1", Some(ADMIN_KEY)).await;
    assert_eq!(list.json["total"], 2);
    assert_eq!(list.json["data"].as_array().unwrap().len(), 1);
    assert_eq!(list.json["has_more"], true);
    assert_eq!(list.json["data"][0]["user_id"], "bea");
    assert!(list.json["data"][0]["usage"]["total_tokens"].is_u64());

    assert_eq!(
        app.chat(&key, &chat_body("llama3.2", "hi")).await.status,
        200
    );
    let deleted = app.delete("/admin/users/bea", Some(ADMIN_KEY)).await;
    assert_eq!(deleted.status, 204);
    app.chat(&key, &chat_body("llama3.2", "hi"))
        .await
        .expect_error(401);
    app.delete("/admin/users/bea", Some(ADMIN_KEY))
        .await
        .expect_error(404);

    let all = app.delete("/admin/users", Some(ADMIN_KEY)).await;
    assert_eq!(all.json["deleted"], 1);
    assert_eq!(
        app.get("/admin/users", Some(ADMIN_KEY)).await.json["total"],
        0
    );
}

#[actix_web::test]
async fn limits_update_partially_and_refuse_nonsense() {
    let app = TestApp::spawn().await;
    app.create_user("dan").await;
    let defaults = app.get("/admin/users/dan/limits", Some(ADMIN_KEY)).await;
    assert_eq!(
        defaults.json,
        json!({"requests_per_minute": 60, "requests_per_day": 1000, "tokens_per_minute": 100000,
               "tokens_per_day": 1000000, "total_token_limit": null, "max_concurrent_requests": null,
               "max_num_ctx": null, "max_keep_alive_secs": null})
    );
    let put = app
        .put(
            "/admin/users/dan/limits",
            Some(ADMIN_KEY),
            &json!({"requests_per_minute": 7, "tokens_per_day": null}),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text);
    assert_eq!(put.json["requests_per_minute"], 7);
    assert_eq!(put.json["tokens_per_day"], json!(null));
    assert_eq!(put.json["requests_per_day"], 1000);
    app.put(
        "/admin/users/dan/limits",
        Some(ADMIN_KEY),
        &json!({"requests_per_minute": -1}),
    )
    .await
    .expect_error(400);
    app.put(
        "/admin/users/dan/limits",
        Some(ADMIN_KEY),
        &json!({"requests_per_minute": 0}),
    )
    .await
    .expect_error(400);
    app.put(
        "/admin/users/dan/limits",
        Some(ADMIN_KEY),
        &json!({"requests_per_minute": "many"}),
    )
    .await
    .expect_error(400);
    app.put(
        "/admin/users/nobody/limits",
        Some(ADMIN_KEY),
        &json!({"requests_per_minute": 3}),
    )
    .await
    .expect_error(404);
    let after = app.get("/admin/users/dan/limits", Some(ADMIN_KEY)).await;
    assert_eq!(after.json["requests_per_minute"], 7);
}

#[actix_web::test]
async fn rotating_a_key_stops_the_old_one_at_once() {
    let app = TestApp::spawn().await;
    let old = app.create_user("rae").await;
    assert_eq!(
        app.chat(&old, &chat_body("llama3.2", "hi")).await.status,
        200
    );
    let rotated = app
        .post("/admin/users/rae/rotate-key", Some(ADMIN_KEY), &json!({}))
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    let new = rotated.json["api_key"].as_str().unwrap();
    assert_ne!(new, old);
    app.chat(&old, &chat_body("llama3.2", "hi"))
        .await
        .expect_error(401);
    assert_eq!(
        app.chat(new, &chat_body("llama3.2", "hi")).await.status,
        200
    );
}

#[actix_web::test]
async fn disabled_expired_and_restricted_users() {
    let app = TestApp::spawn().await;
    let key = app
        .create_user_with(json!({"user_id": "val", "allowed_models": ["llama3.2"]}))
        .await;
    assert_eq!(
        app.chat(&key, &chat_body("llama3.2", "hi")).await.status,
        200
    );
    let forbidden = app.chat(&key, &chat_body("moondream", "hi")).await;
    let error = forbidden.expect_error(403);
    assert!(error["message"].as_str().unwrap().contains("moondream"));
    let models = app.get("/v1/models", Some(&key)).await;
    let ids: Vec<&str> = models.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["llama3.2:latest"]);

    app.patch(
        "/admin/users/val",
        Some(ADMIN_KEY),
        &json!({"disabled": true}),
    )
    .await;
    let disabled = app.chat(&key, &chat_body("llama3.2", "hi")).await;
    assert!(
        disabled.expect_error(401)["message"]
            .as_str()
            .unwrap()
            .contains("disabled")
    );
    app.patch(
        "/admin/users/val",
        Some(ADMIN_KEY),
        &json!({"disabled": false}),
    )
    .await;
    assert_eq!(
        app.chat(&key, &chat_body("llama3.2", "hi")).await.status,
        200
    );

    let expired = app
        .patch(
            "/admin/users/val",
            Some(ADMIN_KEY),
            &json!({"key_expires_at": "2001-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(expired.status, 200, "{}", expired.text);
    let refused = app.chat(&key, &chat_body("llama3.2", "hi")).await;
    assert!(
        refused.expect_error(401)["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
    // History is kept throughout.
    assert_eq!(app.usage_of("val").await["totals"]["requests"], 2);
}

#[actix_web::test]
async fn imported_keys_must_look_random() {
    let app = TestApp::spawn().await;
    app.post(
        "/admin/users",
        Some(ADMIN_KEY),
        &json!({"user_id": "imp", "api_key": "password123"}),
    )
    .await
    .expect_error(400);
    let imported = "sk-legacy-8fJ2kLq9Zx4Wm7Rt1Yb6Nc3Vd5Hs0GpE";
    let key = app
        .create_user_with(json!({"user_id": "imp", "api_key": imported}))
        .await;
    assert_eq!(key, imported);
    assert_eq!(
        app.chat(imported, &chat_body("llama3.2", "hi"))
            .await
            .status,
        200
    );
}

#[actix_web::test]
async fn the_database_file_never_holds_a_whole_key() {
    let mut app = TestApp::spawn().await;
    let key = app.create_user("sec").await;
    let rotated = app
        .post("/admin/users/sec/rotate-key", Some(ADMIN_KEY), &json!({}))
        .await;
    let new_key = rotated.json["api_key"].as_str().unwrap().to_owned();
    assert_eq!(
        app.chat(&new_key, &chat_body("llama3.2", "hi"))
            .await
            .status,
        200
    );
    app.stop_server().await;
    let mut bytes = std::fs::read(&app.db_path).unwrap();
    for suffix in ["-wal", "-shm"] {
        let side = app.db_path.with_file_name(format!("proxy.db{suffix}"));
        if let Ok(more) = std::fs::read(side) {
            bytes.extend(more);
        }
    }
    for secret in [&key, &new_key] {
        let needle = secret.as_bytes();
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "a whole key is on disk"
        );
        let half = &needle[..needle.len() / 2 + 4];
        assert!(
            !bytes.windows(half.len()).any(|w| w == half),
            "most of a key is on disk"
        );
    }
}

#[actix_web::test]
async fn ids_a_url_path_or_a_command_line_would_misread_are_refused() {
    let app = TestApp::spawn().await;
    for id in [".", "..", "-", "-rf", "_x", "@x"] {
        let refused = app
            .post("/admin/users", Some(ADMIN_KEY), &json!({"user_id": id}))
            .await;
        let error = refused.expect_error(400);
        assert_eq!(error["param"], "user_id", "{id}");
    }
    app.create_user("0.x-y_z@w").await;
}
