use aiproxy_e2e::{ADMIN_KEY, TestApp, chat_body};
use aiproxy_ollama_sim::SimEndpoint;
use serde_json::json;

#[actix_web::test]
async fn a_chat_request_travels_the_whole_way_and_is_accounted() {
    let app = TestApp::spawn().await;
    let key = app.create_user("alice").await;
    assert!(key.len() >= 32, "keys carry at least 128 bits");

    let reply = app
        .chat(&key, &chat_body("llama3.2", "Why is the sky blue?"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let body = &reply.json;
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "llama3.2");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    let choice = &body["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert!(
        choice["message"]["content"]
            .as_str()
            .unwrap()
            .contains("Why is the sky blue?")
    );
    assert_eq!(choice["finish_reason"], "stop");
    let usage = &body["usage"];
    let prompt = usage["prompt_tokens"].as_u64().unwrap();
    let completion = usage["completion_tokens"].as_u64().unwrap();
    assert!(prompt > 0 && completion > 0);
    assert_eq!(usage["total_tokens"].as_u64().unwrap(), prompt + completion);
    assert!(reply.header("x-request-id").is_some());

    // The simulator saw a native, non-streaming /api/chat.
    let sent = app.sim.control().last_request(SimEndpoint::Chat).unwrap();
    assert_eq!(sent["stream"], false);
    assert_eq!(sent["messages"][0]["content"], "Why is the sky blue?");

    // Exactly one usage row, with Ollama's counts.
    let usage = app.usage_of("alice").await;
    assert_eq!(usage["totals"]["requests"], 1);
    let record = &usage["records"][0];
    assert_eq!(record["model"], "llama3.2");
    assert_eq!(record["prompt_tokens"].as_u64(), Some(prompt));
    assert_eq!(record["completion_tokens"].as_u64(), Some(completion));
    assert_eq!(record["status"], "ok");
    assert_eq!(record["endpoint"], "/v1/chat/completions");
}

#[actix_web::test]
async fn missing_or_wrong_keys_get_401_and_store_nothing() {
    let app = TestApp::spawn().await;
    app.create_user("bob").await;
    let body = chat_body("llama3.2", "hi");
    let none = app.post("/v1/chat/completions", None, &body).await;
    assert_eq!(none.expect_error(401)["code"], "invalid_api_key");
    let wrong = app.chat("sk-not-a-real-key", &body).await;
    assert_eq!(wrong.expect_error(401)["code"], "invalid_api_key");
    assert!(
        !wrong.text.contains("sk-not-a-real-key"),
        "errors never echo the key"
    );
    let basic = app
        .send(
            app.request(actix_web::http::Method::POST, "/v1/chat/completions", None)
                .insert_header(("Authorization", "Basic Ym9iOnNlY3JldA==")),
            Some(body.to_string().as_bytes()),
        )
        .await;
    basic.expect_error(401);
    // The admin key is not a user key.
    app.chat(ADMIN_KEY, &body).await.expect_error(401);
    let usage = app.usage_of("bob").await;
    assert_eq!(usage["totals"]["requests"], 0);
}

#[actix_web::test]
async fn malformed_bodies_get_400_naming_the_field() {
    let app = TestApp::spawn().await;
    let key = app.create_user("carol").await;
    let raw = app
        .send(
            app.request(
                actix_web::http::Method::POST,
                "/v1/chat/completions",
                Some(&key),
            ),
            Some(b"{\"model\": \"llama3.2\", \"messages\": ["),
        )
        .await;
    raw.expect_error(400);
    let wrong_type = app
        .chat(&key, &json!({"model": "llama3.2", "messages": "hello"}))
        .await;
    assert_eq!(wrong_type.expect_error(400)["param"], "messages");
    let missing = app.chat(&key, &json!({"messages": []})).await;
    missing.expect_error(400);
    let empty = app
        .chat(&key, &json!({"model": "llama3.2", "messages": []}))
        .await;
    assert_eq!(empty.expect_error(400)["param"], "messages");
    assert_eq!(app.usage_of("carol").await["totals"]["requests"], 0);
}

#[actix_web::test]
async fn unknown_models_get_404_model_not_found() {
    let app = TestApp::spawn().await;
    let key = app.create_user("dave").await;
    let reply = app.chat(&key, &chat_body("no-such-model", "hi")).await;
    let error = reply.expect_error(404);
    assert_eq!(error["code"], "model_not_found");
}

#[actix_web::test]
async fn ollama_unreachable_is_a_502() {
    let app = TestApp::spawn_with(|s| s.ollama_base_url = "http://127.0.0.1:9".into()).await;
    let key = app.create_user("erin").await;
    let reply = app.chat(&key, &chat_body("llama3.2", "hi")).await;
    reply.expect_error(502);
}

#[actix_web::test]
async fn max_tokens_becomes_num_predict_and_length_finishes() {
    let app = TestApp::spawn().await;
    let key = app.create_user("frank").await;
    let mut body = chat_body("llama3.2", "one two three four five six seven eight");
    body["max_tokens"] = json!(3);
    let reply = app.chat(&key, &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["choices"][0]["finish_reason"], "length");
    assert_eq!(reply.json["usage"]["completion_tokens"], 3);
    let sent = app.sim.control().last_request(SimEndpoint::Chat).unwrap();
    assert_eq!(sent["options"]["num_predict"], 3);
}

#[actix_web::test]
async fn usage_survives_a_restart() {
    let app = TestApp::spawn().await;
    let key = app.create_user("gina").await;
    let reply = app.chat(&key, &chat_body("llama3.2", "remember me")).await;
    assert_eq!(reply.status, 200);
    let app = app.restart().await;
    let usage = app.usage_of("gina").await;
    assert_eq!(usage["totals"]["requests"], 1);
    // The key still works after the restart.
    assert_eq!(
        app.chat(&key, &chat_body("llama3.2", "again")).await.status,
        200
    );
}

fn tool_body() -> serde_json::Value {
    json!({
        "model": "llama3.2",
        "messages": [{"role": "user", "content": "weather in Oslo"}],
        "tools": [{"type": "function", "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
        }}]
    })
}

#[actix_web::test]
async fn tool_calls_come_back_in_openai_shape() {
    let app = TestApp::spawn().await;
    let key = app.create_user("tools").await;
    let reply = app.chat(&key, &tool_body()).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let choice = &reply.json["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert!(choice["message"]["content"].is_null());
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let arguments: serde_json::Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert!(
        arguments["city"].is_string(),
        "arguments are a JSON string of an object"
    );
    let id = call["id"].as_str().unwrap().to_owned();

    // The follow-up with the tool's result reaches Ollama with the tool's name.
    let mut follow = tool_body();
    follow["messages"] = json!([
        {"role": "user", "content": "weather in Oslo"},
        {"role": "assistant", "content": null, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": id, "content": "cold"}
    ]);
    let answer = app.chat(&key, &follow).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let sent = app.sim.control().last_request(SimEndpoint::Chat).unwrap();
    assert_eq!(sent["messages"][2]["tool_name"], "get_weather");
    assert!(
        answer.json["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("cold")
    );
}

#[actix_web::test]
async fn streamed_tool_calls_carry_an_index_and_finish_with_tool_calls() {
    let app = TestApp::spawn().await;
    let key = app.create_user("stools").await;
    let reply = app.chat_stream(&key, &tool_body()).await;
    let events = aiproxy_e2e::sse_events(&reply.text);
    let call_chunk = events
        .iter()
        .find(|e| e["choices"][0]["delta"].get("tool_calls").is_some())
        .expect("a chunk with the tool call");
    let call = &call_chunk["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(call["index"], 0);
    assert_eq!(call["function"]["name"], "get_weather");
    let finish = &events[events.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
}

#[actix_web::test]
async fn response_format_and_extension_options_reach_ollama() {
    let app = TestApp::spawn().await;
    let key = app.create_user("fmt").await;
    let mut body = chat_body("llama3.2", "give json");
    body["response_format"] = json!({"type": "json_object"});
    body["stop"] = json!(["END"]);
    body["seed"] = json!(3);
    body["ollama"] = json!({"options": {"num_ctx": 4096, "top_k": 5}, "keep_alive": "1m"});
    let reply = app.chat(&key, &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let content = reply.json["choices"][0]["message"]["content"]
        .as_str()
        .unwrap();
    assert!(
        serde_json::from_str::<serde_json::Value>(content).is_ok(),
        "{content}"
    );
    let sent = app.sim.control().last_request(SimEndpoint::Chat).unwrap();
    assert_eq!(sent["format"], "json");
    assert_eq!(sent["options"]["num_ctx"], 4096);
    assert_eq!(sent["options"]["top_k"], 5);
    assert_eq!(sent["options"]["stop"], json!(["END"]));
    assert_eq!(sent["options"]["seed"], 3);
    assert_eq!(sent["keep_alive"], "1m");
    let n = app
        .chat(
            &key,
            &json!({"model": "llama3.2", "n": 3, "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(n.expect_error(400)["param"], "n");
}
