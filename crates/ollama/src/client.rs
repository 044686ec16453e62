//! The HTTP client: one method per Ollama endpoint the proxy uses.

use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use awc::http::header::{CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use awc::http::{Method, Uri};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::OllamaConfig;
use crate::error::{OllamaError, TimeoutPhase};
use crate::ndjson::{BodyStream, ChatStream, GenerateStream, NdjsonStream, from_json_bytes};
use crate::types::{
    ChatBody, ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, GenerateBody,
    GenerateRequest, GenerateResponse, PsResponse, ShowRequest, ShowResponse, TagsResponse,
    VersionResponse,
};

/// The largest non-streaming body accepted. Embeddings of a large batch are the biggest
/// legitimate replies (a 4096-dim vector is ~50 KB of JSON), far above awc's 2 MiB default.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// How much of an error body is read; the message is cut to ~1 KiB anyway.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// A client for Ollama's native API.
///
/// Cheap to clone (the connection pool is shared through an `Rc`) and `!Send`, like awc
/// itself: build one per actix worker, e.g. inside the `HttpServer::new` factory, and use it on
/// that worker only. Every method needs a running actix (or tokio `LocalSet`) runtime.
#[derive(Clone)]
pub struct OllamaClient {
    http: awc::Client,
    base_url: Rc<str>,
    /// Each endpoint's URL and the `Host` header, parsed once instead of on every call.
    targets: Rc<Targets>,
    idle_timeout: Duration,
}

/// The paths this client calls.
const PATHS: [&str; 7] = [
    "/api/chat",
    "/api/generate",
    "/api/embed",
    "/api/tags",
    "/api/ps",
    "/api/show",
    "/api/version",
];

/// The URL of every path in [`PATHS`] (empty when the base URL does not parse: each call then
/// parses it again and reports the error), and the `Host` header awc would otherwise format
/// on every request.
struct Targets {
    uris: Vec<(&'static str, Uri)>,
    host: Option<HeaderValue>,
    /// [`OllamaConfig::headers`], parsed; `Err` names the first that is not a valid header,
    /// and then every call fails instead of going out without it.
    extra_headers: Result<Vec<(HeaderName, HeaderValue)>, String>,
}

impl Targets {
    fn new(base_url: &str, headers: &[(String, String)]) -> Self {
        let uris: Vec<(&'static str, Uri)> = PATHS
            .iter()
            .filter_map(|path| {
                let uri: Uri = format!("{base_url}{path}").parse().ok()?;
                Some((*path, uri))
            })
            .collect();
        // As awc writes it: the port only when it is not the scheme's default.
        let host = uris.first().and_then(|(_, uri)| {
            let host = uri.host()?;
            let value = match uri.port_u16() {
                None | Some(80) | Some(443) => host.to_owned(),
                Some(port) => format!("{host}:{port}"),
            };
            HeaderValue::from_str(&value).ok()
        });
        Targets {
            uris,
            host,
            extra_headers: parse_headers(headers),
        }
    }

    fn uri(&self, path: &str) -> Option<&Uri> {
        self.uris
            .iter()
            .find(|(known, _)| *known == path)
            .map(|(_, uri)| uri)
    }
}

impl fmt::Debug for OllamaClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OllamaClient")
            .field("base_url", &self.base_url)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl OllamaClient {
    /// Builds a client with its own connection pool. Nothing is sent yet; an unusable base URL
    /// surfaces as [`OllamaError::Connect`] on the first call.
    pub fn new(config: &OllamaConfig) -> Self {
        let connector = awc::Connector::new()
            .timeout(config.connect_timeout)
            .limit(config.max_connections);
        let http = awc::Client::builder()
            .connector(connector)
            .timeout(config.response_timeout)
            // Ollama never redirects; following one would resend prompts somewhere else.
            .disable_redirects()
            .finish();
        let base_url = config.base_url.trim_end_matches('/');
        OllamaClient {
            http,
            targets: Rc::new(Targets::new(base_url, &config.headers)),
            base_url: Rc::from(base_url),
            idle_timeout: config.idle_timeout,
        }
    }

    /// The base URL requests go to, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `POST /api/chat` with `"stream": false`: the whole answer in one object.
    pub async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, OllamaError> {
        let body = ChatBody::new(request, false);
        self.call_json(Method::POST, "/api/chat", Some(&body), Some(&request.model))
            .await
    }

    /// `POST /api/chat` with `"stream": true`. Returns once a 2xx response head has arrived;
    /// the answer then comes line by line from the [`ChatStream`]. A non-2xx answer is an
    /// error here, not an item of the stream.
    pub async fn chat_stream(&self, request: &ChatRequest) -> Result<ChatStream, OllamaError> {
        let body = ChatBody::new(request, true);
        let response = self
            .send(Method::POST, "/api/chat", Some(&body), Some(&request.model))
            .await?;
        Ok(NdjsonStream::new(response.body, self.idle_timeout))
    }

    /// `POST /api/generate` with `"stream": false`.
    pub async fn generate(
        &self,
        request: &GenerateRequest,
    ) -> Result<GenerateResponse, OllamaError> {
        let body = GenerateBody::new(request, false);
        self.call_json(
            Method::POST,
            "/api/generate",
            Some(&body),
            Some(&request.model),
        )
        .await
    }

    /// `POST /api/generate` with `"stream": true`; see [`chat_stream`](Self::chat_stream).
    pub async fn generate_stream(
        &self,
        request: &GenerateRequest,
    ) -> Result<GenerateStream, OllamaError> {
        let body = GenerateBody::new(request, true);
        let response = self
            .send(
                Method::POST,
                "/api/generate",
                Some(&body),
                Some(&request.model),
            )
            .await?;
        Ok(NdjsonStream::new(response.body, self.idle_timeout))
    }

    /// `POST /api/embed`: one vector per input.
    pub async fn embed(&self, request: &EmbedRequest) -> Result<EmbedResponse, OllamaError> {
        self.call_json(
            Method::POST,
            "/api/embed",
            Some(request),
            Some(&request.model),
        )
        .await
    }

    /// `GET /api/tags`: the installed models.
    pub async fn tags(&self) -> Result<TagsResponse, OllamaError> {
        self.call_json::<(), _>(Method::GET, "/api/tags", None, None)
            .await
    }

    /// `GET /api/ps`: the models loaded in memory now.
    pub async fn ps(&self) -> Result<PsResponse, OllamaError> {
        self.call_json::<(), _>(Method::GET, "/api/ps", None, None)
            .await
    }

    /// `POST /api/show`: details and capabilities of one model; a missing model is
    /// [`OllamaError::ModelNotFound`].
    pub async fn show(&self, model: &str) -> Result<ShowResponse, OllamaError> {
        let body = ShowRequest { model };
        self.call_json(Method::POST, "/api/show", Some(&body), Some(model))
            .await
    }

    /// `GET /api/version`; also a cheap health check.
    pub async fn version(&self) -> Result<VersionResponse, OllamaError> {
        self.call_json::<(), _>(Method::GET, "/api/version", None, None)
            .await
    }

    /// Sends a request and decodes the whole 2xx body as `R`.
    async fn call_json<B: Serialize, R: DeserializeOwned>(
        &self,
        method: Method,
        path: &'static str,
        body: Option<&B>,
        model: Option<&str>,
    ) -> Result<R, OllamaError> {
        let mut response = self.send(method, path, body, model).await?;
        let bytes = read_body(
            &mut response.body,
            MAX_BODY_BYTES,
            self.idle_timeout,
            response.content_length,
        )
        .await?;
        // awc ends a body quietly when the connection drops early, so a cut-off body is
        // recognised here: by its promised length, or, for a chunked body, by JSON that stops
        // mid-value.
        if let Some(promised) = response.content_length
            && bytes.len() < promised
        {
            return Err(OllamaError::Interrupted {
                message: format!(
                    "the {path} body ended after {} of {promised} bytes",
                    bytes.len()
                ),
            });
        }
        from_json_bytes(&bytes).map_err(|error| {
            tracing::debug!(path, %error, "Ollama body did not parse");
            if error.is_eof() && response.content_length.is_none() {
                OllamaError::Interrupted {
                    message: format!("the {path} body ended mid-JSON: {error}"),
                }
            } else {
                OllamaError::InvalidResponse {
                    message: format!("the {path} body is not the JSON expected: {error}"),
                }
            }
        })
    }

    /// Sends a request and returns the body of a 2xx answer; any other status becomes an
    /// error. `model` is set for model endpoints, where a 404 means the model is missing.
    async fn send<B: Serialize>(
        &self,
        method: Method,
        path: &'static str,
        body: Option<&B>,
        model: Option<&str>,
    ) -> Result<UpstreamResponse, OllamaError> {
        let mut request = match self.targets.uri(path) {
            Some(uri) => self.http.request(method, uri.clone()),
            None => self
                .http
                .request(method, format!("{}{path}", self.base_url).as_str()),
        };
        if let Some(host) = &self.targets.host {
            request = request.insert_header((HOST, host.clone()));
        }
        match &self.targets.extra_headers {
            Ok(headers) => {
                for (name, value) in headers {
                    request = request.insert_header((name.clone(), value.clone()));
                }
            }
            Err(message) => {
                return Err(OllamaError::Connect {
                    message: message.clone(),
                });
            }
        }
        tracing::debug!(path, model, "calling Ollama");
        let started = tokio::time::Instant::now();
        let sent = match body {
            Some(body) => {
                // Sized up front: a chat request is a few hundred bytes, and serde_json's own
                // `to_vec` would grow from nothing through several reallocations.
                let mut json = Vec::with_capacity(1024);
                if let Err(error) = serde_json::to_writer(&mut json, body) {
                    // What awc's `send_json` reported the same way: nothing was sent.
                    return Err(OllamaError::Connect {
                        message: format!("the request could not be encoded as JSON: {error}"),
                    });
                }
                request
                    .insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")))
                    .send_body(json)
                    .await
            }
            None => request.send().await,
        };
        let response = sent.map_err(|error| {
            let mapped = OllamaError::from_send(&error);
            tracing::debug!(path, model, %error, "Ollama call failed before the response head");
            mapped
        })?;
        let status = response.status();
        let content_length = response
            .headers()
            .get(awc::http::header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok());
        tracing::debug!(
            path,
            model,
            status = status.as_u16(),
            head_after_ms = started.elapsed().as_millis() as u64,
            "Ollama answered"
        );
        let mut body: BodyStream = Box::pin(response);
        if status.is_success() {
            return Ok(UpstreamResponse {
                body,
                content_length,
            });
        }
        let bytes = read_body_prefix(&mut body, MAX_ERROR_BODY_BYTES, self.idle_timeout).await;
        Err(OllamaError::from_status(status.as_u16(), &bytes, model))
    }
}

/// Parses the configured extra headers; values are marked sensitive so awc's own debugging
/// output never shows them.
fn parse_headers(headers: &[(String, String)]) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    headers
        .iter()
        .map(|(name, value)| {
            let parsed_name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("the configured header name {name:?} is not valid"))?;
            let mut parsed_value = HeaderValue::from_str(value)
                .map_err(|_| format!("the configured value of header {name:?} is not valid"))?;
            parsed_value.set_sensitive(true);
            Ok((parsed_name, parsed_value))
        })
        .collect()
}

/// A 2xx answer whose body has not been read yet.
struct UpstreamResponse {
    body: BodyStream,
    /// The `Content-Length` header, when the body is not chunked.
    content_length: Option<usize>,
}

/// Reads a whole body of at most `limit` bytes, waiting at most `idle_timeout` for each chunk.
/// A body that arrives in one chunk (the usual case for a small JSON answer) is not copied.
async fn read_body(
    body: &mut BodyStream,
    limit: usize,
    idle_timeout: Duration,
    expected_len: Option<usize>,
) -> Result<Bytes, OllamaError> {
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    loop {
        let next = tokio::time::timeout(idle_timeout, body.next())
            .await
            .map_err(|_elapsed| OllamaError::Timeout {
                phase: TimeoutPhase::Idle,
            })?;
        let chunk = match next {
            None => break,
            Some(Err(error)) => return Err(OllamaError::from_payload(&error)),
            Some(Ok(chunk)) => chunk,
        };
        let so_far = joined
            .as_ref()
            .map_or_else(|| first.as_ref().map_or(0, Bytes::len), BytesMut::len);
        if so_far + chunk.len() > limit {
            return Err(OllamaError::InvalidResponse {
                message: format!("response body larger than {limit} bytes"),
            });
        }
        match (&mut joined, first.take()) {
            (Some(joined), _) => joined.extend_from_slice(&chunk),
            (None, None) => first = Some(chunk),
            (None, Some(earlier)) => {
                let capacity = expected_len
                    .unwrap_or(0)
                    .min(limit)
                    .max(earlier.len() + chunk.len());
                let mut buffer = BytesMut::with_capacity(capacity);
                buffer.extend_from_slice(&earlier);
                buffer.extend_from_slice(&chunk);
                joined = Some(buffer);
            }
        }
    }
    Ok(match joined {
        Some(joined) => joined.freeze(),
        None => first.unwrap_or_default(),
    })
}

/// Reads up to `limit` bytes of an error body, keeping whatever arrived if it breaks or
/// stalls: the status is the news, the text only explains it.
async fn read_body_prefix(body: &mut BodyStream, limit: usize, idle_timeout: Duration) -> Vec<u8> {
    let mut bytes = Vec::new();
    while bytes.len() < limit {
        match tokio::time::timeout(idle_timeout, body.next()).await {
            Ok(Some(Ok(chunk))) => {
                let room = limit - bytes.len();
                bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None | Some(Err(_))) | Err(_) => break,
        }
    }
    bytes
}
