//! Where Ollama is and how long to wait for it.

use std::fmt;
use std::time::Duration;

/// How to reach Ollama, and the deadlines and pool size to use.
///
/// The defaults suit a local Ollama: the response timeout is long because Ollama sends the
/// response head only after the model is loaded and the prompt evaluated, which can take
/// minutes for a cold start.
#[derive(Clone, PartialEq, Eq)]
pub struct OllamaConfig {
    /// The server's base URL, e.g. `http://localhost:11434`; a trailing slash is tolerated.
    pub base_url: String,
    /// Longest time to establish a TCP connection (default 5 s).
    pub connect_timeout: Duration,
    /// Longest time from sending a request until the response head arrives (default 300 s).
    pub response_timeout: Duration,
    /// Longest gap between two body chunks, for streams and for reading whole bodies
    /// (default 120 s).
    pub idle_timeout: Duration,
    /// Most connections one client keeps open at once; further requests queue for a slot, and
    /// the wait counts toward `response_timeout`. `0` means no limit. Default 256. The pool
    /// belongs to one [`OllamaClient`](crate::OllamaClient), so with one client per actix
    /// worker the process-wide cap is this times the number of workers.
    pub max_connections: usize,
    /// Headers sent with every request, for an Ollama behind its own gateway (e.g.
    /// `Authorization: Bearer ...`). Empty by default. Values are secrets: `Debug` shows only
    /// the names. A name or value that is not a valid header makes every call fail with
    /// [`OllamaError::Connect`](crate::OllamaError::Connect) rather than send without it.
    pub headers: Vec<(String, String)>,
}

impl fmt::Debug for OllamaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("OllamaConfig")
            .field("base_url", &self.base_url)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_connections", &self.max_connections)
            .field("headers", &header_names)
            .finish()
    }
}

impl Default for OllamaConfig {
    fn default() -> Self {
        OllamaConfig {
            base_url: "http://localhost:11434".to_owned(),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(300),
            idle_timeout: Duration::from_secs(120),
            max_connections: 256,
            headers: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_header_names_but_never_their_values() {
        let config = OllamaConfig {
            headers: vec![("Authorization".into(), "Bearer s3cret".into())],
            ..OllamaConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(shown.contains("Authorization"));
        assert!(!shown.contains("s3cret"));
    }
}
