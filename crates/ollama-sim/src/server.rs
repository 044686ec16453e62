//! The HTTP server: routes, handlers and the [`OllamaSim`] handle that starts and stops it.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::{ServerHandle, Service as _};
use actix_web::middleware::DefaultHeaders;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use futures_util::future::Either;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::config::SimConfig;
use crate::control::{FaultScope, SimControl, SimEndpoint};
use crate::decode::{self, Refusal, ReplyFormat};
use crate::gojson::{go_quote, go_timestamp, to_go_json};
use crate::model::{Capability, ModelName, NameError, SimModel};
use crate::registry::KeepAlive;
use crate::respond::{
    LOAD_DURATION_NS, Metrics, Piece, Reply, Route, error_response, json_response, load_response,
    never, pause, send_reply,
};
use crate::rules;

/// State shared by every worker.
struct AppState {
    control: SimControl,
    version: String,
}

impl AppState {
    /// Resolves a requested name against the installed models; `empty` and `missing` build the
    /// endpoint-specific refusals.
    fn resolve(
        &self,
        requested: &str,
        empty: impl FnOnce() -> Refusal,
        missing: impl FnOnce(&ModelName) -> Refusal,
    ) -> Result<Arc<SimModel>, Refusal> {
        match ModelName::parse(requested) {
            Err(NameError::Empty) => Err(empty()),
            Err(NameError::Invalid) => Err(Refusal::new(400, "invalid model name")),
            Ok(name) => self
                .control
                .registry()
                .find(&name)
                .ok_or_else(|| missing(&name)),
        }
    }

    /// A request used `model`: it is loaded until now + keep-alive.
    fn touch(&self, model: &Arc<SimModel>, keep_alive: Option<KeepAlive>, num_ctx: Option<i64>) {
        let now = self.control.now();
        let num_ctx = num_ctx
            .and_then(|n| u64::try_from(n).ok())
            .filter(|n| *n > 0);
        self.control
            .registry()
            .touch(model, keep_alive, num_ctx, now);
    }

    fn unload(&self, model: &Arc<SimModel>) {
        self.control.registry().unload(model);
    }
}

fn not_found_as_sent(requested: &str) -> Refusal {
    Refusal::new(404, format!("model '{requested}' not found"))
}

fn refuse(refusal: Refusal) -> HttpResponse {
    error_response(refusal.status, &refusal.message)
}

/// Ollama checks `think` before capabilities: a model without the thinking capability refuses
/// `think: true`.
fn check_think(think: Option<bool>, model: &SimModel, requested: &str) -> Result<(), Refusal> {
    if think == Some(true) && !model.has(Capability::Thinking) {
        return Err(Refusal::new(
            400,
            format!("{} does not support thinking", go_quote(requested)),
        ));
    }
    Ok(())
}

/// The response header naming the instance that answered ([`SimConfig::name`]).
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
        let instance = config.name.clone();
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
                .wrap(DefaultHeaders::new().add((INSTANCE_HEADER, instance.clone())))
        })
        .workers(workers)
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

#[derive(Serialize)]
struct Details<'a> {
    parent_model: &'a str,
    format: &'a str,
    family: &'a str,
    families: &'a [String],
    parameter_size: &'a str,
    quantization_level: &'a str,
}

fn details(model: &SimModel) -> Details<'_> {
    Details {
        parent_model: "",
        format: &model.format,
        family: &model.family,
        families: &model.families,
        parameter_size: &model.parameter_size,
        quantization_level: &model.quantization_level,
    }
}

#[derive(Serialize)]
struct TagsModel<'a> {
    name: &'a str,
    model: &'a str,
    modified_at: &'a str,
    size: u64,
    digest: &'a str,
    details: Details<'a>,
    #[serde(skip_serializing_if = "<[Capability]>::is_empty")]
    capabilities: &'a [Capability],
}

async fn tags(state: web::Data<AppState>) -> HttpResponse {
    state.control.note_request(SimEndpoint::Tags);
    let installed = state.control.registry().installed();
    let models: Vec<TagsModel<'_>> = installed
        .iter()
        .map(|model| TagsModel {
            name: &model.name,
            model: &model.name,
            modified_at: &model.modified_at,
            size: model.size,
            digest: &model.digest,
            details: details(model),
            capabilities: &model.capabilities,
        })
        .collect();
    json_response(200, to_go_json(&json!({ "models": models })))
}

#[derive(Serialize)]
struct PsModel<'a> {
    name: &'a str,
    model: &'a str,
    size: u64,
    digest: &'a str,
    details: Details<'a>,
    expires_at: String,
    size_vram: u64,
    context_length: u64,
}

async fn ps(state: web::Data<AppState>) -> HttpResponse {
    state.control.note_request(SimEndpoint::Ps);
    let now = state.control.now();
    let loaded = state.control.registry().loaded(now);
    let models: Vec<PsModel<'_>> = loaded
        .iter()
        .map(|(model, loaded)| PsModel {
            name: &model.name,
            model: &model.name,
            size: model.size,
            digest: &model.digest,
            details: details(model),
            expires_at: go_timestamp(loaded.expires_at),
            size_vram: model.size,
            context_length: loaded.context_length,
        })
        .collect();
    json_response(200, to_go_json(&json!({ "models": models })))
}

async fn show(state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    state.control.note_request(SimEndpoint::Show);
    state.control.log_body(SimEndpoint::Show, &body);
    let result = decode::parse_body(&body)
        .and_then(|value| decode::show_request(&value))
        .and_then(|requested| {
            state.resolve(
                &requested,
                || Refusal::new(400, "model is required"),
                |name| {
                    Refusal::new(
                        404,
                        format!("model '{}' not found", name.display_shortest()),
                    )
                },
            )
        });
    match result {
        Ok(model) => json_response(200, to_go_json(&show_body(&model))),
        Err(refusal) => refuse(refusal),
    }
}

fn show_body(model: &SimModel) -> Value {
    let architecture = model.family.replace('-', "_");
    let mut model_info = Map::new();
    model_info.insert("general.architecture".into(), json!(architecture));
    model_info.insert("general.file_type".into(), json!(15));
    model_info.insert("general.quantization_version".into(), json!(2));
    model_info.insert(
        format!("{architecture}.context_length"),
        json!(model.context_length),
    );
    model_info.insert(
        format!("{architecture}.embedding_length"),
        json!(model.embedding_length),
    );
    let mut body = json!({
        "modelfile": format!("# Modelfile generated by \"ollama show\"\nFROM {}\n", model.name),
        "parameters": "temperature                    0.8",
        "template": "{{ if .System }}{{ .System }}\n{{ end }}{{ .Prompt }}",
        "details": details(model),
        "model_info": model_info,
        "capabilities": model.capabilities,
        "modified_at": model.modified_at,
    });
    if model.has(Capability::Vision) {
        body["projector_info"] = json!({ "clip.has_vision_encoder": true });
    }
    body
}

/// What a validated chat/generate request turns into.
enum Prepared {
    /// An answer that needs no generation (load/unload).
    Immediate(HttpResponse),
    /// A reply to generate, subject to latency and faults.
    Reply { reply: Reply, stream: bool },
}

async fn answer(state: &AppState, prepared: Result<Prepared, Refusal>) -> HttpResponse {
    match prepared {
        Ok(Prepared::Immediate(response)) => response,
        Ok(Prepared::Reply { reply, stream }) => send_reply(&state.control, reply, stream).await,
        Err(refusal) => refuse(refusal),
    }
}

async fn chat(state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    state.control.note_request(SimEndpoint::Chat);
    state.control.log_body(SimEndpoint::Chat, &body);
    let prepared = prepare_chat(&state, &body);
    answer(&state, prepared).await
}

fn prepare_chat(state: &AppState, body: &[u8]) -> Result<Prepared, Refusal> {
    let value = decode::parse_body(body)?;
    let request = decode::chat_request(&value)?;
    let model = state.resolve(
        &request.model,
        || Refusal::new(400, "model is required"),
        |_| not_found_as_sent(&request.model),
    )?;
    if request.messages.is_empty() && request.keep_alive.is_some_and(KeepAlive::is_zero) {
        state.unload(&model);
        return Ok(Prepared::Immediate(load_response(
            Route::Chat,
            &request.model,
            "unload",
        )));
    }
    check_think(request.think, &model, &request.model)?;
    if !model.has(Capability::Completion) {
        return Err(Refusal::new(
            400,
            format!("{} does not support chat", go_quote(&request.model)),
        ));
    }
    if !request.tools.is_empty() && !model.has(Capability::Tools) {
        return Err(Refusal::new(
            400,
            format!("{} does not support tools", model.qualified_name()),
        ));
    }
    let options = decode::sim_options(request.options.as_ref())?;
    state.touch(&model, request.keep_alive, options.num_ctx);
    let Some(last) = request.messages.last() else {
        return Ok(Prepared::Immediate(load_response(
            Route::Chat,
            &request.model,
            "load",
        )));
    };
    let format = decode::reply_format(request.format.as_ref())?;
    let prompt_eval_count = rules::prompt_tokens_for_chat(&value);

    let (pieces, done_reason, eval_count) = match request.tools.first() {
        Some(first_tool) if last.role == "user" => {
            let (call, eval_count) = rules::tool_call(first_tool, &last.content);
            (vec![Piece::ToolCalls(vec![call])], "stop", eval_count)
        }
        _ => {
            let source = if last.role == "tool" {
                Some(last.content.as_str())
            } else {
                request
                    .messages
                    .iter()
                    .rev()
                    .find(|message| message.role == "user")
                    .map(|message| message.content.as_str())
            };
            let images = if model.has(Capability::Vision) {
                request.messages.iter().map(|message| message.images).sum()
            } else {
                0
            };
            let text = rules::reply_text(source, images, format == ReplyFormat::Json);
            let shaped = rules::shape_reply(&text, options.num_predict, &options.stop);
            let eval_count = shaped.pieces.len() as u64;
            (
                shaped.pieces.into_iter().map(Piece::Text).collect(),
                shaped.done_reason,
                eval_count,
            )
        }
    };
    Ok(Prepared::Reply {
        reply: Reply {
            route: Route::Chat,
            model: request.model,
            pieces,
            done_reason,
            metrics: Metrics::for_counts(prompt_eval_count, eval_count),
            context: None,
        },
        stream: request.stream,
    })
}

async fn generate(state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    state.control.note_request(SimEndpoint::Generate);
    state.control.log_body(SimEndpoint::Generate, &body);
    let prepared = prepare_generate(&state, &body);
    answer(&state, prepared).await
}

fn prepare_generate(state: &AppState, body: &[u8]) -> Result<Prepared, Refusal> {
    let value = decode::parse_body(body)?;
    let request = decode::generate_request(&value)?;
    let model = state.resolve(
        &request.model,
        || not_found_as_sent(&request.model),
        |_| not_found_as_sent(&request.model),
    )?;
    if request.prompt.is_empty() && request.keep_alive.is_some_and(KeepAlive::is_zero) {
        state.unload(&model);
        return Ok(Prepared::Immediate(load_response(
            Route::Generate,
            &request.model,
            "unload",
        )));
    }
    if request.raw
        && (!request.template.is_empty()
            || !request.system.is_empty()
            || !request.context.is_empty())
    {
        return Err(Refusal::new(
            400,
            "raw mode does not support template, system, or context",
        ));
    }
    check_think(request.think, &model, &request.model)?;
    if !model.has(Capability::Completion) {
        return Err(Refusal::new(
            400,
            format!("{} does not support generate", go_quote(&request.model)),
        ));
    }
    if !request.suffix.is_empty() && !model.has(Capability::Insert) {
        return Err(Refusal::new(
            400,
            format!("{} does not support insert", model.qualified_name()),
        ));
    }
    let options = decode::sim_options(request.options.as_ref())?;
    state.touch(&model, request.keep_alive, options.num_ctx);
    if request.prompt.is_empty() {
        return Ok(Prepared::Immediate(load_response(
            Route::Generate,
            &request.model,
            "load",
        )));
    }
    let format = decode::reply_format(request.format.as_ref())?;
    let prompt_eval_count = rules::prompt_tokens_for_generate(&value);
    let images = if model.has(Capability::Vision) {
        request.images
    } else {
        0
    };
    let text = rules::reply_text(Some(&request.prompt), images, format == ReplyFormat::Json);
    let shaped = rules::shape_reply(&text, options.num_predict, &options.stop);
    let eval_count = shaped.pieces.len() as u64;
    let context = (!request.raw).then(|| {
        rules::context_tokens(
            &request.prompt,
            &shaped.pieces.concat(),
            prompt_eval_count + eval_count,
        )
    });
    Ok(Prepared::Reply {
        reply: Reply {
            route: Route::Generate,
            model: request.model,
            pieces: shaped.pieces.into_iter().map(Piece::Text).collect(),
            done_reason: shaped.done_reason,
            metrics: Metrics::for_counts(prompt_eval_count, eval_count),
            context,
        },
        stream: request.stream,
    })
}

/// Applies `hang`, `first_token_delay` and `fail_status` to an embedding request; `Some` is the
/// answer to send instead of the embeddings.
async fn embedding_faults(control: &SimControl) -> Option<HttpResponse> {
    let faults = control.claim_faults(FaultScope::Embedding);
    if faults.hang {
        return Some(never().await);
    }
    pause(control.settings().first_token_delay).await;
    faults
        .fail_status
        .map(|(status, message)| error_response(status, &message))
}

#[derive(Serialize)]
struct EmbedResponse<'a> {
    model: &'a str,
    embeddings: Vec<Vec<f32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_duration: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    load_duration: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_eval_count: Option<u64>,
}

struct EmbedPlan {
    model_name: String,
    inputs: Vec<String>,
    dims: usize,
    dimensions: Option<i64>,
    prompt_eval_count: u64,
}

fn prepare_embed(state: &AppState, body: &[u8]) -> Result<EmbedPlan, Refusal> {
    let value = decode::parse_body(body)?;
    let request = decode::embed_request(&value)?;
    // Ollama validates the name, then the input, then looks the model up.
    let name_check = ModelName::parse(&request.model);
    match name_check {
        Err(NameError::Empty) => return Err(not_found_as_sent(&request.model)),
        Err(NameError::Invalid) => return Err(Refusal::new(400, "invalid model name")),
        Ok(_) => {}
    }
    let inputs = decode::embed_inputs(request.input.as_ref())?;
    let model = state.resolve(
        &request.model,
        || not_found_as_sent(&request.model),
        |_| not_found_as_sent(&request.model),
    )?;
    let options = decode::sim_options(request.options.as_ref())?;
    state.touch(&model, request.keep_alive, options.num_ctx);
    Ok(EmbedPlan {
        prompt_eval_count: rules::prompt_tokens_for_embed(&value),
        model_name: request.model,
        inputs,
        dims: model.embedding_length,
        dimensions: request.dimensions,
    })
}

async fn embed(state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    state.control.note_request(SimEndpoint::Embed);
    state.control.log_body(SimEndpoint::Embed, &body);
    let plan = match prepare_embed(&state, &body) {
        Ok(plan) => plan,
        Err(refusal) => return refuse(refusal),
    };
    if let Some(response) = embedding_faults(&state.control).await {
        return response;
    }
    if plan.inputs.is_empty() {
        let empty = EmbedResponse {
            model: &plan.model_name,
            embeddings: Vec::new(),
            total_duration: None,
            load_duration: None,
            prompt_eval_count: None,
        };
        return json_response(200, to_go_json(&empty));
    }
    let embeddings = plan
        .inputs
        .iter()
        .map(|input| {
            let vector = rules::embedding_vector(input, plan.dims);
            match plan.dimensions.and_then(|d| usize::try_from(d).ok()) {
                Some(keep) if keep > 0 && keep < vector.len() => {
                    let cut: Vec<f64> = vector[..keep].iter().map(|v| f64::from(*v)).collect();
                    rules::normalize(&cut)
                }
                _ => vector,
            }
        })
        .collect();
    let response = EmbedResponse {
        model: &plan.model_name,
        embeddings,
        total_duration: Some(LOAD_DURATION_NS + 2_000_000 * plan.inputs.len() as u64),
        load_duration: Some(LOAD_DURATION_NS),
        prompt_eval_count: Some(plan.prompt_eval_count).filter(|count| *count > 0),
    };
    json_response(200, to_go_json(&response))
}

async fn legacy_embeddings(state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    state.control.note_request(SimEndpoint::Embeddings);
    state.control.log_body(SimEndpoint::Embeddings, &body);
    let prepared = decode::parse_body(&body)
        .and_then(|value| decode::legacy_embedding_request(&value))
        .and_then(|request| {
            let model = state.resolve(
                &request.model,
                || Refusal::new(400, "model is required"),
                |_| {
                    Refusal::new(
                        404,
                        format!(
                            "model {} not found, try pulling it first",
                            go_quote(&request.model)
                        ),
                    )
                },
            )?;
            let options = decode::sim_options(request.options.as_ref())?;
            state.touch(&model, request.keep_alive, options.num_ctx);
            Ok((request.prompt, model.embedding_length))
        });
    let (prompt, dims) = match prepared {
        Ok(plan) => plan,
        Err(refusal) => return refuse(refusal),
    };
    if let Some(response) = embedding_faults(&state.control).await {
        return response;
    }
    let embedding: Vec<f64> = if prompt.is_empty() {
        Vec::new()
    } else {
        rules::embedding_vector(&prompt, dims)
            .into_iter()
            .map(f64::from)
            .collect()
    };
    json_response(200, to_go_json(&json!({ "embedding": embedding })))
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
        Err(err) => error_response(400, &err.to_string()),
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
            None => return error_response(400, &format!("unknown endpoint {name:?}")),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_body_names_vision_projector_only_for_vision_models() {
        assert!(
            show_body(&SimModel::moondream())
                .get("projector_info")
                .is_some()
        );
        let llama = show_body(&SimModel::llama3_2());
        assert!(llama.get("projector_info").is_none());
        assert_eq!(llama["model_info"]["llama.context_length"], 131_072);
        assert_eq!(llama["capabilities"], json!(["completion", "tools"]));
    }
}
