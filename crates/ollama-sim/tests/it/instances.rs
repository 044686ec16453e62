//! Several instances with their own model sets, loaded models and keep-alives (`/api/ps`),
//! the instance header, and changing the model set at run time.

use std::time::Duration;

use aiproxy_ollama_sim::{INSTANCE_HEADER, KeepAlive, SimConfig};
use serde_json::{Value, json};

use crate::client::{OpenStream, get, post, send, start, start_with};

fn instance(name: &str, models: &[&str], loaded: &[&str]) -> SimConfig {
    let mut config = SimConfig {
        name: name.into(),
        loaded: loaded.iter().map(|m| (*m).to_owned()).collect(),
        ..SimConfig::default()
    };
    config.select_models(models).unwrap();
    config
}

fn names(listing: &Value) -> Vec<String> {
    listing["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .collect()
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": false})
}

#[actix_rt::test]
async fn instances_serve_their_own_models_and_say_who_answered() {
    let east = start_with(instance("east", &["llama3.2", "gemma3:1b"], &["gemma3:1b"])).await;
    let west = start_with(instance("west", &["moondream", "nomic-embed-text"], &[])).await;
    assert_eq!((east.name(), west.name()), ("east", "west"));

    assert_eq!(
        names(&get(&east, "/api/tags").await.json()),
        ["llama3.2:latest", "gemma3:1b"]
    );
    assert_eq!(
        names(&get(&west, "/api/tags").await.json()),
        ["moondream:latest", "nomic-embed-text:latest"]
    );
    assert_eq!(names(&get(&east, "/api/ps").await.json()), ["gemma3:1b"]);
    assert!(names(&get(&west, "/api/ps").await.json()).is_empty());

    let answered = post(&east, "/api/chat", &chat("llama3.2")).await;
    assert_eq!(answered.status, 200);
    assert_eq!(answered.header(INSTANCE_HEADER), Some("east"));
    let refused = post(&west, "/api/chat", &chat("llama3.2")).await;
    assert_eq!(refused.status, 404);
    assert_eq!(refused.header(INSTANCE_HEADER), Some("west"));
    for path in ["/", "/api/version", "/api/nothing", "/sim/stats"] {
        assert_eq!(
            get(&west, path).await.header(INSTANCE_HEADER),
            Some("west"),
            "{path}"
        );
    }
    assert_eq!(get(&east, "/sim/stats").await.json()["instance"], "east");
    assert_eq!(west.control().stats().instance, "west");

    // An unnamed instance sends exactly Ollama's headers.
    let plain = start().await;
    assert_eq!(plain.name(), "");
    let answered = post(&plain, "/api/chat", &chat("llama3.2")).await;
    assert_eq!(answered.header(INSTANCE_HEADER), None);
}

#[actix_rt::test]
async fn a_model_outside_the_set_is_missing_on_every_route() {
    let sim = start_with(instance("only-embeddings", &["nomic-embed-text"], &[])).await;
    let cases = [
        (
            "/api/chat",
            chat("llama3.2"),
            404,
            "model 'llama3.2' not found",
        ),
        (
            "/api/generate",
            json!({"model": "llama3.2", "prompt": "hi"}),
            404,
            "model 'llama3.2' not found",
        ),
        (
            "/api/embed",
            json!({"model": "llama3.2", "input": "hi"}),
            404,
            "model 'llama3.2' not found",
        ),
        (
            "/api/embeddings",
            json!({"model": "llama3.2", "prompt": "hi"}),
            404,
            "model \"llama3.2\" not found, try pulling it first",
        ),
        (
            "/api/show",
            json!({"model": "llama3.2"}),
            404,
            "model 'llama3.2:latest' not found",
        ),
    ];
    for (path, body, status, error) in cases {
        let response = post(&sim, path, &body).await;
        assert_eq!(
            (response.status, response.json()),
            (status, json!({ "error": error })),
            "{path}"
        );
    }
}

#[actix_rt::test]
async fn ps_reports_loaded_models_in_ollamas_format() {
    let sim = start_with(instance("ps", &["llama3.2", "moondream"], &["llama3.2"])).await;
    let listing = get(&sim, "/api/ps").await.json();
    let model = &listing["models"][0];
    let fields: Vec<&str> = model
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = [
        "name",
        "model",
        "size",
        "digest",
        "details",
        "expires_at",
        "size_vram",
        "context_length",
    ];
    expected.sort_unstable();
    let mut fields = fields;
    fields.sort_unstable();
    assert_eq!(fields, expected);
    assert_eq!(model["name"], "llama3.2:latest");
    assert_eq!(model["model"], "llama3.2:latest");
    assert_eq!(model["context_length"], 4096);
    assert_eq!(model["size_vram"], model["size"]);
    assert_eq!(model["details"]["family"], "llama");
    crate::client::assert_go_timestamp(&model["expires_at"]);

    // A request with num_ctx loads moondream with that context (capped by the model's 2048).
    post(
        &sim,
        "/api/chat",
        &json!({"model": "moondream", "messages": [], "keep_alive": "10m", "options": {"num_ctx": 8192}}),
    )
    .await;
    let listing = get(&sim, "/api/ps").await.json();
    assert_eq!(names(&listing), ["moondream:latest", "llama3.2:latest"]);
    assert_eq!(listing["models"][0]["context_length"], 2048);
}

#[actix_rt::test]
async fn keep_alive_decides_when_a_model_unloads_on_the_sims_clock() {
    let sim = start().await;
    let control = sim.control();
    post(&sim, "/api/chat", &chat("llama3.2")).await;
    let loaded = control.loaded_models();
    assert_eq!(loaded.len(), 1);
    let left = loaded[0].expires_at - control.now();
    assert!(left <= time::Duration::minutes(5) && left > time::Duration::minutes(4));
    control.advance_clock(Duration::from_secs(299));
    assert_eq!(
        names(&get(&sim, "/api/ps").await.json()),
        ["llama3.2:latest"]
    );
    control.advance_clock(Duration::from_secs(1));
    assert!(names(&get(&sim, "/api/ps").await.json()).is_empty());

    // keep_alive 0 unloads as soon as the request is answered.
    let mut request = chat("llama3.2");
    request["keep_alive"] = json!(0);
    assert_eq!(post(&sim, "/api/chat", &request).await.status, 200);
    assert!(control.loaded_models().is_empty());

    // A negative keep_alive keeps it forever (Ollama shows an expiry ~292 years away), and a
    // later request without keep_alive keeps that duration.
    request["keep_alive"] = json!(-1);
    post(&sim, "/api/chat", &request).await;
    post(
        &sim,
        "/api/embed",
        &json!({"model": "nomic-embed-text", "input": "x", "keep_alive": "1m30s"}),
    )
    .await;
    post(&sim, "/api/chat", &chat("llama3.2")).await;
    let listing = get(&sim, "/api/ps").await.json();
    assert_eq!(
        names(&listing),
        ["llama3.2:latest", "nomic-embed-text:latest"]
    );
    assert!(listing["models"][0]["expires_at"].as_str().unwrap() > "2300");
    control.advance_clock(Duration::from_secs(90));
    assert_eq!(
        names(&get(&sim, "/api/ps").await.json()),
        ["llama3.2:latest"]
    );
    control.advance_clock(Duration::from_secs(100 * 365 * 86_400));
    assert_eq!(
        names(&get(&sim, "/api/ps").await.json()),
        ["llama3.2:latest"]
    );
}

#[actix_rt::test]
async fn the_model_set_and_the_loaded_set_change_at_run_time() {
    let sim = start().await;
    let control = sim.control();
    control.set_models(&["llama3.2", "gemma3:1b"]).unwrap();
    assert_eq!(
        names(&get(&sim, "/api/tags").await.json()),
        ["llama3.2:latest", "gemma3:1b"]
    );
    assert_eq!(
        post(&sim, "/api/chat", &chat("moondream")).await.status,
        404
    );
    assert_eq!(
        post(&sim, "/api/chat", &chat("gemma3:1b")).await.status,
        200
    );
    assert!(control.set_models(&["mistral"]).is_err());

    control.set_loaded(&["llama3.2"]).unwrap();
    assert!(control.set_loaded(&["moondream"]).is_err());
    assert!(control.remove_model("llama3.2"));
    assert!(!control.remove_model("llama3.2"));
    assert!(control.loaded_models().is_empty(), "removing unloads");
    control
        .load_model("gemma3:1b", KeepAlive::For(Duration::from_secs(60)))
        .unwrap();
    assert_eq!(control.loaded_models()[0].name, "gemma3:1b");

    let set = post(
        &sim,
        "/sim/control",
        &json!({"models": ["nomic-embed-text", "llama3.2"], "loaded": ["llama3.2"]}),
    )
    .await;
    assert_eq!(set.status, 200);
    assert_eq!(
        set.json()["models"],
        json!(["nomic-embed-text:latest", "llama3.2:latest"])
    );
    assert_eq!(set.json()["loaded"], json!(["llama3.2:latest"]));
    assert_eq!(
        names(&get(&sim, "/api/ps").await.json()),
        ["llama3.2:latest"]
    );
    let moved = post(&sim, "/sim/control", &json!({"advance_clock_ms": 300_000})).await;
    assert_eq!(moved.json()["loaded"], json!([]));

    let unknown = post(&sim, "/sim/control", &json!({"models": ["mistral"]})).await;
    assert_eq!(unknown.status, 400);
    assert!(
        unknown.json()["error"]
            .as_str()
            .unwrap()
            .contains("mistral")
    );
    let not_installed = post(&sim, "/sim/control", &json!({"loaded": ["moondream"]})).await;
    assert_eq!(not_installed.status, 400);
}

#[actix_rt::test]
async fn starting_with_a_loaded_model_that_is_not_installed_fails() {
    let config = instance("bad", &["llama3.2"], &["moondream"]);
    let error = aiproxy_ollama_sim::OllamaSim::start(config)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("moondream"), "{error}");
}

#[actix_rt::test]
async fn an_unresponsive_instance_hangs_every_route_but_the_control_routes() {
    let sim = start().await;
    post(&sim, "/sim/control", &json!({"unresponsive": true})).await;
    for path in ["/", "/api/tags", "/api/version"] {
        let mut probe = OpenStream::send(&sim, "GET", path, None).await;
        probe.expect_silence(Duration::from_millis(200)).await;
        assert!(probe.received().is_empty(), "{path}");
    }
    let mut chat_probe = OpenStream::post(&sim, "/api/chat", &chat("llama3.2")).await;
    chat_probe.expect_silence(Duration::from_millis(200)).await;
    assert!(get(&sim, "/sim/control").await.json()["unresponsive"] == true);
    sim.control().clear_faults();
    assert!(sim.control().settings().unresponsive, "not a counted fault");
    sim.control().set_unresponsive(false);
    assert_eq!(send(&sim, "HEAD", "/", None).await.status, 200);
}
