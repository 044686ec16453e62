//! Fetching `image_url` parts given by http(s) URL, without letting the proxy become a way
//! into its network.
//!
//! Every address a host name resolves to is checked (against [`crate::forbidden_addresses`])
//! before connecting, on every redirect hop, so neither DNS tricks nor redirects reach an
//! address inside; size and time are capped, and only image bytes are accepted.

use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use actix_web::http::{StatusCode, Uri, header};
use base64::Engine as _;
use futures_util::StreamExt as _;

use crate::error::ApiError;
use crate::forbidden_addresses::forbidden_reason;
use aiproxy_openai::{TranslatedChat, image_kind};

/// How image URLs are fetched.
#[derive(Debug, Clone)]
pub struct ImageFetchSettings {
    /// Whole-fetch deadline per image.
    pub timeout: Duration,
    /// The largest image accepted, in bytes.
    pub max_bytes: usize,
    /// How many redirects are followed.
    pub max_redirects: u8,
    /// Allow private, loopback and link-local addresses (for labs whose images live inside).
    /// Cloud metadata addresses stay refused even then.
    pub allow_private_networks: bool,
}

impl Default for ImageFetchSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_bytes: 20 * 1024 * 1024,
            max_redirects: 3,
            allow_private_networks: false,
        }
    }
}

/// Fetches every pending image of `chat` and puts its base64 into the Ollama request.
pub(crate) async fn fill_images(
    chat: &mut TranslatedChat,
    settings: &ImageFetchSettings,
) -> Result<(), ApiError> {
    let client = image_client(settings);
    for pending in std::mem::take(&mut chat.pending_images) {
        let bytes = fetch_image(&client, &pending.url, settings)
            .await
            .map_err(|why| ApiError::BadRequest {
                message: format!("The image at {} could not be used: {why}.", pending.param),
                param: Some(pending.param.clone()),
                code: Some("invalid_image_url"),
            })?;
        let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
        if let Some(slot) = chat
            .request
            .messages
            .get_mut(pending.message)
            .and_then(|m| m.images.as_mut())
            .and_then(|images| images.get_mut(pending.image))
        {
            *slot = encoded;
        }
    }
    Ok(())
}

/// A resolver that refuses host names resolving to any forbidden address. Checking every
/// address (not only the one connected to) means a name that mixes public and internal
/// addresses is refused outright.
#[derive(Clone)]
struct GuardedResolver {
    allow_private_networks: bool,
}

#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for Refused {}

impl actix_tls::connect::Resolve for GuardedResolver {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> futures_util::future::LocalBoxFuture<'a, Result<Vec<SocketAddr>, Box<dyn StdError>>> {
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| {
                    Box::new(Refused(format!("{host} does not resolve: {e}"))) as Box<dyn StdError>
                })?
                .collect();
            for addr in &addrs {
                if let Some(why) = forbidden_reason(addr.ip(), self.allow_private_networks) {
                    return Err(
                        Box::new(Refused(format!("{host} resolves to {why}"))) as Box<dyn StdError>
                    );
                }
            }
            Ok(addrs)
        })
    }
}

fn image_client(settings: &ImageFetchSettings) -> awc::Client {
    let resolver = actix_tls::connect::Resolver::custom(GuardedResolver {
        allow_private_networks: settings.allow_private_networks,
    });
    let tcp = actix_tls::connect::Connector::new(resolver).service();
    let connector = awc::Connector::new()
        .connector(tcp)
        .timeout(settings.timeout)
        .rustls_0_23(tls_config());
    awc::Client::builder()
        .connector(connector)
        .timeout(settings.timeout)
        .disable_redirects()
        .add_default_header((header::USER_AGENT, "aiproxy-image-fetch"))
        .finish()
}

fn tls_config() -> std::sync::Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<std::sync::Arc<rustls::ClientConfig>> =
        std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
            let builder = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions();
            let config = match builder {
                Ok(builder) => builder.with_root_certificates(roots).with_no_client_auth(),
                // The ring provider supports the default versions; this branch cannot run,
                // but an image fetch failing is better than a panic if it ever did.
                Err(_) => rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_protocol_versions(&[&rustls::version::TLS13])
                .map(|b| {
                    b.with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth()
                })
                .unwrap_or_else(|_| unreachable_config()),
            };
            std::sync::Arc::new(config)
        })
        .clone()
}

#[expect(
    clippy::panic,
    reason = "ring supports TLS 1.3; there is no configuration to fall back to"
)]
fn unreachable_config() -> rustls::ClientConfig {
    panic!("the ring TLS provider supports no protocol version")
}

/// Fetches one image, following at most `max_redirects` redirects, each checked.
async fn fetch_image(
    client: &awc::Client,
    url: &str,
    settings: &ImageFetchSettings,
) -> Result<Vec<u8>, String> {
    let deadline = Instant::now() + settings.timeout;
    let mut current: Uri = url
        .parse()
        .map_err(|_| "the URL is not valid".to_string())?;
    for _ in 0..=settings.max_redirects {
        check_uri(&current, settings.allow_private_networks)?;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let mut response = client
            .get(current.clone())
            .timeout(remaining)
            .send()
            .await
            .map_err(|e| describe_send_error(&e))?;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or("a redirect without a Location")?;
            current = resolve_location(&current, location)?;
            continue;
        }
        if status != StatusCode::OK {
            return Err(format!("the server answered {}", status.as_u16()));
        }
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if !content_type.starts_with("image/") {
            return Err(format!(
                "the server sent `{}`, not an image type",
                if content_type.is_empty() {
                    "no content type"
                } else {
                    &content_type
                }
            ));
        }
        if let Some(length) = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            && length > settings.max_bytes
        {
            return Err(format!("it is larger than {} bytes", settings.max_bytes));
        }
        let mut body = Vec::new();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let next = actix_web::rt::time::timeout(remaining, response.next()).await;
            match next {
                Err(_) => return Err("the download timed out".into()),
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(format!("the download failed: {e}")),
                Ok(Some(Ok(chunk))) => {
                    if body.len() + chunk.len() > settings.max_bytes {
                        return Err(format!("it is larger than {} bytes", settings.max_bytes));
                    }
                    body.extend_from_slice(&chunk);
                }
            }
        }
        if image_kind(&body).is_none() {
            return Err("its bytes are not a PNG, JPEG, WebP or GIF image".into());
        }
        return Ok(body);
    }
    Err(format!("more than {} redirects", settings.max_redirects))
}

/// Checks scheme and, for literal IP hosts (which no resolver sees), the address itself.
fn check_uri(uri: &Uri, allow_private_networks: bool) -> Result<(), String> {
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err("only http and https URLs are fetched".into()),
    }
    let host = uri.host().ok_or("the URL has no host")?;
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>()
        && let Some(why) = forbidden_reason(ip, allow_private_networks)
    {
        return Err(format!("{host} is {why}"));
    }
    Ok(())
}

fn resolve_location(base: &Uri, location: &str) -> Result<Uri, String> {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location
            .parse()
            .map_err(|_| "a redirect to an invalid URL".to_string());
    }
    if location.starts_with('/') {
        let scheme = base.scheme_str().unwrap_or("http");
        let authority = base.authority().map(|a| a.as_str()).unwrap_or("");
        return format!("{scheme}://{authority}{location}")
            .parse()
            .map_err(|_| "a redirect to an invalid URL".to_string());
    }
    Err("a redirect to a relative URL this proxy does not follow".into())
}

fn describe_send_error(err: &awc::error::SendRequestError) -> String {
    use awc::error::{ConnectError, SendRequestError};
    match err {
        SendRequestError::Connect(ConnectError::Resolver(cause)) => cause.to_string(),
        SendRequestError::Connect(ConnectError::Timeout) | SendRequestError::Timeout => {
            "the download timed out".into()
        }
        SendRequestError::Connect(other) => format!("could not connect: {other}"),
        other => format!("the request failed: {other}"),
    }
}
