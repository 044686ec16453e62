//! Model management: `/api/pull`, `/api/push`, `/api/create`, `/api/copy`, `/api/delete` and
//! `/api/blobs/{digest}`. They change the instance's model set (a pull installs a model from the
//! catalog, create and copy add one, delete removes one), so a test sees their effect in
//! `/api/tags`; their progress lines and errors are Ollama's.

use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use futures_util::stream;
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::SimError;
use crate::control::SimEndpoint;
use crate::decode::{self, Fields, Refusal, top_level};
use crate::gojson::{go_quote, go_timestamp, to_go_json};
use crate::model::{Capability, ModelName, NameError, SimModel};
use crate::state::AppState;
use crate::wire::{Dialect, JSON, NDJSON, body_response, ndjson_line, status_code};

/// One progress line (`api.ProgressResponse`; empty and zero fields are omitted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Progress {
    status: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    digest: String,
    #[serde(skip_serializing_if = "is_zero")]
    total: u64,
    #[serde(skip_serializing_if = "is_zero")]
    completed: u64,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// What an operation reports, in order: progress, or an error that ends it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Progress(Progress),
    /// `status` is the HTTP status Ollama uses when nothing was streamed yet (500 by default).
    Error {
        status: u16,
        message: String,
    },
}

fn status(text: impl Into<String>) -> Event {
    Event::Progress(Progress {
        status: text.into(),
        digest: String::new(),
        total: 0,
        completed: 0,
    })
}

fn layer(verb: &str, digest: &str, total: u64, completed: u64) -> Event {
    // Ollama shows the 12 hex digits after `sha256:`.
    let short = digest.get(7..19).unwrap_or(digest);
    Event::Progress(Progress {
        status: format!("{verb} {short}"),
        digest: digest.to_owned(),
        total,
        completed,
    })
}

fn failure(status: u16, message: impl Into<String>) -> Event {
    Event::Error {
        status,
        message: message.into(),
    }
}

/// Sends an operation's events as Ollama's `streamResponse` (NDJSON, an error before any line
/// is a plain status with `application/json`) or `waitForStream` (`stream: false`: the last
/// progress object, or the error) does.
fn progress_response(events: Vec<Event>, stream: bool) -> HttpResponse {
    if !stream {
        let mut latest = Progress {
            status: String::new(),
            digest: String::new(),
            total: 0,
            completed: 0,
        };
        for event in events {
            match event {
                Event::Progress(progress) => latest = progress,
                Event::Error { status, message } => {
                    return body_response(
                        status,
                        JSON,
                        Dialect::Ollama.error_body(status, &message),
                    );
                }
            }
        }
        return body_response(200, JSON, to_go_json(&latest));
    }
    if let Some(Event::Error { status, message }) = events.first() {
        let body = Bytes::from(Dialect::Ollama.error_body(*status, message));
        return HttpResponse::build(status_code(*status))
            .content_type(JSON)
            .streaming(stream::once(async move { Ok::<_, SimError>(body) }));
    }
    let mut lines = Vec::with_capacity(events.len());
    for event in events {
        match event {
            Event::Progress(progress) => lines.push(ndjson_line(to_go_json(&progress))),
            Event::Error { message, .. } => {
                lines.push(ndjson_line(Dialect::Ollama.error_body(500, &message)));
                break;
            }
        }
    }
    HttpResponse::Ok()
        .content_type(NDJSON)
        .streaming(stream::iter(lines.into_iter().map(Ok::<_, SimError>)))
}

fn refuse(refusal: &Refusal) -> HttpResponse {
    Dialect::Ollama.error(refusal.status, &refusal.message)
}

/// The request object, its fields named as Go names the struct, and `stream` (default true).
fn request<'a>(
    body: &'a Value,
    empty: &'a Map<String, Value>,
    go_struct: &'static str,
) -> Result<(Fields<'a>, bool), Refusal> {
    let go_type: &'static str = match go_struct {
        "PullRequest" => "api.PullRequest",
        "PushRequest" => "api.PushRequest",
        "CreateRequest" => "api.CreateRequest",
        "CopyRequest" => "api.CopyRequest",
        _ => "api.DeleteRequest",
    };
    let fields = Fields::new(top_level(body, empty, go_type)?, go_struct, "");
    let stream = fields.bool("stream")?.unwrap_or(true);
    Ok((fields, stream))
}

/// `model`, or the deprecated `name`.
fn model_or_name(fields: &Fields<'_>) -> Result<String, Refusal> {
    let model = fields.string("model")?;
    Ok(if model.is_empty() {
        fields.string("name")?
    } else {
        model
    })
}

fn now_modified(state: &AppState) -> String {
    go_timestamp(state.control.now())
}

/// The events of pulling `name` (a catalog model), installing it on success.
fn pull_events(state: &AppState, name: &ModelName) -> Vec<Event> {
    let mut events = vec![status("pulling manifest")];
    let Some(model) = state.control.registry().find_in_catalog(name) else {
        events.push(failure(500, "pull model manifest: file does not exist"));
        return events;
    };
    let digest = model.layer_digest();
    let present = state.control.registry().blob_size(&digest).is_some();
    if !present {
        events.push(layer("pulling", &digest, model.size, 0));
    }
    events.push(layer("pulling", &digest, model.size, model.size));
    events.push(status("verifying sha256 digest"));
    events.push(status("writing manifest"));
    events.push(status("success"));
    let mut installed = (*model).clone();
    installed.modified_at = now_modified(state);
    state.control.registry().install(installed);
    events
}

pub(crate) async fn pull(state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    state.record(SimEndpoint::Pull, &body);
    let value = match decode::parse_body(&body) {
        Ok(value) => value,
        Err(refusal) => return refuse(&refusal),
    };
    let empty = Map::new();
    let parsed = request(&value, &empty, "PullRequest").and_then(|(fields, stream)| {
        fields.bool("insecure")?;
        fields.string("username")?;
        fields.string("password")?;
        let name = model_or_name(&fields)?;
        // An empty name fails Ollama's reference parser, which this route reports as an
        // invalid name.
        let name =
            ModelName::parse(&name).map_err(|_| Refusal::bad_request("invalid model name"))?;
        Ok((name, stream))
    });
    match parsed {
        Ok((name, stream)) => progress_response(pull_events(&state, &name), stream),
        Err(refusal) => refuse(&refusal),
    }
}

pub(crate) async fn push(state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    state.record(SimEndpoint::Push, &body);
    let value = match decode::parse_body(&body) {
        Ok(value) => value,
        Err(refusal) => return refuse(&refusal),
    };
    let empty = Map::new();
    let parsed = request(&value, &empty, "PushRequest").and_then(|(fields, stream)| {
        fields.bool("insecure")?;
        let name = model_or_name(&fields)?;
        if name.is_empty() {
            return Err(Refusal::bad_request("model is required"));
        }
        Ok((name, stream))
    });
    let (raw, stream) = match parsed {
        Ok(parsed) => parsed,
        Err(refusal) => return refuse(&refusal),
    };
    let mut events = vec![status("retrieving manifest")];
    let installed = ModelName::parse(&raw)
        .ok()
        .and_then(|name| state.control.registry().find(&name));
    match installed {
        Some(model) => {
            let digest = model.layer_digest();
            events.push(layer("pushing", &digest, model.size, 0));
            events.push(layer("pushing", &digest, model.size, model.size));
            events.push(status("pushing manifest"));
            events.push(status("success"));
        }
        None => {
            events.push(status("couldn't retrieve manifest"));
            events.push(failure(
                500,
                format!(
                    "open {}: no such file or directory",
                    manifest_path(&raw).unwrap_or_default()
                ),
            ));
        }
    }
    progress_response(events, stream)
}

/// Where Ollama keeps a name's manifest (under the default `OLLAMA_MODELS` of a root user).
fn manifest_path(raw: &str) -> Option<String> {
    let name = ModelName::parse(raw).ok()?;
    Some(format!(
        "/root/.ollama/models/manifests/{}/{}/{}/{}",
        name.host, name.namespace, name.model, name.tag
    ))
}

/// A file path Go's `fs.ValidPath` accepts: relative, no `.`/`..` elements, no empty ones.
fn valid_path(path: &str) -> bool {
    path == "."
        || (!path.is_empty()
            && path
                .split('/')
                .all(|element| !element.is_empty() && element != "." && element != ".."))
}

/// A `name → digest` map such as `files`, with Go's type error for a non-string digest.
fn digest_map(fields: &Fields<'_>, key: &str) -> Result<Vec<(String, String)>, Refusal> {
    let Some(map) = fields.object(key, "map[string]string")? else {
        return Ok(Vec::new());
    };
    map.iter()
        .map(|(file, digest)| match digest {
            Value::String(digest) => Ok((file.clone(), digest.clone())),
            Value::Null => Ok((file.clone(), String::new())),
            other => Err(fields.type_error(key, decode::json_kind(other), "string")),
        })
        .collect()
}

pub(crate) async fn create(state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    state.record(SimEndpoint::Create, &body);
    let value = match decode::parse_body(&body) {
        Ok(value) => value,
        Err(refusal) => return refuse(&refusal),
    };
    let empty = Map::new();
    let parsed = request(&value, &empty, "CreateRequest").and_then(|(fields, stream)| {
        for text in ["quantize", "from", "template", "system"] {
            fields.string(text)?;
        }
        fields.object("parameters", "map[string]interface {}")?;
        fields.array("messages", "[]api.Message")?;
        let files = digest_map(&fields, "files")?;
        for (file, digest) in files.iter().chain(&digest_map(&fields, "adapters")?) {
            if !valid_path(file) {
                return Err(Refusal::bad_request("file path must be relative"));
            }
            if digest.is_empty() {
                return Err(Refusal::bad_request("invalid digest format"));
            }
        }
        let name = ModelName::parse(&model_or_name(&fields)?)
            .map_err(|_| Refusal::bad_request("invalid model name"))?;
        Ok((name, fields.string("from")?, files, stream))
    });
    let (name, from, files, stream) = match parsed {
        Ok(parsed) => parsed,
        Err(refusal) => return refuse(&refusal),
    };
    let events = if !from.is_empty() {
        create_from(&state, &name, &from)
    } else if !files.is_empty() {
        create_from_files(&state, &name, &files)
    } else {
        vec![failure(400, "neither 'from' or 'files' was specified")]
    };
    progress_response(events, stream)
}

/// `create` from another model: installed, or pulled from the catalog first (as Ollama does).
fn create_from(state: &AppState, name: &ModelName, from: &str) -> Vec<Event> {
    let base_name = match ModelName::parse(from) {
        Ok(base) => base,
        Err(_) => return vec![failure(400, "invalid model name")],
    };
    let mut events = Vec::new();
    let installed = state.control.registry().find(&base_name);
    let base = match installed {
        Some(base) => base,
        None => {
            events.extend(pull_events(state, &base_name));
            match state.control.registry().find(&base_name) {
                Some(base) => base,
                None => return events,
            }
        }
    };
    events.push(status(format!(
        "using existing layer {}",
        base.layer_digest()
    )));
    events.push(status("writing manifest"));
    events.push(status("success"));
    let mut model = (*base).clone();
    model.name = name.display_shortest();
    model.digest = derived_digest(&model.name, &base.digest);
    model.modified_at = now_modified(state);
    state.control.registry().install(model);
    events
}

/// `create` from uploaded GGUF blobs. The simulator reads no GGUF: the model gets generic
/// details (`llama` family, completion only) and the blobs' total size.
fn create_from_files(state: &AppState, name: &ModelName, files: &[(String, String)]) -> Vec<Event> {
    let mut events = Vec::new();
    let mut size = 0;
    for (file, digest) in files {
        match state.control.registry().blob_size(digest) {
            Some(blob) => {
                events.push(status("parsing GGUF"));
                events.push(status(format!("using existing layer {digest}")));
                size += blob;
            }
            None if file.ends_with(".gguf") => {
                events.push(failure(
                    500,
                    format!(
                        "open /root/.ollama/models/blobs/{}: no such file or directory",
                        digest.replacen(':', "-", 1)
                    ),
                ));
                return events;
            }
            None => {
                events.push(failure(400, "unknown type"));
                return events;
            }
        }
    }
    events.push(status("writing manifest"));
    events.push(status("success"));
    let display = name.display_shortest();
    let model = SimModel {
        digest: derived_digest(&display, &format!("{files:?}")),
        name: display,
        capabilities: vec![Capability::Completion],
        family: "llama".into(),
        families: vec!["llama".into()],
        parameter_size: String::new(),
        quantization_level: "F16".into(),
        format: "gguf".into(),
        size,
        modified_at: now_modified(state),
        context_length: 4096,
        embedding_length: 4096,
    };
    state.control.registry().install(model);
    events
}

/// A new manifest digest for a model made from `source`.
fn derived_digest(name: &str, source: &str) -> String {
    let hash = Sha256::digest(format!("{name}\n{source}").as_bytes());
    hash.iter().map(|byte| format!("{byte:02x}")).collect()
}

pub(crate) async fn copy(state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    state.record(SimEndpoint::Copy, &body);
    let value = match decode::parse_body(&body) {
        Ok(value) => value,
        Err(refusal) => return refuse(&refusal),
    };
    let empty = Map::new();
    let copied = Fields::new(
        match top_level(&value, &empty, "api.CopyRequest") {
            Ok(map) => map,
            Err(refusal) => return refuse(&refusal),
        },
        "CopyRequest",
        "",
    );
    let result = (|| {
        let source = copied.string("source")?;
        let destination = copied.string("destination")?;
        let source_name = ModelName::parse(&source).map_err(|_| {
            Refusal::bad_request(format!("source {} is invalid", go_quote(&source)))
        })?;
        let destination_name = ModelName::parse(&destination).map_err(|_| {
            Refusal::bad_request(format!("destination {} is invalid", go_quote(&destination)))
        })?;
        let mut registry = state.control.registry();
        let model = registry
            .find(&source_name)
            .ok_or_else(|| Refusal::new(404, format!("model {} not found", go_quote(&source))))?;
        let mut copy = (*model).clone();
        copy.name = destination_name.display_shortest();
        copy.modified_at = go_timestamp(state.control.now());
        registry.install(copy);
        Ok(())
    })();
    match result {
        // Ollama writes nothing on success: 200 with an empty body.
        Ok(()) => HttpResponse::Ok().finish(),
        Err(refusal) => refuse(&refusal),
    }
}

pub(crate) async fn delete(state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    state.record(SimEndpoint::Delete, &body);
    let value = match decode::parse_body(&body) {
        Ok(value) => value,
        Err(refusal) => return refuse(&refusal),
    };
    let empty = Map::new();
    let result = request(&value, &empty, "DeleteRequest").and_then(|(fields, _)| {
        let raw = model_or_name(&fields)?;
        let name = match ModelName::parse(&raw) {
            Ok(name) => name,
            Err(NameError::Empty) => return Err(Refusal::bad_request("model is required")),
            Err(NameError::Invalid) => {
                return Err(Refusal::bad_request(format!(
                    "name {} is invalid",
                    go_quote(&raw)
                )));
            }
        };
        state
            .control
            .registry()
            .remove(&name)
            .map(|_| ())
            .ok_or_else(|| Refusal::new(404, format!("model '{raw}' not found")))
    });
    match result {
        Ok(()) => HttpResponse::Ok().finish(),
        Err(refusal) => refuse(&refusal),
    }
}

/// Ollama accepts only `sha256:<64 hex>` or `sha256-<64 hex>`.
fn valid_digest(digest: &str) -> bool {
    let hex = digest
        .strip_prefix("sha256:")
        .or_else(|| digest.strip_prefix("sha256-"));
    hex.is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn blob_digest(request: &HttpRequest) -> String {
    request
        .match_info()
        .get("digest")
        .unwrap_or_default()
        .to_owned()
}

pub(crate) async fn head_blob(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    state.control.note_request(SimEndpoint::Blobs);
    let digest = blob_digest(&request);
    if !valid_digest(&digest) {
        return refuse(&Refusal::bad_request("invalid digest format"));
    }
    if state.control.registry().blob_size(&digest).is_some() {
        HttpResponse::Ok().finish()
    } else {
        refuse(&Refusal::new(
            404,
            format!("blob {} not found", go_quote(&digest)),
        ))
    }
}

pub(crate) async fn upload_blob(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    state.control.note_request(SimEndpoint::Blobs);
    let digest = blob_digest(&request);
    if !valid_digest(&digest) {
        return refuse(&Refusal::bad_request("invalid digest format"));
    }
    if state.control.registry().blob_size(&digest).is_some() {
        return HttpResponse::Ok().finish();
    }
    let hash = Sha256::digest(&body);
    let actual: String = hash.iter().map(|byte| format!("{byte:02x}")).collect();
    let actual = format!("sha256:{actual}");
    if actual != digest {
        return refuse(&Refusal::bad_request(format!(
            "digest mismatch, expected {}, got {}",
            go_quote(&digest),
            go_quote(&actual)
        )));
    }
    state
        .control
        .registry()
        .add_blob(&digest, body.len() as u64);
    HttpResponse::Created().finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_digests_are_checked_like_go() {
        assert!(valid_path("model.gguf") && valid_path("a/b.gguf"));
        assert!(!valid_path("/etc/passwd") && !valid_path("../x") && !valid_path("a//b"));
        assert!(valid_digest(&format!("sha256:{}", "a".repeat(64))));
        assert!(valid_digest(&format!("sha256-{}", "A".repeat(64))));
        assert!(!valid_digest("sha256:abc") && !valid_digest(&format!("md5:{}", "a".repeat(64))));
    }

    #[test]
    fn progress_lines_omit_empty_fields() {
        let Event::Progress(line) = layer("pulling", &format!("sha256:{}", "ab".repeat(32)), 10, 0)
        else {
            panic!("a progress line");
        };
        let json = to_go_json(&line);
        assert_eq!(
            json,
            format!(
                r#"{{"status":"pulling abababababab","digest":"sha256:{}","total":10}}"#,
                "ab".repeat(32)
            )
        );
    }
}
