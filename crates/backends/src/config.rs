//! What the operator configures: the backends, and the router's thresholds and intervals.

use std::fmt;
use std::time::Duration;

use aiproxy_ollama::OllamaConfig;

use crate::error::ConfigError;

/// The most backends one router takes: a model's backends are a 64-bit mask.
pub const MAX_BACKENDS: usize = 64;

/// One Ollama server.
///
/// Only `url` is required; [`BackendSpec::parse_list`] reads the operator's
/// `OLLAMA_BASE_URL` syntax.
#[derive(Clone, PartialEq, Eq)]
pub struct BackendSpec {
    /// The server's base URL, e.g. `http://gpu1:11434` (a trailing slash is dropped).
    pub url: String,
    /// The name used in the admin API, usage rows and metrics. `None` means the URL's
    /// `host:port`. Letters, digits, `.`, `_` and `-` only.
    pub name: Option<String>,
    /// Relative capacity, at least 1 (default 1): with equal loaded-ness, requests go where
    /// `(in_flight + 1) / weight` is smallest, so a backend of weight 2 takes two requests
    /// for each one a backend of weight 1 takes.
    pub weight: u32,
    /// Most requests in flight at once from this proxy; a backend at its cap gets no new
    /// request. `None` (the default) is no cap. Each worker checks it against its view of
    /// the requests in flight, which may miss what other workers started in the last
    /// [`IN_FLIGHT_VIEW_MAX_AGE`](crate::IN_FLIGHT_VIEW_MAX_AGE): a cap to protect a backend,
    /// not an exact count.
    pub max_in_flight: Option<u32>,
    /// Headers sent with every request to this backend (e.g. `Authorization` for an Ollama
    /// behind its own gateway). Secrets: `Debug` shows names only.
    pub headers: Vec<(String, String)>,
}

impl fmt::Debug for BackendSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("BackendSpec")
            .field("url", &self.url)
            .field("name", &self.name)
            .field("weight", &self.weight)
            .field("max_in_flight", &self.max_in_flight)
            .field("headers", &header_names)
            .finish()
    }
}

impl BackendSpec {
    /// A backend at `url` with every option at its default.
    pub fn new(url: impl Into<String>) -> Self {
        BackendSpec {
            url: url.into(),
            name: None,
            weight: 1,
            max_in_flight: None,
            headers: Vec::new(),
        }
    }

    /// Reads a comma-separated list of backends, each a URL optionally followed by
    /// `#option=value&option=value`. Options: `name`, `weight`, `max_in_flight`, and
    /// `header=Name:Value` (repeatable); values are percent-decoded (`%20` for a space, `%2C`
    /// for a comma). A single URL is a valid list.
    ///
    /// ```
    /// use aiproxy_backends::BackendSpec;
    ///
    /// let specs = BackendSpec::parse_list(
    ///     "http://gpu1:11434, http://gpu2:11434#name=big&weight=2&header=Authorization:Bearer%20t",
    /// )
    /// .unwrap();
    /// assert_eq!(specs.len(), 2);
    /// assert_eq!(specs[1].name.as_deref(), Some("big"));
    /// assert_eq!(specs[1].headers[0].1, "Bearer t");
    /// ```
    pub fn parse_list(list: &str) -> Result<Vec<BackendSpec>, ConfigError> {
        let specs: Vec<BackendSpec> = list
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(BackendSpec::parse_one)
            .collect::<Result<_, _>>()?;
        if specs.is_empty() {
            return Err(ConfigError::Empty);
        }
        Ok(specs)
    }

    fn parse_one(item: &str) -> Result<BackendSpec, ConfigError> {
        let (url, options) = match item.split_once('#') {
            Some((url, options)) => (url.trim(), options),
            None => (item, ""),
        };
        let mut spec = BackendSpec::new(url);
        for pair in options.split('&').filter(|pair| !pair.is_empty()) {
            let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(raw).ok_or_else(|| bad_option(url, key, raw))?;
            match key {
                "name" => spec.name = Some(value),
                "weight" => {
                    spec.weight = value
                        .parse()
                        .ok()
                        .filter(|weight| *weight >= 1)
                        .ok_or_else(|| bad_option(url, key, raw))?;
                }
                "max_in_flight" => {
                    spec.max_in_flight = Some(
                        value
                            .parse()
                            .ok()
                            .filter(|cap| *cap >= 1)
                            .ok_or_else(|| bad_option(url, key, raw))?,
                    );
                }
                "header" => {
                    // The value is a secret: the error names the header only.
                    let (name, value) =
                        value
                            .split_once(':')
                            .ok_or_else(|| ConfigError::BadOption {
                                url: url.to_owned(),
                                option: "header".into(),
                                problem: "expected header=Name:Value".into(),
                            })?;
                    spec.headers
                        .push((name.trim().to_owned(), value.trim().to_owned()));
                }
                _ => {
                    return Err(ConfigError::BadOption {
                        url: url.to_owned(),
                        option: key.to_owned(),
                        problem: "unknown option (known: name, weight, max_in_flight, header)"
                            .into(),
                    });
                }
            }
        }
        Ok(spec)
    }

    /// The id this backend goes by: its name, or else the URL's `host:port`.
    pub(crate) fn id(&self) -> Result<String, ConfigError> {
        let url = self.url.trim_end_matches('/');
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or_else(|| ConfigError::BadUrl {
                url: self.url.clone(),
                problem: "must start with http:// or https://".into(),
            })?;
        let authority = rest.split('/').next().unwrap_or_default();
        let authority = authority.rsplit('@').next().unwrap_or_default();
        if authority.is_empty() {
            return Err(ConfigError::BadUrl {
                url: self.url.clone(),
                problem: "has no host".into(),
            });
        }
        match &self.name {
            Some(name) => {
                let valid = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
                if valid {
                    Ok(name.clone())
                } else {
                    Err(ConfigError::BadName { name: name.clone() })
                }
            }
            None => Ok(authority.to_owned()),
        }
    }
}

fn bad_option(url: &str, option: &str, value: &str) -> ConfigError {
    // A header's value is a secret; its option is named without it.
    let problem = if option == "header" {
        "not a valid value".to_owned()
    } else {
        format!("{value:?} is not a valid value")
    };
    ConfigError::BadOption {
        url: url.to_owned(),
        option: option.to_owned(),
        problem,
    }
}

/// `%XX` sequences to bytes; `None` for a broken escape or text that is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = text.get(at + 1..at + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The router's thresholds and intervals.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Timeouts and pool size of the per-worker clients; its `base_url` and `headers` are
    /// replaced by each backend's own.
    pub client: OllamaConfig,
    /// Failures in a row (connection refused, timeout, 5xx, a stream cut before its first
    /// line, a failed discovery) that open a backend's circuit. Default 3.
    pub failure_threshold: u32,
    /// Most backends one request is tried on before its error is returned. Default 3.
    pub max_attempts: u32,
    /// How often each backend's models (`/api/tags`) and loaded models (`/api/ps`) are read
    /// again. Default 10 s. A backend that answers "model not found" for a model it listed is
    /// read again at once.
    pub refresh_interval: Duration,
    /// How often a backend whose circuit is open is probed (`/api/version`). Default 2 s.
    pub probe_interval: Duration,
    /// The response timeout of discovery and probe calls (they are small). Default 5 s.
    pub probe_timeout: Duration,
    /// A backend with the model loaded is preferred only while it has fewer than this many
    /// requests in flight; beyond it, requests go to whichever backend with the model has the
    /// fewest. Ollama runs few generations per model at once (`OLLAMA_NUM_PARALLEL`) and
    /// queues the rest, so a busy loaded backend is worth a cold load elsewhere. `0` turns
    /// the preference off, `u32::MAX` makes it absolute. Default 4.
    pub prefer_loaded_below: u32,
    /// Counters are striped this many ways so that workers do not write the same cache line
    /// (one stripe per worker is ideal). Default: the number of CPUs.
    pub stripes: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            client: OllamaConfig::default(),
            failure_threshold: 3,
            max_attempts: 3,
            refresh_interval: Duration::from_secs(10),
            probe_interval: Duration::from_secs(2),
            probe_timeout: Duration::from_secs(5),
            prefer_loaded_below: 4,
            stripes: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_url_is_a_list_of_one_with_defaults() {
        let specs = BackendSpec::parse_list("http://localhost:11434").unwrap();
        assert_eq!(specs, vec![BackendSpec::new("http://localhost:11434")]);
        assert_eq!(specs[0].id().unwrap(), "localhost:11434");
    }

    #[test]
    fn options_are_read_and_decoded() {
        let specs = BackendSpec::parse_list(
            " http://a:1/ ,http://b:2#name=gpu-2&weight=3&max_in_flight=8&header=X-Key:a%2Cb&header=X-Other: v ,",
        )
        .unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].id().unwrap(), "a:1");
        let b = &specs[1];
        assert_eq!(b.id().unwrap(), "gpu-2");
        assert_eq!((b.weight, b.max_in_flight), (3, Some(8)));
        assert_eq!(
            b.headers,
            vec![
                ("X-Key".to_owned(), "a,b".to_owned()),
                ("X-Other".to_owned(), "v".to_owned())
            ]
        );
    }

    #[test]
    fn mistakes_are_refused_with_what_was_wrong() {
        assert!(matches!(
            BackendSpec::parse_list(" , "),
            Err(ConfigError::Empty)
        ));
        for (list, wanted) in [
            ("http://a:1#weight=0", "weight"),
            ("http://a:1#max_in_flight=x", "max_in_flight"),
            ("http://a:1#colour=red", "colour"),
            ("http://a:1#header=novalue", "header"),
            ("http://a:1#name=%zz", "name"),
        ] {
            let error = BackendSpec::parse_list(list).unwrap_err();
            assert!(
                matches!(&error, ConfigError::BadOption { option, .. } if option == wanted),
                "{list}: {error:?}"
            );
        }
        let bad_name = BackendSpec::parse_list("http://a:1#name=a/b").unwrap();
        assert!(matches!(bad_name[0].id(), Err(ConfigError::BadName { .. })));
        let bad_url = BackendSpec::new("ftp://a");
        assert!(matches!(bad_url.id(), Err(ConfigError::BadUrl { .. })));
    }

    #[test]
    fn debug_never_shows_header_values() {
        let specs =
            BackendSpec::parse_list("http://a:1#header=Authorization:Bearer%20s3cret").unwrap();
        let shown = format!("{:?}", specs[0]);
        assert!(shown.contains("Authorization") && !shown.contains("s3cret"));
        let error = BackendSpec::parse_list("http://a:1#header=s3cret").unwrap_err();
        assert!(!error.to_string().contains("s3cret"));
    }
}
