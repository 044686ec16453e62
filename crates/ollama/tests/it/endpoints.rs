//! Every endpoint against the simulator, on the happy path.

use aiproxy_ollama::{ChatResponse, EmbedRequest, OllamaError};
use aiproxy_ollama_sim::SimEndpoint;
use futures_util::StreamExt;
use serde_json::{Map, json};

use crate::sim::{chat_request, generate_request, start};

#[actix_web::test]
async fn chat_answers_in_one_object_and_sends_stream_false() {
    let (sim, client) = start().await;
    let mut request = chat_request("llama3.2", "Why is the sky blue?");
    request.stream = Some(true); // overridden by `chat`
    let mut options = Map::new();
    options.insert("temperature".into(), json!(0.2));
    options.insert("seed".into(), json!(42));
    request.options = Some(options);

    let response = client.chat(&request).await.unwrap();
    let message = response.message.unwrap();
    assert_eq!(message.role, "assistant");
    assert_eq!(message.content, "Echo: Why is the sky blue?");
    assert!(response.done);
    assert_eq!(response.done_reason.as_deref(), Some("stop"));
    assert_eq!(response.prompt_eval_count, Some(1 + 5));
    assert_eq!(response.eval_count, Some(6));
    assert!(response.total_duration.is_some());

    let sent = sim.control().last_request(SimEndpoint::Chat).unwrap();
    assert_eq!(sent["stream"], json!(false));
    assert_eq!(sent["options"], json!({"temperature": 0.2, "seed": 42}));
    assert_eq!(sent["model"], json!("llama3.2"));
}

#[actix_web::test]
async fn chat_stream_yields_one_line_per_word_and_a_final_line() {
    let (sim, client) = start().await;
    let request = chat_request("llama3.2", "Count from 1 to 5");
    let lines: Vec<ChatResponse> = client
        .chat_stream(&request)
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;

    let (last, deltas) = lines.split_last().unwrap();
    let text: String = deltas
        .iter()
        .map(|line| line.message.as_ref().unwrap().content.as_str())
        .collect();
    assert_eq!(text, "Echo: Count from 1 to 5");
    assert!(deltas.iter().all(|line| !line.done));
    assert!(last.done);
    assert_eq!(last.done_reason.as_deref(), Some("stop"));
    assert_eq!(last.eval_count, Some(deltas.len() as u64));
    assert_eq!(last.prompt_eval_count, Some(1 + 5));
    assert_eq!(
        sim.control().last_request(SimEndpoint::Chat).unwrap()["stream"],
        json!(true)
    );
    assert!(eventually_completed(&sim).await);
}

async fn eventually_completed(sim: &aiproxy_ollama_sim::OllamaSim) -> bool {
    crate::sim::eventually(|| sim.control().stats().streams_completed == 1).await
}

#[actix_web::test]
async fn num_predict_cuts_the_answer_with_done_reason_length() {
    let (_sim, client) = start().await;
    let mut request = chat_request("llama3.2", "one two three four five");
    request.options = Some(Map::from_iter([("num_predict".to_owned(), json!(2))]));

    let whole = client.chat(&request).await.unwrap();
    assert_eq!(whole.done_reason.as_deref(), Some("length"));
    assert_eq!(whole.eval_count, Some(2));
    assert_eq!(whole.message.unwrap().content, "Echo: one");

    let lines: Vec<_> = client.chat_stream(&request).await.unwrap().collect().await;
    let last = lines.last().unwrap().as_ref().unwrap();
    assert_eq!(last.done_reason.as_deref(), Some("length"));
    assert_eq!(lines.len(), 3);
}

#[actix_web::test]
async fn a_tool_call_comes_back_with_object_arguments() {
    let (_sim, client) = start().await;
    let mut request = chat_request("llama3.2", "What is the weather in Tokyo?");
    request.tools = Some(vec![json!({
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the weather in a given city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "City"}},
                "required": ["city"]
            }
        }
    })]);

    let response = client.chat(&request).await.unwrap();
    let message = response.message.unwrap();
    assert_eq!(message.content, "");
    let call = &message.tool_calls.unwrap()[0];
    assert!(call.id.as_deref().unwrap().starts_with("call_"));
    assert_eq!(call.function.index, Some(0));
    assert_eq!(call.function.name, "get_weather");
    assert_eq!(call.function.arguments, json!({"city": "Tokyo"}));

    let lines: Vec<_> = client.chat_stream(&request).await.unwrap().collect().await;
    let streamed_calls: Vec<_> = lines
        .iter()
        .filter_map(|line| line.as_ref().unwrap().message.as_ref()?.tool_calls.clone())
        .flatten()
        .collect();
    assert_eq!(streamed_calls.len(), 1);
    assert_eq!(
        streamed_calls[0].function.arguments,
        json!({"city": "Tokyo"})
    );
    assert!(lines.last().unwrap().as_ref().unwrap().done);
}

#[actix_web::test]
async fn generate_answers_whole_and_streamed() {
    let (sim, client) = start().await;
    let mut request = generate_request("llama3.2", "Hello, how are you?");
    request.system = Some("Be terse.".into());

    let whole = client.generate(&request).await.unwrap();
    assert_eq!(whole.response, "Echo: Hello, how are you?");
    assert!(whole.done && whole.context.is_some());
    assert_eq!(whole.prompt_eval_count, Some((1 + 4) + (1 + 2)));
    assert_eq!(
        sim.control().last_request(SimEndpoint::Generate).unwrap()["stream"],
        json!(false)
    );

    let lines: Vec<_> = client
        .generate_stream(&request)
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    let text: String = lines.iter().map(|line| line.response.as_str()).collect();
    assert_eq!(text, whole.response);
    let last = lines.last().unwrap();
    assert!(last.done && last.eval_count == whole.eval_count);
    assert_eq!(
        sim.control().last_request(SimEndpoint::Generate).unwrap()["stream"],
        json!(true)
    );
}

#[actix_web::test]
async fn embed_returns_one_unit_vector_per_input() {
    let (_sim, client) = start().await;
    let request = EmbedRequest {
        model: "nomic-embed-text".into(),
        input: json!(["Why is the sky blue?", "Why is the grass green?"]),
        ..EmbedRequest::default()
    };
    let response = client.embed(&request).await.unwrap();
    assert_eq!(response.embeddings.len(), 2);
    for vector in &response.embeddings {
        assert_eq!(vector.len(), 768);
        let norm: f32 = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-3, "{norm}");
    }
    assert_eq!(
        response.embeddings[0],
        aiproxy_ollama_sim::embedding_vector("Why is the sky blue?", 768)
    );
    assert_eq!(response.prompt_eval_count, Some(5 + 5));

    let shortened = EmbedRequest {
        input: json!("one input"),
        dimensions: Some(64),
        ..request
    };
    assert_eq!(
        client.embed(&shortened).await.unwrap().embeddings[0].len(),
        64
    );
}

#[actix_web::test]
async fn tags_lists_the_installed_models() {
    let (_sim, client) = start().await;
    let tags = client.tags().await.unwrap();
    let names: Vec<_> = tags
        .models
        .iter()
        .map(|model| model.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "llama3.2:latest",
            "moondream:latest",
            "nomic-embed-text:latest"
        ]
    );
    let llama = &tags.models[0];
    assert!(llama.size.is_some() && llama.digest.is_some());
    assert!(llama.details.as_ref().unwrap().family.is_some());
}

#[actix_web::test]
async fn ps_lists_the_loaded_models() {
    let (sim, client) = start().await;
    assert!(client.ps().await.unwrap().models.is_empty());
    client.chat(&chat_request("llama3.2", "Hi")).await.unwrap();
    let ps = client.ps().await.unwrap();
    let names: Vec<_> = ps.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["llama3.2:latest"]);
    let loaded = &ps.models[0];
    assert!(loaded.expires_at.is_some());
    assert_eq!(loaded.context_length, Some(4096));
    assert_eq!(sim.control().stats().requests_to(SimEndpoint::Ps), 2);
}

#[actix_web::test]
async fn show_reports_capabilities() {
    let (_sim, client) = start().await;
    let show = client.show("moondream").await.unwrap();
    assert!(show.capabilities.unwrap().iter().any(|c| c == "vision"));
    assert!(show.details.is_some());
    let show = client.show("llama3.2").await.unwrap();
    assert!(!show.capabilities.unwrap().iter().any(|c| c == "vision"));
}

#[actix_web::test]
async fn version_is_reported() {
    let (_sim, client) = start().await;
    assert_eq!(client.version().await.unwrap().version, "0.33.0");
}

#[actix_web::test]
async fn a_request_ollama_rejects_is_a_status_error_with_its_message() {
    let (_sim, client) = start().await;
    let mut request = chat_request("moondream", "Hi");
    request.tools = Some(vec![json!({"type": "function", "function": {"name": "f"}})]);
    let error = client.chat(&request).await.unwrap_err();
    assert_eq!(
        error,
        OllamaError::Status {
            status: 400,
            message: "registry.ollama.ai/library/moondream:latest does not support tools".into()
        }
    );
}
