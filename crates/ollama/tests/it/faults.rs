//! The simulator's injected faults, and the error each one must become.

use std::time::Duration;

use aiproxy_ollama::{EmbedRequest, OllamaConfig, OllamaError, TimeoutPhase};
use aiproxy_ollama_sim::{MODEL_ERROR_MESSAGE, SERVER_BUSY_MESSAGE};
use futures_util::StreamExt;
use serde_json::json;

use crate::sim::{chat_request, eventually, generate_request, start, start_with};

#[actix_web::test]
async fn an_unknown_model_is_model_not_found_on_every_model_endpoint() {
    let (_sim, client) = start().await;
    let request = chat_request("no-such-model", "Hi");
    let expect_not_found = |error: OllamaError| match error {
        OllamaError::ModelNotFound { model, message } => {
            assert_eq!(model, "no-such-model");
            assert!(message.contains("not found"), "{message}");
        }
        other => panic!("expected ModelNotFound, got {other:?}"),
    };
    expect_not_found(client.chat(&request).await.unwrap_err());
    expect_not_found(client.chat_stream(&request).await.unwrap_err());
    expect_not_found(
        client
            .generate(&generate_request("no-such-model", "Hi"))
            .await
            .unwrap_err(),
    );
    expect_not_found(client.show("no-such-model").await.unwrap_err());
    let embed = EmbedRequest {
        model: "no-such-model".into(),
        input: json!("x"),
        ..EmbedRequest::default()
    };
    expect_not_found(client.embed(&embed).await.unwrap_err());
}

#[actix_web::test]
async fn a_500_is_a_status_error() {
    let (sim, client) = start().await;
    sim.control().fail_with(500, "model list cache unavailable");
    let request = chat_request("llama3.2", "Hi");
    for error in [
        client.chat(&request).await.unwrap_err(),
        client.chat_stream(&request).await.unwrap_err(),
    ] {
        assert_eq!(
            error,
            OllamaError::Status {
                status: 500,
                message: "model list cache unavailable".into()
            }
        );
        assert_eq!(error.status(), Some(500));
    }
}

#[actix_web::test]
async fn a_503_is_busy() {
    let (sim, client) = start().await;
    sim.control().fail_with(503, SERVER_BUSY_MESSAGE);
    let error = client
        .chat_stream(&chat_request("llama3.2", "Hi"))
        .await
        .unwrap_err();
    assert_eq!(
        error,
        OllamaError::Busy {
            message: SERVER_BUSY_MESSAGE.into()
        }
    );
}

#[actix_web::test]
async fn an_error_line_mid_stream_is_a_stream_error_and_ends_the_stream() {
    let (sim, client) = start().await;
    sim.control().set_error_after_tokens(Some(2));
    let items: Vec<_> = client
        .chat_stream(&chat_request("llama3.2", "one two three four"))
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(items.len(), 3, "{items:?}");
    assert!(items[..2].iter().all(Result::is_ok));
    assert_eq!(
        items[2],
        Err(OllamaError::Stream {
            message: MODEL_ERROR_MESSAGE.into()
        })
    );
}

#[actix_web::test]
async fn an_abrupt_close_is_interrupted() {
    let (sim, client) = start().await;
    sim.control().set_close_after_tokens(Some(2));
    let request = chat_request("llama3.2", "one two three four");
    let items: Vec<_> = client.chat_stream(&request).await.unwrap().collect().await;
    let (last, before) = items.split_last().unwrap();
    assert!(before.iter().all(Result::is_ok), "{items:?}");
    assert!(
        matches!(last, Err(OllamaError::Interrupted { .. })),
        "{last:?}"
    );

    // Without streaming the head promises a length the body never reaches.
    let error = client.chat(&request).await.unwrap_err();
    assert!(
        matches!(error, OllamaError::Interrupted { .. }),
        "{error:?}"
    );
}

#[actix_web::test]
async fn a_malformed_line_is_reported_and_the_stream_carries_on() {
    let (sim, client) = start().await;
    sim.control().set_malformed_after_tokens(Some(1));
    let request = chat_request("llama3.2", "one two three");
    let items: Vec<_> = client.chat_stream(&request).await.unwrap().collect().await;
    let n_invalid = items
        .iter()
        .filter(|item| matches!(item, Err(OllamaError::InvalidResponse { .. })))
        .count();
    assert_eq!(n_invalid, 1, "{items:?}");
    assert!(items.last().unwrap().as_ref().unwrap().done);

    let error = client.chat(&request).await.unwrap_err();
    assert!(
        matches!(error, OllamaError::InvalidResponse { .. }),
        "{error:?}"
    );
}

#[actix_web::test]
async fn a_stalled_stream_times_out_as_idle() {
    let (sim, client) = start_with(OllamaConfig {
        idle_timeout: Duration::from_millis(200),
        ..OllamaConfig::default()
    })
    .await;
    sim.control().set_stall_after_tokens(Some(2));
    let items: Vec<_> = client
        .chat_stream(&chat_request("llama3.2", "one two three"))
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(items.len(), 3, "{items:?}");
    assert_eq!(
        items[2],
        Err(OllamaError::Timeout {
            phase: TimeoutPhase::Idle
        })
    );
}

#[actix_web::test]
async fn a_hanging_server_is_a_response_timeout() {
    let (sim, client) = start_with(OllamaConfig {
        response_timeout: Duration::from_millis(200),
        ..OllamaConfig::default()
    })
    .await;
    sim.control().set_hang(true);
    let expected = OllamaError::Timeout {
        phase: TimeoutPhase::Response,
    };
    let request = chat_request("llama3.2", "Hi");
    assert_eq!(client.chat(&request).await.unwrap_err(), expected);
    assert_eq!(client.chat_stream(&request).await.unwrap_err(), expected);
}

#[actix_web::test]
async fn dropping_a_stream_early_aborts_it_upstream() {
    let (sim, client) = start().await;
    sim.control().set_token_delay(Duration::from_millis(20));
    let mut stream = client
        .chat_stream(&chat_request(
            "llama3.2",
            "a long answer with many many words",
        ))
        .await
        .unwrap();
    assert!(stream.next().await.unwrap().is_ok());
    assert_eq!(sim.control().stats().streams_aborted_by_client, 0);
    drop(stream);
    assert!(
        eventually(|| sim.control().stats().streams_aborted_by_client == 1).await,
        "{:?}",
        sim.control().stats()
    );
    assert_eq!(sim.control().stats().streams_completed, 0);
}

#[actix_web::test]
async fn a_stream_read_to_the_end_completes_upstream() {
    let (sim, client) = start().await;
    let items: Vec<_> = client
        .chat_stream(&chat_request("llama3.2", "Hi there"))
        .await
        .unwrap()
        .collect()
        .await;
    assert!(items.iter().all(Result::is_ok));
    assert!(eventually(|| sim.control().stats().streams_completed == 1).await);
    assert_eq!(sim.control().stats().streams_aborted_by_client, 0);
}
