//! The HTTP server: routes, handlers and the [`OllamaSim`] handle that starts and stops it.

use std::io;
use std::net::{SocketAddr, TcpListener};

use actix_web::dev::{ServerHandle, Service as _};
use actix_web::middleware::DefaultHeaders;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use futures_util::future::Either;
use serde_json::{Value, json};

use crate::config::SimConfig;
use crate::control::{SimControl, SimEndpoint};
use crate::gojson::to_go_json;
use crate::inference::{chat, embed, generate, legacy_embeddings};
use crate::listing::{ps, show, tags};
use crate::state::AppState;
use crate::wire::{Dialect, json_response};
use crate::{anthropic, management, openai, responses};

/// The response header naming the instance that answered ([`SimConfig::name`]), sent on every
/// response of a named instance.
pub const INSTANCE_HEADER: &str = "x-sim-instance";

/// A running simulator, serving on a real TCP port.
///
/// Dropping it stops the server (without waiting); [`OllamaSim::stop`] waits for the stop.
#[derive(Debug)]
pub struct OllamaSim {
    addr: SocketAddr,
    control: SimControl,
    handle: ServerHandle,
    stopped: bool,
}

impl OllamaSim {
    /// Binds `127.0.0.1:0`, starts serving on the current actix system and returns at once.
    ///
    /// Must run inside an actix system (`#[actix_rt::test]`, `#[actix_web::test]`,
    /// `actix_rt::System::new().block_on(..)`). The port is bound before this returns, so
    /// requests can be sent straight away.
    pub async fn start(config: SimConfig) -> io::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), config).await
    }

    /// Like [`OllamaSim::start`] on a chosen address (port 0 picks a free one).
    pub async fn start_on(addr: SocketAddr, config: SimConfig) -> io::Result<Self> {
        let control = SimControl::new(&config)
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let workers = config.workers.max(1);
        let max_body_bytes = config.max_body_bytes;
        // An unnamed instance sends exactly Ollama's headers (benchmarks and the instruction
        // gate measure the proxy parsing them); a named one says who answered.
        let instance_header = (!config.name.is_empty()).then(|| config.name.clone());
        let state = web::Data::new(AppState {
            control: control.clone(),
            version: config.version,
        });
        let server = HttpServer::new(move || {
            let unresponsive = state.control.clone();
            App::new()
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(max_body_bytes))
                .configure(routes)
                .wrap_fn(move |request, service| {
                    // A hung backend answers nothing, health probes included; `/sim/*` stays
                    // reachable so the test can switch it back.
                    if unresponsive.is_unresponsive() && !request.path().starts_with("/sim/") {
                        Either::Left(std::future::pending())
                    } else {
                        Either::Right(service.call(request))
                    }
                })
                .wrap(match &instance_header {
                    Some(name) => DefaultHeaders::new().add((INSTANCE_HEADER, name.clone())),
                    None => DefaultHeaders::new(),
                })
        })
        .workers(workers)
        // Ollama's Go server sets no idle timeout, so an idle keep-alive connection stays
        // open until the client closes it. actix would close it after 5 s, racing every
        // client pool that reuses connections for longer (awc keeps them 15 s).
        .keep_alive(actix_web::http::KeepAlive::Os)
        .disable_signals()
        // A client that closes its socket ends the connection at once, so an abandoned stream
        // (even a stalled one that never writes again) is dropped and counted.
        .h1_allow_half_closed(false)
        .shutdown_timeout(1)
        .listen(listener)?
        .run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Ok(Self {
            addr,
            control,
            handle,
            stopped: false,
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The control shared with the running server.
    pub fn control(&self) -> &SimControl {
        &self.control
    }

    /// The instance's name ([`SimConfig::name`]).
    pub fn name(&self) -> &str {
        self.control.instance()
    }

    /// Stops the server, dropping open connections, and waits until it has stopped.
    pub async fn stop(mut self) {
        self.stopped = true;
        self.handle.stop(false).await;
    }
}

impl Drop for OllamaSim {
    fn drop(&mut self) {
        if !self.stopped {
            // The stop command is sent when `stop` is called; its future only awaits completion.
            drop(self.handle.stop(false));
        }
    }
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/")
            .route(web::get().to(root))
            .route(web::head().to(root))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/api/version")
            .route(web::get().to(version))
            .route(web::head().to(version))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/api/tags")
            .route(web::get().to(tags))
            .route(web::head().to(tags))
            .default_service(web::to(method_not_allowed)),
    )
    .service(post_only("/api/show", show))
    .service(post_only("/api/chat", chat))
    .service(post_only("/api/generate", generate))
    .service(post_only("/api/embed", embed))
    .service(post_only("/api/embeddings", legacy_embeddings))
    .service(
        web::resource("/api/ps")
            .route(web::get().to(ps))
            .default_service(web::to(method_not_allowed)),
    )
    .service(post_only("/api/pull", management::pull))
    .service(post_only("/api/push", management::push))
    .service(post_only("/api/create", management::create))
    .service(post_only("/api/copy", management::copy))
    .service(
        web::resource("/api/delete")
            .route(web::delete().to(management::delete))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/api/blobs/{digest}")
            .route(web::head().to(management::head_blob))
            .route(web::post().to(management::upload_blob))
            .default_service(web::to(method_not_allowed)),
    )
    .service(post_only("/v1/chat/completions", openai::chat_completions))
    .service(post_only("/v1/completions", openai::completions))
    .service(post_only("/v1/embeddings", openai::embeddings))
    .service(post_only("/v1/responses", responses::responses))
    .service(post_only("/v1/messages", anthropic::messages))
    .service(
        web::resource("/v1/models")
            .route(web::get().to(openai::models))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/v1/models/{model}")
            .route(web::get().to(openai::model))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/sim/control")
            .route(web::get().to(get_control))
            .route(web::post().to(post_control)),
    )
    .service(web::resource("/sim/stats").route(web::get().to(get_stats)))
    .service(web::resource("/sim/requests").route(web::get().to(get_requests)))
    .default_service(web::to(not_found));
}

fn post_only<F, Fut>(path: &str, handler: F) -> actix_web::Resource
where
    F: Fn(web::Data<AppState>, web::Bytes) -> Fut + Clone + 'static,
    Fut: std::future::Future<Output = HttpResponse> + 'static,
{
    web::resource(path)
        .route(web::post().to(handler))
        .default_service(web::to(method_not_allowed))
}

/// Gin's default 404: plain text.
async fn not_found(state: web::Data<AppState>) -> HttpResponse {
    state.control.note_request(SimEndpoint::NotFound);
    HttpResponse::NotFound()
        .content_type("text/plain")
        .body("404 page not found")
}

/// Gin with `HandleMethodNotAllowed`: a known path with the wrong method.
async fn method_not_allowed(state: web::Data<AppState>) -> HttpResponse {
    state.control.note_request(SimEndpoint::NotFound);
    HttpResponse::MethodNotAllowed()
        .content_type("text/plain")
        .body("405 method not allowed")
}

async fn root(state: web::Data<AppState>) -> HttpResponse {
    state.control.note_request(SimEndpoint::Root);
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("Ollama is running")
}

async fn version(state: web::Data<AppState>) -> HttpResponse {
    state.control.note_request(SimEndpoint::Version);
    json_response(200, to_go_json(&json!({ "version": state.version })))
}

async fn get_control(state: web::Data<AppState>) -> HttpResponse {
    json_response(200, state.control.control_json().to_string())
}

async fn post_control(state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    let applied = serde_json::from_slice::<Value>(&body)
        .map_err(|err| crate::SimError::InvalidControl(err.to_string()))
        .and_then(|update| state.control.apply_json(&update));
    match applied {
        Ok(()) => json_response(200, state.control.control_json().to_string()),
        Err(err) => Dialect::Ollama.error(400, &err.to_string()),
    }
}

async fn get_stats(state: web::Data<AppState>) -> HttpResponse {
    let stats = serde_json::to_string(&state.control.stats()).unwrap_or_else(|_| "{}".into());
    json_response(200, stats)
}

/// `GET /sim/requests[?endpoint=chat]`: the logged bodies, oldest first.
async fn get_requests(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    let wanted = request
        .query_string()
        .split('&')
        .find_map(|pair| pair.strip_prefix("endpoint="));
    let filter = match wanted {
        None => None,
        Some(name) => match SimEndpoint::from_name(name) {
            Some(endpoint) => Some(endpoint),
            None => return Dialect::Ollama.error(400, &format!("unknown endpoint {name:?}")),
        },
    };
    let entries: Vec<Value> = state
        .control
        .request_log()
        .into_iter()
        .filter(|(endpoint, _)| filter.is_none_or(|wanted| wanted == *endpoint))
        .map(|(endpoint, body)| json!({ "endpoint": endpoint, "body": body }))
        .collect();
    json_response(200, Value::Array(entries).to_string())
}
