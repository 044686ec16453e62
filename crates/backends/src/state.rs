//! The state every worker shares: the backends, their health and circuits, their counters and
//! the model table.
//!
//! Per request, workers only read it (a version number, a few flags per backend) and write
//! their own stripe of the counters; locks are taken only by discovery, by failures and by the
//! operator's views.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aiproxy_domain::unpoison;
use aiproxy_ollama::{ModelInfo, OllamaError};
use tokio::sync::Notify;

use crate::config::{BackendSpec, MAX_BACKENDS, RouterConfig};
use crate::error::{ConfigError, RouteError};
use crate::table::{Listing, ModelTable};

/// All configured backends and what is known about them; one per process.
///
/// Cheap to clone (an `Arc`), `Send + Sync`. Each actix worker makes its own
/// [`BackendClients`](crate::BackendClients) from it with [`Backends::worker`], and one task
/// runs [`Backends::monitor`].
#[derive(Debug, Clone)]
pub struct Backends {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: RouterConfig,
    pub(crate) backends: Box<[Backend]>,
    /// Bumped after every new table; workers compare it with the one they hold.
    pub(crate) version: Padded<AtomicU64>,
    pub(crate) table: RwLock<Arc<ModelTable>>,
    /// Hands each worker its stripe.
    pub(crate) next_stripe: AtomicU64,
}

/// Keeps a value on a cache line of its own, so that writes to its neighbours do not make
/// readers of it miss.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

/// One backend's counters, written by the workers that own this stripe.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Stripe {
    pub(crate) in_flight: AtomicI64,
    pub(crate) served: AtomicU64,
    pub(crate) failed: AtomicU64,
    /// Moving average of the time until the answer began, in microseconds; 0 = no sample.
    pub(crate) latency_micros: AtomicU64,
}

/// A circuit breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Circuit {
    /// Requests flow.
    Closed,
    /// Too many failures in a row: no requests; the monitor probes it.
    Open,
    /// A probe succeeded: one trial request may go; its outcome closes or reopens it.
    HalfOpen,
}

impl Circuit {
    fn from_u8(value: u8) -> Circuit {
        match value {
            1 => Circuit::Open,
            2 => Circuit::HalfOpen,
            _ => Circuit::Closed,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            Circuit::Closed => 0,
            Circuit::Open => 1,
            Circuit::HalfOpen => 2,
        }
    }

    /// `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            Circuit::Closed => "closed",
            Circuit::Open => "open",
            Circuit::HalfOpen => "half_open",
        }
    }
}

/// A backend's health, as the operator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Health {
    /// Not yet reached (before its first discovery).
    Unknown,
    /// Answering; its last call succeeded.
    Healthy,
    /// Still taking requests, but its last calls failed (fewer than the threshold).
    Failing,
    /// Circuit open: taking no requests.
    Down,
    /// Circuit half-open: a probe succeeded, a trial request decides.
    Recovering,
}

impl Health {
    /// `unknown`, `healthy`, `failing`, `down` or `recovering`.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Healthy => "healthy",
            Health::Failing => "failing",
            Health::Down => "down",
            Health::Recovering => "recovering",
        }
    }
}

#[derive(Debug)]
pub(crate) struct Backend {
    pub(crate) id: Arc<str>,
    pub(crate) spec: BackendSpec,
    /// Read on every routing decision, written only when they change.
    pub(crate) flags: Padded<Flags>,
    pub(crate) stripes: Box<[Stripe]>,
    pub(crate) listing: Mutex<ListingState>,
    pub(crate) last_error: Mutex<Option<LastError>>,
    /// Wakes this backend's monitor loop: rediscover now (or probe, when open).
    pub(crate) wake: Notify,
}

#[derive(Debug, Default)]
pub(crate) struct Flags {
    pub(crate) circuit: AtomicU8,
    pub(crate) drained: AtomicBool,
    /// Set while the half-open trial request is out.
    pub(crate) trial_taken: AtomicBool,
    pub(crate) consecutive_failures: AtomicU32,
}

#[derive(Debug, Default)]
pub(crate) struct ListingState {
    pub(crate) listing: Listing,
    /// When discovery last succeeded (Unix milliseconds); `None` before the first time.
    pub(crate) discovered_at: Option<u64>,
}

/// A backend's most recent failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastError {
    /// What failed, as the Ollama client reported it.
    pub message: String,
    /// When (Unix milliseconds).
    pub at_unix_ms: u64,
}

/// One backend, for the operator (`GET /admin/backends`, `/health`, `/metrics`).
#[derive(Debug, Clone, PartialEq)]
pub struct BackendReport {
    /// The id used in the admin API, usage rows and metrics.
    pub id: String,
    /// The base URL.
    pub url: String,
    /// Relative capacity.
    pub weight: u32,
    /// The concurrency cap, if any.
    pub max_in_flight: Option<u32>,
    /// Health as the operator sees it.
    pub health: Health,
    /// The circuit breaker's state.
    pub circuit: Circuit,
    /// Whether the operator drained it.
    pub drained: bool,
    /// Installed models, as `/api/tags` listed them at the last discovery.
    pub models: Vec<String>,
    /// Loaded models, as `/api/ps` listed them at the last discovery.
    pub loaded_models: Vec<String>,
    /// Requests in flight from this proxy now.
    pub in_flight: u64,
    /// Requests it answered (including its 4xx answers).
    pub served: u64,
    /// Calls that failed on it (connection, timeout, 5xx, a broken stream).
    pub failed: u64,
    /// Failures in a row now.
    pub consecutive_failures: u32,
    /// Its most recent failure.
    pub last_error: Option<LastError>,
    /// Moving average of the time until its answer began (the first line of a stream, the
    /// whole body otherwise), in milliseconds; `None` before its first answer.
    pub latency_ms: Option<f64>,
    /// When its models were last read (Unix milliseconds).
    pub discovered_at_unix_ms: Option<u64>,
}

pub(crate) fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    unpoison(mutex.lock())
}

impl Backends {
    /// Sets up the backends; nothing is contacted until [`Backends::discover_all`] or the
    /// monitor runs. Every backend starts with no known models and a closed circuit.
    pub fn new(specs: Vec<BackendSpec>, config: RouterConfig) -> Result<Backends, ConfigError> {
        if specs.is_empty() {
            return Err(ConfigError::Empty);
        }
        if specs.len() > MAX_BACKENDS {
            return Err(ConfigError::TooMany {
                count: specs.len(),
                max: MAX_BACKENDS,
            });
        }
        let stripes = config.stripes.max(1);
        let mut backends: Vec<Backend> = Vec::with_capacity(specs.len());
        for mut spec in specs {
            let id = spec.id()?;
            if backends.iter().any(|known| *known.id == *id) {
                return Err(ConfigError::DuplicateId { id });
            }
            spec.url = spec.url.trim_end_matches('/').to_owned();
            spec.weight = spec.weight.max(1);
            backends.push(Backend {
                id: Arc::from(id),
                spec,
                flags: Padded::default(),
                stripes: (0..stripes).map(|_| Stripe::default()).collect(),
                listing: Mutex::default(),
                last_error: Mutex::default(),
                wake: Notify::new(),
            });
        }
        Ok(Backends {
            inner: Arc::new(Inner {
                config,
                backends: backends.into_boxed_slice(),
                version: Padded(AtomicU64::new(0)),
                table: RwLock::new(Arc::new(ModelTable::default())),
                next_stripe: AtomicU64::new(0),
            }),
        })
    }

    /// The router's configuration.
    pub fn config(&self) -> &RouterConfig {
        &self.inner.config
    }

    /// The ids, in configuration order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.inner.backends.iter().map(|backend| &*backend.id)
    }

    /// How many backends are configured.
    pub fn len(&self) -> usize {
        self.inner.backends.len()
    }

    /// Always `false`: a router has at least one backend.
    pub fn is_empty(&self) -> bool {
        self.inner.backends.is_empty()
    }

    pub(crate) fn index_of(&self, id: &str) -> Result<usize, RouteError> {
        self.inner
            .backends
            .iter()
            .position(|backend| *backend.id == *id)
            .ok_or_else(|| RouteError::UnknownBackend { id: id.to_owned() })
    }

    /// Stops sending new requests to a backend; those in flight finish. Idempotent.
    pub fn drain(&self, id: &str) -> Result<(), RouteError> {
        let index = self.index_of(id)?;
        self.inner.backends[index]
            .flags
            .0
            .drained
            .store(true, Ordering::Relaxed);
        tracing::info!(backend = id, "backend drained");
        Ok(())
    }

    /// Lets a drained backend take requests again. Idempotent.
    pub fn undrain(&self, id: &str) -> Result<(), RouteError> {
        let index = self.index_of(id)?;
        self.inner.backends[index]
            .flags
            .0
            .drained
            .store(false, Ordering::Relaxed);
        tracing::info!(backend = id, "backend undrained");
        Ok(())
    }

    /// Asks the monitor to read a backend's models again now (e.g. after a pull or delete
    /// through the admin API). Returns at once.
    pub fn rediscover(&self, id: &str) -> Result<(), RouteError> {
        let index = self.index_of(id)?;
        self.inner.backends[index].wake.notify_one();
        Ok(())
    }

    /// Every backend's state, in configuration order.
    pub fn report(&self) -> Vec<BackendReport> {
        self.inner
            .backends
            .iter()
            .map(|backend| backend.report())
            .collect()
    }

    /// The union of every backend's installed models, deduplicated by name (as Ollama
    /// resolves names), in the order first seen: backends in configuration order, each in its
    /// `/api/tags` order. Down backends contribute what they last listed.
    pub fn models(&self) -> Vec<ModelInfo> {
        let mut seen = std::collections::HashSet::new();
        let mut union = Vec::new();
        for backend in &*self.inner.backends {
            let listing = lock(&backend.listing);
            for model in &listing.listing.models {
                if seen.insert(crate::name::canonical(&model.name)) {
                    union.push(model.clone());
                }
            }
        }
        union
    }

    /// Records what discovery learned about a backend and, when it changed anything, builds
    /// and publishes a new model table.
    pub(crate) fn store_listing(&self, index: usize, listing: Listing) {
        let changed = {
            let mut state = lock(&self.inner.backends[index].listing);
            state.discovered_at = Some(now_unix_ms());
            let changed = state.listing != listing;
            state.listing = listing;
            changed
        };
        if changed {
            self.publish_table();
        }
    }

    fn publish_table(&self) {
        // Listings are copied out first so no listing lock is held while the table lock is.
        let listings: Vec<Listing> = self
            .inner
            .backends
            .iter()
            .map(|backend| lock(&backend.listing).listing.clone())
            .collect();
        let table = Arc::new(ModelTable::build(&listings));
        let mut current = unpoison(self.inner.table.write());
        *current = table;
        // Bumped under the lock, so a worker that sees the new version reads the new table.
        self.inner.version.0.fetch_add(1, Ordering::Release);
    }

    /// The current table and its version.
    pub(crate) fn table(&self) -> (u64, Arc<ModelTable>) {
        let table = unpoison(self.inner.table.read());
        (
            self.inner.version.0.load(Ordering::Acquire),
            Arc::clone(&table),
        )
    }
}

impl Backend {
    pub(crate) fn circuit(&self) -> Circuit {
        Circuit::from_u8(self.flags.0.circuit.load(Ordering::Relaxed))
    }

    pub(crate) fn set_circuit(&self, circuit: Circuit) {
        self.flags
            .0
            .circuit
            .store(circuit.as_u8(), Ordering::Relaxed);
    }

    pub(crate) fn drained(&self) -> bool {
        self.flags.0.drained.load(Ordering::Relaxed)
    }

    pub(crate) fn in_flight(&self) -> i64 {
        self.stripes
            .iter()
            .map(|stripe| stripe.in_flight.load(Ordering::Relaxed))
            .sum()
    }

    /// A call (or discovery) succeeded: the failure run ends and a half-open circuit closes.
    /// Writes only when something changes.
    pub(crate) fn note_success(&self) {
        let flags = &self.flags.0;
        if flags.consecutive_failures.load(Ordering::Relaxed) != 0 {
            flags.consecutive_failures.store(0, Ordering::Relaxed);
        }
        if self.circuit() == Circuit::HalfOpen {
            self.set_circuit(Circuit::Closed);
            tracing::info!(backend = %self.id, "backend readmitted (circuit closed)");
        }
    }

    /// Discovery succeeded. It ends a failure run of a closed circuit only: a half-open
    /// circuit waits for its trial request, since listing models is not serving them.
    pub(crate) fn note_discovery_success(&self) {
        if self.circuit() == Circuit::Closed {
            self.note_success();
        }
    }

    /// Remembers a failure without counting it (a probe of an open circuit).
    pub(crate) fn note_last_error(&self, error: &OllamaError) {
        *lock(&self.last_error) = Some(LastError {
            message: error.to_string(),
            at_unix_ms: now_unix_ms(),
        });
    }

    pub(crate) fn discovered_at(&self) -> Option<u64> {
        lock(&self.listing).discovered_at
    }

    /// A call failed in a way that is the backend's fault. Returns whether this opened the
    /// circuit.
    pub(crate) fn note_failure(&self, error: &OllamaError, threshold: u32) -> bool {
        self.note_last_error(error);
        let flags = &self.flags.0;
        let failures = flags
            .consecutive_failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let open = match self.circuit() {
            Circuit::HalfOpen => true,
            Circuit::Closed => failures >= threshold.max(1),
            Circuit::Open => false,
        };
        if open {
            self.set_circuit(Circuit::Open);
            tracing::warn!(backend = %self.id, failures, %error, "backend ejected (circuit open)");
        } else {
            tracing::debug!(backend = %self.id, failures, %error, "backend call failed");
        }
        open
    }

    fn report(&self) -> BackendReport {
        let flags = &self.flags.0;
        let circuit = self.circuit();
        let consecutive_failures = flags.consecutive_failures.load(Ordering::Relaxed);
        let (listing, discovered_at) = {
            let state = lock(&self.listing);
            (state.listing.clone(), state.discovered_at)
        };
        let health = match circuit {
            Circuit::Open => Health::Down,
            Circuit::HalfOpen => Health::Recovering,
            Circuit::Closed if consecutive_failures > 0 => Health::Failing,
            Circuit::Closed if discovered_at.is_none() => Health::Unknown,
            Circuit::Closed => Health::Healthy,
        };
        let sum = |field: fn(&Stripe) -> &AtomicU64| -> u64 {
            self.stripes
                .iter()
                .map(|stripe| field(stripe).load(Ordering::Relaxed))
                .sum()
        };
        let samples: Vec<u64> = self
            .stripes
            .iter()
            .map(|stripe| stripe.latency_micros.load(Ordering::Relaxed))
            .filter(|micros| *micros > 0)
            .collect();
        let latency_ms = (!samples.is_empty()).then(|| {
            samples.iter().map(|micros| *micros as f64).sum::<f64>() / samples.len() as f64 / 1000.0
        });
        BackendReport {
            id: self.id.to_string(),
            url: self.spec.url.clone(),
            weight: self.spec.weight,
            max_in_flight: self.spec.max_in_flight,
            health,
            circuit,
            drained: self.drained(),
            models: listing.models.into_iter().map(|model| model.name).collect(),
            loaded_models: listing.loaded,
            in_flight: u64::try_from(self.in_flight()).unwrap_or(0),
            served: sum(|stripe| &stripe.served),
            failed: sum(|stripe| &stripe.failed),
            consecutive_failures,
            last_error: lock(&self.last_error).clone(),
            latency_ms,
            discovered_at_unix_ms: discovered_at,
        }
    }
}

impl Stripe {
    /// Folds one sample into the moving average (weight 1/8). The stripe's workers are its
    /// only writers, so a plain load and store suffices; a lost sample under sharing is
    /// harmless.
    pub(crate) fn note_latency(&self, elapsed: Duration) {
        let sample = u64::try_from(elapsed.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let old = self.latency_micros.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample
        } else {
            old - old / 8 + sample / 8
        };
        self.latency_micros.store(new.max(1), Ordering::Relaxed);
    }
}
