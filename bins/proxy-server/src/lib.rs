//! The aiproxy server: reads configuration, opens the SQLite store, rebuilds the rate
//! limiter's windows, wires the crates into an actix-web server with Swagger UI, and shuts
//! down gracefully.
//!
//! No request handling lives here (that is `aiproxy-api`); this crate only assembles. Tests
//! and embedders start the same server through [`Application::build`].
#![warn(missing_docs)]

/// The admin command line.
pub mod cli;
/// Configuration.
pub mod settings;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use aiproxy_api::AppState;
use aiproxy_domain::{Store, UnixMillis};
use aiproxy_ollama::OllamaClient;
use aiproxy_ratelimit::{LimiterConfig, RateLimiter};
use aiproxy_storage::{SqliteStore, StoreOptions};
use utoipa_actix_web::AppExt as _;
use utoipa_swagger_ui::SwaggerUi;

pub use settings::{DEFAULT_ADMIN_API_KEY, Settings, SettingsError};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened or migrated.
    #[error("could not open the database: {0}")]
    Storage(#[from] aiproxy_storage::StorageError),
    /// Reading the usage records to rebuild the rate limiter failed.
    #[error("could not read usage to rebuild rate limits: {0}")]
    Restore(#[from] aiproxy_domain::StoreError),
    /// The address could not be bound.
    #[error("could not listen on {address}: {source}")]
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
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Opens the store, rebuilds the limiter and binds the listener. Call from inside an
    /// actix (or tokio `LocalSet`) runtime.
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
        let state = web::Data::new(AppState::new(
            shared_store,
            limiter,
            settings.api_settings(),
        ));
        let ollama_config = settings.ollama_config();
        let mut server = HttpServer::new(move || {
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
        .shutdown_timeout(settings.shutdown_grace_secs);
        if settings.workers > 0 {
            server = server.workers(settings.workers);
        }
        let server = server
            .listen(listener)
            .map_err(|source| StartError::Bind { address, source })?
            .run();
        Ok(Self {
            server,
            address: bound,
            store,
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
    /// within the grace period, then commits every queued usage row.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        let store = self.store;
        // Closing waits for the usage writer to commit what is queued.
        if web::block(move || store.close()).await.is_err() {
            tracing::error!("usage rows still queued at shutdown could not be committed");
        }
        result
    }
}

/// Replays the last day of usage and the lifetime totals into the limiter, so a restart
/// neither forgets nor double counts.
fn restore_limiter(store: &SqliteStore, limiter: &RateLimiter) -> Result<(), StartError> {
    let now = UnixMillis::now();
    let since = now.plus_millis(-24 * 60 * 60 * 1000 - 60_000);
    let events = aiproxy_domain::UsageStore::usage_events_since(store, since)?;
    let lifetime = aiproxy_domain::UsageStore::lifetime_tokens(store)?;
    tracing::info!(
        events = events.len(),
        users = lifetime.len(),
        "rate limits restored"
    );
    limiter.restore(events, lifetime, now);
    Ok(())
}

/// Installs the tracing subscriber: `RUST_LOG` filter (default `info`), text or JSON.
pub fn init_tracing(log_format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = if log_format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    // A subscriber already installed (tests, embedders) is theirs to keep.
    let _ = result;
}
