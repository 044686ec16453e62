//! The load tester against the real proxy, in-process, in front of the Ollama simulator.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failure here is a failed test"
)]

use std::time::Duration;

use aiproxy_ollama_sim::{OllamaSim, SimConfig, SimEndpoint};
use proxy_loadtest::{Config, Report, Stop, run};
use proxy_server::{Application, Settings};
use serde_json::{Value, json};

const ADMIN_KEY: &str = "loadtest-admin-key-0123456789";

/// The proxy on an ephemeral port with its own database, in front of a fresh simulator.
struct Stack {
    base_url: String,
    sim: OllamaSim,
    handle: actix_web::dev::ServerHandle,
    _db_dir: tempfile::TempDir,
}

impl Stack {
    async fn start() -> Self {
        let sim = OllamaSim::start(SimConfig::default()).await.unwrap();
        let db_dir = tempfile::tempdir().unwrap();
        let settings = Settings {
            ollama_base_url: sim.base_url(),
            admin_api_key: ADMIN_KEY.into(),
            host: "127.0.0.1".into(),
            port: 0,
            database_path: db_dir.path().join("proxy.db"),
            workers: 2,
            shutdown_grace_secs: 5,
            ..Settings::default()
        };
        let app = Application::build(settings).unwrap();
        let base_url = format!("http://{}", app.address());
        let handle = app.handle();
        actix_web::rt::spawn(app.run_until_stopped());
        Self {
            base_url,
            sim,
            handle,
            _db_dir: db_dir,
        }
    }

    /// Creates a user through the admin API, as an operator would, and returns its key. The
    /// user has no request or token limits, so a load test is never cut short by a 429.
    async fn create_user(&self, user_id: &str) -> String {
        let unlimited = json!({
            "requests_per_minute": null, "requests_per_day": null,
            "tokens_per_minute": null, "tokens_per_day": null,
        });
        let mut response = awc::Client::default()
            .post(format!("{}/admin/users", self.base_url))
            .insert_header(("Authorization", format!("Bearer {ADMIN_KEY}")))
            .send_json(&json!({ "user_id": user_id, "limits": unlimited }))
            .await
            .unwrap();
        let body: Value = response.json().await.unwrap();
        assert_eq!(response.status().as_u16(), 201, "{body}");
        body["api_key"].as_str().unwrap().to_owned()
    }

    fn config(&self, key: &str, stream: bool) -> Config {
        let mut config = Config::new(&self.base_url, key);
        config.stream = stream;
        config.stop = Stop::Requests(40);
        config.concurrency = 8;
        config.max_tokens = Some(32);
        config.prompt = "count the words in this sentence please".into();
        config
    }

    async fn stop(self) {
        self.handle.stop(false).await;
        self.sim.stop().await;
    }
}

/// Runs the tool off the test's runtime thread, since [`run`] blocks until it is done.
async fn load(config: Config) -> Report {
    actix_web::rt::task::spawn_blocking(move || run(&config))
        .await
        .unwrap()
        .unwrap()
}

fn assert_sane_percentiles(report: &Report) {
    let latency = report.latency.expect("latency percentiles");
    assert!(latency.p50_us > 0, "{report:?}");
    assert!(latency.p50_us <= latency.p90_us, "{report:?}");
    assert!(latency.p90_us <= latency.p99_us, "{report:?}");
    assert!(latency.p99_us <= latency.max_us, "{report:?}");
}

#[actix_web::test]
async fn forty_plain_requests_all_succeed_with_tokens_counted() {
    let stack = Stack::start().await;
    let key = stack.create_user("plain").await;

    let report = load(stack.config(&key, false)).await;

    assert_eq!(report.requests, 40, "{}", report.to_table());
    assert_eq!(report.successes, 40, "{}", report.to_table());
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_sane_percentiles(&report);
    assert_eq!(report.first_token, None, "no TTFT without streaming");
    // The simulator echoes the 7-word prompt after `Echo:`: 8 tokens per answer.
    assert_eq!(report.completion_tokens, 40 * 8);
    assert!(report.tokens_per_sec > 0.0);
    assert!(report.requests_per_sec > 0.0);
    assert_eq!(report.successes_without_usage, 0);
    assert_eq!(
        stack.sim.control().stats().requests_to(SimEndpoint::Chat),
        40
    );
    stack.stop().await;
}

#[actix_web::test]
async fn forty_streams_over_two_threads_report_time_to_first_token() {
    let stack = Stack::start().await;
    let key = stack.create_user("streamer").await;
    let mut config = stack.config(&key, true);
    config.threads = 2;

    let report = load(config).await;

    assert_eq!(report.successes, 40, "{}", report.to_table());
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_sane_percentiles(&report);
    let ttft = report.first_token.expect("TTFT percentiles for streams");
    assert!(ttft.p50_us <= ttft.p90_us && ttft.p90_us <= ttft.p99_us);
    assert!(
        ttft.max_us <= report.latency.unwrap().max_us,
        "the first token cannot come after the whole answer"
    );
    assert_eq!(
        report.completion_tokens,
        40 * 8,
        "from the final usage chunks"
    );
    assert!(report.tokens_per_sec > 0.0);
    // The simulator saw streaming requests with the budget the tool asked for.
    let last = stack.sim.control().last_request(SimEndpoint::Chat).unwrap();
    assert_eq!(last["stream"], true, "{last}");
    assert_eq!(last["options"]["num_predict"], 32, "{last}");
    assert_eq!(
        stack.sim.control().stats().requests_to(SimEndpoint::Chat),
        40
    );
    stack.stop().await;
}

#[actix_web::test]
async fn a_wrong_key_is_reported_as_401s() {
    let stack = Stack::start().await;
    stack.create_user("someone").await;

    for stream in [false, true] {
        let report = load(stack.config("sk-not-a-real-key", stream)).await;
        assert_eq!(report.successes, 0);
        assert_eq!(report.failures, 40);
        assert_eq!(
            report.errors.into_iter().collect::<Vec<_>>(),
            [("http_401".to_owned(), 40)]
        );
        assert_eq!(report.latency, None);
        assert_eq!(report.completion_tokens, 0);
    }
    assert_eq!(
        stack.sim.control().stats().requests_to(SimEndpoint::Chat),
        0
    );
    stack.stop().await;
}

#[actix_web::test]
async fn an_error_event_mid_stream_is_counted_by_its_code() {
    let stack = Stack::start().await;
    let key = stack.create_user("unlucky").await;
    stack.sim.control().set_error_after_tokens(Some(2));
    let mut config = stack.config(&key, true);
    config.stop = Stop::Requests(6);
    config.concurrency = 3;

    let report = load(config).await;

    assert_eq!(report.failures, 6, "{}", report.to_table());
    let kinds: Vec<&String> = report.errors.keys().collect();
    assert_eq!(kinds.len(), 1, "{kinds:?}");
    assert!(kinds[0].starts_with("sse_error:"), "{kinds:?}");
    stack.stop().await;
}

#[actix_web::test]
async fn a_hung_upstream_is_reported_as_timeouts() {
    let stack = Stack::start().await;
    let key = stack.create_user("patient").await;
    stack.sim.control().set_hang(true);
    let mut config = stack.config(&key, false);
    config.stop = Stop::Requests(4);
    config.concurrency = 2;
    config.timeout = Duration::from_millis(300);

    let report = load(config).await;

    assert_eq!(
        report.errors.into_iter().collect::<Vec<_>>(),
        [("timeout".to_owned(), 4)]
    );
    stack.sim.control().set_hang(false);
    stack.stop().await;
}

#[actix_web::test]
async fn nothing_listening_is_a_connection_error_and_json_names_it() {
    // A port that was just free: bind, note it, release.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = Config::new(format!("http://127.0.0.1:{port}"), "sk-any");
    config.stop = Stop::Requests(3);
    config.concurrency = 1;

    let report = load(config).await;

    let json = report.to_json();
    assert_eq!(json["errors"], json!({ "connection": 3 }), "{json}");
    assert_eq!(json["successes"], 0);
    assert_eq!(json["latency_ms"], Value::Null);
}

#[actix_web::test]
async fn a_duration_run_stops_starting_requests_when_time_is_up() {
    let stack = Stack::start().await;
    let key = stack.create_user("timed").await;
    let mut config = stack.config(&key, true);
    config.stop = Stop::Duration(Duration::from_millis(300));
    config.concurrency = 2;

    let report = load(config).await;

    assert!(report.successes > 0, "{}", report.to_table());
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(
        stack.sim.control().stats().requests_to(SimEndpoint::Chat),
        report.requests,
        "every request started was answered and counted"
    );
    stack.stop().await;
}
