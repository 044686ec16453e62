//! Every kind of bad input in docs/reliability.md gets a clear 4xx in OpenAI's shape.

use actix_web::http::Method;
use aiproxy_e2e::{ADMIN_KEY, TestApp, chat_body};
use aiproxy_ollama_sim::SimEndpoint;
use serde_json::json;

/// Asserts a 200 chat completion with an answer in it (a 200 with an empty or foreign body
/// would pass a status check alone).
fn expect_answer(reply: &aiproxy_e2e::Reply) {
    assert_eq!(reply.status, 200, "{}", reply.text);
    let content = reply.json["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default();
    assert!(!content.is_empty(), "no answer in {}", reply.text);
}

/// Asserts a 200 model list with at least one model in it.
fn expect_models(reply: &aiproxy_e2e::Reply) {
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["object"], "list", "{}", reply.text);
    let models = reply.json["data"].as_array().map_or(0, Vec::len);
    assert!(models > 0, "no models in {}", reply.text);
}

async fn raw(app: &TestApp, key: &str, body: &[u8]) -> aiproxy_e2e::Reply {
    app.send(
        app.request(Method::POST, "/v1/chat/completions", Some(key)),
        Some(body),
    )
    .await
}

#[actix_web::test]
async fn malformed_truncated_and_non_utf8_json_are_400() {
    let app = TestApp::spawn().await;
    let key = app.create_user("bad").await;
    for body in [
        &b"{"[..],
        b"{\"model\": \"llama3.2\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}",
        b"not json at all",
        b"\xff\xfe\x00garbage",
        b"",
        b"[]",
        b"null",
        b"{\"model\": \"llama3.2\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]} trailing",
    ] {
        let reply = raw(&app, &key, body).await;
        reply.expect_error(400);
    }
    let bad_utf8_in_string = b"{\"model\": \"llama3.2\", \"messages\": [{\"role\": \"user\", \"content\": \"\xc3\x28\"}]}";
    raw(&app, &key, bad_utf8_in_string).await.expect_error(400);
    assert_eq!(app.usage_of("bad").await["totals"]["requests"], 0);
}

#[actix_web::test]
async fn wrong_types_and_absurd_numbers_are_400_with_the_field() {
    let app = TestApp::spawn().await;
    let key = app.create_user("types").await;
    let base = || chat_body("llama3.2", "hi");
    for (field, value) in [
        ("model", json!(42)),
        ("stream", json!("yes")),
        ("max_tokens", json!(-5)),
        ("max_tokens", json!(1e30)),
        ("temperature", json!(99)),
        ("top_p", json!(-1)),
        ("stop", json!([1, 2])),
        ("stop", json!(["a", "b", "c", "d", "e"])),
        ("n", json!(0)),
        ("tools", json!("not a list")),
        ("response_format", json!({"type": "xml"})),
    ] {
        let mut body = base();
        body[field] = value.clone();
        let reply = app.chat(&key, &body).await;
        let error = reply.expect_error(400);
        let param = error["param"].as_str().unwrap_or_default();
        assert!(
            param.starts_with(field),
            "{field}={value}: param {param:?} in {}",
            reply.text
        );
    }
    let empty_message = app
        .chat(
            &key,
            &json!({"model": "llama3.2", "messages": [{"role": "user"}]}),
        )
        .await;
    assert_eq!(
        empty_message.expect_error(400)["param"],
        "messages[0].content"
    );
}

#[actix_web::test]
async fn chat_and_legacy_completions_refuse_the_same_sampling_values() {
    let app = TestApp::spawn().await;
    let key = app.create_user("sampling").await;
    for (field, value) in [
        ("temperature", json!(99)),
        ("top_p", json!(1.5)),
        ("presence_penalty", json!(-3)),
        ("frequency_penalty", json!(2.5)),
        ("stop", json!(["a", "b", "c", "d", "e"])),
    ] {
        let mut chat = chat_body("llama3.2", "hi");
        chat[field] = value.clone();
        let mut completion = json!({"model": "llama3.2", "prompt": "hi"});
        completion[field] = value.clone();
        for (path, body) in [
            ("/v1/chat/completions", chat),
            ("/v1/completions", completion),
        ] {
            let reply = app.post(path, Some(&key), &body).await;
            assert_eq!(
                reply.expect_error(400)["param"],
                field,
                "{path} {field}={value}: {}",
                reply.text
            );
        }
    }
    let stats = app.sim.control().stats();
    assert_eq!(
        stats.requests_to(SimEndpoint::Chat) + stats.requests_to(SimEndpoint::Generate),
        0,
        "nothing refused reached Ollama"
    );
    assert_eq!(app.usage_of("sampling").await["totals"]["requests"], 0);
}

#[actix_web::test]
async fn unknown_fields_are_ignored_as_openai_clients_expect() {
    let app = TestApp::spawn().await;
    let key = app.create_user("extra").await;
    let mut body = chat_body("llama3.2", "hi");
    body["metadata"] = json!({"team": "a"});
    body["store"] = json!(false);
    body["service_tier"] = json!("auto");
    body["messages"][0]["x_custom"] = json!(1);
    expect_answer(&app.chat(&key, &body).await);
}

#[actix_web::test]
async fn deep_nesting_is_refused_without_harm() {
    let app = TestApp::spawn().await;
    let key = app.create_user("deep").await;
    let depth = 10_000;
    let mut body = String::from(
        "{\"model\": \"llama3.2\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"tools\": [",
    );
    body.push_str(&"[".repeat(depth));
    body.push_str(&"]".repeat(depth));
    body.push_str("]}");
    raw(&app, &key, body.as_bytes()).await.expect_error(400);
    expect_answer(&app.chat(&key, &chat_body("llama3.2", "still fine")).await);
}

#[actix_web::test]
async fn huge_headers_and_bodies_are_refused_in_shape() {
    let app = TestApp::spawn_with(|s| s.max_body_bytes = 64 * 1024).await;
    let key = app.create_user("huge").await;
    // A megabyte of headers: actix reads a head up to 128 KiB, then answers 431 and closes;
    // the server keeps serving.
    let address = app.base_url.trim_start_matches("http://").to_owned();
    let head = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let request = format!(
            "GET /v1/models HTTP/1.1\r\nHost: x\r\nx-padding: {}\r\n\r\n",
            "a".repeat(1024 * 1024)
        );
        // The server stops reading at its limit, so the rest of this write may fail.
        let _ = stream.write_all(request.as_bytes());
        let mut answer = Vec::new();
        // What arrived before the server closed is kept even if the close was a reset.
        let _ = stream.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    })
    .join()
    .unwrap();
    assert!(head.starts_with("HTTP/1.1 431 "), "{head:?}");
    expect_models(&app.get("/v1/models", Some(&key)).await);
    let big = raw(&app, &key, &vec![b' '; 200 * 1024]).await;
    big.expect_error(413);
}

#[actix_web::test]
async fn odd_authorization_headers_are_401() {
    let app = TestApp::spawn().await;
    let key = app.create_user("auth").await;
    for header in [
        "".to_string(),
        "Bearer".to_string(),
        "Bearer ".to_string(),
        format!("Token {key}"),
        format!("Bearer {key} extra"),
        format!("Bearer {}", "x".repeat(10_000)),
    ] {
        let reply = app
            .send(
                app.request(Method::GET, "/v1/models", None)
                    .insert_header(("Authorization", header.clone())),
                None,
            )
            .await;
        reply.expect_error(401);
    }
    // The scheme is case-insensitive, as HTTP says.
    let lower = app
        .send(
            app.request(Method::GET, "/v1/models", None)
                .insert_header(("Authorization", format!("bearer {key}"))),
            None,
        )
        .await;
    expect_models(&lower);
}

#[actix_web::test]
async fn odd_path_ids_are_404_not_500() {
    let app = TestApp::spawn().await;
    for path in [
        "/admin/users/%2F..%2Fetc",
        "/admin/users/%00",
        "/admin/users/%F0%9F%92%A9",
        "/admin/users/a%20b/limits",
        &format!("/admin/users/{}", "x".repeat(5000)),
    ] {
        let reply = app.get(path, Some(ADMIN_KEY)).await;
        assert!(
            reply.status == 404 || reply.status == 400,
            "{path}: {}",
            reply.status
        );
        reply.expect_error(reply.status.as_u16());
    }
}

#[actix_web::test]
async fn admin_bodies_are_checked_too() {
    let app = TestApp::spawn().await;
    app.create_user("adm").await;
    for body in [
        json!({"user_id": "x", "unknown": 1}),
        json!({"user_id": 5}),
        json!({"user_id": "ok", "limits": {"requests_per_minute": 1e20}}),
        json!({"user_id": "ok2", "key_expires_at": "tomorrow"}),
        json!({"user_id": "ok3", "allowed_models": [""]}),
    ] {
        app.post("/admin/users", Some(ADMIN_KEY), &body)
            .await
            .expect_error(400);
    }
    app.patch(
        "/admin/users/adm",
        Some(ADMIN_KEY),
        &json!({"disabled": "yes"}),
    )
    .await
    .expect_error(400);
    app.put(
        "/admin/users/adm/limits",
        Some(ADMIN_KEY),
        &json!({"bogus": 1}),
    )
    .await
    .expect_error(400);
}
