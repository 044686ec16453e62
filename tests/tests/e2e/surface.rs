//! Embeddings, legacy completions, models and vision.

use aiproxy_e2e::{ADMIN_KEY, TestApp, chat_body, sse_events};
use aiproxy_ollama_sim::SimEndpoint;
use base64::Engine as _;
use serde_json::json;

/// A 1x1 PNG.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

#[actix_web::test]
async fn embeddings_in_float_and_base64_are_accounted() {
    let app = TestApp::spawn().await;
    let key = app.create_user("emb").await;
    let reply = app
        .post(
            "/v1/embeddings",
            Some(&key),
            &json!({"model": "nomic-embed-text", "input": ["hello world", "bye"]}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["object"], "list");
    let data = reply.json["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["index"], 1);
    let dims = data[0]["embedding"].as_array().unwrap().len();
    assert!(dims > 0);
    let prompt = reply.json["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(prompt > 0);

    let encoded = app
        .post("/v1/embeddings", Some(&key), &json!({"model": "nomic-embed-text", "input": "hello world", "encoding_format": "base64"}))
        .await;
    let text = encoded.json["data"][0]["embedding"].as_str().unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap();
    assert_eq!(bytes.len(), dims * 4);

    app.post(
        "/v1/embeddings",
        Some(&key),
        &json!({"model": "nomic-embed-text", "input": []}),
    )
    .await
    .expect_error(400);
    app.post(
        "/v1/embeddings",
        Some(&key),
        &json!({"model": "nomic-embed-text", "input": [1, 2]}),
    )
    .await
    .expect_error(400);
    app.post(
        "/v1/embeddings",
        Some(&key),
        &json!({"model": "nomic-embed-text", "input": "x", "encoding_format": "hex"}),
    )
    .await
    .expect_error(400);

    let usage = app.usage_of("emb").await;
    assert_eq!(usage["totals"]["requests"], 2);
    assert_eq!(usage["records"][1]["endpoint"], "/v1/embeddings");
    assert_eq!(usage["records"][1]["prompt_tokens"].as_u64(), Some(prompt));
}

#[actix_web::test]
async fn legacy_completions_work_streaming_and_not() {
    let app = TestApp::spawn().await;
    let key = app.create_user("cmp").await;
    let reply = app
        .post(
            "/v1/completions",
            Some(&key),
            &json!({"model": "llama3.2", "prompt": "Once upon a time", "max_tokens": 2}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["object"], "text_completion");
    assert!(reply.json["id"].as_str().unwrap().starts_with("cmpl-"));
    assert_eq!(reply.json["choices"][0]["finish_reason"], "length");
    assert_eq!(reply.json["usage"]["completion_tokens"], 2);
    let sent = app
        .sim
        .control()
        .last_request(SimEndpoint::Generate)
        .unwrap();
    assert_eq!(sent["prompt"], "Once upon a time");
    assert_eq!(sent["options"]["num_predict"], 2);

    let streamed = app
        .post(
            "/v1/completions",
            Some(&key),
            &json!({"model": "llama3.2", "prompt": "tell me", "stream": true, "stream_options": {"include_usage": true}}),
        )
        .await;
    let events = sse_events(&streamed.text);
    assert_eq!(events.last().unwrap(), "[DONE]");
    assert!(events[0]["choices"][0]["text"].is_string());
    let usage_chunk = &events[events.len() - 2];
    assert_eq!(usage_chunk["choices"], json!([]));
    assert!(usage_chunk["usage"]["total_tokens"].as_u64().unwrap() > 0);
    let usage = app.usage_of("cmp").await;
    assert_eq!(usage["totals"]["requests"], 2);
    assert_eq!(usage["records"][0]["endpoint"], "/v1/completions");
}

#[actix_web::test]
async fn a_streamed_completion_that_fails_midway_ends_with_an_error_event_and_an_error_row() {
    let app = TestApp::spawn().await;
    let key = app.create_user("cmperr").await;
    app.sim.control().set_error_after_tokens(Some(2));
    let streamed = app
        .post(
            "/v1/completions",
            Some(&key),
            &json!({"model": "llama3.2", "prompt": "one two three four five", "stream": true}),
        )
        .await;
    assert_eq!(streamed.status, 200);
    let events = sse_events(&streamed.text);
    assert_eq!(events[0]["object"], "text_completion", "{}", streamed.text);
    let last = events.last().unwrap();
    assert_eq!(last["error"]["type"], "server_error", "{}", streamed.text);
    assert!(!streamed.text.contains("[DONE]"));
    let usage = app.usage_of("cmperr").await;
    assert_eq!(usage["records"][0]["status"], "error");
    assert_eq!(usage["records"][0]["endpoint"], "/v1/completions");
    assert_eq!(usage["records"][0]["completion_tokens"], 2);
}

#[actix_web::test]
async fn models_list_and_lookup() {
    let app = TestApp::spawn().await;
    let key = app.create_user("mod").await;
    let list = app.get("/v1/models", Some(&key)).await;
    assert_eq!(list.status, 200);
    assert_eq!(list.json["object"], "list");
    let ids: Vec<&str> = list.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"llama3.2:latest") && ids.contains(&"moondream:latest"),
        "{ids:?}"
    );
    for model in list.json["data"].as_array().unwrap() {
        assert_eq!(model["object"], "model");
        assert!(model["created"].as_i64().unwrap() > 1_600_000_000);
        assert_eq!(model["owned_by"], "library");
    }
    let one = app.get("/v1/models/llama3.2", Some(&key)).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.json["id"], "llama3.2:latest");
    let missing = app.get("/v1/models/nope", Some(&key)).await;
    assert_eq!(missing.expect_error(404)["code"], "model_not_found");
    app.get("/v1/models", None).await.expect_error(401);
}

#[actix_web::test]
async fn data_uri_images_reach_ollama_as_base64() {
    let app = TestApp::spawn().await;
    let key = app.create_user("vis").await;
    let body = json!({"model": "moondream", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}")}}
    ]}]});
    let reply = app.chat(&key, &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let sent = app.sim.control().last_request(SimEndpoint::Chat).unwrap();
    assert_eq!(sent["messages"][0]["images"][0], PNG);
    assert_eq!(sent["messages"][0]["content"], "What is this?");
}

async fn image_server() -> (String, actix_web::dev::ServerHandle) {
    use actix_web::{App, HttpResponse, HttpServer, web};
    let server = HttpServer::new(|| {
        App::new()
            .route(
                "/cat.png",
                web::get().to(|| async {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(PNG)
                        .unwrap();
                    HttpResponse::Ok().content_type("image/png").body(bytes)
                }),
            )
            .route(
                "/page.html",
                web::get().to(|| async {
                    HttpResponse::Ok()
                        .content_type("text/html")
                        .body("<html></html>")
                }),
            )
            .route(
                "/redirect",
                web::get().to(|| async {
                    HttpResponse::Found()
                        .insert_header(("Location", "http://127.0.0.1:1/secret.png"))
                        .finish()
                }),
            )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let address = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    (format!("http://{address}"), handle)
}

fn image_body(url: &str) -> serde_json::Value {
    json!({"model": "moondream", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": url}}
    ]}]})
}

#[actix_web::test]
async fn image_urls_into_the_proxys_network_are_refused() {
    let app = TestApp::spawn().await;
    let key = app.create_user("ssrf").await;
    let (base, _server) = image_server().await;
    for url in [
        format!("{base}/cat.png"),
        "http://localhost:9/x.png".to_string(),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://[::1]/x.png".to_string(),
        "file:///etc/passwd".to_string(),
    ] {
        let reply = app.chat(&key, &image_body(&url)).await;
        let error = reply.expect_error(400);
        assert_eq!(error["param"], "messages[0].content[1]", "{url}");
    }
    assert_eq!(
        app.usage_of("ssrf").await["totals"]["requests"],
        0,
        "refused images never reach Ollama"
    );
}

#[actix_web::test]
async fn image_urls_are_fetched_when_private_networks_are_allowed() {
    let app = TestApp::spawn_with(|s| s.image_allow_private_networks = true).await;
    let key = app.create_user("lab").await;
    let (base, _server) = image_server().await;
    let reply = app
        .chat(&key, &image_body(&format!("{base}/cat.png")))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let sent = app.sim.control().last_request(SimEndpoint::Chat).unwrap();
    assert_eq!(sent["messages"][0]["images"][0], PNG);

    let html = app
        .chat(&key, &image_body(&format!("{base}/page.html")))
        .await;
    assert!(
        html.expect_error(400)["message"]
            .as_str()
            .unwrap()
            .contains("not an image")
    );
    // Metadata addresses stay refused even here; a redirect's target is checked too.
    let metadata = app
        .chat(&key, &image_body("http://169.254.169.254/x.png"))
        .await;
    metadata.expect_error(400);
    let redirected = app
        .chat(&key, &image_body(&format!("{base}/redirect")))
        .await;
    redirected.expect_error(400);
}

#[actix_web::test]
async fn oversized_bodies_get_413() {
    let app = TestApp::spawn_with(|s| s.max_body_bytes = 10_000).await;
    let key = app.create_user("big").await;
    let reply = app
        .chat(&key, &chat_body("llama3.2", &"word ".repeat(5000)))
        .await;
    reply.expect_error(413);
    // The key is checked before the body is read: an unknown key (looked up in the database,
    // not the cache) with an oversized body is a 401.
    let unknown = aiproxy_domain::ApiKey::generate();
    let reply = app
        .chat(
            unknown.expose(),
            &chat_body("llama3.2", &"word ".repeat(5000)),
        )
        .await;
    reply.expect_error(401);
    // Admin routes bound their small bodies more tightly than the operator's limit.
    let limits = json!({"requests_per_minute": 1, "padding": "x".repeat(70 * 1024)});
    let app = TestApp::spawn().await;
    app.create_user("lim").await;
    app.put("/admin/users/lim/limits", Some(ADMIN_KEY), &limits)
        .await
        .expect_error(413);
}
