//! Configuration: defaults in code, then an optional `.env` file, then the environment.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The documented default admin key; the server warns loudly when it is in use.
pub const DEFAULT_ADMIN_API_KEY: &str = "admin-secret-key";

/// Everything the server can be told. Environment variables are the upper-case field names
/// (`OLLAMA_BASE_URL`, `PORT`, …).
#[derive(Clone, Deserialize)]
pub struct Settings {
    /// Where Ollama listens.
    pub ollama_base_url: String,
    /// The operator's key for `/admin/*`.
    pub admin_api_key: String,
    /// Address to listen on.
    pub host: String,
    /// Port to listen on (0 picks a free one).
    pub port: u16,
    /// The SQLite file; its folder is created on first run.
    pub database_path: PathBuf,
    /// Seconds to connect to Ollama.
    pub ollama_connect_timeout_secs: u64,
    /// Seconds until Ollama's first byte (a cold model load can take minutes).
    pub ollama_response_timeout_secs: u64,
    /// Seconds of silence tolerated inside a streamed answer.
    pub ollama_idle_timeout_secs: u64,
    /// Connections to Ollama per worker.
    pub ollama_max_connections: usize,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Seconds to fetch one image URL.
    pub image_fetch_timeout_secs: u64,
    /// Largest fetched image, in bytes.
    pub image_max_bytes: usize,
    /// Let image URLs point at private, loopback and link-local addresses.
    pub image_allow_private_networks: bool,
    /// Completion tokens reserved for a request without `max_tokens` when token limits apply.
    pub default_completion_budget: u64,
    /// Seconds in-flight requests get to finish after SIGTERM.
    pub shutdown_grace_secs: u64,
    /// HTTP worker threads (0: one for every two cores, at least one; see `worker_count`).
    pub workers: usize,
    /// `text` or `json`.
    pub log_format: String,
    /// Serve `/metrics` without the admin key.
    pub metrics_public: bool,
    /// Days of usage records to keep (`USAGE_RETENTION_DAYS`); 0, the default, keeps them
    /// forever. When set, records older than this are deleted at start-up and then every hour.
    /// Lifetime totals (and so `total_token_limit`) still count the deleted records, and at
    /// least the last day plus a minute is always kept, which the rate limiter replays on
    /// restart.
    pub usage_retention_days: u64,
    /// How often, in milliseconds, the server asks the database whether another process
    /// changed users, keys or limits (`CHANGE_POLL_MILLIS`, default 250); such a change then
    /// applies within this long plus one read. 0 stops following them: only this server's
    /// admin routes then change what it caches.
    pub change_poll_millis: u64,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("ollama_base_url", &self.ollama_base_url)
            .field("admin_api_key", &"[redacted]")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database_path", &self.database_path)
            .field("usage_retention_days", &self.usage_retention_days)
            .finish_non_exhaustive()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            ollama_base_url: "http://localhost:11434".into(),
            admin_api_key: DEFAULT_ADMIN_API_KEY.into(),
            host: "0.0.0.0".into(),
            port: 8000,
            database_path: PathBuf::from("./db/proxy.db"),
            ollama_connect_timeout_secs: 5,
            ollama_response_timeout_secs: 300,
            ollama_idle_timeout_secs: 120,
            ollama_max_connections: 256,
            max_body_bytes: 32 * 1024 * 1024,
            image_fetch_timeout_secs: 10,
            image_max_bytes: 20 * 1024 * 1024,
            image_allow_private_networks: false,
            default_completion_budget: 4096,
            shutdown_grace_secs: 30,
            workers: 0,
            log_format: "text".into(),
            metrics_public: false,
            usage_retention_days: 0,
            change_poll_millis: 250,
        }
    }
}

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The `.env` file exists but does not parse.
    #[error("the .env file is malformed: {0}")]
    DotEnv(#[from] dotenvy::Error),
    /// A variable has a value of the wrong kind.
    #[error("invalid configuration: {0}")]
    Invalid(#[from] config::ConfigError),
    /// A value parses but makes no sense.
    #[error("invalid configuration: {0}")]
    Value(String),
}

impl Settings {
    /// Reads `.env` (if present; the process environment wins over it), then the environment.
    pub fn from_env() -> Result<Self, SettingsError> {
        match dotenvy::dotenv() {
            Ok(_) => {}
            Err(err) if err.not_found() => {}
            Err(err) => return Err(err.into()),
        }
        let defaults = Settings::default();
        // Secrets must stay strings: `try_parsing` would turn ADMIN_API_KEY=007 into "7".
        let built = config::Config::builder()
            .set_default("ollama_base_url", defaults.ollama_base_url)?
            .set_default("admin_api_key", defaults.admin_api_key)?
            .set_default("host", defaults.host)?
            .set_default("port", i64::from(defaults.port))?
            .set_default(
                "database_path",
                defaults.database_path.to_string_lossy().into_owned(),
            )?
            .set_default(
                "ollama_connect_timeout_secs",
                defaults.ollama_connect_timeout_secs,
            )?
            .set_default(
                "ollama_response_timeout_secs",
                defaults.ollama_response_timeout_secs,
            )?
            .set_default(
                "ollama_idle_timeout_secs",
                defaults.ollama_idle_timeout_secs,
            )?
            .set_default(
                "ollama_max_connections",
                defaults.ollama_max_connections as u64,
            )?
            .set_default("max_body_bytes", defaults.max_body_bytes as u64)?
            .set_default(
                "image_fetch_timeout_secs",
                defaults.image_fetch_timeout_secs,
            )?
            .set_default("image_max_bytes", defaults.image_max_bytes as u64)?
            .set_default(
                "image_allow_private_networks",
                defaults.image_allow_private_networks,
            )?
            .set_default(
                "default_completion_budget",
                defaults.default_completion_budget,
            )?
            .set_default("shutdown_grace_secs", defaults.shutdown_grace_secs)?
            .set_default("workers", defaults.workers as u64)?
            .set_default("log_format", defaults.log_format)?
            .set_default("metrics_public", defaults.metrics_public)?
            .set_default("usage_retention_days", defaults.usage_retention_days)?
            .set_default("change_poll_millis", defaults.change_poll_millis)?
            .add_source(config::Environment::default())
            .build()?;
        let settings: Settings = built.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if !(self.ollama_base_url.starts_with("http://")
            || self.ollama_base_url.starts_with("https://"))
        {
            return Err(SettingsError::Value(format!(
                "OLLAMA_BASE_URL must start with http:// or https://, got `{}`",
                self.ollama_base_url
            )));
        }
        if self.admin_api_key.trim().is_empty() {
            return Err(SettingsError::Value(
                "ADMIN_API_KEY must not be empty".into(),
            ));
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(SettingsError::Value(
                "LOG_FORMAT must be `text` or `json`".into(),
            ));
        }
        if self.default_completion_budget == 0 {
            return Err(SettingsError::Value(
                "DEFAULT_COMPLETION_BUDGET must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// The Ollama client settings.
    pub fn ollama_config(&self) -> aiproxy_ollama::OllamaConfig {
        aiproxy_ollama::OllamaConfig {
            base_url: self.ollama_base_url.clone(),
            connect_timeout: Duration::from_secs(self.ollama_connect_timeout_secs),
            response_timeout: Duration::from_secs(self.ollama_response_timeout_secs),
            idle_timeout: Duration::from_secs(self.ollama_idle_timeout_secs),
            max_connections: self.ollama_max_connections,
            headers: Vec::new(),
        }
    }

    /// The HTTP worker threads to start: `workers`, or when that is 0, one for every two
    /// cores and at least one.
    ///
    /// Not one per core: the proxy shares its machine with the model server and the clients,
    /// and one worker already serves far more requests a second than a model answers. On the
    /// 2-core benchmark machine one worker used less CPU per request than two, and two
    /// often-idle workers could fall into waking for every token of a fast stream
    /// (`docs/performance.md`).
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            return self.workers;
        }
        std::thread::available_parallelism().map_or(1, |cores| (cores.get() / 2).max(1))
    }

    /// The HTTP layer's settings.
    pub fn api_settings(&self) -> aiproxy_api::ApiSettings {
        aiproxy_api::ApiSettings {
            admin_api_key: self.admin_api_key.clone(),
            max_body_bytes: self.max_body_bytes,
            image_fetch: aiproxy_api::ImageFetchSettings {
                timeout: Duration::from_secs(self.image_fetch_timeout_secs),
                max_bytes: self.image_max_bytes,
                max_redirects: 3,
                allow_private_networks: self.image_allow_private_networks,
            },
            metrics_public: self.metrics_public,
        }
    }
}
