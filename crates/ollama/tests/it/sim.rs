//! Shared set-up for the tests against the simulator.

use std::time::Duration;

use aiproxy_ollama::{ChatRequest, GenerateRequest, Message, OllamaClient, OllamaConfig};
use aiproxy_ollama_sim::{OllamaSim, SimConfig};

/// A simulator on a free port, and a client pointed at it.
pub async fn start() -> (OllamaSim, OllamaClient) {
    start_with(OllamaConfig::default()).await
}

/// Like [`start`], with the client's timeouts taken from `config` (its base URL is replaced).
pub async fn start_with(config: OllamaConfig) -> (OllamaSim, OllamaClient) {
    let sim = OllamaSim::start(SimConfig::default()).await.unwrap();
    let client = OllamaClient::new(&OllamaConfig {
        // The trailing slash must be tolerated.
        base_url: format!("{}/", sim.base_url()),
        ..config
    });
    (sim, client)
}

pub fn user(content: &str) -> Message {
    Message {
        role: "user".into(),
        content: content.into(),
        ..Message::default()
    }
}

pub fn chat_request(model: &str, content: &str) -> ChatRequest {
    ChatRequest {
        model: model.into(),
        messages: vec![user(content)],
        ..ChatRequest::default()
    }
}

pub fn generate_request(model: &str, prompt: &str) -> GenerateRequest {
    GenerateRequest {
        model: model.into(),
        prompt: prompt.into(),
        ..GenerateRequest::default()
    }
}

/// Polls `condition` until it holds or a generous deadline passes; the simulator's counters
/// move a moment after the client sees the effect.
pub async fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    condition()
}
