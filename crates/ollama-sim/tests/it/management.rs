//! Model management: pull, push, create, copy, delete and blobs change the instance's model set
//! and answer with Ollama's progress lines and errors.

use aiproxy_ollama_sim::{SimEndpoint, SimModel};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::client::{get, post, send, start};

async fn tag_names(sim: &aiproxy_ollama_sim::OllamaSim) -> Vec<String> {
    get(sim, "/api/tags").await.json()["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .collect()
}

fn statuses(lines: &[Value]) -> Vec<&str> {
    lines
        .iter()
        .map(|line| line["status"].as_str().or(line["error"].as_str()).unwrap())
        .collect()
}

#[actix_rt::test]
async fn pull_streams_progress_and_installs_the_model() {
    let sim = start().await;
    let response = post(&sim, "/api/pull", &json!({"model": "gemma3:1b"})).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.content_type(), "application/x-ndjson");
    assert!(response.chunked && response.complete);
    let lines = response.lines();
    let layer = SimModel::gemma3_1b().layer_digest();
    let short = format!("pulling {}", &layer[7..19]);
    assert_eq!(
        statuses(&lines),
        [
            "pulling manifest",
            short.as_str(),
            short.as_str(),
            "verifying sha256 digest",
            "writing manifest",
            "success"
        ]
    );
    assert_eq!(
        lines[1],
        json!({"status": short, "digest": layer, "total": 815_319_791})
    );
    assert_eq!(lines[2]["completed"], 815_319_791);
    assert_eq!(tag_names(&sim).await[0], "gemma3:1b");
    assert!(
        sim.control().loaded_models().is_empty(),
        "a pull does not load"
    );
    assert_eq!(
        post(
            &sim,
            "/api/chat",
            &json!({"model": "gemma3:1b", "messages": [], "stream": false})
        )
        .await
        .status,
        200
    );

    // Pulling again finds the layer on disk; `stream: false` answers the last status.
    let again = post(
        &sim,
        "/api/pull",
        &json!({"name": "gemma3:1b", "stream": false}),
    )
    .await;
    assert_eq!(
        (again.status, again.content_type()),
        (200, "application/json")
    );
    assert_eq!(again.json(), json!({"status": "success"}));
    let lines = post(&sim, "/api/pull", &json!({"model": "gemma3:1b"}))
        .await
        .lines();
    assert_eq!(lines.len(), 5, "one layer line for a cache hit");
    assert_eq!(sim.control().stats().requests_to(SimEndpoint::Pull), 3);
}

#[actix_rt::test]
async fn pull_errors_are_ollamas() {
    let sim = start().await;
    let streamed = post(&sim, "/api/pull", &json!({"model": "no-such-model"})).await;
    assert_eq!(streamed.status, 200);
    assert_eq!(
        streamed.lines(),
        [
            json!({"status": "pulling manifest"}),
            json!({"error": "pull model manifest: file does not exist"})
        ]
    );
    let whole = post(
        &sim,
        "/api/pull",
        &json!({"model": "no-such-model", "stream": false}),
    )
    .await;
    assert_eq!(
        (whole.status, whole.content_type()),
        (500, "application/json")
    );
    assert_eq!(
        whole.json(),
        json!({"error": "pull model manifest: file does not exist"})
    );
    let unnamed = post(&sim, "/api/pull", &json!({})).await;
    assert_eq!(
        (unnamed.status, unnamed.json()),
        (400, json!({"error": "invalid model name"}))
    );
    let blank = send(&sim, "POST", "/api/pull", Some(" ")).await;
    assert_eq!(blank.json(), json!({"error": "missing request body"}));
}

#[actix_rt::test]
async fn push_reports_progress_or_a_missing_manifest() {
    let sim = start().await;
    let pushed = post(&sim, "/api/push", &json!({"model": "llama3.2"}))
        .await
        .lines();
    let layer = SimModel::llama3_2().layer_digest();
    let short = format!("pushing {}", &layer[7..19]);
    assert_eq!(
        statuses(&pushed),
        [
            "retrieving manifest",
            short.as_str(),
            short.as_str(),
            "pushing manifest",
            "success"
        ]
    );
    let missing = post(&sim, "/api/push", &json!({"model": "me/nothing"}))
        .await
        .lines();
    assert_eq!(missing[1], json!({"status": "couldn't retrieve manifest"}));
    assert_eq!(
        missing[2],
        json!({"error": "open /root/.ollama/models/manifests/registry.ollama.ai/me/nothing/latest: no such file or directory"})
    );
    let unnamed = post(&sim, "/api/push", &json!({"stream": false})).await;
    assert_eq!(
        (unnamed.status, unnamed.json()),
        (400, json!({"error": "model is required"}))
    );
}

#[actix_rt::test]
async fn create_copies_or_pulls_its_base_and_installs_the_new_model() {
    let sim = start().await;
    let created = post(
        &sim,
        "/api/create",
        &json!({"model": "me/terse", "from": "llama3.2", "system": "Be terse.", "stream": false}),
    )
    .await;
    assert_eq!(created.json(), json!({"status": "success"}));
    let names = tag_names(&sim).await;
    assert_eq!(names[0], "me/terse:latest");
    let shown = post(&sim, "/api/show", &json!({"model": "me/terse"}))
        .await
        .json();
    assert_eq!(shown["capabilities"], json!(["completion", "tools"]));
    let answer = post(
        &sim,
        "/api/chat",
        &json!({"model": "me/terse", "messages": [{"role": "user", "content": "hi"}], "stream": false}),
    )
    .await
    .json();
    assert_eq!(answer["message"]["content"], "Echo: hi");

    // A base that is not installed is pulled first, with the pull's own lines.
    let lines = post(
        &sim,
        "/api/create",
        &json!({"model": "tiny", "from": "llama3.2:1b"}),
    )
    .await
    .lines();
    let statuses = statuses(&lines);
    assert_eq!(statuses[0], "pulling manifest");
    assert!(statuses[statuses.len() - 3].starts_with("using existing layer sha256:"));
    assert_eq!(
        &statuses[statuses.len() - 2..],
        ["writing manifest", "success"]
    );
    let names = tag_names(&sim).await;
    assert!(names.contains(&"tiny:latest".to_owned()) && names.contains(&"llama3.2:1b".to_owned()));

    let neither = post(&sim, "/api/create", &json!({"model": "x"})).await;
    assert_eq!(
        (neither.status, neither.content_type()),
        (400, "application/json")
    );
    assert_eq!(
        neither.json(),
        json!({"error": "neither 'from' or 'files' was specified"})
    );
    let absolute = post(
        &sim,
        "/api/create",
        &json!({"model": "x", "files": {"/etc/model.gguf": "sha256:00"}}),
    )
    .await;
    assert_eq!(
        (absolute.status, absolute.json()),
        (400, json!({"error": "file path must be relative"}))
    );
    let unknown_base = post(&sim, "/api/create", &json!({"model": "x", "from": "nope"})).await;
    assert_eq!(
        unknown_base.lines().last().unwrap()["error"],
        "pull model manifest: file does not exist"
    );
}

fn sha256(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

#[actix_rt::test]
async fn blobs_upload_and_create_from_files() {
    let sim = start().await;
    let weights = b"GGUF not really weights";
    let digest = sha256(weights);
    let path = format!("/api/blobs/{digest}");
    let unknown = send(&sim, "HEAD", &path, None).await;
    assert_eq!(unknown.status, 404);
    let wrong = send(
        &sim,
        "POST",
        &format!("/api/blobs/sha256:{}", "0".repeat(64)),
        Some("x"),
    )
    .await;
    assert_eq!(wrong.status, 400);
    assert_eq!(
        wrong.json()["error"],
        format!(
            "digest mismatch, expected \"sha256:{}\", got \"{}\"",
            "0".repeat(64),
            sha256(b"x")
        )
    );
    let uploaded = send(
        &sim,
        "POST",
        &path,
        Some(std::str::from_utf8(weights).unwrap()),
    )
    .await;
    assert_eq!((uploaded.status, uploaded.body.len()), (201, 0));
    assert_eq!(send(&sim, "HEAD", &path, None).await.status, 200);
    assert_eq!(
        send(&sim, "POST", &path, Some("again")).await.status,
        200,
        "already there"
    );
    let invalid = send(&sim, "HEAD", "/api/blobs/sha256:xyz", None).await;
    assert_eq!(invalid.status, 400);
    let bad = post_raw_blob_error(&sim).await;
    assert_eq!(bad, json!({"error": "invalid digest format"}));
    // The layer of an installed model is a blob too.
    let layer = SimModel::llama3_2().layer_digest();
    assert_eq!(
        send(&sim, "HEAD", &format!("/api/blobs/{layer}"), None)
            .await
            .status,
        200
    );

    let created = post(
        &sim,
        "/api/create",
        &json!({"model": "from-files", "files": {"model.gguf": digest}, "stream": false}),
    )
    .await;
    assert_eq!(created.json(), json!({"status": "success"}));
    let tags = get(&sim, "/api/tags").await.json();
    assert_eq!(tags["models"][0]["name"], "from-files:latest");
    assert_eq!(tags["models"][0]["size"], weights.len());

    let missing = post(
        &sim,
        "/api/create",
        &json!({"model": "y", "files": {"model.gguf": format!("sha256:{}", "1".repeat(64))}, "stream": false}),
    )
    .await;
    assert_eq!(missing.status, 500);
    assert!(
        missing.json()["error"]
            .as_str()
            .unwrap()
            .ends_with("no such file or directory")
    );
}

async fn post_raw_blob_error(sim: &aiproxy_ollama_sim::OllamaSim) -> Value {
    send(sim, "POST", "/api/blobs/md5:abc", Some("x"))
        .await
        .json()
}

#[actix_rt::test]
async fn copy_and_delete_change_the_model_set() {
    let sim = start().await;
    let copied = post(
        &sim,
        "/api/copy",
        &json!({"source": "llama3.2", "destination": "llama-copy"}),
    )
    .await;
    assert_eq!((copied.status, copied.body.len()), (200, 0));
    assert!(
        tag_names(&sim)
            .await
            .contains(&"llama-copy:latest".to_owned())
    );
    let missing = post(
        &sim,
        "/api/copy",
        &json!({"source": "nope", "destination": "x"}),
    )
    .await;
    assert_eq!(
        (missing.status, missing.json()),
        (404, json!({"error": "model \"nope\" not found"}))
    );
    let bad = post(
        &sim,
        "/api/copy",
        &json!({"source": "llama3.2", "destination": "bad name!"}),
    )
    .await;
    assert_eq!(
        (bad.status, bad.json()),
        (
            400,
            json!({"error": "destination \"bad name!\" is invalid"})
        )
    );

    sim.control().set_loaded(&["llama3.2"]).unwrap();
    let deleted = send(
        &sim,
        "DELETE",
        "/api/delete",
        Some(r#"{"model":"llama3.2"}"#),
    )
    .await;
    assert_eq!((deleted.status, deleted.body.len()), (200, 0));
    assert!(
        !tag_names(&sim)
            .await
            .contains(&"llama3.2:latest".to_owned())
    );
    assert!(sim.control().loaded_models().is_empty());
    let chat = post(
        &sim,
        "/api/chat",
        &json!({"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(chat.status, 404);
    let again = send(
        &sim,
        "DELETE",
        "/api/delete",
        Some(r#"{"name":"llama3.2"}"#),
    )
    .await;
    assert_eq!(
        (again.status, again.json()),
        (404, json!({"error": "model 'llama3.2' not found"}))
    );
    let unnamed = send(&sim, "DELETE", "/api/delete", Some("{}")).await;
    assert_eq!(unnamed.json(), json!({"error": "model is required"}));
    let invalid = send(
        &sim,
        "DELETE",
        "/api/delete",
        Some(r#"{"model":"a/b/c/d"}"#),
    )
    .await;
    assert_eq!(
        invalid.json(),
        json!({"error": "name \"a/b/c/d\" is invalid"})
    );
    assert_eq!(post(&sim, "/api/delete", &json!({})).await.status, 405);
}
