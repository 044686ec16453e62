//! Finished streams give their connection back to the pool. Checked against a tiny actix-web
//! upstream that counts TCP connections (the simulator does not expose that), through a client
//! allowed one connection: each request waits until the previous one's connection is back in
//! the pool (reused) or closed (replaced), so no test has to guess how long that takes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix_web::{App, HttpResponse, HttpServer, web};
use aiproxy_ollama::{ChatRequest, OllamaClient, OllamaConfig};
use futures_util::StreamExt;

const LINES: &str = concat!(
    "{\"model\":\"m\",\"created_at\":\"2025-01-01T00:00:00Z\",\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"done\":false}\n",
    "{\"model\":\"m\",\"created_at\":\"2025-01-01T00:00:00Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":3,\"eval_count\":1}\n",
);

/// Sends both lines, then ends the body a moment later, as Ollama does (the `done` line and
/// the terminating chunk are separate writes; the pause makes sure the client sees them
/// apart, it is the upstream's behaviour under test, not a wait). Takes the request body because actix closes a
/// connection whose request body was left unread.
async fn chat(_request: web::Bytes) -> HttpResponse {
    let lines = futures_util::stream::once(async {
        Ok::<_, actix_web::Error>(bytes::Bytes::from_static(LINES.as_bytes()))
    });
    let late_end = futures_util::stream::once(async {
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        Ok::<_, actix_web::Error>(bytes::Bytes::new())
    });
    let body = lines.chain(late_end);
    HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .streaming(body)
}

/// Starts the upstream above, counting the TCP connections it accepts, and a client for it
/// with a pool of one connection.
fn counting_upstream() -> (OllamaClient, Arc<AtomicUsize>) {
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    let server = HttpServer::new(|| App::new().route("/api/chat", web::post().to(chat)))
        .on_connect(move |_, _| {
            counted.fetch_add(1, Ordering::SeqCst);
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .unwrap();
    let address = server.addrs()[0];
    actix_web::rt::spawn(server.run());
    let client = OllamaClient::new(&OllamaConfig {
        base_url: format!("http://{address}"),
        max_connections: 1,
        ..OllamaConfig::default()
    });
    (client, connections)
}

#[actix_web::test]
async fn finished_streams_give_their_connection_back_to_the_pool() {
    let (client, connections) = counting_upstream();
    let request = ChatRequest {
        model: "m".into(),
        ..ChatRequest::default()
    };
    for _ in 0..3 {
        let items: Vec<_> = client.chat_stream(&request).await.unwrap().collect().await;
        assert_eq!(items.len(), 2);
        assert!(items[1].as_ref().unwrap().done);
    }
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

#[actix_web::test]
async fn a_stream_released_after_done_gives_its_connection_back_in_the_background() {
    let (client, connections) = counting_upstream();
    let request = ChatRequest {
        model: "m".into(),
        ..ChatRequest::default()
    };
    for _ in 0..3 {
        let mut stream = client.chat_stream(&request).await.unwrap();
        // Take items up to `done`, as the proxy does, and not a poll more.
        while let Some(item) = stream.next().await {
            if item.unwrap().done {
                break;
            }
        }
        // The body's end comes 30 ms after `done`; the background read takes it and puts
        // the connection back, which is what the next request waits for.
        stream.release();
    }
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

#[actix_web::test]
async fn a_stream_released_before_done_closes_its_connection() {
    let (client, connections) = counting_upstream();
    let request = ChatRequest {
        model: "m".into(),
        ..ChatRequest::default()
    };
    for _ in 0..2 {
        let mut stream = client.chat_stream(&request).await.unwrap();
        assert!(!stream.next().await.unwrap().unwrap().done);
        stream.release();
    }
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}
