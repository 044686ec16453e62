//! The aiproxy server: reads configuration, opens the SQLite store, rebuilds the rate
//! limiter's windows, wires the crates into an actix-web server with Swagger UI, follows
//! changes other processes make to the database, purges old usage records when told to, and
//! shuts down gracefully.
//!
//! No request handling lives here (that is `aiproxy-api`); this crate only assembles. Tests
//! and embedders start the same server through [`Application::build`].
#![warn(missing_docs)]

/// The command line: serving, and the admin commands beside it.
pub mod cli;
/// Configuration.
pub mod settings;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::rt::task::JoinHandle;
use actix_web::{App, HttpServer, web};
use aiproxy_api::AppState;
use aiproxy_domain::{Store, UnixMillis, UsageStore};
use aiproxy_ollama::OllamaClient;
use aiproxy_ratelimit::{LimiterConfig, LocalAdmission, RateLimiter};
use aiproxy_storage::{SqliteStore, StoreOptions};
use utoipa_actix_web::AppExt as _;
use utoipa_swagger_ui::SwaggerUi;

pub use settings::{DEFAULT_ADMIN_API_KEY, Settings, SettingsError};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened or migrated (the source chain says why).
    #[error(transparent)]
    Storage(#[from] aiproxy_storage::StorageError),
    /// Reading the usage records to rebuild the rate limiter failed.
    #[error("could not read usage to rebuild rate limits")]
    Restore(#[from] aiproxy_domain::StoreError),
    /// The address could not be bound.
    #[error("could not listen on {address}")]
    Bind {
        /// The address.
        address: String,
        /// Why.
        source: std::io::Error,
    },
}

/// A built, not yet running server.
pub struct Application {
    server: Server,
    address: SocketAddr,
    store: SqliteStore,
    retention: Option<RetentionTask>,
    changes: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Opens the store, rebuilds the limiter, binds the listener, starts following changes
    /// made to the database by other processes (unless `change_poll_millis` is 0) and, when
    /// `usage_retention_days` is above 0, the task that purges old usage records. Call from inside an actix (or tokio
    /// `LocalSet`) runtime.
    pub fn build(settings: Settings) -> Result<Self, StartError> {
        let store = SqliteStore::open(&settings.database_path, StoreOptions::default())?;
        let limiter = Arc::new(RateLimiter::new(LimiterConfig {
            default_completion_budget: settings.default_completion_budget,
        }));
        restore_limiter(&store, &limiter)?;

        let address = format!("{}:{}", settings.host, settings.port);
        let listener = TcpListener::bind(&address).map_err(|source| StartError::Bind {
            address: address.clone(),
            source,
        })?;
        let bound = listener.local_addr().map_err(|source| StartError::Bind {
            address: address.clone(),
            source,
        })?;
        let shared_store: Arc<dyn Store> = Arc::new(store.clone());
        // Only once the address is ours, so a server that cannot start deletes nothing.
        let retention = match settings.usage_retention_days {
            0 => None,
            days => Some(RetentionTask::start(Arc::clone(&shared_store), days)),
        };

        let usage: Arc<dyn UsageStore> = shared_store.clone();
        let admission = Arc::new(LocalAdmission::new(limiter, usage));
        let state = web::Data::new(
            AppState::new(
                Arc::clone(&shared_store),
                admission,
                settings.api_settings(),
            )
            .with_extra_metrics(writer_metrics(store.clone())),
        );
        let changes = match settings.change_poll_millis {
            0 => None,
            millis => Some(actix_web::rt::spawn(follow_changes(
                shared_store,
                state.clone(),
                Duration::from_millis(millis),
            ))),
        };
        let ollama_config = settings.ollama_config();
        let server = HttpServer::new(move || {
            // awc clients are not Send: each worker builds its own (and its own pool).
            let client = web::Data::new(OllamaClient::new(&ollama_config));
            let (app, openapi) = App::new()
                .into_utoipa_app()
                .openapi(aiproxy_api::openapi())
                .app_data(state.clone())
                .app_data(client)
                .configure(aiproxy_api::configure)
                .split_for_parts();
            app.wrap(aiproxy_api::error_shape())
                .wrap(actix_web::middleware::from_fn(
                    aiproxy_api::assign_request_id,
                ))
                .service(web::redirect("/docs", "/docs/"))
                .service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", openapi))
                .default_service(web::to(aiproxy_api::not_found))
        })
        .shutdown_timeout(settings.shutdown_grace_secs)
        // A stream's last write (usage chunk and [DONE]) is small; with Nagle's algorithm the
        // kernel holds it until the client acknowledges the previous write, which a client
        // with delayed ACKs does 40 ms later. Measured by scripts/bench.sh.
        .on_connect(|connection, _| {
            if let Some(tcp) = connection.downcast_ref::<actix_web::rt::net::TcpStream>()
                && let Err(err) = tcp.set_nodelay(true)
            {
                tracing::debug!(error = %err, "could not set TCP_NODELAY");
            }
        });
        let server = server
            .workers(settings.worker_count())
            .listen(listener)
            .map_err(|source| StartError::Bind { address, source })?
            .run();
        Ok(Self {
            server,
            address: bound,
            store,
            retention,
            changes,
        })
    }

    /// The address the server listens on (with the real port when 0 was asked for).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// A handle to stop the server from elsewhere.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGINT/SIGTERM (or a handle's `stop`), lets in-flight requests finish
    /// within the grace period, stops the retention task (waiting for a purge under way to
    /// finish), then commits every queued usage row.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        if let Some(changes) = self.changes {
            changes.abort();
        }
        if let Some(retention) = self.retention {
            retention.stop().await;
        }
        let store = self.store;
        // Closing waits for the usage writer to commit what is queued; off the executor.
        let finished = actix_web::rt::task::spawn_blocking(move || store.close());
        if finished.await.is_err() {
            tracing::error!("usage rows still queued at shutdown could not be committed");
        }
        result
    }
}

/// Clears the key cache whenever the store's change marker moves, so a change made by
/// another process (the admin command line, a restore, a hand-written SQL statement) takes
/// effect here within `every` plus one read (`Settings::change_poll_millis`). Changes made
/// through this server's own admin routes take effect at once anyway; they move the marker
/// too, which costs one extra cache miss per active key.
async fn follow_changes(store: Arc<dyn Store>, state: web::Data<AppState>, every: Duration) {
    let mut seen: Option<u64> = None;
    let mut ticks = actix_web::rt::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match store.change_marker().await {
            Ok(marker) => {
                if seen.is_some_and(|seen| seen != marker) {
                    state.keys.clear();
                    tracing::debug!(marker, "users, keys or limits changed; key cache cleared");
                }
                seen = Some(marker);
            }
            // Unknown is treated as changed: a stale key must not outlive a database hiccup.
            Err(error) => {
                if seen.take().is_some() {
                    tracing::warn!(error = %error, "cannot read the database's change marker");
                }
                state.keys.clear();
            }
        }
    }
}

/// How far back the rate limiter's day windows can still see a record: a day, plus one
/// minute because a day-window bucket may free up to one bucket late.
const LIMITER_LOOKBACK_MILLIS: i64 = 24 * 60 * 60 * 1000 + 60_000;

/// How often old usage records are purged after the start-up purge.
const RETENTION_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// The usage writer's queue and commits, for `/metrics` (only the binary knows the store is
/// SQLite).
fn writer_metrics(store: SqliteStore) -> aiproxy_api::ExtraMetrics {
    Arc::new(move |out: &mut String| {
        use std::fmt::Write as _;
        let stats = store.writer_stats();
        let _ = write!(
            out,
            "# HELP aiproxy_usage_writer_queue_depth Usage rows waiting for the writer.\n\
             # TYPE aiproxy_usage_writer_queue_depth gauge\n\
             aiproxy_usage_writer_queue_depth {}\n\
             # HELP aiproxy_usage_writer_commits_total Transactions committed by the usage writer.\n\
             # TYPE aiproxy_usage_writer_commits_total counter\n\
             aiproxy_usage_writer_commits_total {}\n\
             # HELP aiproxy_usage_writer_rows_total Usage rows committed.\n\
             # TYPE aiproxy_usage_writer_rows_total counter\n\
             aiproxy_usage_writer_rows_total {}\n\
             # HELP aiproxy_usage_writer_failed_commits_total Transactions that failed (their rows were not saved).\n\
             # TYPE aiproxy_usage_writer_failed_commits_total counter\n\
             aiproxy_usage_writer_failed_commits_total {}\n\
             # HELP aiproxy_usage_writer_last_commit_seconds How long the latest commit took.\n\
             # TYPE aiproxy_usage_writer_last_commit_seconds gauge\n\
             aiproxy_usage_writer_last_commit_seconds {}\n",
            stats.queued,
            stats.batches_committed,
            stats.records_committed,
            stats.batches_failed,
            stats.last_commit_latency.as_secs_f64(),
        );
    })
}

/// Replays the last day of usage and the lifetime totals into the limiter, so a restart
/// neither forgets nor double counts. Blocking: it runs before the server serves.
fn restore_limiter(store: &SqliteStore, limiter: &RateLimiter) -> Result<(), StartError> {
    let now = UnixMillis::now();
    let since = now.plus_millis(-LIMITER_LOOKBACK_MILLIS);
    let events = store.blocking().usage_events_since(since)?;
    let lifetime = store.blocking().lifetime_tokens()?;
    tracing::info!(
        events = events.len(),
        users = lifetime.len(),
        "rate limits restored"
    );
    limiter.restore(events, lifetime, now);
    Ok(())
}

/// The background task that deletes usage records older than the retention period: once at
/// start-up, then every [`RETENTION_INTERVAL`]. The purge itself runs on the store's own
/// threads; [`RetentionTask::stop`] waits for one under way to finish.
struct RetentionTask {
    /// Dropping this tells the task to finish.
    stop: tokio::sync::oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl RetentionTask {
    fn start(store: Arc<dyn Store>, days: u64) -> Self {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = actix_web::rt::spawn(async move {
            loop {
                purge_old_usage(store.as_ref(), days).await;
                tokio::select! {
                    () = actix_web::rt::time::sleep(RETENTION_INTERVAL) => {}
                    // A message or a dropped sender both mean the server is stopping.
                    _ = &mut stopped => break,
                }
            }
        });
        tracing::info!(
            retention_days = days,
            "usage retention on: older usage records are deleted hourly"
        );
        Self { stop, task }
    }

    /// Tells the task to end and waits for it (and for a purge under way).
    async fn stop(self) {
        drop(self.stop);
        if self.task.await.is_err() {
            tracing::error!("the usage retention task panicked");
        }
    }
}

/// Deletes the records older than `days` days. Failures are logged and retried next time:
/// an unavailable database must not stop the server.
async fn purge_old_usage(store: &dyn Store, days: u64) {
    let cutoff = retention_cutoff(UnixMillis::now(), days);
    match store.delete_usage_before(cutoff).await {
        Ok(deleted) => tracing::info!(
            deleted,
            retention_days = days,
            "usage retention: deleted old usage records"
        ),
        Err(error) => tracing::warn!(
            error = %error_chain(&error),
            "usage retention: deleting old usage records failed; will retry in an hour"
        ),
    }
}

/// The moment before which records are deleted: `days` days before `now`, but never later
/// than the limiter's look-back, so a restart still rebuilds exact day windows.
fn retention_cutoff(now: UnixMillis, days: u64) -> UnixMillis {
    let retention_millis = i64::try_from(days)
        .ok()
        .and_then(|d| d.checked_mul(24 * 60 * 60 * 1000))
        .unwrap_or(i64::MAX);
    now.plus_millis(-retention_millis.max(LIMITER_LOOKBACK_MILLIS))
}

/// An error and its causes, joined with `: ` (`cannot open the database ./db/proxy.db:
/// permission denied on ./db/proxy.db: Permission denied (os error 13)`), for the messages
/// an operator reads at start-up and from the command line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Installs the tracing subscriber: `RUST_LOG` filter (default `info`), text or JSON.
pub fn init_tracing(log_format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal: escape codes are noise in a file or a journal,
    // and formatting them costs every request its share (the request span's fields).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    let result = if log_format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    // A subscriber already installed (tests, embedders) is theirs to keep.
    let _ = result;
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 24 * 60 * 60 * 1000;

    #[test]
    fn the_cutoff_is_the_retention_period_before_now() {
        let now = UnixMillis(100 * DAY);
        assert_eq!(retention_cutoff(now, 30), UnixMillis(70 * DAY));
        assert_eq!(retention_cutoff(now, 2), UnixMillis(98 * DAY));
    }

    #[test]
    fn a_one_day_retention_keeps_what_the_limiter_replays() {
        let now = UnixMillis(100 * DAY);
        assert_eq!(
            retention_cutoff(now, 1),
            UnixMillis(100 * DAY - LIMITER_LOOKBACK_MILLIS)
        );
    }

    #[test]
    fn an_absurd_retention_deletes_nothing_instead_of_overflowing() {
        let now = UnixMillis(100 * DAY);
        assert!(retention_cutoff(now, u64::MAX) < UnixMillis(0));
        assert!(retention_cutoff(now, u64::MAX / 2) < UnixMillis(0));
    }

    #[test]
    fn workers_default_to_one_for_every_two_cores_and_a_set_count_wins() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let automatic = Settings::default().worker_count();
        assert_eq!(automatic, (cores / 2).max(1));
        let set = Settings {
            workers: 3,
            ..Settings::default()
        };
        assert_eq!(set.worker_count(), 3);
    }
}
