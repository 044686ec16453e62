//! The small endpoints, routing, model resolution, refusals and the control routes.

use aiproxy_ollama_sim::{SimEndpoint, embedding_vector};
use serde_json::{Value, json};

use crate::client::{get, post, send, start};

const JSON: &str = "application/json; charset=utf-8";

#[actix_rt::test]
async fn root_answers_get_and_head() {
    let sim = start().await;
    let response = get(&sim, "/").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "Ollama is running");
    assert_eq!(response.content_type(), "text/plain; charset=utf-8");
    let head = send(&sim, "HEAD", "/", None).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("17"));
    assert_eq!(sim.control().stats().requests_to(SimEndpoint::Root), 2);
}

#[actix_rt::test]
async fn version_and_tags_describe_the_installation() {
    let sim = start().await;
    let version = get(&sim, "/api/version").await;
    assert_eq!((version.status, version.content_type()), (200, JSON));
    assert_eq!(version.json(), json!({"version": "0.33.0"}));

    let tags = get(&sim, "/api/tags").await;
    assert_eq!(tags.content_type(), JSON);
    let models = tags.json()["models"].as_array().unwrap().clone();
    let names: Vec<&str> = models.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "llama3.2:latest",
            "moondream:latest",
            "nomic-embed-text:latest"
        ]
    );
    let llama = &models[0];
    assert_eq!(llama["model"], "llama3.2:latest");
    assert_eq!(llama["details"]["format"], "gguf");
    assert_eq!(llama["details"]["family"], "llama");
    assert_eq!(llama["details"]["parameter_size"], "3.2B");
    assert_eq!(llama["details"]["quantization_level"], "Q4_K_M");
    assert_eq!(llama["capabilities"], json!(["completion", "tools"]));
    assert!(llama["size"].is_u64() && llama["digest"].as_str().unwrap().len() == 64);
    assert!(llama["modified_at"].is_string());
    assert_eq!(models[1]["capabilities"], json!(["completion", "vision"]));
    assert_eq!(models[2]["capabilities"], json!(["embedding"]));
}

#[actix_rt::test]
async fn show_resolves_names_and_refuses_unknown_ones() {
    let sim = start().await;
    let shown = post(&sim, "/api/show", &json!({"model": "moondream"})).await;
    assert_eq!(shown.status, 200);
    let body = shown.json();
    assert_eq!(body["capabilities"], json!(["completion", "vision"]));
    assert_eq!(body["details"]["family"], "phi2");
    assert!(body["model_info"].is_object() && body["modified_at"].is_string());

    let legacy_field = post(
        &sim,
        "/api/show",
        &json!({"name": "registry.ollama.ai/library/llama3.2:latest"}),
    )
    .await;
    assert_eq!(
        legacy_field.json()["capabilities"],
        json!(["completion", "tools"])
    );

    let unknown = post(&sim, "/api/show", &json!({"model": "mistral"})).await;
    assert_eq!((unknown.status, unknown.content_type()), (404, JSON));
    assert_eq!(
        unknown.json(),
        json!({"error": "model 'mistral:latest' not found"})
    );

    let missing = post(&sim, "/api/show", &json!({})).await;
    assert_eq!(
        (missing.status, missing.json()),
        (400, json!({"error": "model is required"}))
    );
}

#[actix_rt::test]
async fn unknown_paths_and_wrong_methods_answer_like_gin() {
    let sim = start().await;
    let missing = get(&sim, "/api/nothing").await;
    assert_eq!(
        (missing.status, missing.content_type()),
        (404, "text/plain")
    );
    assert_eq!(missing.text(), "404 page not found");
    let wrong_method = get(&sim, "/api/chat").await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.text(), "405 method not allowed");
    assert_eq!(sim.control().stats().requests_to(SimEndpoint::NotFound), 2);
}

#[actix_rt::test]
async fn ps_lists_models_once_used_and_forgets_unloaded_ones() {
    let sim = start().await;
    assert_eq!(get(&sim, "/api/ps").await.json(), json!({"models": []}));
    post(
        &sim,
        "/api/chat",
        &json!({"model": "llama3.2", "messages": []}),
    )
    .await;
    let loaded = get(&sim, "/api/ps").await.json();
    assert_eq!(loaded["models"][0]["name"], "llama3.2:latest");
    assert!(loaded["models"][0]["expires_at"].is_string());
    assert!(loaded["models"][0]["size_vram"].is_u64());
    post(
        &sim,
        "/api/chat",
        &json!({"model": "llama3.2", "messages": [], "keep_alive": 0}),
    )
    .await;
    assert_eq!(get(&sim, "/api/ps").await.json(), json!({"models": []}));
}

#[actix_rt::test]
async fn empty_conversations_load_and_unload_with_one_json_object() {
    let sim = start().await;
    let load = post(
        &sim,
        "/api/chat",
        &json!({"model": "llama3.2", "messages": []}),
    )
    .await;
    assert_eq!((load.status, load.content_type()), (200, JSON));
    let body = load.json();
    assert_eq!(body["done_reason"], "load");
    assert_eq!(body["done"], true);
    assert_eq!(body["message"], json!({"role": "assistant", "content": ""}));
    assert!(body.get("eval_count").is_none());

    let unload = post(
        &sim,
        "/api/generate",
        &json!({"model": "llama3.2", "keep_alive": "0s"}),
    )
    .await;
    assert_eq!(unload.json()["done_reason"], "unload");
    assert_eq!(unload.json()["response"], "");
}

#[actix_rt::test]
async fn names_resolve_like_ollama_and_are_echoed_as_sent() {
    let sim = start().await;
    for spelling in [
        "llama3.2",
        "llama3.2:latest",
        "registry.ollama.ai/library/llama3.2:latest",
        "Llama3.2",
    ] {
        let body = json!({"model": spelling, "messages": [{"role": "user", "content": "hi"}], "stream": false});
        let response = post(&sim, "/api/chat", &body).await;
        assert_eq!(response.status, 200, "{spelling}");
        assert_eq!(response.json()["model"], spelling);
    }
}

async fn assert_refused(
    sim: &aiproxy_ollama_sim::OllamaSim,
    path: &str,
    body: Value,
    status: u16,
    error: &str,
) {
    let response = post(sim, path, &body).await;
    assert_eq!(response.content_type(), JSON, "{path} {body}");
    assert_eq!(
        (response.status, response.json()),
        (status, json!({"error": error})),
        "{path} {body}"
    );
}

#[actix_rt::test]
async fn refusals_carry_ollamas_statuses_and_texts() {
    let sim = start().await;
    let user = json!([{"role": "user", "content": "hi"}]);
    assert_refused(
        &sim,
        "/api/chat",
        json!({"model": "mistral", "messages": user}),
        404,
        "model 'mistral' not found",
    )
    .await;
    assert_refused(
        &sim,
        "/api/chat",
        json!({"messages": user}),
        400,
        "model is required",
    )
    .await;
    assert_refused(
        &sim,
        "/api/generate",
        json!({"prompt": "hi"}),
        404,
        "model '' not found",
    )
    .await;
    assert_refused(
        &sim,
        "/api/chat",
        json!({"model": "bad name!", "messages": user}),
        400,
        "invalid model name",
    )
    .await;
    assert_refused(
        &sim,
        "/api/chat",
        json!({"model": "nomic-embed-text", "messages": user}),
        400,
        "\"nomic-embed-text\" does not support chat",
    )
    .await;
    assert_refused(
        &sim,
        "/api/generate",
        json!({"model": "nomic-embed-text", "prompt": "hi"}),
        400,
        "\"nomic-embed-text\" does not support generate",
    )
    .await;
    let tools = json!([{"type": "function", "function": {"name": "getTime", "parameters": {"type": "object", "properties": {}}}}]);
    assert_refused(
        &sim,
        "/api/chat",
        json!({"model": "moondream", "messages": user, "tools": tools, "stream": false}),
        400,
        "registry.ollama.ai/library/moondream:latest does not support tools",
    )
    .await;
    assert_refused(
        &sim,
        "/api/chat",
        json!({"model": "llama3.2", "messages": user, "think": true}),
        400,
        "\"llama3.2\" does not support thinking",
    )
    .await;
    assert_refused(
        &sim,
        "/api/chat",
        json!({"model": "llama3.2", "messages": [{"role": "user", "content": "see", "images": ["data:image/png;base64,iVBOR"]}]}),
        400,
        "illegal base64 data at input byte 4",
    )
    .await;
    assert_refused(
        &sim,
        "/api/chat",
        json!({"model": "llama3.2", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}),
        400,
        "json: cannot unmarshal array into Go struct field Message.messages.content of type string",
    )
    .await;
    assert_refused(
        &sim,
        "/api/chat",
        json!({"model": "llama3.2", "messages": user, "options": {"num_predict": "x"}}),
        500,
        "option \"num_predict\" must be of type integer",
    )
    .await;
    assert_refused(
        &sim,
        "/api/generate",
        json!({"model": "llama3.2", "prompt": "hi", "suffix": "end"}),
        400,
        "registry.ollama.ai/library/llama3.2:latest does not support insert",
    )
    .await;
    assert_refused(
        &sim,
        "/api/embed",
        json!({"model": "nomic-embed-text", "input": 5}),
        400,
        "invalid input type",
    )
    .await;
}

#[actix_rt::test]
async fn blank_and_broken_bodies_are_400s() {
    let sim = start().await;
    let blank = send(&sim, "POST", "/api/chat", Some("")).await;
    assert_eq!(
        (blank.status, blank.json()),
        (400, json!({"error": "missing request body"}))
    );
    let broken = send(&sim, "POST", "/api/chat", Some("{\"model\": llama}")).await;
    assert_eq!(broken.status, 400);
    assert_eq!(
        broken.json()["error"],
        "invalid character 'l' looking for beginning of value"
    );
    let truncated = send(&sim, "POST", "/api/generate", Some("{\"model\":")).await;
    assert_eq!(truncated.json()["error"], "unexpected EOF");
    assert_eq!(
        sim.control().last_request(SimEndpoint::Generate),
        Some(json!("{\"model\":"))
    );
}

#[actix_rt::test]
async fn embed_returns_deterministic_unit_vectors_and_counts() {
    let sim = start().await;
    let single = post(
        &sim,
        "/api/embed",
        &json!({"model": "nomic-embed-text", "input": "Hello world"}),
    )
    .await;
    assert_eq!((single.status, single.content_type()), (200, JSON));
    let body = single.json();
    assert_eq!(body["model"], "nomic-embed-text");
    assert_eq!(body["prompt_eval_count"], 2);
    assert!(body["total_duration"].is_u64() && body["load_duration"].is_u64());
    let vector: Vec<f32> = serde_json::from_value(body["embeddings"][0].clone()).unwrap();
    assert_eq!(vector, embedding_vector("Hello world", 768));

    let batch = post(
        &sim,
        "/api/embed",
        &json!({"model": "nomic-embed-text:latest", "input": ["a b c", "", "d"]}),
    )
    .await;
    let body = batch.json();
    assert_eq!(body["embeddings"].as_array().unwrap().len(), 3);
    assert_eq!(body["prompt_eval_count"], 3 + 1 + 1);

    let cut = post(
        &sim,
        "/api/embed",
        &json!({"model": "nomic-embed-text", "input": "x", "dimensions": 64}),
    )
    .await;
    let cut: Vec<f64> = serde_json::from_value(cut.json()["embeddings"][0].clone()).unwrap();
    assert_eq!(cut.len(), 64);
    assert!((cut.iter().map(|v| v * v).sum::<f64>().sqrt() - 1.0).abs() < 1e-5);

    let chat_model = post(
        &sim,
        "/api/embed",
        &json!({"model": "llama3.2", "input": "x"}),
    )
    .await;
    assert_eq!(
        chat_model.json()["embeddings"][0].as_array().unwrap().len(),
        3072
    );

    let empty = post(
        &sim,
        "/api/embed",
        &json!({"model": "nomic-embed-text", "input": ""}),
    )
    .await;
    assert_eq!(
        empty.json(),
        json!({"model": "nomic-embed-text", "embeddings": []})
    );
}

#[actix_rt::test]
async fn legacy_embeddings_answer_a_single_vector() {
    let sim = start().await;
    let response = post(
        &sim,
        "/api/embeddings",
        &json!({"model": "nomic-embed-text", "prompt": "Hello world"}),
    )
    .await;
    let body = response.json();
    assert_eq!(body.as_object().unwrap().len(), 1);
    assert_eq!(body["embedding"].as_array().unwrap().len(), 768);
    let unknown = post(
        &sim,
        "/api/embeddings",
        &json!({"model": "bert", "prompt": "x"}),
    )
    .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(
        unknown.json()["error"],
        "model \"bert\" not found, try pulling it first"
    );
}

#[actix_rt::test]
async fn the_control_routes_drive_and_report() {
    let sim = start().await;
    let set = post(
        &sim,
        "/sim/control",
        &json!({"fail_status": {"status": 503, "message": "busy"}, "faults_for_next": 1}),
    )
    .await;
    assert_eq!(set.status, 200);
    assert_eq!(
        set.json()["fail_status"],
        json!({"status": 503, "message": "busy"})
    );
    let chat = json!({"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "stream": false});
    assert_eq!(post(&sim, "/api/chat", &chat).await.status, 503);
    assert_eq!(post(&sim, "/api/chat", &chat).await.status, 200);
    assert_eq!(
        get(&sim, "/sim/control").await.json()["fail_status"],
        Value::Null
    );

    let stats = get(&sim, "/sim/stats").await.json();
    assert_eq!(stats["requests"]["chat"], 2);
    assert_eq!(stats["open_streams"], 0);
    let logged = get(&sim, "/sim/requests?endpoint=chat").await.json();
    assert_eq!(logged.as_array().unwrap().len(), 2);
    assert_eq!(logged[0]["body"], chat);

    let typo = post(&sim, "/sim/control", &json!({"token_delay": 5})).await;
    assert_eq!(typo.status, 400);
    assert!(
        typo.json()["error"]
            .as_str()
            .unwrap()
            .contains("token_delay")
    );
    post(&sim, "/sim/control", &json!({"reset_stats": true})).await;
    assert_eq!(sim.control().stats().requests_to(SimEndpoint::Chat), 0);
}
