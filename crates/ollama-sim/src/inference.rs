//! Ollama's native inference: `/api/chat`, `/api/generate`, `/api/embed` and the legacy
//! `/api/embeddings`. The compatibility routes translate their request into a native one and
//! run it through the same `prepare_*` functions, as Ollama's middleware does.

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use serde::Serialize;
use serde_json::{Value, json};

use crate::control::SimEndpoint;
use crate::decode::{self, Refusal, ReplyFormat};
use crate::gojson::{go_quote, to_go_json};
use crate::model::{Capability, ModelName, NameError, SimModel};
use crate::native::NativeEncoder;
use crate::registry::KeepAlive;
use crate::respond::{send_body, send_reply, start_answer};
use crate::rules;
use crate::state::{AppState, not_found_as_sent};
use crate::wire::{
    Dialect, Encoder, JSON_UTF8, LOAD_DURATION_NS, Metrics, Piece, Reply, Route, body_response,
};

/// Ollama checks `think` before capabilities: a model without the thinking capability refuses
/// `think: true`, unless the request came through the Anthropic layer, which relaxes it to
/// "no thinking" so clients such as Claude Code work with any model.
fn check_think(
    think: Option<bool>,
    model: &SimModel,
    requested: &str,
    relax_thinking: bool,
) -> Result<(), Refusal> {
    if think == Some(true) && !model.has(Capability::Thinking) && !relax_thinking {
        return Err(Refusal::new(
            400,
            format!("{} does not support thinking", go_quote(requested)),
        ));
    }
    Ok(())
}

/// Whether the reply thinks first: a thinking model does unless `think` is false (Ollama turns
/// thinking on by default for such models).
fn thinks(model: &SimModel, think: Option<bool>) -> bool {
    model.has(Capability::Thinking) && think != Some(false)
}

/// Thinking words, then the answer's words; `eval_count` counts them all.
fn into_pieces(shaped: rules::ShapedReply) -> (Vec<Piece>, &'static str, u64) {
    let eval_count = (shaped.thinking.len() + shaped.pieces.len()) as u64;
    let pieces = shaped
        .thinking
        .into_iter()
        .map(Piece::Thinking)
        .chain(shaped.pieces.into_iter().map(Piece::Text))
        .collect();
    (pieces, shaped.done_reason, eval_count)
}

/// A validated chat or generate request, ready to answer.
pub(crate) struct Prepared {
    pub(crate) reply: Reply,
    pub(crate) stream: bool,
    /// A load or unload answer (`done_reason` `load`/`unload`, no generation): Ollama sends it
    /// at once, as one object even when streaming was asked for, with no latency or faults.
    pub(crate) immediate: bool,
}

impl Prepared {
    fn load(route: Route, model: String, done_reason: &'static str, stream: bool) -> Self {
        Self {
            reply: Reply {
                route,
                model,
                pieces: Vec::new(),
                done_reason,
                metrics: Metrics::default(),
                context: None,
            },
            stream,
            immediate: true,
        }
    }
}

/// Sends a prepared answer with `encoder`, or `refusal` in the encoder's error shape.
pub(crate) async fn answer<E: Encoder>(
    state: &AppState,
    prepared: Result<Prepared, Refusal>,
    mut encoder: E,
) -> HttpResponse {
    match prepared {
        Ok(Prepared {
            reply,
            stream,
            immediate: false,
        }) => send_reply(&state.control, reply, stream, encoder).await,
        Ok(Prepared {
            reply,
            stream,
            immediate: true,
        }) => {
            // Ollama's native handler writes one object; a compatibility writer turns it into
            // its own stream events when streaming was asked for.
            if stream && encoder.dialect() != Dialect::Ollama {
                let events = encoder.finish(&reply);
                let mut response = HttpResponse::Ok();
                response.content_type(encoder.stream_content_type());
                if encoder.stream_no_cache() {
                    response.insert_header((actix_web::http::header::CACHE_CONTROL, "no-cache"));
                }
                response.body(events)
            } else {
                let (body, content_type) = encoder.whole(&reply);
                body_response(200, content_type, body)
            }
        }
        Err(refusal) => encoder.dialect().error(refusal.status, &refusal.message),
    }
}

pub(crate) async fn chat(state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    state.record(SimEndpoint::Chat, &body);
    let prepared = decode::parse_body(&body).and_then(|value| prepare_chat(&state, &value, false));
    answer(&state, prepared, NativeEncoder).await
}

/// Validates a native chat request and builds its reply (see the crate docs for the rules).
pub(crate) fn prepare_chat(
    state: &AppState,
    value: &Value,
    relax_thinking: bool,
) -> Result<Prepared, Refusal> {
    let request = decode::chat_request(value)?;
    let model = state.resolve(
        &request.model,
        || Refusal::new(400, "model is required"),
        |_| not_found_as_sent(&request.model),
    )?;
    if request.messages.is_empty() && request.keep_alive.is_some_and(KeepAlive::is_zero) {
        state.unload(&model);
        return Ok(Prepared::load(
            Route::Chat,
            request.model,
            "unload",
            request.stream,
        ));
    }
    check_think(request.think, &model, &request.model, relax_thinking)?;
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
        return Ok(Prepared::load(
            Route::Chat,
            request.model,
            "load",
            request.stream,
        ));
    };
    let format = decode::reply_format(request.format.as_ref())?;
    let prompt_eval_count = rules::prompt_tokens_for_chat(value);

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
            let thinking = thinks(&model, request.think).then(|| rules::thinking_text(source));
            let shaped = rules::shape_thinking_reply(
                thinking.as_deref(),
                &text,
                options.num_predict,
                &options.stop,
            );
            into_pieces(shaped)
        }
    };
    Ok(Prepared {
        reply: Reply {
            route: Route::Chat,
            model: request.model,
            pieces,
            done_reason,
            metrics: Metrics::for_counts(prompt_eval_count, eval_count),
            context: None,
        },
        stream: request.stream,
        immediate: false,
    })
}

pub(crate) async fn generate(state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    state.record(SimEndpoint::Generate, &body);
    let prepared = decode::parse_body(&body).and_then(|value| prepare_generate(&state, &value));
    answer(&state, prepared, NativeEncoder).await
}

/// Validates a native generate request and builds its reply.
pub(crate) fn prepare_generate(state: &AppState, value: &Value) -> Result<Prepared, Refusal> {
    let request = decode::generate_request(value)?;
    let model = state.resolve(
        &request.model,
        || not_found_as_sent(&request.model),
        |_| not_found_as_sent(&request.model),
    )?;
    if request.prompt.is_empty() && request.keep_alive.is_some_and(KeepAlive::is_zero) {
        state.unload(&model);
        return Ok(Prepared::load(
            Route::Generate,
            request.model,
            "unload",
            request.stream,
        ));
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
    check_think(request.think, &model, &request.model, false)?;
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
        return Ok(Prepared::load(
            Route::Generate,
            request.model,
            "load",
            request.stream,
        ));
    }
    let format = decode::reply_format(request.format.as_ref())?;
    let prompt_eval_count = rules::prompt_tokens_for_generate(value);
    let images = if model.has(Capability::Vision) {
        request.images
    } else {
        0
    };
    let text = rules::reply_text(Some(&request.prompt), images, format == ReplyFormat::Json);
    let thinking =
        thinks(&model, request.think).then(|| rules::thinking_text(Some(&request.prompt)));
    let shaped = rules::shape_thinking_reply(
        thinking.as_deref(),
        &text,
        options.num_predict,
        &options.stop,
    );
    let answer_text = shaped.pieces.concat();
    let (pieces, done_reason, eval_count) = into_pieces(shaped);
    let context = (!request.raw).then(|| {
        rules::context_tokens(
            &request.prompt,
            &answer_text,
            prompt_eval_count + eval_count,
        )
    });
    Ok(Prepared {
        reply: Reply {
            route: Route::Generate,
            model: request.model,
            pieces,
            done_reason,
            metrics: Metrics::for_counts(prompt_eval_count, eval_count),
            context,
        },
        stream: request.stream,
        immediate: false,
    })
}

/// A validated `/api/embed` request.
pub(crate) struct EmbedPlan {
    /// The model name as sent.
    pub(crate) model_name: String,
    inputs: Vec<String>,
    dims: usize,
    dimensions: Option<i64>,
    pub(crate) prompt_eval_count: u64,
}

impl EmbedPlan {
    pub(crate) fn has_inputs(&self) -> bool {
        !self.inputs.is_empty()
    }

    /// One vector per input ([`rules::embedding_vector`]), cut to `dimensions` and
    /// renormalised when asked.
    pub(crate) fn vectors(&self) -> Vec<Vec<f32>> {
        self.inputs
            .iter()
            .map(|input| {
                let vector = rules::embedding_vector(input, self.dims);
                match self.dimensions.and_then(|d| usize::try_from(d).ok()) {
                    Some(keep) if keep > 0 && keep < vector.len() => {
                        let cut: Vec<f64> = vector[..keep].iter().map(|v| f64::from(*v)).collect();
                        rules::normalize(&cut)
                    }
                    _ => vector,
                }
            })
            .collect()
    }
}

/// Validates a native embed request.
pub(crate) fn prepare_embed(state: &AppState, value: &Value) -> Result<EmbedPlan, Refusal> {
    let request = decode::embed_request(value)?;
    // Ollama validates the name, then the input, then looks the model up.
    match ModelName::parse(&request.model) {
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
        prompt_eval_count: rules::prompt_tokens_for_embed(value),
        model_name: request.model,
        inputs,
        dims: model.embedding_length,
        dimensions: request.dimensions,
    })
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

pub(crate) async fn embed(state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    state.record(SimEndpoint::Embed, &body);
    let plan = match decode::parse_body(&body).and_then(|value| prepare_embed(&state, &value)) {
        Ok(plan) => plan,
        Err(refusal) => return Dialect::Ollama.error(refusal.status, &refusal.message),
    };
    let faults = match start_answer(&state.control, Dialect::Ollama).await {
        Ok(faults) => faults,
        Err(answer) => return answer,
    };
    let response = if plan.has_inputs() {
        EmbedResponse {
            model: &plan.model_name,
            embeddings: plan.vectors(),
            total_duration: Some(LOAD_DURATION_NS + 2_000_000 * plan.inputs.len() as u64),
            load_duration: Some(LOAD_DURATION_NS),
            prompt_eval_count: Some(plan.prompt_eval_count).filter(|count| *count > 0),
        }
    } else {
        EmbedResponse {
            model: &plan.model_name,
            embeddings: Vec::new(),
            total_duration: None,
            load_duration: None,
            prompt_eval_count: None,
        }
    };
    send_body(&faults, to_go_json(&response), JSON_UTF8, Dialect::Ollama).await
}

pub(crate) async fn legacy_embeddings(
    state: web::Data<AppState>,
    body: web::Bytes,
) -> HttpResponse {
    state.record(SimEndpoint::Embeddings, &body);
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
            Ok((request.prompt, Arc::clone(&model)))
        });
    let (prompt, model) = match prepared {
        Ok(plan) => plan,
        Err(refusal) => return Dialect::Ollama.error(refusal.status, &refusal.message),
    };
    let faults = match start_answer(&state.control, Dialect::Ollama).await {
        Ok(faults) => faults,
        Err(answer) => return answer,
    };
    let embedding: Vec<f64> = if prompt.is_empty() {
        Vec::new()
    } else {
        rules::embedding_vector(&prompt, model.embedding_length)
            .into_iter()
            .map(f64::from)
            .collect()
    };
    let body = to_go_json(&json!({ "embedding": embedding }));
    send_body(&faults, body, JSON_UTF8, Dialect::Ollama).await
}
