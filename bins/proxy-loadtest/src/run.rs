//! Generating the load: threads, each with its own actix system and share of the in-flight
//! requests, and the timing of a single request.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use awc::error::SendRequestError;
use awc::http::header;
use bytes::Bytes;
use futures_util::StreamExt as _;
use serde_json::{Value, json};

use crate::report::{ErrorKind, Outcome, Report, Tally, micros};
use crate::sse::{SseDecoder, StreamEvent, classify};
use crate::{Config, LoadTestError, Stop};

/// The largest non-streaming answer read; larger is an `invalid_response`.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;
/// How often the progress line is redrawn.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// Runs the load test `config` describes and reports what happened.
///
/// Blocks the calling thread until every request has finished; the load itself is generated
/// on `config.threads` new threads, each running its own actix system with its share of
/// `config.concurrency` requests in flight. With [`Stop::Requests`] exactly that many
/// requests are sent; with [`Stop::Duration`] none starts after the duration, and those in
/// flight are waited for (up to `config.timeout`). Failed requests are counted in the report,
/// never returned as errors.
///
/// Call it from a plain thread (or `spawn_blocking`), not from inside an async runtime's
/// worker, since it blocks.
pub fn run(config: &Config) -> Result<Report, LoadTestError> {
    config.validate()?;
    let tls = tls_config()?;
    let config = Arc::new(config.clone());
    let started = Instant::now();
    let progress = Arc::new(Progress {
        claimed: AtomicU64::new(0),
        finished: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        deadline: match config.stop {
            Stop::Duration(duration) => Some(started + duration),
            Stop::Requests(_) => None,
        },
    });

    let mut workers = Vec::with_capacity(config.threads);
    for index in 0..config.threads {
        let in_flight = share_of(config.concurrency, config.threads, index);
        let (config, progress, tls) =
            (Arc::clone(&config), Arc::clone(&progress), Arc::clone(&tls));
        let worker = std::thread::Builder::new()
            .name(format!("loadtest-{index}"))
            .spawn(move || load_thread(&config, in_flight, progress, tls))
            .map_err(LoadTestError::Thread)?;
        workers.push(worker);
    }

    if config.progress {
        while !workers.iter().all(std::thread::JoinHandle::is_finished) {
            draw_progress(&config, &progress, started.elapsed());
            std::thread::sleep(PROGRESS_INTERVAL);
        }
        clear_progress();
    }

    let mut tally = Tally::default();
    for worker in workers {
        tally.merge(worker.join().map_err(|_| LoadTestError::WorkerPanicked)??);
    }
    Ok(tally.into_report(&config, started.elapsed()))
}

/// How many of `total` in-flight requests thread `index` of `threads` carries: an even
/// split, the first threads taking one more when it does not divide.
fn share_of(total: usize, threads: usize, index: usize) -> usize {
    total / threads + usize::from(index < total % threads)
}

/// Counters every thread shares: what decides when to stop, and what the progress line shows.
#[derive(Debug)]
struct Progress {
    claimed: AtomicU64,
    finished: AtomicU64,
    failed: AtomicU64,
    deadline: Option<Instant>,
}

impl Progress {
    /// Whether another request may start. Claiming under [`Stop::Requests`] is one atomic
    /// increment, so the threads together send exactly the number asked for.
    fn claim(&self, stop: Stop) -> bool {
        match (stop, self.deadline) {
            (Stop::Requests(limit), _) => self.claimed.fetch_add(1, Ordering::Relaxed) < limit,
            (Stop::Duration(_), Some(deadline)) => Instant::now() < deadline,
            (Stop::Duration(_), None) => false,
        }
    }

    fn record(&self, outcome: &Outcome) {
        if matches!(outcome, Outcome::Failure(_)) {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        self.finished.fetch_add(1, Ordering::Relaxed);
    }
}

fn draw_progress(config: &Config, progress: &Progress, elapsed: Duration) {
    let finished = progress.finished.load(Ordering::Relaxed);
    let failed = progress.failed.load(Ordering::Relaxed);
    let line = match config.stop {
        Stop::Requests(total) => format!(
            "{finished}/{total} requests, {failed} failed, {:.1}s elapsed",
            elapsed.as_secs_f64()
        ),
        Stop::Duration(total) => format!(
            "{finished} requests, {failed} failed, {:.1}s of {:.1}s",
            elapsed.as_secs_f64().min(total.as_secs_f64()),
            total.as_secs_f64()
        ),
    };
    let mut stderr = std::io::stderr().lock();
    // A progress line that cannot be drawn is not worth stopping the test for.
    let _ = write!(stderr, "\r{line}   ");
    let _ = stderr.flush();
}

fn clear_progress() {
    let mut stderr = std::io::stderr().lock();
    let _ = write!(stderr, "\r{:60}\r", "");
    let _ = stderr.flush();
}

/// One load thread: its own actix system (awc is `!Send`) and `in_flight` tasks that each
/// send one request after another until told to stop.
fn load_thread(
    config: &Config,
    in_flight: usize,
    progress: Arc<Progress>,
    tls: Arc<rustls::ClientConfig>,
) -> Result<Tally, LoadTestError> {
    let system = actix_rt::System::new();
    system.block_on(async {
        let connector = awc::Connector::new()
            // Room for every task, so no request waits for a pooled connection and the
            // measured latency is the server's.
            .limit(in_flight)
            .timeout(config.timeout)
            .rustls_0_23(tls);
        let client = awc::Client::builder()
            .connector(connector)
            .timeout(config.timeout)
            .finish();
        let request = Arc::new(PreparedRequest {
            url: config.target(),
            authorization: format!("Bearer {}", config.key),
            body: Bytes::from(request_body(config).to_string()),
            stream: config.stream,
            timeout: config.timeout,
        });

        let tasks: Vec<_> = (0..in_flight)
            .map(|_| {
                let (client, request) = (client.clone(), Arc::clone(&request));
                let progress = Arc::clone(&progress);
                let stop = config.stop;
                actix_rt::spawn(async move {
                    let mut tally = Tally::default();
                    while progress.claim(stop) {
                        let outcome = send_one(&client, &request).await;
                        progress.record(&outcome);
                        tally.record(outcome);
                    }
                    tally
                })
            })
            .collect();

        let mut tally = Tally::default();
        for task in tasks {
            tally.merge(task.await.map_err(|_| LoadTestError::WorkerPanicked)?);
        }
        Ok(tally)
    })
}

/// What every request of a thread shares, built once.
#[derive(Debug)]
struct PreparedRequest {
    url: String,
    authorization: String,
    body: Bytes,
    stream: bool,
    timeout: Duration,
}

/// The chat request body: one user message, and for streams the usage chunk asked for, since
/// tokens/s comes from the usage the server reports.
pub(crate) fn request_body(config: &Config) -> Value {
    let mut body = json!({
        "model": config.model,
        "messages": [{ "role": "user", "content": config.prompt }],
        "stream": config.stream,
    });
    if config.stream {
        body["stream_options"] = json!({ "include_usage": true });
    }
    if let Some(max_tokens) = config.max_tokens {
        body["max_tokens"] = json!(max_tokens);
    }
    body
}

/// Sends one request and reads its answer to the end, within the timeout.
async fn send_one(client: &awc::Client, request: &PreparedRequest) -> Outcome {
    let started = Instant::now();
    // awc's own timeout covers only the response head; this one covers the body too.
    actix_rt::time::timeout(request.timeout, exchange(client, request, started))
        .await
        .unwrap_or(Outcome::Failure(ErrorKind::Timeout))
}

async fn exchange(client: &awc::Client, request: &PreparedRequest, started: Instant) -> Outcome {
    let sent = client
        .post(&request.url)
        .insert_header((header::AUTHORIZATION, request.authorization.as_str()))
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .send_body(request.body.clone())
        .await;
    let mut response = match sent {
        Ok(response) => response,
        Err(SendRequestError::Timeout) => return Outcome::Failure(ErrorKind::Timeout),
        Err(_) => return Outcome::Failure(ErrorKind::Connection),
    };
    let status = response.status();
    if !status.is_success() {
        // Reading the error body lets the connection go back to the pool.
        let _ = response.body().limit(MAX_ANSWER_BYTES).await;
        return Outcome::Failure(ErrorKind::Status(status.as_u16()));
    }
    if request.stream {
        read_stream(&mut response, started).await
    } else {
        read_answer(&mut response, started).await
    }
}

async fn read_answer<S>(response: &mut awc::ClientResponse<S>, started: Instant) -> Outcome
where
    S: futures_util::Stream<Item = Result<Bytes, awc::error::PayloadError>> + Unpin,
{
    let body = match response.body().limit(MAX_ANSWER_BYTES).await {
        Ok(body) => body,
        Err(awc::error::PayloadError::Overflow) => {
            return Outcome::Failure(ErrorKind::InvalidResponse);
        }
        Err(_) => return Outcome::Failure(ErrorKind::Connection),
    };
    let latency_us = micros(started.elapsed());
    let Ok(answer) = serde_json::from_slice::<Value>(&body) else {
        return Outcome::Failure(ErrorKind::InvalidResponse);
    };
    if answer.get("error").is_some_and(|e| !e.is_null()) {
        return Outcome::Failure(ErrorKind::InvalidResponse);
    }
    Outcome::Success {
        latency_us,
        first_token_us: None,
        completion_tokens: answer["usage"]["completion_tokens"].as_u64(),
    }
}

async fn read_stream<S>(response: &mut awc::ClientResponse<S>, started: Instant) -> Outcome
where
    S: futures_util::Stream<Item = Result<Bytes, awc::error::PayloadError>> + Unpin,
{
    let mut decoder = SseDecoder::default();
    let mut first_token_us = None;
    let mut completion_tokens = None;
    let mut done = false;
    let mut stream_error = None;
    // Read to the end of the body even after `[DONE]`, so the connection can be reused.
    while let Some(chunk) = response.next().await {
        let Ok(chunk) = chunk else {
            return Outcome::Failure(ErrorKind::Connection);
        };
        decoder.feed(&chunk);
        while let Some(data) = decoder.next_data() {
            match classify(&data) {
                StreamEvent::Done => done = true,
                StreamEvent::Error(code) => {
                    stream_error.get_or_insert(code);
                }
                StreamEvent::Chunk {
                    has_content,
                    completion_tokens: tokens,
                } => {
                    if has_content && first_token_us.is_none() {
                        first_token_us = Some(micros(started.elapsed()));
                    }
                    if tokens.is_some() {
                        completion_tokens = tokens;
                    }
                }
                StreamEvent::Unreadable => {}
            }
        }
    }
    match (stream_error, done) {
        (Some(code), _) => Outcome::Failure(ErrorKind::StreamError(code)),
        (None, false) => Outcome::Failure(ErrorKind::IncompleteStream),
        (None, true) => Outcome::Success {
            latency_us: micros(started.elapsed()),
            first_token_us,
            completion_tokens,
        },
    }
}

/// A rustls configuration with the webpki roots, so `https://` URLs work.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, LoadTestError> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| LoadTestError::Tls(err.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_is_split_evenly_over_threads() {
        let shares: Vec<usize> = (0..3).map(|i| share_of(10, 3, i)).collect();
        assert_eq!(shares, [4, 3, 3]);
        assert_eq!(share_of(8, 1, 0), 8);
        assert_eq!((0..4).map(|i| share_of(4, 4, i)).sum::<usize>(), 4);
    }

    #[test]
    fn a_request_count_is_claimed_exactly() {
        let progress = Progress {
            claimed: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            deadline: None,
        };
        let granted = (0..10)
            .filter(|_| progress.claim(Stop::Requests(7)))
            .count();
        assert_eq!(granted, 7);
    }

    #[test]
    fn a_past_deadline_starts_nothing() {
        let progress = Progress {
            claimed: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            deadline: Some(Instant::now()),
        };
        assert!(!progress.claim(Stop::Duration(Duration::from_secs(1))));
    }

    #[test]
    fn streaming_bodies_ask_for_the_usage_chunk() {
        let mut config = Config::new("http://p", "k");
        config.prompt = "hi".into();
        assert_eq!(
            request_body(&config),
            json!({"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "stream": false})
        );
        config.stream = true;
        config.max_tokens = Some(32);
        let body = request_body(&config);
        assert_eq!(body["stream_options"], json!({"include_usage": true}));
        assert_eq!(body["max_tokens"], 32);
        assert_eq!(body["stream"], true);
    }

    #[test]
    fn the_tls_configuration_builds() {
        assert!(tls_config().is_ok());
    }
}
