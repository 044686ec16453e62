use aiproxy_e2e::TestApp;

#[actix_web::test]
async fn root_names_the_service() {
    let app = TestApp::spawn().await;
    let reply = app.get("/", None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json["service"], "aiproxy");
    assert_eq!(reply.json["status"], "running");
    assert!(reply.json["version"].is_string());
}

#[actix_web::test]
async fn health_reports_database_and_ollama() {
    let app = TestApp::spawn().await;
    let reply = app.get("/health", None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["database"], "ok");
    assert_eq!(reply.json["ollama"], "ok");
}

#[actix_web::test]
async fn health_says_when_ollama_is_down_but_stays_up() {
    let app = TestApp::spawn_with(|s| s.ollama_base_url = "http://127.0.0.1:9".into()).await;
    let reply = app.get("/health", None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["ollama"], "unreachable");
}

#[actix_web::test]
async fn database_folder_is_created_on_first_run() {
    let app = TestApp::spawn().await;
    assert!(
        app.db_path.exists(),
        "{} should exist",
        app.db_path.display()
    );
}

#[actix_web::test]
async fn openapi_describes_every_route_with_both_key_schemes() {
    let app = TestApp::spawn().await;
    let reply = app.get("/openapi.json", None).await;
    assert_eq!(reply.status, 200);
    let paths = reply.json["paths"].as_object().unwrap();
    for path in [
        "/",
        "/health",
        "/v1/chat/completions",
        "/v1/models",
        "/v1/usage",
        "/v1/usage/summary",
        "/admin/users",
        "/admin/users/{user_id}",
        "/admin/users/{user_id}/limits",
        "/admin/users/{user_id}/usage",
        "/admin/users/{user_id}/rotate-key",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from the OpenAPI document"
        );
    }
    let schemes = &reply.json["components"]["securitySchemes"];
    assert_eq!(schemes["user_key"]["scheme"], "bearer");
    assert_eq!(schemes["admin_key"]["scheme"], "bearer");

    // Every schema a response or a request refers to is in the document.
    fn refs(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(target)) = map.get("$ref") {
                    out.push(target.clone());
                }
                map.values().for_each(|v| refs(v, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut targets = Vec::new();
    refs(&reply.json, &mut targets);
    let schemas = reply.json["components"]["schemas"].as_object().unwrap();
    for target in &targets {
        let name = target.trim_start_matches("#/components/schemas/");
        assert!(
            schemas.contains_key(name),
            "{target} is not in the document"
        );
    }
    assert!(targets.iter().any(|t| t.ends_with("/ErrorResponse")));
    let completions = &paths["/v1/completions"]["post"]["responses"];
    for status in [
        "400", "401", "403", "404", "413", "429", "502", "503", "504",
    ] {
        assert!(
            completions.get(status).is_some(),
            "/v1/completions: {status}"
        );
    }
}

#[actix_web::test]
async fn swagger_ui_is_served_from_the_binary() {
    let app = TestApp::spawn().await;
    // `/docs` redirects to `/docs/` (the client follows it).
    let redirected = app.get("/docs", None).await;
    assert_eq!(redirected.status, 200);
    assert!(redirected.text.contains("swagger-ui"));
    let index = app.get("/docs/", None).await;
    assert_eq!(index.status, 200);
    assert!(index.text.contains("swagger-ui"), "{}", index.text);
    assert!(
        !index.text.contains("https://"),
        "the page must not load anything from outside"
    );
    let bundle = app.get("/docs/swagger-ui-bundle.js", None).await;
    assert_eq!(bundle.status, 200);
    assert!(bundle.text.len() > 100_000);
    let init = app.get("/docs/swagger-initializer.js", None).await;
    assert!(init.text.contains("/openapi.json"));
}

#[actix_web::test]
async fn unknown_routes_and_methods_answer_in_openai_shape() {
    let app = TestApp::spawn().await;
    app.get("/v1/nothing-here", None).await.expect_error(404);
    app.delete("/v1/chat/completions", None)
        .await
        .expect_error(405);
}

#[actix_web::test]
async fn every_response_has_a_request_id_and_a_clients_own_is_kept() {
    let app = TestApp::spawn().await;
    let key = app.create_user("rid").await;
    for reply in [
        app.get("/", None).await,
        app.get("/v1/models", None).await,
        app.get("/admin/users", Some(aiproxy_e2e::ADMIN_KEY)).await,
        app.get("/nowhere", None).await,
    ] {
        assert!(
            reply.header("x-request-id").is_some_and(|id| id.len() >= 8),
            "{:?}",
            reply.headers
        );
    }
    let body = aiproxy_e2e::chat_body("llama3.2", "hi");
    let traced = app
        .send(
            app.request(
                actix_web::http::Method::POST,
                "/v1/chat/completions",
                Some(&key),
            )
            .insert_header(("x-request-id", "client-trace-42")),
            Some(body.to_string().as_bytes()),
        )
        .await;
    assert_eq!(traced.status, 200);
    assert_eq!(traced.header("x-request-id"), Some("client-trace-42"));
    let usage = app.usage_of("rid").await;
    assert_eq!(usage["records"][0]["request_id"], "client-trace-42");
    // An id that is not safe to echo is replaced.
    let odd = app
        .send(
            app.request(actix_web::http::Method::GET, "/", None)
                .insert_header(("x-request-id", "bad id with spaces")),
            None,
        )
        .await;
    assert_ne!(odd.header("x-request-id"), Some("bad id with spaces"));
}

#[actix_web::test]
async fn metrics_count_requests_tokens_refusals_and_need_the_admin_key() {
    let app = TestApp::spawn().await;
    let key = app
        .create_user_with(
            serde_json::json!({"user_id": "met", "limits": {"requests_per_minute": 2}}),
        )
        .await;
    let body = aiproxy_e2e::chat_body("llama3.2", "count me");
    assert_eq!(app.chat(&key, &body).await.status, 200);
    assert_eq!(app.chat_stream(&key, &body).await.status, 200);
    app.chat(&key, &body).await.expect_error(429);
    // Rows reach SQLite from the journal a few milliseconds later; a usage read waits for them.
    assert_eq!(
        app.usage_of("met").await["records"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    app.get("/metrics", None).await.expect_error(401);
    let reply = app.get("/metrics", Some(aiproxy_e2e::ADMIN_KEY)).await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    let text = &reply.text;
    for needle in [
        "aiproxy_http_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 2",
        "aiproxy_http_requests_total{route=\"/v1/chat/completions\",status=\"429\"} 1",
        "aiproxy_model_requests_total{model=\"llama3.2\",endpoint=\"/v1/chat/completions\",status=\"ok\"} 2",
        "aiproxy_rate_limit_refusals_total{limit=\"requests_per_minute\"} 1",
        "aiproxy_time_to_first_token_seconds_count 1",
        "aiproxy_upstream_response_seconds_count 2",
        "aiproxy_open_streams 0",
        "aiproxy_usage_writer_rows_total 2",
        "aiproxy_usage_writer_queue_depth 0",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in\n{text}");
    }
    assert!(text.contains("aiproxy_tokens_total{model=\"llama3.2\",kind=\"completion\"}"));
}
