//! Live switches for latency and faults, and the counters and request log tests read back.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::SimError;
use crate::config::SimConfig;
use crate::model::{ModelName, SimModel};
use crate::registry::{KeepAlive, LoadedModel, Registry, SimClock};
use crate::settings::{FailStatusJson, SimSettings};

/// The message real Ollama streams when the runner fails mid-generation.
pub const MODEL_ERROR_MESSAGE: &str = "an error was encountered while running the model";

/// A `POST /sim/control` body: present fields are set, `null` clears, absent fields stay.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ControlUpdate {
    #[serde(default)]
    reset: bool,
    #[serde(default)]
    reset_stats: bool,
    first_token_delay_ms: Option<u64>,
    token_delay_ms: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    fail_status: Option<Option<FailStatusJson>>,
    #[serde(default, deserialize_with = "present")]
    error_after_tokens: Option<Option<usize>>,
    #[serde(default, deserialize_with = "present")]
    close_after_tokens: Option<Option<usize>>,
    #[serde(default, deserialize_with = "present")]
    malformed_after_tokens: Option<Option<usize>>,
    #[serde(default, deserialize_with = "present")]
    stall_after_tokens: Option<Option<usize>>,
    hang: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    faults_for_next: Option<Option<usize>>,
    unresponsive: Option<bool>,
    /// Replaces the installed set (names of installed or catalog models).
    models: Option<Vec<String>>,
    /// Makes exactly these installed models loaded.
    loaded: Option<Vec<String>>,
    /// Moves the simulator's clock forward (keep-alives expire).
    advance_clock_ms: Option<u64>,
}

/// Tells "absent" (outer `None`, via `default`) from "null" (`Some(None)`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// The HTTP routes the simulator counts requests for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SimEndpoint {
    /// `GET`/`HEAD /`.
    Root,
    /// `/api/version`.
    Version,
    /// `/api/tags`.
    Tags,
    /// `POST /api/show`.
    Show,
    /// `POST /api/chat`.
    Chat,
    /// `POST /api/generate`.
    Generate,
    /// `POST /api/embed`.
    Embed,
    /// `POST /api/embeddings` (legacy).
    Embeddings,
    /// `GET /api/ps`.
    Ps,
    /// `POST /api/pull`.
    Pull,
    /// `POST /api/push`.
    Push,
    /// `POST /api/create`.
    Create,
    /// `POST /api/copy`.
    Copy,
    /// `DELETE /api/delete`.
    Delete,
    /// `HEAD`/`POST /api/blobs/{digest}`.
    Blobs,
    /// `POST /v1/chat/completions`.
    OpenAiChat,
    /// `POST /v1/completions`.
    OpenAiCompletions,
    /// `POST /v1/embeddings`.
    OpenAiEmbeddings,
    /// `GET /v1/models` and `GET /v1/models/{model}`.
    OpenAiModels,
    /// `POST /v1/responses`.
    Responses,
    /// `POST /v1/messages`.
    Messages,
    /// Any path the simulator does not serve (404), or a wrong method (405).
    NotFound,
}

impl SimEndpoint {
    /// Every endpoint, in a fixed order.
    pub const ALL: [SimEndpoint; 22] = [
        SimEndpoint::Root,
        SimEndpoint::Version,
        SimEndpoint::Tags,
        SimEndpoint::Show,
        SimEndpoint::Chat,
        SimEndpoint::Generate,
        SimEndpoint::Embed,
        SimEndpoint::Embeddings,
        SimEndpoint::Ps,
        SimEndpoint::Pull,
        SimEndpoint::Push,
        SimEndpoint::Create,
        SimEndpoint::Copy,
        SimEndpoint::Delete,
        SimEndpoint::Blobs,
        SimEndpoint::OpenAiChat,
        SimEndpoint::OpenAiCompletions,
        SimEndpoint::OpenAiEmbeddings,
        SimEndpoint::OpenAiModels,
        SimEndpoint::Responses,
        SimEndpoint::Messages,
        SimEndpoint::NotFound,
    ];

    /// The snake_case name used in `/sim/stats` and `/sim/requests?endpoint=`.
    pub fn as_str(self) -> &'static str {
        match self {
            SimEndpoint::Root => "root",
            SimEndpoint::Version => "version",
            SimEndpoint::Tags => "tags",
            SimEndpoint::Show => "show",
            SimEndpoint::Chat => "chat",
            SimEndpoint::Generate => "generate",
            SimEndpoint::Embed => "embed",
            SimEndpoint::Embeddings => "embeddings",
            SimEndpoint::Ps => "ps",
            SimEndpoint::Pull => "pull",
            SimEndpoint::Push => "push",
            SimEndpoint::Create => "create",
            SimEndpoint::Copy => "copy",
            SimEndpoint::Delete => "delete",
            SimEndpoint::Blobs => "blobs",
            SimEndpoint::OpenAiChat => "openai_chat",
            SimEndpoint::OpenAiCompletions => "openai_completions",
            SimEndpoint::OpenAiEmbeddings => "openai_embeddings",
            SimEndpoint::OpenAiModels => "openai_models",
            SimEndpoint::Responses => "responses",
            SimEndpoint::Messages => "messages",
            SimEndpoint::NotFound => "not_found",
        }
    }

    /// The endpoint named by [`SimEndpoint::as_str`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|endpoint| endpoint.as_str() == name)
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl Serialize for SimEndpoint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A snapshot of the simulator's counters.
///
/// Stream counters cover streaming `/api/chat` and `/api/generate` responses only. A stream ends
/// in exactly one of: completed (`done` line sent), errored (error line sent), aborted by the
/// server (`close_after_tokens`), or aborted by the client (its body was dropped unfinished,
/// which is how actix reports a client that went away). The counters move when the body is
/// produced or dropped, a moment after the client sees it, so poll them with a deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimStats {
    /// The instance's name ([`SimConfig::name`]).
    pub instance: String,
    /// Requests received per endpoint (every endpoint present, zeros included).
    pub requests: BTreeMap<SimEndpoint, u64>,
    /// Streaming responses begun.
    pub streams_started: u64,
    /// Streams that sent their `done: true` line.
    pub streams_completed: u64,
    /// Streams that sent a mid-stream `{"error": …}` line.
    pub streams_errored: u64,
    /// Streams the simulator cut on purpose (`close_after_tokens`).
    pub streams_aborted_by_server: u64,
    /// Streams the client abandoned before they finished.
    pub streams_aborted_by_client: u64,
    /// Streams whose body is still alive right now.
    pub open_streams: u64,
}

impl SimStats {
    /// Requests received by one endpoint.
    pub fn requests_to(&self, endpoint: SimEndpoint) -> u64 {
        self.requests.get(&endpoint).copied().unwrap_or(0)
    }
}

#[derive(Debug, Default)]
struct Counters {
    requests: [AtomicU64; SimEndpoint::ALL.len()],
    streams_started: AtomicU64,
    streams_completed: AtomicU64,
    streams_errored: AtomicU64,
    streams_aborted_by_server: AtomicU64,
    streams_aborted_by_client: AtomicU64,
    open_streams: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    instance: String,
    settings: Mutex<SimSettings>,
    /// Mirrors `settings.unresponsive`, read by every request without taking the lock.
    unresponsive: AtomicBool,
    counters: Counters,
    log: Mutex<VecDeque<(SimEndpoint, Value)>>,
    log_capacity: usize,
    registry: Mutex<Registry>,
    clock: SimClock,
}

/// The handle tests hold to steer a running simulator and read what it saw.
///
/// Cheap to clone, `Send + Sync`; every clone controls the same server. Changes take effect for
/// the next request, and a new `token_delay` even for streams already running.
#[derive(Debug, Clone)]
pub struct SimControl {
    inner: Arc<Inner>,
}

impl Default for SimControl {
    /// The control of an instance started with [`SimConfig::default`].
    fn default() -> Self {
        let config = SimConfig::default();
        Self {
            inner: Arc::new(Inner::from_config(&config)),
        }
    }
}

impl Inner {
    fn from_config(config: &SimConfig) -> Self {
        Self {
            instance: config.name.clone(),
            unresponsive: AtomicBool::new(config.settings.unresponsive),
            settings: Mutex::new(config.settings.clone()),
            counters: Counters::default(),
            log: Mutex::new(VecDeque::new()),
            log_capacity: config.request_log_capacity,
            registry: Mutex::new(Registry::new(
                &config.models,
                &config.catalog,
                config.keep_alive,
                config.default_num_ctx,
            )),
            clock: SimClock::default(),
        }
    }
}

/// Locks a mutex whose data stays valid even if a holder panicked (nothing here can be left
/// half-updated), so a panicking test thread does not take the simulator down with it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl SimControl {
    /// The control of an instance set up by `config`; fails when `config.loaded` names a model
    /// that is not installed.
    pub fn new(config: &SimConfig) -> Result<Self, SimError> {
        let inner = Inner::from_config(config);
        let now = inner.clock.now();
        lock(&inner.registry)
            .set_loaded(&config.loaded, now)
            .map_err(|err| SimError::Models(err.to_string()))?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The instance's name ([`SimConfig::name`]).
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    /// The settings in force now.
    pub fn settings(&self) -> SimSettings {
        lock(&self.inner.settings).clone()
    }

    /// Replaces every setting at once.
    pub fn set_settings(&self, settings: SimSettings) {
        self.update(|current| *current = settings);
    }

    /// Changes the settings in place, atomically with respect to requests.
    pub fn update(&self, change: impl FnOnce(&mut SimSettings)) {
        let mut settings = lock(&self.inner.settings);
        change(&mut settings);
        self.inner
            .unresponsive
            .store(settings.unresponsive, Ordering::SeqCst);
    }

    /// Back to no latency and no faults.
    pub fn reset(&self) {
        self.set_settings(SimSettings::default());
    }

    /// Switches every fault off; delays and `unresponsive` stay.
    pub fn clear_faults(&self) {
        self.update(SimSettings::clear_faults);
    }

    /// Sets [`SimSettings::first_token_delay`].
    pub fn set_first_token_delay(&self, delay: Duration) {
        self.update(|s| s.first_token_delay = delay);
    }

    /// Sets [`SimSettings::token_delay`].
    pub fn set_token_delay(&self, delay: Duration) {
        self.update(|s| s.token_delay = delay);
    }

    /// Sets [`SimSettings::fail_status`].
    pub fn set_fail_status(&self, fault: Option<(u16, String)>) {
        self.update(|s| s.fail_status = fault);
    }

    /// Shorthand for `set_fail_status(Some((status, message)))`.
    pub fn fail_with(&self, status: u16, message: impl Into<String>) {
        self.set_fail_status(Some((status, message.into())));
    }

    /// Sets [`SimSettings::error_after_tokens`].
    pub fn set_error_after_tokens(&self, tokens: Option<usize>) {
        self.update(|s| s.error_after_tokens = tokens);
    }

    /// Sets [`SimSettings::close_after_tokens`].
    pub fn set_close_after_tokens(&self, tokens: Option<usize>) {
        self.update(|s| s.close_after_tokens = tokens);
    }

    /// Sets [`SimSettings::malformed_after_tokens`].
    pub fn set_malformed_after_tokens(&self, tokens: Option<usize>) {
        self.update(|s| s.malformed_after_tokens = tokens);
    }

    /// Sets [`SimSettings::stall_after_tokens`].
    pub fn set_stall_after_tokens(&self, tokens: Option<usize>) {
        self.update(|s| s.stall_after_tokens = tokens);
    }

    /// Sets [`SimSettings::hang`].
    pub fn set_hang(&self, hang: bool) {
        self.update(|s| s.hang = hang);
    }

    /// Sets [`SimSettings::faults_for_next`].
    pub fn set_faults_for_next(&self, requests: Option<usize>) {
        self.update(|s| s.faults_for_next = requests);
    }

    /// Sets [`SimSettings::unresponsive`].
    pub fn set_unresponsive(&self, unresponsive: bool) {
        self.update(|s| s.unresponsive = unresponsive);
    }

    /// The installed models, in `/api/tags` order.
    pub fn models(&self) -> Vec<SimModel> {
        self.registry()
            .installed()
            .iter()
            .map(|model| (**model).clone())
            .collect()
    }

    /// Replaces the installed set by the named models, each installed already or in the
    /// catalog ([`SimConfig::catalog`]); removed models are unloaded. Simulates a backend that
    /// pulled or deleted models.
    pub fn set_models(&self, names: &[&str]) -> Result<(), SimError> {
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        self.registry()
            .set_installed(&names)
            .map_err(|err| SimError::Models(err.to_string()))
    }

    /// Installs any model (replacing one of the same name); a new one is listed first.
    pub fn install_model(&self, model: SimModel) {
        self.registry().install(model);
    }

    /// Removes an installed model (unloading it); false when no such model is installed.
    pub fn remove_model(&self, name: &str) -> bool {
        ModelName::parse(name).is_ok_and(|name| self.registry().remove(&name).is_some())
    }

    /// The models loaded now, longest remaining keep-alive first (as `/api/ps` lists them).
    pub fn loaded_models(&self) -> Vec<LoadedModel> {
        let now = self.now();
        self.registry()
            .loaded(now)
            .into_iter()
            .map(|(_, loaded)| loaded)
            .collect()
    }

    /// Makes exactly the named installed models loaded; newly loaded ones get the default
    /// keep-alive from now, already loaded ones keep their expiry.
    pub fn set_loaded(&self, names: &[&str]) -> Result<(), SimError> {
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let now = self.now();
        self.registry()
            .set_loaded(&names, now)
            .map_err(|err| SimError::Models(err.to_string()))
    }

    /// Loads an installed model as a request with this `keep_alive` would.
    pub fn load_model(&self, name: &str, keep_alive: KeepAlive) -> Result<(), SimError> {
        let not_installed = || SimError::Models(format!("model {name:?} is not installed"));
        let parsed = ModelName::parse(name).map_err(|_| not_installed())?;
        let now = self.now();
        let mut registry = self.registry();
        let model = registry.find(&parsed).ok_or_else(not_installed)?;
        registry.touch(&model, Some(keep_alive), None, now);
        Ok(())
    }

    /// The simulator's clock now: real time plus every [`SimControl::advance_clock`].
    pub fn now(&self) -> OffsetDateTime {
        self.inner.clock.now()
    }

    /// Moves the simulator's clock forward, so keep-alives expire without waiting.
    pub fn advance_clock(&self, by: Duration) {
        self.inner.clock.advance(by);
    }

    pub(crate) fn registry(&self) -> MutexGuard<'_, Registry> {
        lock(&self.inner.registry)
    }

    pub(crate) fn is_unresponsive(&self) -> bool {
        self.inner.unresponsive.load(Ordering::Relaxed)
    }

    /// The JSON `GET`/`POST /sim/control` answer: the settings plus the model state.
    pub fn control_json(&self) -> Value {
        let mut view = self.settings().to_json();
        let names = |models: Vec<String>| Value::from(models);
        view["models"] = names(self.models().into_iter().map(|m| m.name).collect());
        view["loaded"] = names(self.loaded_models().into_iter().map(|m| m.name).collect());
        view["instance"] = json!(self.instance());
        view
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SimStats {
        let c = &self.inner.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::SeqCst);
        SimStats {
            instance: self.inner.instance.clone(),
            requests: SimEndpoint::ALL
                .into_iter()
                .map(|endpoint| (endpoint, load(&c.requests[endpoint.index()])))
                .collect(),
            streams_started: load(&c.streams_started),
            streams_completed: load(&c.streams_completed),
            streams_errored: load(&c.streams_errored),
            streams_aborted_by_server: load(&c.streams_aborted_by_server),
            streams_aborted_by_client: load(&c.streams_aborted_by_client),
            open_streams: load(&c.open_streams),
        }
    }

    /// Zeroes the counters (except `open_streams`, which tracks live bodies) and empties the
    /// request log.
    pub fn reset_stats(&self) {
        let c = &self.inner.counters;
        for counter in c.requests.iter().chain([
            &c.streams_started,
            &c.streams_completed,
            &c.streams_errored,
            &c.streams_aborted_by_server,
            &c.streams_aborted_by_client,
        ]) {
            counter.store(0, Ordering::SeqCst);
        }
        lock(&self.inner.log).clear();
    }

    /// The body of the most recent request to `endpoint` still in the log.
    ///
    /// Bodies are stored as parsed JSON; a body that is not JSON is stored as a JSON string
    /// holding its text (lossy UTF-8), an empty body as `null`.
    pub fn last_request(&self, endpoint: SimEndpoint) -> Option<Value> {
        lock(&self.inner.log)
            .iter()
            .rev()
            .find(|(logged, _)| *logged == endpoint)
            .map(|(_, body)| body.clone())
    }

    /// Every body still in the log for `endpoint`, oldest first.
    pub fn requests(&self, endpoint: SimEndpoint) -> Vec<Value> {
        lock(&self.inner.log)
            .iter()
            .filter(|(logged, _)| *logged == endpoint)
            .map(|(_, body)| body.clone())
            .collect()
    }

    /// The whole log, oldest first, as `(endpoint, body)` pairs.
    pub fn request_log(&self) -> Vec<(SimEndpoint, Value)> {
        lock(&self.inner.log).iter().cloned().collect()
    }

    /// Applies a `POST /sim/control` JSON body (see the crate docs for its fields).
    pub fn apply_json(&self, body: &Value) -> Result<(), SimError> {
        let update = ControlUpdate::deserialize(body)
            .map_err(|err| SimError::InvalidControl(err.to_string()))?;
        if let Some(Some(fail)) = &update.fail_status
            && !(100..=999).contains(&fail.status)
        {
            return Err(SimError::InvalidControl(format!(
                "fail_status.status {} is not an HTTP status",
                fail.status
            )));
        }
        if update.reset_stats {
            self.reset_stats();
        }
        if let Some(ms) = update.advance_clock_ms {
            self.advance_clock(Duration::from_millis(ms));
        }
        if let Some(models) = &update.models {
            let models: Vec<&str> = models.iter().map(String::as_str).collect();
            self.set_models(&models)?;
        }
        if let Some(loaded) = &update.loaded {
            let loaded: Vec<&str> = loaded.iter().map(String::as_str).collect();
            self.set_loaded(&loaded)?;
        }
        self.update(|s| {
            if update.reset {
                *s = SimSettings::default();
            }
            if let Some(ms) = update.first_token_delay_ms {
                s.first_token_delay = Duration::from_millis(ms);
            }
            if let Some(ms) = update.token_delay_ms {
                s.token_delay = Duration::from_millis(ms);
            }
            if let Some(fail) = update.fail_status {
                s.fail_status = fail.map(|f| (f.status, f.message));
            }
            if let Some(n) = update.error_after_tokens {
                s.error_after_tokens = n;
            }
            if let Some(n) = update.close_after_tokens {
                s.close_after_tokens = n;
            }
            if let Some(n) = update.malformed_after_tokens {
                s.malformed_after_tokens = n;
            }
            if let Some(n) = update.stall_after_tokens {
                s.stall_after_tokens = n;
            }
            if let Some(hang) = update.hang {
                s.hang = hang;
            }
            if let Some(n) = update.faults_for_next {
                s.faults_for_next = n;
            }
            if let Some(unresponsive) = update.unresponsive {
                s.unresponsive = unresponsive;
            }
        });
        Ok(())
    }

    pub(crate) fn note_request(&self, endpoint: SimEndpoint) {
        self.inner.counters.requests[endpoint.index()].fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn log_body(&self, endpoint: SimEndpoint, body: &[u8]) {
        if self.inner.log_capacity == 0 {
            return;
        }
        let value = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
        };
        let mut log = lock(&self.inner.log);
        while log.len() >= self.inner.log_capacity {
            log.pop_front();
        }
        log.push_back((endpoint, value));
    }

    /// Takes the faults that apply to one request, counting it against `faults_for_next`.
    pub(crate) fn claim_faults(&self) -> ClaimedFaults {
        let mut settings = lock(&self.inner.settings);
        if !settings.has_faults() {
            return ClaimedFaults::default();
        }
        let claimed = ClaimedFaults::from_settings(&settings);
        match settings.faults_for_next {
            None => claimed,
            Some(0) => {
                settings.clear_faults();
                ClaimedFaults::default()
            }
            Some(1) => {
                settings.clear_faults();
                claimed
            }
            Some(n) => {
                settings.faults_for_next = Some(n - 1);
                claimed
            }
        }
    }

    pub(crate) fn open_stream(&self) -> StreamGuard {
        let c = &self.inner.counters;
        c.streams_started.fetch_add(1, Ordering::SeqCst);
        c.open_streams.fetch_add(1, Ordering::SeqCst);
        StreamGuard {
            control: self.clone(),
            outcome: None,
        }
    }
}

/// How a faulty stream ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Terminal {
    Error,
    Close,
    Stall,
}

/// The faults one request runs with, fixed when it starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ClaimedFaults {
    pub hang: bool,
    pub fail_status: Option<(u16, String)>,
    /// The earliest stream-ending fault and its token count (ties: error, close, stall).
    pub terminal: Option<(Terminal, usize)>,
    pub malformed_after: Option<usize>,
}

impl ClaimedFaults {
    fn from_settings(settings: &SimSettings) -> Self {
        let terminal = [
            settings.error_after_tokens.map(|n| (Terminal::Error, n)),
            settings.close_after_tokens.map(|n| (Terminal::Close, n)),
            settings.stall_after_tokens.map(|n| (Terminal::Stall, n)),
        ]
        .into_iter()
        .flatten()
        // min_by_key keeps the first of equal keys, which gives the documented tie order.
        .min_by_key(|(_, n)| *n);
        Self {
            hang: settings.hang,
            fail_status: settings.fail_status.clone(),
            terminal,
            malformed_after: settings.malformed_after_tokens,
        }
    }
}

/// How a stream ended, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamOutcome {
    Completed,
    Errored,
    AbortedByServer,
}

/// Lives inside a response body; its drop tells whether the client left early.
#[derive(Debug)]
pub(crate) struct StreamGuard {
    control: SimControl,
    outcome: Option<StreamOutcome>,
}

impl StreamGuard {
    /// Records how the stream ended; only the first call counts.
    pub(crate) fn finish(&mut self, outcome: StreamOutcome) {
        if self.outcome.is_some() {
            return;
        }
        self.outcome = Some(outcome);
        let c = &self.control.inner.counters;
        let counter = match outcome {
            StreamOutcome::Completed => &c.streams_completed,
            StreamOutcome::Errored => &c.streams_errored,
            StreamOutcome::AbortedByServer => &c.streams_aborted_by_server,
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let c = &self.control.inner.counters;
        if self.outcome.is_none() {
            c.streams_aborted_by_client.fetch_add(1, Ordering::SeqCst);
        }
        c.open_streams.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn faults_for_next_counts_down_then_clears_faults_but_keeps_delays() {
        let control = SimControl::default();
        control.set_token_delay(Duration::from_millis(3));
        control.fail_with(503, "busy");
        control.set_faults_for_next(Some(2));
        for _ in 0..2 {
            let claimed = control.claim_faults();
            assert_eq!(claimed.fail_status, Some((503, "busy".into())));
        }
        assert_eq!(control.claim_faults(), ClaimedFaults::default());
        let settings = control.settings();
        assert!(!settings.has_faults());
        assert_eq!(settings.faults_for_next, None);
        assert_eq!(settings.token_delay, Duration::from_millis(3));
    }

    #[test]
    fn the_earliest_terminal_fault_wins_with_error_first_on_ties() {
        let control = SimControl::default();
        control.set_stall_after_tokens(Some(2));
        control.set_close_after_tokens(Some(2));
        control.set_error_after_tokens(Some(5));
        let claimed = control.claim_faults();
        assert_eq!(claimed.terminal, Some((Terminal::Close, 2)));
    }

    #[test]
    fn stream_guard_counts_client_aborts_only_when_unfinished() {
        let control = SimControl::default();
        drop(control.open_stream());
        let mut finished = control.open_stream();
        finished.finish(StreamOutcome::Completed);
        drop(finished);
        let stats = control.stats();
        assert_eq!(stats.streams_started, 2);
        assert_eq!(stats.streams_aborted_by_client, 1);
        assert_eq!(stats.streams_completed, 1);
        assert_eq!(stats.open_streams, 0);
    }

    #[test]
    fn control_json_sets_clears_and_leaves_alone() {
        let control = SimControl::default();
        control
            .apply_json(&json!({"token_delay_ms": 7, "fail_status": {"status": 500, "message": "boom"}, "stall_after_tokens": 2}))
            .unwrap();
        control.apply_json(&json!({"fail_status": null})).unwrap();
        let settings = control.settings();
        assert_eq!(settings.token_delay, Duration::from_millis(7));
        assert_eq!(settings.fail_status, None);
        assert_eq!(settings.stall_after_tokens, Some(2));
        assert!(control.apply_json(&json!({"token_delay": 7})).is_err());
        assert!(
            control
                .apply_json(&json!({"fail_status": {"status": 5, "message": ""}}))
                .is_err()
        );
        control.apply_json(&json!({"reset": true})).unwrap();
        assert_eq!(control.settings(), SimSettings::default());
        assert_eq!(control.settings().to_json()["hang"], json!(false));
    }

    #[test]
    fn the_request_log_keeps_the_newest_bodies() {
        let control = SimControl::new(&SimConfig {
            request_log_capacity: 2,
            ..SimConfig::default()
        })
        .unwrap();
        control.log_body(SimEndpoint::Chat, br#"{"n":1}"#);
        control.log_body(SimEndpoint::Embed, b"not json");
        control.log_body(SimEndpoint::Chat, br#"{"n":3}"#);
        assert_eq!(control.requests(SimEndpoint::Chat), vec![json!({"n": 3})]);
        assert_eq!(
            control.last_request(SimEndpoint::Embed),
            Some(json!("not json"))
        );
        control.reset_stats();
        assert_eq!(control.last_request(SimEndpoint::Chat), None);
    }
}
