//! Failures below HTTP: nobody listening, and a server that accepts but never answers.

use std::time::Duration;

use aiproxy_ollama::{OllamaClient, OllamaConfig, OllamaError, TimeoutPhase};
use tokio::io::AsyncReadExt;

fn client_for(base_url: String) -> OllamaClient {
    OllamaClient::new(&OllamaConfig {
        base_url,
        response_timeout: Duration::from_millis(300),
        ..OllamaConfig::default()
    })
}

#[actix_web::test]
async fn nobody_listening_is_a_connect_error() {
    // Bind to learn a free port, then free it again so connecting is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = client_for(format!("http://127.0.0.1:{port}/"));
    assert_eq!(client.base_url(), format!("http://127.0.0.1:{port}"));
    let error = client.version().await.unwrap_err();
    assert!(matches!(error, OllamaError::Connect { .. }), "{error:?}");
    assert_eq!(error.status(), None);
}

#[actix_web::test]
async fn a_server_that_never_answers_is_a_response_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    actix_web::rt::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            // Read the request so the client is not blocked writing it, then say nothing.
            let mut buffer = [0u8; 4096];
            let _ = socket.read(&mut buffer).await;
            held.push(socket);
        }
    });
    let client = client_for(format!("http://{address}"));
    let error = client.tags().await.unwrap_err();
    assert_eq!(
        error,
        OllamaError::Timeout {
            phase: TimeoutPhase::Response
        }
    );
}

#[actix_web::test]
async fn an_unusable_base_url_is_a_connect_error_not_a_panic() {
    let client = client_for("not a url".to_owned());
    let error = client.version().await.unwrap_err();
    assert!(matches!(error, OllamaError::Connect { .. }), "{error:?}");
}

#[actix_web::test]
async fn dropping_a_stream_closes_the_socket_at_once() {
    use tokio::io::AsyncWriteExt;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
    actix_web::rt::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buffer = [0u8; 4096];
        let _ = socket.read(&mut buffer).await.unwrap();
        let line = "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"done\":false}\n";
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n";
        let chunk = format!("{head}{:x}\r\n{line}\r\n", line.len());
        socket.write_all(chunk.as_bytes()).await.unwrap();
        // The stream never ends from this side; only the client closing ends this read.
        let n_read = socket.read(&mut buffer).await.unwrap_or(0);
        let _ = closed_tx.send(n_read);
    });

    let client = client_for(format!("http://{address}"));
    let request = aiproxy_ollama::ChatRequest {
        model: "m".into(),
        ..Default::default()
    };
    let mut stream = client.chat_stream(&request).await.unwrap();
    let first = futures_util::StreamExt::next(&mut stream)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.message.unwrap().content, "Hi");
    drop(stream);
    let n_read = tokio::time::timeout(Duration::from_secs(10), closed_rx)
        .await
        .expect("the client did not close the connection")
        .unwrap();
    assert_eq!(n_read, 0, "end of file: the client closed the socket");
}

/// Answers the first request on a fresh socket with `response`, then closes the socket.
async fn serve_once(response: &'static str) -> String {
    use tokio::io::AsyncWriteExt;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    actix_web::rt::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buffer = [0u8; 4096];
        let _ = socket.read(&mut buffer).await.unwrap();
        socket.write_all(response.as_bytes()).await.unwrap();
    });
    format!("http://{address}")
}

#[actix_web::test]
async fn a_chunked_body_cut_off_mid_json_is_interrupted() {
    let base_url = serve_once(concat!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n",
        "Transfer-Encoding: chunked\r\n\r\n",
        "10\r\n{\"version\":\"0.33\r\n",
    ))
    .await;
    let error = client_for(base_url).version().await.unwrap_err();
    assert!(
        matches!(error, OllamaError::Interrupted { .. }),
        "{error:?}"
    );
}

#[actix_web::test]
async fn a_complete_body_that_is_not_the_expected_json_is_invalid() {
    let base_url = serve_once(concat!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 15\r\n\r\n",
        "<html>hi</html>",
    ))
    .await;
    let error = client_for(base_url).version().await.unwrap_err();
    assert!(
        matches!(error, OllamaError::InvalidResponse { .. }),
        "{error:?}"
    );
}

#[actix_web::test]
async fn a_plain_text_error_page_keeps_its_text() {
    let base_url = serve_once(concat!(
        "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\n",
        "bad gateway\n",
    ))
    .await;
    let error = client_for(base_url).tags().await.unwrap_err();
    assert_eq!(
        error,
        OllamaError::Status {
            status: 502,
            message: "bad gateway".into()
        }
    );
}

/// Answers one request with a chunked body written in `pieces`, a pause between them so they
/// arrive as separate reads, and hands back the request's head and body as text.
async fn serve_in_pieces(
    pieces: &'static [&'static str],
) -> (String, tokio::sync::oneshot::Receiver<String>) {
    use tokio::io::AsyncWriteExt;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (seen_tx, seen_rx) = tokio::sync::oneshot::channel();
    actix_web::rt::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buffer = [0u8; 4096];
        // The head and the whole JSON body (it ends with `}`).
        while !request.ends_with(b"}") {
            let n = socket.read(&mut buffer).await.unwrap();
            assert!(n > 0, "the client closed before sending its body");
            request.extend_from_slice(&buffer[..n]);
        }
        let _ = seen_tx.send(String::from_utf8(request).unwrap());
        socket
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        for piece in pieces {
            let chunk = format!("{:x}\r\n{piece}\r\n", piece.len());
            socket.write_all(chunk.as_bytes()).await.unwrap();
            socket.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        socket.write_all(b"0\r\n\r\n").await.unwrap();
    });
    (format!("http://{address}"), seen_rx)
}

#[actix_web::test]
async fn a_request_names_its_host_and_json_and_a_body_in_pieces_is_read_whole() {
    let (base_url, seen) = serve_in_pieces(&[
        r#"{"model":"llama3.2","created_at":"2025-01-01T00:00:00Z","#,
        r#""message":{"role":"assistant","content":"Hello"},"#,
        r#""done":true,"done_reason":"stop","prompt_eval_count":3,"eval_count":1}"#,
    ])
    .await;
    let port = base_url.rsplit(':').next().unwrap().to_owned();
    let request = aiproxy_ollama::ChatRequest {
        model: "llama3.2".into(),
        messages: vec![aiproxy_ollama::Message {
            role: "user".into(),
            content: "Hi".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let answer = client_for(base_url).chat(&request).await.unwrap();
    assert_eq!(answer.message.unwrap().content, "Hello");
    assert_eq!(answer.eval_count, Some(1));

    let seen = seen.await.unwrap().to_ascii_lowercase();
    assert!(seen.starts_with("post /api/chat http/1.1\r\n"), "{seen}");
    assert!(
        seen.contains(&format!("\r\nhost: 127.0.0.1:{port}\r\n")),
        "{seen}"
    );
    assert!(
        seen.contains("\r\ncontent-type: application/json\r\n"),
        "{seen}"
    );
    let body = &seen[seen.find("\r\n\r\n").unwrap() + 4..];
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["stream"], false);
    assert_eq!(body["messages"][0]["content"], "hi", "(lower-cased above)");
}

#[actix_web::test]
async fn configured_headers_go_with_every_request() {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (heads, mut received) = tokio::sync::mpsc::unbounded_channel();
    actix_web::rt::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buffer = vec![0u8; 4096];
            let read = socket.read(&mut buffer).await.unwrap();
            heads
                .send(String::from_utf8_lossy(&buffer[..read]).to_lowercase())
                .unwrap();
            let body = r#"{"version":"0.33.0"}"#;
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(answer.as_bytes()).await.unwrap();
        }
    });
    let client = OllamaClient::new(&OllamaConfig {
        base_url: format!("http://{address}"),
        headers: vec![
            ("Authorization".into(), "Bearer gateway-token".into()),
            ("X-Team".into(), "ml".into()),
        ],
        ..OllamaConfig::default()
    });
    assert_eq!(client.version().await.unwrap().version, "0.33.0");
    let head = received.recv().await.unwrap();
    assert!(
        head.contains("authorization: bearer gateway-token\r\n"),
        "{head}"
    );
    assert!(head.contains("x-team: ml\r\n"), "{head}");
}

#[actix_web::test]
async fn an_invalid_configured_header_fails_every_call_instead_of_dropping_it() {
    let client = OllamaClient::new(&OllamaConfig {
        base_url: "http://127.0.0.1:9".into(),
        headers: vec![("Authorization".into(), "Bearer bad\nvalue".into())],
        ..OllamaConfig::default()
    });
    let error = client.version().await.unwrap_err();
    assert!(
        matches!(&error, OllamaError::Connect { message } if message.contains("Authorization") && !message.contains("bad")),
        "{error:?}"
    );
}
