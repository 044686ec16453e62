//! The floor of our HTTP stack: actix-web in front, awc behind, and nothing else.
//!
//! `POST /v1/chat/completions` forwards the request body unchanged to `$OLLAMA_BASE_URL/api/chat`
//! and streams Ollama's answer back unchanged: no auth, no limits, no translation, no
//! accounting. `scripts/bench.sh` measures it beside nginx and the real server, so what the
//! server's features cost can be told apart from what actix-web and awc cost by themselves.
//!
//! ```sh
//! OLLAMA_BASE_URL=http://127.0.0.1:11434 PORT=8001 cargo run --release -p proxy-server --example passthrough_floor
//! ```

use actix_web::{App, HttpResponse, HttpServer, web};

struct Upstream {
    client: awc::Client,
    chat_url: String,
}

async fn forward(upstream: web::Data<Upstream>, body: web::Bytes) -> HttpResponse {
    let sent = upstream
        .client
        .post(upstream.chat_url.as_str())
        .insert_header(("content-type", "application/json"))
        .send_body(body)
        .await;
    match sent {
        Ok(answer) => {
            let mut response = HttpResponse::build(answer.status());
            if let Some(kind) = answer.headers().get("content-type") {
                response.insert_header(("content-type", kind.clone()));
            }
            response.streaming(answer)
        }
        Err(err) => HttpResponse::BadGateway().body(err.to_string()),
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let base = std::env::var("OLLAMA_BASE_URL").unwrap_or_else(|_| "http://127.0.0.1:11434".into());
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|port| port.parse().ok())
        .unwrap_or(8001);
    let chat_url = format!("{}/api/chat", base.trim_end_matches('/'));
    // As many workers as the real server would start (`WORKERS`, else one per two cores), so
    // that the two differ by the server's features alone.
    let workers = proxy_server::Settings::from_env()
        .map_err(std::io::Error::other)?
        .worker_count();
    HttpServer::new(move || {
        let client = awc::Client::builder()
            .connector(awc::Connector::new().limit(256))
            .finish();
        App::new()
            .app_data(web::Data::new(Upstream {
                client,
                chat_url: chat_url.clone(),
            }))
            .route("/v1/chat/completions", web::post().to(forward))
    })
    // As the real server does (see its lib.rs): small final writes must not wait for an ACK.
    .on_connect(|connection, _| {
        if let Some(tcp) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
            let _ = tcp.set_nodelay(true);
        }
    })
    .workers(workers)
    .bind((host.as_str(), port))?
    .run()
    .await
}
