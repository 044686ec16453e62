//! The errors of this crate: a configuration that cannot work, and a request that found no
//! backend or whose backend failed.

use std::fmt;
use std::sync::Arc;

use aiproxy_ollama::OllamaError;

/// A backend list or option that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No backend at all.
    #[error("no Ollama backend is configured")]
    Empty,
    /// More than [`crate::MAX_BACKENDS`].
    #[error("{count} backends configured; at most {max} are supported")]
    TooMany {
        /// How many were configured.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A URL that is not `http(s)://host[:port][/path]`.
    #[error("backend URL {url:?} {problem}")]
    BadUrl {
        /// The URL as configured.
        url: String,
        /// What is wrong with it.
        problem: String,
    },
    /// An option after `#` that is unknown or has a bad value.
    #[error("backend {url:?}: option {option:?}: {problem}")]
    BadOption {
        /// The backend's URL.
        url: String,
        /// The option's name.
        option: String,
        /// What is wrong with it (never a header's value).
        problem: String,
    },
    /// A name with characters other than letters, digits, `.`, `_`, `-`.
    #[error("backend name {name:?} may hold only letters, digits, '.', '_' and '-'")]
    BadName {
        /// The name as configured.
        name: String,
    },
    /// Two backends with the same id (name, or `host:port` when unnamed).
    #[error("two backends are both called {id:?}; give them distinct names")]
    DuplicateId {
        /// The id they share.
        id: String,
    },
}

/// Why a request could not be routed, or how its last try failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RouteError {
    /// No backend may take the request now: every backend that has the model is down,
    /// drained or at its cap. Never waits; the HTTP layer answers 503.
    #[error("no backend available for model '{model}' ({why})")]
    NoBackend {
        /// The model asked for.
        model: String,
        /// How many backends were passed over, and why.
        why: Unavailable,
    },
    /// The backend's own answer (a 4xx, a model it does not have) or, after every allowed
    /// try failed, the last try's failure. As without routing, the HTTP layer maps `error`.
    #[error("the request to backend {backend} failed (try {attempts})")]
    Upstream {
        /// The backend that gave this answer.
        backend: Arc<str>,
        /// What it answered, or how it failed.
        #[source]
        error: OllamaError,
        /// How many backends were tried.
        attempts: u32,
    },
    /// The backend id is not configured (admin calls).
    #[error("no backend is called {id:?}")]
    UnknownBackend {
        /// The id asked for.
        id: String,
    },
}

impl RouteError {
    /// The Ollama error for [`RouteError::Upstream`], so callers can map it as before.
    pub fn upstream(&self) -> Option<&OllamaError> {
        match self {
            RouteError::Upstream { error, .. } => Some(error),
            RouteError::NoBackend { .. } | RouteError::UnknownBackend { .. } => None,
        }
    }
}

/// The backends a request was not sent to, counted by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unavailable {
    /// Backends configured at all.
    pub configured: u32,
    /// Backends that have the model (all of them when no backend lists it).
    pub with_model: u32,
    /// Circuit open, or half-open with its one trial request already out.
    pub down: u32,
    /// Drained by the operator.
    pub drained: u32,
    /// At their `max_in_flight`.
    pub full: u32,
    /// Already tried by this request.
    pub tried: u32,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} backends have it: {} down, {} drained, {} at capacity",
            self.with_model, self.configured, self.down, self.drained, self.full
        )?;
        if self.tried > 0 {
            write!(f, ", {} already tried", self.tried)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_send_and_sync_and_leave_their_cause_to_source() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<RouteError>();
        assert_send_sync::<ConfigError>();
        let error = RouteError::Upstream {
            backend: Arc::from("gpu1"),
            error: OllamaError::Connect {
                message: "refused".into(),
            },
            attempts: 2,
        };
        assert_eq!(
            error.to_string(),
            "the request to backend gpu1 failed (try 2)"
        );
        let source = std::error::Error::source(&error).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("could not reach Ollama: refused"));
    }
}
