//! Several Ollama servers behind one proxy: model discovery, health and circuit breaking,
//! model-aware routing, failover before the first byte, and drain.
//!
//! [`Backends`] (one per process, `Send + Sync`) holds the configured servers and what is
//! known about each: its models (`/api/tags`) and loaded models (`/api/ps`), health, circuit,
//! requests in flight, counters, latency, drained flag. [`Backends::monitor`] keeps that
//! fresh in the background. Each actix worker gets a [`BackendClients`] from
//! [`Backends::worker`] (awc is `!Send`), whose [`call`](BackendClients::call) and
//! [`stream`](BackendClients::stream) route every upstream call and retry it elsewhere while
//! nothing has reached the client.
//!
//! **Where a request goes.** Only to a backend that is not drained, whose circuit is not open
//! (a half-open one takes a single trial request), that is under its `max_in_flight`, and that
//! lists the model. Among those: one with the model loaded, while it has fewer than
//! [`RouterConfig::prefer_loaded_below`] requests in flight; then the smallest
//! `(in_flight + 1) / weight` (the fewest in flight, weighted, counting this request); ties in
//! turn. A model no backend lists goes to the best backend of all (so
//! a single backend behaves exactly as Ollama would, and a model pulled behind the proxy's
//! back still works); its "not found" is returned as Ollama wrote it. Nothing eligible is
//! [`RouteError::NoBackend`] at once, never a wait.
//!
//! **When a backend fails.** A connection failure, a timeout, a 5xx, or a stream that breaks
//! before its first line counts against it, and the call moves to the next eligible backend
//! ([`RouterConfig::max_attempts`] at most, within the caller's deadline). After
//! [`RouterConfig::failure_threshold`] failures in a row its circuit opens; the monitor
//! probes it and, once it answers, lets one trial request through (half-open), whose outcome
//! closes or reopens the circuit. A "model not found" from a backend that listed the model
//! removes it there at once, triggers its rediscovery, and moves the call on. 4xx answers are
//! the backend's answer and are returned as they are.
//!
//! **Per request** a worker reads a version number (and the model table only when it moved),
//! a few flags per candidate backend, and its own view of the requests in flight (summed
//! over every worker's stripe at most once per [`IN_FLIGHT_VIEW_MAX_AGE`]), and writes its
//! own stripe of the counters: no lock, and no cache line that other workers write.
//!
//! ```no_run
//! use aiproxy_backends::{BackendSpec, Backends, RouterConfig};
//! use aiproxy_ollama::{ChatRequest, Message};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let specs = BackendSpec::parse_list("http://gpu1:11434,http://gpu2:11434#weight=2")?;
//! let backends = Backends::new(specs, RouterConfig::default())?;
//! actix_rt::System::new().block_on(async move {
//!     backends.discover_all().await;
//!     let monitor = actix_rt::spawn(backends.clone().monitor());
//!     let clients = backends.worker(); // one per actix worker
//!     let request = ChatRequest {
//!         model: "llama3.2".into(),
//!         messages: vec![Message { role: "user".into(), content: "Hi!".into(), ..Default::default() }],
//!         ..Default::default()
//!     };
//!     let answer = clients.chat(&request, None).await?;
//!     println!("{} answered after {} tries", answer.backend, answer.attempts);
//!     monitor.abort();
//!     Ok(())
//! })
//! # }
//! ```
#![warn(missing_docs)]

mod config;
mod error;
mod monitor;
mod name;
mod state;
mod table;
mod worker;

pub use config::{BackendSpec, MAX_BACKENDS, RouterConfig};
pub use error::{ConfigError, RouteError, Unavailable};
pub use monitor::MIN_REDISCOVERY_GAP;
pub use state::{BackendReport, Backends, Circuit, Health, LastError};
pub use worker::{BackendClients, IN_FLIGHT_VIEW_MAX_AGE, Lease, Routed, RoutedStream};
