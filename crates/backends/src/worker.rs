//! One actix worker's side: a client per backend, the routing decision, and the retry loop
//! that moves a failed call to the next backend while nothing has reached the client yet.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use aiproxy_ollama::{
    ChatRequest, ChatResponse, ChatStream, EmbedRequest, EmbedResponse, GenerateRequest,
    GenerateResponse, GenerateStream, NdjsonStream, OllamaClient, OllamaConfig, OllamaError,
    StreamItem, TimeoutPhase,
};
use futures_util::{Stream, StreamExt as _};
use tokio::time::Instant;

use crate::error::{RouteError, Unavailable};
use crate::state::{Backend, Backends, Circuit};
use crate::table::ModelTable;

/// A worker's handle on the backends: one [`OllamaClient`] each, and the routing decision.
///
/// `!Send` like awc: build one per actix worker with [`Backends::worker`] (e.g. in the
/// `HttpServer::new` factory). Cheap to clone.
#[derive(Clone)]
pub struct BackendClients {
    worker: Rc<Worker>,
}

struct Worker {
    backends: Backends,
    clients: Box<[OllamaClient]>,
    /// The backends' ids, cloned per answer without touching a shared reference count.
    ids: Box<[Rc<str>]>,
    /// This worker's stripe of every backend's counters.
    stripe: usize,
    /// The model table this worker last saw, with its version.
    table: RefCell<(u64, Arc<ModelTable>)>,
    /// Turns ties between equally loaded backends into round robin.
    turn: Cell<usize>,
    /// Every backend's requests in flight, as last summed over all stripes plus this worker's
    /// own changes since; summed again when older than [`IN_FLIGHT_VIEW_MAX_AGE`].
    in_flight: Box<[Cell<i64>]>,
    in_flight_read_at: Cell<Option<Instant>>,
}

/// How old the in-flight counts a worker decides on may be. Summing every worker's stripe
/// reads cache lines other workers keep writing; once a millisecond is enough when requests
/// last seconds, and the worker's own requests count at once.
pub const IN_FLIGHT_VIEW_MAX_AGE: std::time::Duration = std::time::Duration::from_millis(1);

impl fmt::Debug for BackendClients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendClients")
            .field("backends", &self.worker.ids)
            .field("stripe", &self.worker.stripe)
            .finish_non_exhaustive()
    }
}

/// A successful call, and the backend that answered it.
#[derive(Debug)]
pub struct Routed<T> {
    /// The answer.
    pub value: T,
    /// The id of the backend that answered (for the usage row).
    pub backend: Rc<str>,
    /// How many backends were tried, this one included.
    pub attempts: u32,
}

/// A request counted in flight on one backend until it is dropped.
///
/// [`BackendClients::call`] and [`BackendClients::stream`] take and settle leases themselves;
/// [`BackendClients::route`] hands one out for callers that drive a call by hand.
pub struct Lease {
    worker: Rc<Worker>,
    index: usize,
    started: Instant,
    /// Whether the model was listed on this backend (`false`: no backend lists it and this one
    /// was tried anyway, in case discovery is behind).
    listed: bool,
    was_loaded: bool,
    /// This request is a half-open circuit's trial.
    trial: bool,
    settled: bool,
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("backend", &self.worker.ids[self.index])
            .field("listed", &self.listed)
            .field("was_loaded", &self.was_loaded)
            .field("trial", &self.trial)
            .finish_non_exhaustive()
    }
}

/// How an attempt's failure counts.
enum Verdict {
    /// The backend answered (a 4xx): healthy, and the answer is the client's.
    Answered,
    /// The backend failed: count it, try the next one.
    Fault,
    /// The backend does not have the model after all.
    Missing,
}

fn verdict(error: &OllamaError) -> Verdict {
    match error {
        OllamaError::ModelNotFound { .. } => Verdict::Missing,
        OllamaError::Status { status, .. } if *status < 500 => Verdict::Answered,
        OllamaError::Status { .. }
        | OllamaError::Busy { .. }
        | OllamaError::Connect { .. }
        | OllamaError::Timeout { .. }
        | OllamaError::Stream { .. }
        | OllamaError::Interrupted { .. }
        | OllamaError::InvalidResponse { .. } => Verdict::Fault,
    }
}

impl Backends {
    /// Builds this worker's clients (one per backend, each with its own connection pool) and
    /// assigns it a stripe of the counters.
    pub fn worker(&self) -> BackendClients {
        let inner = &self.inner;
        let clients = inner
            .backends
            .iter()
            .map(|backend| OllamaClient::new(&backend_config(&inner.config.client, backend)))
            .collect();
        let stripes = inner.backends.first().map_or(1, |b| b.stripes.len());
        let stripe = inner.next_stripe.fetch_add(1, Ordering::Relaxed) as usize % stripes;
        BackendClients {
            worker: Rc::new(Worker {
                backends: self.clone(),
                clients,
                ids: inner.backends.iter().map(|b| Rc::from(&*b.id)).collect(),
                stripe,
                table: RefCell::new(self.table()),
                turn: Cell::new(stripe),
                in_flight: inner.backends.iter().map(|_| Cell::new(0)).collect(),
                in_flight_read_at: Cell::new(None),
            }),
        }
    }
}

/// A backend's client settings: the router's template with the backend's URL and headers.
pub(crate) fn backend_config(template: &OllamaConfig, backend: &Backend) -> OllamaConfig {
    OllamaConfig {
        base_url: backend.spec.url.clone(),
        headers: backend.spec.headers.clone(),
        ..template.clone()
    }
}

impl BackendClients {
    /// The backends this worker routes to.
    pub fn backends(&self) -> &Backends {
        &self.worker.backends
    }

    /// The client of the backend called `id`, for calls that go to one named backend (model
    /// management) rather than through routing.
    pub fn client(&self, id: &str) -> Result<&OllamaClient, RouteError> {
        let index = self.worker.backends.index_of(id)?;
        Ok(&self.worker.clients[index])
    }

    /// Every backend's id and client, in configuration order (model management on all).
    pub fn clients(&self) -> impl Iterator<Item = (&str, &OllamaClient)> {
        self.worker
            .ids
            .iter()
            .map(|id| &**id)
            .zip(self.worker.clients.iter())
    }

    /// The routing decision alone: the backend a request for `model` goes to now, counted in
    /// flight until the lease drops. Never waits.
    pub fn route(&self, model: &str) -> Result<Lease, RouteError> {
        self.worker.lease(model, 0)
    }

    /// Sends a call to the best backend for `model` and, when that backend fails before
    /// answering (connection, timeout, 5xx, or a "model not found" for a model it listed),
    /// to the next best, at most [`RouterConfig::max_attempts`](crate::RouterConfig) backends
    /// and never past `deadline`. `op` makes the call on the client it is given.
    ///
    /// The backend's own answers (2xx, 4xx) and, after the last try, the last failure come
    /// back as they are, in [`RouteError::Upstream`]; nothing eligible at all is
    /// [`RouteError::NoBackend`].
    pub async fn call<T, F, Fut>(
        &self,
        model: &str,
        deadline: Option<Instant>,
        mut op: F,
    ) -> Result<Routed<T>, RouteError>
    where
        F: FnMut(OllamaClient) -> Fut,
        Fut: Future<Output = Result<T, OllamaError>>,
    {
        let (value, lease, attempts) = self.attempt(model, deadline, &mut op).await?;
        Ok(Routed {
            value,
            backend: lease.backend().clone(),
            attempts,
        })
    }

    /// Like [`call`](Self::call) for a stream: `op` opens it, and the first item is awaited
    /// before the stream is handed over, so a backend that fails before its first line is
    /// left for the next one. Once the first line is out, nothing is retried; failures later
    /// in the stream still count against the backend.
    pub async fn stream<S, I, F, Fut>(
        &self,
        model: &str,
        deadline: Option<Instant>,
        mut op: F,
    ) -> Result<Routed<RoutedStream<S>>, RouteError>
    where
        S: Stream<Item = Result<I, OllamaError>> + Unpin,
        F: FnMut(OllamaClient) -> Fut,
        Fut: Future<Output = Result<S, OllamaError>>,
    {
        let mut open_and_read_first = |client: OllamaClient| {
            let opened = op(client);
            async move {
                let mut stream = opened.await?;
                match stream.next().await {
                    // An unreadable line does not end a stream (the caller skips it), so it
                    // counts as the start of the answer.
                    Some(Ok(first)) => Ok((Ok(first), stream)),
                    Some(Err(error @ OllamaError::InvalidResponse { .. })) => {
                        Ok((Err(error), stream))
                    }
                    Some(Err(error)) => Err(error),
                    None => Err(OllamaError::Interrupted {
                        message: "the stream ended before its first line".to_owned(),
                    }),
                }
            }
        };
        let ((first, inner), lease, attempts) = self
            .attempt(model, deadline, &mut open_and_read_first)
            .await?;
        let backend = lease.backend().clone();
        Ok(Routed {
            value: RoutedStream {
                first: Some(first),
                inner,
                lease,
                broke: false,
            },
            backend,
            attempts,
        })
    }

    /// `POST /api/chat` without streaming, routed by `request.model`.
    pub async fn chat(
        &self,
        request: &ChatRequest,
        deadline: Option<Instant>,
    ) -> Result<Routed<ChatResponse>, RouteError> {
        self.call(&request.model, deadline, |client| async move {
            client.chat(request).await
        })
        .await
    }

    /// `POST /api/chat` streaming, routed by `request.model`.
    pub async fn chat_stream(
        &self,
        request: &ChatRequest,
        deadline: Option<Instant>,
    ) -> Result<Routed<RoutedStream<ChatStream>>, RouteError> {
        self.stream(&request.model, deadline, |client| async move {
            client.chat_stream(request).await
        })
        .await
    }

    /// `POST /api/generate` without streaming, routed by `request.model`.
    pub async fn generate(
        &self,
        request: &GenerateRequest,
        deadline: Option<Instant>,
    ) -> Result<Routed<GenerateResponse>, RouteError> {
        self.call(&request.model, deadline, |client| async move {
            client.generate(request).await
        })
        .await
    }

    /// `POST /api/generate` streaming, routed by `request.model`.
    pub async fn generate_stream(
        &self,
        request: &GenerateRequest,
        deadline: Option<Instant>,
    ) -> Result<Routed<RoutedStream<GenerateStream>>, RouteError> {
        self.stream(&request.model, deadline, |client| async move {
            client.generate_stream(request).await
        })
        .await
    }

    /// `POST /api/embed`, routed by `request.model`.
    pub async fn embed(
        &self,
        request: &EmbedRequest,
        deadline: Option<Instant>,
    ) -> Result<Routed<EmbedResponse>, RouteError> {
        self.call(&request.model, deadline, |client| async move {
            client.embed(request).await
        })
        .await
    }

    /// The retry loop shared by calls and streams. On success the lease is still held (a
    /// stream keeps it until it ends).
    async fn attempt<T, F, Fut>(
        &self,
        model: &str,
        deadline: Option<Instant>,
        op: &mut F,
    ) -> Result<(T, Lease, u32), RouteError>
    where
        F: FnMut(OllamaClient) -> Fut,
        Fut: Future<Output = Result<T, OllamaError>>,
    {
        let max_attempts = self.worker.backends.config().max_attempts.max(1);
        let mut tried = 0u64;
        let mut attempts = 0u32;
        let mut last: Option<(Rc<str>, OllamaError)> = None;
        loop {
            let mut lease = match self.worker.lease(model, tried) {
                Ok(lease) => lease,
                Err(no_backend) => {
                    return Err(match last {
                        Some((backend, error)) => upstream(&backend, error, attempts),
                        None => no_backend,
                    });
                }
            };
            attempts += 1;
            tried |= 1 << lease.index;
            let call = op(lease.client().clone());
            let result = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, call).await.unwrap_or(Err(
                    OllamaError::Timeout {
                        phase: TimeoutPhase::Response,
                    },
                )),
                None => call.await,
            };
            let error = match result {
                Ok(value) => {
                    lease.succeeded(model);
                    return Ok((value, lease, attempts));
                }
                Err(error) => error,
            };
            match verdict(&error) {
                Verdict::Answered => {
                    lease.succeeded(model);
                    return Err(upstream(lease.backend(), error, attempts));
                }
                Verdict::Missing if !lease.listed => {
                    // No backend lists the model, so no other is worth a try: the 404 as
                    // Ollama wrote it, as with a single backend.
                    lease.answered_without_model();
                    return Err(upstream(lease.backend(), error, attempts));
                }
                Verdict::Missing => lease.model_missing(model),
                Verdict::Fault => lease.failed(&error),
            }
            let backend = lease.backend().clone();
            drop(lease);
            last = Some((backend, error));
            let out_of_time = deadline.is_some_and(|deadline| Instant::now() >= deadline);
            if attempts >= max_attempts || out_of_time {
                let (backend, error) = last.take().ok_or_else(|| RouteError::NoBackend {
                    model: model.to_owned(),
                    why: Unavailable::default(),
                })?;
                return Err(upstream(&backend, error, attempts));
            }
        }
    }
}

fn upstream(backend: &Rc<str>, error: OllamaError, attempts: u32) -> RouteError {
    RouteError::Upstream {
        backend: Arc::from(&**backend),
        error,
        attempts,
    }
}

/// Iterates the set bits of a mask, lowest first.
fn bits(mut mask: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        (mask != 0).then(|| {
            let index = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            index
        })
    })
}

impl Worker {
    /// Runs `read` on the current model table, fetching it only when its version moved.
    fn with_table<R>(&self, read: impl FnOnce(&ModelTable) -> R) -> R {
        let version = self.backends.inner.version.0.load(Ordering::Acquire);
        if self.table.borrow().0 != version {
            *self.table.borrow_mut() = self.backends.table();
        }
        read(&self.table.borrow().1)
    }

    /// Requests in flight on a backend, from every worker: this worker's view, summed afresh
    /// when older than [`IN_FLIGHT_VIEW_MAX_AGE`].
    fn in_flight(&self, index: usize, now: Instant) -> i64 {
        let fresh = self.in_flight_read_at.get().is_some_and(|read_at| {
            now.saturating_duration_since(read_at) <= IN_FLIGHT_VIEW_MAX_AGE
        });
        if !fresh {
            for (view, backend) in self.in_flight.iter().zip(&*self.backends.inner.backends) {
                view.set(backend.in_flight());
            }
            self.in_flight_read_at.set(Some(now));
        }
        self.in_flight[index].get()
    }

    /// Counts a request of this worker in or out of a backend: in its stripe (which others
    /// sum) and in its own view.
    fn count_in_flight(&self, index: usize, delta: i64) {
        self.backends.inner.backends[index].stripes[self.stripe]
            .in_flight
            .fetch_add(delta, Ordering::Relaxed);
        let view = &self.in_flight[index];
        view.set(view.get() + delta);
    }

    /// Decides where a request for `model` goes, skipping the backends in `tried`, and counts
    /// it in flight there.
    fn lease(self: &Rc<Self>, model: &str, tried: u64) -> Result<Lease, RouteError> {
        let backends = &self.backends.inner.backends;
        let all = u64::MAX >> (64 - backends.len());
        let (listed, has, loaded) = self.with_table(|table| match table.find(model) {
            Some(entry) if entry.has() != 0 => (true, entry.has(), entry.loaded()),
            // No backend lists it: any may have it (discovery can be behind); the one tried
            // answers, as a single Ollama would.
            _ => (false, all, 0),
        });
        let now = Instant::now();
        // Half-open backends whose one trial another worker took while this one decided.
        let mut lost_trials = 0u64;
        loop {
            let mut why = Unavailable {
                configured: backends.len() as u32,
                with_model: if listed { has.count_ones() } else { 0 },
                ..Unavailable::default()
            };
            let mut eligible = 0u64;
            for index in bits(has) {
                let backend = &backends[index];
                let bit = 1 << index;
                if tried & bit != 0 {
                    why.tried += 1;
                } else if backend.drained() {
                    why.drained += 1;
                } else if lost_trials & bit != 0
                    || match backend.circuit() {
                        Circuit::Closed => false,
                        Circuit::Open => true,
                        Circuit::HalfOpen => backend.flags.0.trial_taken.load(Ordering::Relaxed),
                    }
                {
                    why.down += 1;
                } else if backend
                    .spec
                    .max_in_flight
                    .is_some_and(|cap| self.in_flight(index, now) >= i64::from(cap))
                {
                    why.full += 1;
                } else {
                    eligible |= bit;
                }
            }
            if eligible == 0 {
                return Err(RouteError::NoBackend {
                    model: model.to_owned(),
                    why,
                });
            }
            let index = if eligible.count_ones() == 1 {
                eligible.trailing_zeros() as usize
            } else {
                self.rank(eligible, loaded, now)
            };
            let backend = &backends[index];
            let trial = backend.circuit() == Circuit::HalfOpen;
            if trial
                && backend
                    .flags
                    .0
                    .trial_taken
                    .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                    .is_err()
            {
                lost_trials |= 1 << index;
                continue;
            }
            self.count_in_flight(index, 1);
            return Ok(Lease {
                worker: Rc::clone(self),
                index,
                started: now,
                listed,
                was_loaded: loaded & (1 << index) != 0,
                trial,
                settled: false,
            });
        }
    }

    /// Picks among several eligible backends: one with the model loaded (while it has fewer
    /// than `prefer_loaded_below` in flight), then the smallest `(in_flight + 1) / weight`;
    /// ties go round robin.
    fn rank(&self, eligible: u64, loaded: u64, now: Instant) -> usize {
        let backends = &self.backends.inner.backends;
        let prefer_below = i64::from(self.backends.inner.config.prefer_loaded_below);
        let mut candidates = [(0usize, 0i64); crate::MAX_BACKENDS];
        let mut count = 0;
        let mut warm = 0u64;
        for index in bits(eligible) {
            let in_flight = self.in_flight(index, now).max(0);
            if loaded & (1 << index) != 0 && in_flight < prefer_below {
                warm |= 1 << index;
            }
            candidates[count] = (index, in_flight);
            count += 1;
        }
        let turn = self.turn.get();
        self.turn.set(turn.wrapping_add(1));
        let mut best: Option<(usize, i64, u64)> = None;
        for offset in 0..count {
            let (index, in_flight) = candidates[(turn + offset) % count];
            if warm != 0 && warm & (1 << index) == 0 {
                continue;
            }
            let weight = u64::from(backends[index].spec.weight);
            let better = match best {
                None => true,
                // (in_flight + 1) / weight below the best's, without division. Counting the
                // request being placed makes weight decide between idle backends too.
                Some((_, best_in_flight, best_weight)) => {
                    (in_flight as u64 + 1) * best_weight < (best_in_flight as u64 + 1) * weight
                }
            };
            if better {
                best = Some((index, in_flight, weight));
            }
        }
        best.map_or(candidates[0].0, |(index, _, _)| index)
    }
}

impl Lease {
    /// The id of the backend this lease is on.
    pub fn backend(&self) -> &Rc<str> {
        &self.worker.ids[self.index]
    }

    /// The backend's client on this worker.
    pub fn client(&self) -> &OllamaClient {
        &self.worker.clients[self.index]
    }

    /// Reports how a call made by hand on [`Lease::client`] ended, for the backend's health
    /// and counters; what [`BackendClients::call`] does itself. Only the first report counts.
    pub fn record<T>(&mut self, model: &str, result: &Result<T, OllamaError>) {
        match result {
            Ok(_) => self.succeeded(model),
            Err(error) => match verdict(error) {
                Verdict::Answered => self.succeeded(model),
                Verdict::Missing if self.listed => self.model_missing(model),
                Verdict::Missing => self.answered_without_model(),
                Verdict::Fault => self.failed(error),
            },
        }
    }

    fn shared(&self) -> &Backend {
        &self.worker.backends.inner.backends[self.index]
    }

    fn settle(&mut self) -> bool {
        !std::mem::replace(&mut self.settled, true)
    }

    fn succeeded(&mut self, model: &str) {
        if !self.settle() {
            return;
        }
        let backend = self.shared();
        let stripe = &backend.stripes[self.worker.stripe];
        stripe.served.fetch_add(1, Ordering::Relaxed);
        stripe.note_latency(self.started.elapsed());
        backend.note_success();
        if !self.listed {
            // It has a model it did not list: discovery is behind.
            backend.wake.notify_one();
        } else if !self.was_loaded {
            let bit = 1 << self.index;
            self.worker.with_table(|table| {
                if let Some(entry) = table.find(model) {
                    entry.mark_loaded(bit);
                }
            });
        }
    }

    fn answered_without_model(&mut self) {
        if self.settle() {
            let backend = self.shared();
            backend.stripes[self.worker.stripe]
                .served
                .fetch_add(1, Ordering::Relaxed);
            backend.note_success();
        }
    }

    fn model_missing(&mut self, model: &str) {
        if !self.settle() {
            return;
        }
        let bit = 1 << self.index;
        self.worker.with_table(|table| {
            if let Some(entry) = table.find(model) {
                entry.mark_missing(bit);
            }
        });
        let backend = self.shared();
        tracing::info!(backend = %backend.id, model, "backend no longer has a model it listed; rediscovering");
        backend.note_success();
        backend.wake.notify_one();
    }

    fn failed(&mut self, error: &OllamaError) {
        if !self.settle() {
            return;
        }
        let backend = self.shared();
        backend.stripes[self.worker.stripe]
            .failed
            .fetch_add(1, Ordering::Relaxed);
        let threshold = self.worker.backends.config().failure_threshold;
        if backend.note_failure(error, threshold) {
            // The monitor switches to probing.
            backend.wake.notify_one();
        }
    }

    /// A failure after the answer began: counted against the backend, whatever came before.
    fn failed_mid_stream(&mut self, error: &OllamaError) {
        self.settled = false;
        self.failed(error);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.worker.count_in_flight(self.index, -1);
        let backend = self.shared();
        if self.trial && !self.settled {
            // The trial ended without a verdict (the client left): let another request try.
            backend.flags.0.trial_taken.store(false, Ordering::Release);
        }
    }
}

/// A stream from the backend that answered, with its first item already read.
///
/// It yields that item, then the rest. A failure later in the stream (cut off, stalled, an
/// error line) counts against the backend; it is not retried, since the client has bytes.
/// The backend counts the request in flight until this is dropped.
pub struct RoutedStream<S: Stream> {
    first: Option<S::Item>,
    inner: S,
    lease: Lease,
    broke: bool,
}

impl<S: Stream> fmt::Debug for RoutedStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoutedStream")
            .field("lease", &self.lease)
            .field("first_pending", &self.first.is_some())
            .finish_non_exhaustive()
    }
}

// No field is ever pinned in place: `inner` is polled through `Pin::new`, which needs
// `S: Unpin` anyway.
impl<S: Stream> Unpin for RoutedStream<S> {}

impl<S, I> Stream for RoutedStream<S>
where
    S: Stream<Item = Result<I, OllamaError>> + Unpin,
{
    type Item = Result<I, OllamaError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(first) = this.first.take() {
            return Poll::Ready(Some(first));
        }
        let item = std::task::ready!(Pin::new(&mut this.inner).poll_next(cx));
        if let Some(Err(error)) = &item
            && !matches!(error, OllamaError::InvalidResponse { .. })
            && !this.broke
        {
            this.broke = true;
            this.lease.failed_mid_stream(error);
        }
        Poll::Ready(item)
    }
}

impl<T: StreamItem + 'static> RoutedStream<NdjsonStream<T>> {
    /// Lets go of the stream once its `done` item was taken, so the connection goes back to
    /// the pool ([`NdjsonStream::release`]); the request stops counting in flight now.
    pub fn release(self) {
        let RoutedStream { inner, lease, .. } = self;
        drop(lease);
        inner.release();
    }
}
