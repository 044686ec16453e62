//! Harness for the end-to-end tests: the real server on an ephemeral port, in front of the
//! Ollama simulator, with its own SQLite file in a temp dir; driven by a real HTTP client.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test harness: a failure here is a failed test"
)]
#![allow(
    missing_debug_implementations,
    reason = "test harness types hold clients and handles"
)]

use std::path::PathBuf;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::HeaderMap;
use aiproxy_ollama_sim::{OllamaSim, SimConfig};
use proxy_server::{Application, Settings};
use serde_json::{Value, json};

/// The admin key every test server uses.
pub const ADMIN_KEY: &str = "test-admin-key-0123456789";

/// A running proxy with its simulator and database.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    /// The simulator behind the proxy; use its control to inject faults.
    pub sim: OllamaSim,
    /// The SQLite file.
    pub db_path: PathBuf,
    /// Kept so the folder lives as long as the app.
    pub db_dir: tempfile::TempDir,
    /// The settings the server was started with.
    pub settings: Settings,
    handle: actix_web::dev::ServerHandle,
    stopped: Option<actix_web::rt::task::JoinHandle<std::io::Result<()>>>,
    client: awc::Client,
}

/// A response read whole.
#[derive(Debug)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body as JSON (`Value::Null` when it is not JSON).
    pub json: Value,
    /// Body as text.
    pub text: String,
}

impl Reply {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the body is an OpenAI error with this status and returns its `error` object.
    pub fn expect_error(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        let error = &self.json["error"];
        assert!(
            error["message"].is_string(),
            "no error.message in {}",
            self.text
        );
        assert!(error["type"].is_string(), "no error.type in {}", self.text);
        assert!(
            error.get("param").is_some(),
            "no error.param in {}",
            self.text
        );
        assert!(
            error.get("code").is_some(),
            "no error.code in {}",
            self.text
        );
        error
    }
}

impl TestApp {
    /// A proxy with default settings in front of a fresh simulator.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// A proxy whose settings `adjust` may change first.
    pub async fn spawn_with(adjust: impl FnOnce(&mut Settings)) -> Self {
        let sim = OllamaSim::start(SimConfig::default())
            .await
            .expect("start the simulator");
        let db_dir = tempfile::tempdir().unwrap();
        let db_path = db_dir.path().join("nested").join("proxy.db");
        let mut settings = Settings {
            ollama_base_url: sim.base_url(),
            admin_api_key: ADMIN_KEY.into(),
            host: "127.0.0.1".into(),
            port: 0,
            database_path: db_path.clone(),
            workers: 2,
            shutdown_grace_secs: 5,
            ..Settings::default()
        };
        adjust(&mut settings);
        Self::start(sim, db_dir, db_path, settings)
    }

    fn start(
        sim: OllamaSim,
        db_dir: tempfile::TempDir,
        db_path: PathBuf,
        settings: Settings,
    ) -> Self {
        init_test_tracing();
        let app = Application::build(settings.clone()).expect("build the application");
        let base_url = format!("http://{}", app.address());
        let handle = app.handle();
        let stopped = actix_web::rt::spawn(app.run_until_stopped());
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(60))
            .finish();
        Self {
            base_url,
            sim,
            db_path,
            db_dir,
            settings,
            handle,
            stopped: Some(stopped),
            client,
        }
    }

    /// Stops the server gracefully (usage flushed), then starts a new one on the same
    /// database and simulator, as a restart would.
    pub async fn restart(mut self) -> Self {
        self.stop_server().await;
        let mut settings = self.settings.clone();
        settings.port = 0;
        let Self {
            sim,
            db_dir,
            db_path,
            ..
        } = self;
        Self::start(sim, db_dir, db_path, settings)
    }

    /// Stops the server and waits until its usage writer has committed everything.
    pub async fn stop_server(&mut self) {
        self.handle.stop(true).await;
        if let Some(stopped) = self.stopped.take() {
            stopped.await.unwrap().unwrap();
        }
    }

    /// The URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// A request builder with an optional bearer key.
    pub fn request(
        &self,
        method: actix_web::http::Method,
        path: &str,
        key: Option<&str>,
    ) -> awc::ClientRequest {
        let mut request = self.client.request(method, self.url(path));
        if let Some(key) = key {
            request = request.insert_header(("Authorization", format!("Bearer {key}")));
        }
        request
    }

    /// Sends and reads the whole reply.
    pub async fn send(&self, request: awc::ClientRequest, body: Option<&[u8]>) -> Reply {
        let request = request.insert_header(("Content-Type", "application/json"));
        let mut response = match body {
            Some(body) => request.send_body(body.to_vec()).await.unwrap(),
            None => request.send().await.unwrap(),
        };
        let bytes = response.body().limit(64 * 1024 * 1024).await.unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Reply {
            status: response.status(),
            headers: response.headers().clone(),
            json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            text,
        }
    }

    /// GET with a key.
    pub async fn get(&self, path: &str, key: Option<&str>) -> Reply {
        self.send(self.request(actix_web::http::Method::GET, path, key), None)
            .await
    }

    /// POST JSON with a key.
    pub async fn post(&self, path: &str, key: Option<&str>, body: &Value) -> Reply {
        let bytes = serde_json::to_vec(body).unwrap();
        self.send(
            self.request(actix_web::http::Method::POST, path, key),
            Some(&bytes),
        )
        .await
    }

    /// PUT JSON with a key.
    pub async fn put(&self, path: &str, key: Option<&str>, body: &Value) -> Reply {
        let bytes = serde_json::to_vec(body).unwrap();
        self.send(
            self.request(actix_web::http::Method::PUT, path, key),
            Some(&bytes),
        )
        .await
    }

    /// PATCH JSON with a key.
    pub async fn patch(&self, path: &str, key: Option<&str>, body: &Value) -> Reply {
        let bytes = serde_json::to_vec(body).unwrap();
        self.send(
            self.request(actix_web::http::Method::PATCH, path, key),
            Some(&bytes),
        )
        .await
    }

    /// DELETE with a key.
    pub async fn delete(&self, path: &str, key: Option<&str>) -> Reply {
        self.send(
            self.request(actix_web::http::Method::DELETE, path, key),
            None,
        )
        .await
    }

    /// Creates a user through the admin API and returns its key.
    pub async fn create_user(&self, user_id: &str) -> String {
        self.create_user_with(json!({ "user_id": user_id })).await
    }

    /// Creates a user from a full request body and returns its key.
    pub async fn create_user_with(&self, body: Value) -> String {
        let reply = self.post("/admin/users", Some(ADMIN_KEY), &body).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        reply.json["api_key"].as_str().unwrap().to_owned()
    }

    /// A non-streaming chat request.
    pub async fn chat(&self, key: &str, body: &Value) -> Reply {
        self.post("/v1/chat/completions", Some(key), body).await
    }

    /// A streaming chat request; the reply's text is the raw SSE.
    pub async fn chat_stream(&self, key: &str, body: &Value) -> Reply {
        let mut body = body.clone();
        body["stream"] = json!(true);
        self.post("/v1/chat/completions", Some(key), &body).await
    }

    /// The user's usage through the admin API.
    pub async fn usage_of(&self, user_id: &str) -> Value {
        let reply = self
            .get(&format!("/admin/users/{user_id}/usage"), Some(ADMIN_KEY))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        reply.json
    }

    /// Polls `check` until it returns true or ten seconds pass.
    pub async fn eventually(&self, what: &str, mut check: impl AsyncFnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if check().await {
                return;
            }
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("timed out waiting for: {what}");
    }
}

/// The `data:` payloads of an SSE body, in order (`[DONE]` included as a string).
pub fn sse_events(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .map(|data| serde_json::from_str(data).unwrap_or_else(|_| Value::String(data.to_owned())))
        .collect()
}

/// A chat body with one user message.
pub fn chat_body(model: &str, text: &str) -> Value {
    json!({ "model": model, "messages": [{ "role": "user", "content": text }] })
}

fn init_test_tracing() {
    if std::env::var_os("TEST_LOG").is_some() {
        proxy_server::init_tracing("text");
    }
}

/// A streaming response read event by event.
pub struct SseReader {
    response: awc::ClientResponse,
    buffer: Vec<u8>,
}

impl SseReader {
    /// The response status.
    pub fn status(&self) -> StatusCode {
        self.response.status()
    }

    /// The next `data:` payload, or `None` at the end of the body.
    pub async fn next_event(&mut self) -> Option<Value> {
        use futures_util::StreamExt as _;
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let event: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let text = String::from_utf8_lossy(&event[..end]).into_owned();
                if let Some(data) = text.strip_prefix("data: ") {
                    return Some(
                        serde_json::from_str(data).unwrap_or(Value::String(data.to_owned())),
                    );
                }
                continue;
            }
            match self.response.next().await {
                Some(Ok(chunk)) => self.buffer.extend_from_slice(&chunk),
                Some(Err(err)) => panic!("stream failed: {err}"),
                None => return None,
            }
        }
    }
}

impl TestApp {
    /// Opens a streaming chat request and returns a reader positioned before the first event.
    pub async fn open_stream(&self, key: &str, body: &Value) -> SseReader {
        let mut body = body.clone();
        body["stream"] = json!(true);
        let response = self
            .request(
                actix_web::http::Method::POST,
                "/v1/chat/completions",
                Some(key),
            )
            .insert_header(("Content-Type", "application/json"))
            .send_body(serde_json::to_vec(&body).unwrap())
            .await
            .unwrap();
        SseReader {
            response,
            buffer: Vec::new(),
        }
    }
}
