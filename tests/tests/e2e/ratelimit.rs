use aiproxy_e2e::{ADMIN_KEY, TestApp, chat_body};
use serde_json::json;

async fn user_with_limits(app: &TestApp, id: &str, limits: serde_json::Value) -> String {
    app.create_user_with(json!({"user_id": id, "limits": limits}))
        .await
}

#[actix_web::test]
async fn concurrent_requests_against_a_limit_admit_exactly_the_limit() {
    let app = TestApp::spawn().await;
    let key = user_with_limits(&app, "burst", json!({"requests_per_minute": 7})).await;
    let body = chat_body("llama3.2", "hi");
    let replies = futures_util::future::join_all((0..30).map(|_| app.chat(&key, &body))).await;
    let ok = replies.iter().filter(|r| r.status == 200).count();
    let limited = replies.iter().filter(|r| r.status == 429).count();
    assert_eq!((ok, limited), (7, 23));
    let usage = app.usage_of("burst").await;
    assert_eq!(
        usage["totals"]["requests"], 7,
        "refused requests store no usage"
    );
}

#[actix_web::test]
async fn a_429_names_the_limit_and_says_when_to_retry() {
    let app = TestApp::spawn().await;
    let key = user_with_limits(&app, "rl", json!({"requests_per_minute": 1})).await;
    let body = chat_body("llama3.2", "hi");
    let first = app.chat(&key, &body).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-ratelimit-limit-requests"), Some("1"));
    assert_eq!(first.header("x-ratelimit-remaining-requests"), Some("0"));
    assert!(
        first
            .header("x-ratelimit-reset-requests")
            .unwrap()
            .ends_with('s')
    );
    assert_eq!(first.header("x-ratelimit-limit-tokens"), Some("100000"));
    assert!(first.header("x-ratelimit-remaining-tokens").is_some());

    let second = app.chat(&key, &body).await;
    let error = second.expect_error(429);
    assert_eq!(error["code"], "rate_limit_exceeded");
    assert_eq!(error["type"], "requests");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("requests_per_minute") && message.contains('1'),
        "{message}"
    );
    let retry: u64 = second.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=61).contains(&retry), "{retry}");
    let retry_ms: u64 = second.header("retry-after-ms").unwrap().parse().unwrap();
    assert!(retry_ms <= 61_000);
    assert_eq!(second.header("x-ratelimit-remaining-requests"), Some("0"));
}

#[actix_web::test]
async fn the_lifetime_quota_is_insufficient_quota_and_not_retried() {
    let app = TestApp::spawn().await;
    let key = user_with_limits(&app, "quota", json!({"total_token_limit": 10})).await;
    let first = app
        .chat(&key, &chat_body("llama3.2", "a b c d e f g h i j k l"))
        .await;
    assert_eq!(first.status, 200, "{}", first.text);
    // The completion was clamped to what the quota had left.
    let completion = first.json["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(completion <= 10, "{completion}");
    let second = app.chat(&key, &chat_body("llama3.2", "again")).await;
    let error = second.expect_error(429);
    assert_eq!(error["code"], "insufficient_quota");
    assert_eq!(second.header("x-should-retry"), Some("false"));
}

#[actix_web::test]
async fn the_completion_budget_bounds_num_predict() {
    let app = TestApp::spawn().await;
    let key = user_with_limits(&app, "budget", json!({"tokens_per_minute": 50})).await;
    let reply = app.chat(&key, &chat_body("llama3.2", "tiny")).await;
    assert_eq!(reply.status, 200);
    let sent = app
        .sim
        .control()
        .last_request(aiproxy_ollama_sim::SimEndpoint::Chat)
        .unwrap();
    let num_predict = sent["options"]["num_predict"].as_u64().unwrap();
    assert!(num_predict <= 50, "{num_predict}");

    // Unlimited tokens: nothing is clamped, and the client's own max_tokens passes through.
    let free = user_with_limits(
        &app,
        "free",
        json!({"tokens_per_minute": null, "tokens_per_day": null, "total_token_limit": null}),
    )
    .await;
    app.chat(&free, &chat_body("llama3.2", "x")).await;
    let sent = app
        .sim
        .control()
        .last_request(aiproxy_ollama_sim::SimEndpoint::Chat)
        .unwrap();
    assert!(sent["options"].get("num_predict").is_none(), "{sent}");
}

#[actix_web::test]
async fn new_limits_take_effect_on_the_next_request() {
    let app = TestApp::spawn().await;
    let key = app.create_user("live").await;
    assert_eq!(
        app.chat(&key, &chat_body("llama3.2", "hi")).await.status,
        200
    );
    app.put(
        "/admin/users/live/limits",
        Some(ADMIN_KEY),
        &json!({"requests_per_minute": 1}),
    )
    .await;
    app.chat(&key, &chat_body("llama3.2", "hi"))
        .await
        .expect_error(429);
    app.put(
        "/admin/users/live/limits",
        Some(ADMIN_KEY),
        &json!({"requests_per_minute": 100}),
    )
    .await;
    assert_eq!(
        app.chat(&key, &chat_body("llama3.2", "hi")).await.status,
        200
    );
}

#[actix_web::test]
async fn a_restart_remembers_the_windows() {
    let app = TestApp::spawn().await;
    let key = user_with_limits(&app, "mem", json!({"requests_per_day": 2})).await;
    assert_eq!(
        app.chat(&key, &chat_body("llama3.2", "one")).await.status,
        200
    );
    assert_eq!(
        app.chat(&key, &chat_body("llama3.2", "two")).await.status,
        200
    );
    let app = app.restart().await;
    let refused = app.chat(&key, &chat_body("llama3.2", "three")).await;
    assert_eq!(refused.expect_error(429)["code"], "rate_limit_exceeded");
}

#[actix_web::test]
async fn concurrency_cap_refuses_while_requests_are_in_flight() {
    let app = TestApp::spawn().await;
    let key = user_with_limits(&app, "conc", json!({"max_concurrent_requests": 1})).await;
    app.sim
        .control()
        .set_token_delay(std::time::Duration::from_millis(200));
    let mut open = app
        .open_stream(&key, &chat_body("llama3.2", "a b c d"))
        .await;
    assert_eq!(open.status(), 200);
    let refused = app.chat(&key, &chat_body("llama3.2", "x")).await;
    assert!(
        refused.expect_error(429)["message"]
            .as_str()
            .unwrap()
            .contains("max_concurrent_requests")
    );
    app.sim.control().set_token_delay(std::time::Duration::ZERO);
    while open.next_event().await.is_some() {}
    assert_eq!(
        app.chat(&key, &chat_body("llama3.2", "x")).await.status,
        200
    );
}

#[actix_web::test]
async fn every_user_response_carries_the_rate_limit_headers() {
    let app = TestApp::spawn().await;
    let key = app.create_user("hdr").await;
    for path in ["/v1/models", "/v1/usage", "/v1/usage/summary"] {
        let reply = app.get(path, Some(&key)).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(
            reply.header("x-ratelimit-limit-requests"),
            Some("60"),
            "{path}"
        );
        assert!(
            reply.header("x-ratelimit-remaining-tokens").is_some(),
            "{path}"
        );
        assert!(reply.header("x-ratelimit-reset-tokens").is_some(), "{path}");
    }
    let emb = app
        .post(
            "/v1/embeddings",
            Some(&key),
            &json!({"model": "nomic-embed-text", "input": "x"}),
        )
        .await;
    assert_eq!(emb.header("x-ratelimit-remaining-requests"), Some("59"));
}

#[actix_web::test]
async fn a_used_up_token_window_refuses_with_type_tokens() {
    let app = TestApp::spawn().await;
    let key = user_with_limits(&app, "tpd", json!({"tokens_per_day": 5})).await;
    assert_eq!(
        app.chat(&key, &chat_body("llama3.2", "a b c d e f"))
            .await
            .status,
        200
    );
    let refused = app.chat(&key, &chat_body("llama3.2", "x")).await;
    let error = refused.expect_error(429);
    assert_eq!(error["type"], "tokens");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("tokens_per_day")
    );
}
