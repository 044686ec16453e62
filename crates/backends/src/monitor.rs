//! Discovery and probing in the background: each backend's models and loaded models are read
//! at start-up and every `refresh_interval` (or at once when a request found a model
//! missing); a backend whose circuit is open is probed every `probe_interval` until it answers.

use std::time::Duration;

use aiproxy_ollama::{OllamaClient, OllamaConfig, OllamaError};
use std::sync::atomic::Ordering;

use crate::state::{Backends, Circuit};
use crate::table::Listing;
use crate::worker::backend_config;

/// The least time between two discoveries of one backend that requests asked for (a model
/// missing where it was listed, or found where it was not).
pub const MIN_REDISCOVERY_GAP: Duration = Duration::from_millis(250);

impl Backends {
    /// Watches every backend until the future is dropped: discovery on its interval, probes
    /// while a circuit is open. It is `!Send` (awc): spawn it on an actix or `LocalSet`
    /// runtime, e.g. `actix_rt::spawn(backends.clone().monitor())`, and abort it to stop.
    pub async fn monitor(self) {
        let clients = self.probe_clients();
        let loops = clients
            .iter()
            .enumerate()
            .map(|(index, client)| self.watch(index, client));
        futures_util::future::join_all(loops).await;
    }

    /// Reads every backend's models once, concurrently, and returns when each answered or
    /// failed. Run it before serving so the first requests route by model; a backend that
    /// cannot be reached starts with its circuit open.
    pub async fn discover_all(&self) {
        let clients = self.probe_clients();
        let rounds = clients
            .iter()
            .enumerate()
            .map(|(index, client)| self.refresh(index, client));
        futures_util::future::join_all(rounds).await;
    }

    fn probe_clients(&self) -> Vec<OllamaClient> {
        let config = &self.inner.config;
        let template = OllamaConfig {
            response_timeout: config.probe_timeout,
            connect_timeout: config.client.connect_timeout.min(config.probe_timeout),
            idle_timeout: config.client.idle_timeout.min(config.probe_timeout),
            max_connections: 2,
            ..config.client.clone()
        };
        self.inner
            .backends
            .iter()
            .map(|backend| OllamaClient::new(&backend_config(&template, backend)))
            .collect()
    }

    async fn watch(&self, index: usize, client: &OllamaClient) {
        let backend = &self.inner.backends[index];
        let config = &self.inner.config;
        loop {
            if backend.circuit() == Circuit::Open {
                tokio::time::sleep(config.probe_interval).await;
                self.probe(index, client).await;
            } else {
                let started = tokio::time::Instant::now();
                self.refresh(index, client).await;
                if backend.circuit() == Circuit::Open {
                    continue;
                }
                let woken = backend.wake.notified();
                // A wake-up is a request to rediscover, or a circuit that just opened.
                if tokio::time::timeout(config.refresh_interval, woken)
                    .await
                    .is_ok()
                {
                    // Requests can ask many times a second; the backend is read at most
                    // every MIN_REDISCOVERY_GAP.
                    let gap = MIN_REDISCOVERY_GAP.min(config.refresh_interval);
                    tokio::time::sleep_until(started + gap).await;
                }
            }
        }
    }

    /// An open circuit: if the backend answers `/api/version` and its models can be read, it
    /// becomes half-open (one trial request decides).
    async fn probe(&self, index: usize, client: &OllamaClient) {
        let backend = &self.inner.backends[index];
        let answered = match client.version().await {
            Ok(_) => self.discover(index, client).await,
            Err(error) => Err(error),
        };
        match answered {
            Ok(()) => {
                backend.flags.0.trial_taken.store(false, Ordering::Release);
                backend.set_circuit(Circuit::HalfOpen);
                tracing::info!(backend = %backend.id, "backend answers again (circuit half-open)");
            }
            Err(error) => {
                tracing::debug!(backend = %backend.id, %error, "probe failed");
                backend.note_last_error(&error);
            }
        }
    }

    /// Discovery with its bookkeeping: success ends a failure run of a closed circuit; failure
    /// counts like a failed request, and a backend never reached yet starts out open.
    async fn refresh(&self, index: usize, client: &OllamaClient) {
        let backend = &self.inner.backends[index];
        match self.discover(index, client).await {
            Ok(()) => backend.note_discovery_success(),
            Err(error) => {
                let never_reached = backend.discovered_at().is_none();
                let threshold = if never_reached {
                    1
                } else {
                    self.inner.config.failure_threshold
                };
                backend.note_failure(&error, threshold);
            }
        }
    }

    /// Reads `/api/tags` and `/api/ps` and stores them. Only `/api/tags` must answer: an
    /// Ollama without `/api/ps` just has no loaded models to prefer.
    async fn discover(&self, index: usize, client: &OllamaClient) -> Result<(), OllamaError> {
        let (tags, ps) = futures_util::future::join(client.tags(), client.ps()).await;
        let models = tags?.models;
        let loaded = match ps {
            Ok(ps) => ps.models.into_iter().map(|model| model.name).collect(),
            Err(error) => {
                tracing::debug!(backend = %self.inner.backends[index].id, %error, "/api/ps failed");
                Vec::new()
            }
        };
        self.store_listing(index, Listing { models, loaded });
        Ok(())
    }
}
