//! The model list (`GET /v1/models`), made from Ollama's `/api/tags`.

use aiproxy_ollama as ollama;
use serde::Serialize;
use utoipa::ToSchema;

/// `GET /v1/models`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    /// Always `list`.
    pub object: &'static str,
    /// The models.
    pub data: Vec<Model>,
}

/// One model.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": "llama3.2:latest", "object": "model", "created": 1746405464, "owned_by": "library"}))]
pub struct Model {
    /// The model's name with its tag.
    pub id: String,
    /// Always `model`.
    pub object: &'static str,
    /// When the model was last modified, Unix seconds.
    pub created: i64,
    /// The namespace: `library` for official models.
    pub owned_by: String,
}

impl ModelList {
    /// A list of `data`.
    pub fn new(data: Vec<Model>) -> Self {
        Self {
            object: "list",
            data,
        }
    }
}

impl Model {
    /// One of Ollama's installed models; `created` falls back to `now` (Unix seconds) when
    /// Ollama's `modified_at` is not a time.
    pub fn from_ollama(info: &ollama::ModelInfo, now: i64) -> Self {
        let id = model_id(info);
        let owned_by = match id.split_once('/') {
            Some((namespace, _)) => namespace.to_owned(),
            None => "library".to_owned(),
        };
        Model {
            id: id.to_owned(),
            object: "model",
            created: parse_rfc3339_seconds(&info.modified_at).unwrap_or(now),
            owned_by,
        }
    }
}

/// A model's id: `name:tag` (older servers send only `name`).
pub fn model_id(info: &ollama::ModelInfo) -> &str {
    if info.model.is_empty() {
        &info.name
    } else {
        &info.model
    }
}

/// The model `wanted` names, with or without its tag (no tag means `:latest`).
pub fn find_model<'a>(
    models: &'a [ollama::ModelInfo],
    wanted: &str,
) -> Option<&'a ollama::ModelInfo> {
    let with_tag = if wanted.contains(':') {
        std::borrow::Cow::Borrowed(wanted)
    } else {
        std::borrow::Cow::Owned(format!("{wanted}:latest"))
    };
    models
        .iter()
        .find(|m| model_id(m) == with_tag || model_id(m) == wanted)
}

/// Unix seconds of an RFC 3339 time such as Ollama's `modified_at`.
fn parse_rfc3339_seconds(text: &str) -> Option<i64> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(model: &str, modified_at: &str) -> ollama::ModelInfo {
        ollama::ModelInfo {
            name: model.into(),
            model: model.into(),
            modified_at: modified_at.into(),
            ..ollama::ModelInfo::default()
        }
    }

    #[test]
    fn a_model_keeps_its_namespace_and_modification_time() {
        let model = Model::from_ollama(&info("me/tiny:1b", "2025-05-05T00:37:44.0Z"), 7);
        assert_eq!(model.id, "me/tiny:1b");
        assert_eq!(model.owned_by, "me");
        assert_eq!(model.created, 1_746_405_464);
        let model = Model::from_ollama(&info("llama3.2:latest", "yesterday"), 7);
        assert_eq!((model.owned_by.as_str(), model.created), ("library", 7));
    }

    #[test]
    fn a_name_without_a_tag_finds_latest() {
        let models = [info("llama3.2:latest", ""), info("llama3.2:1b", "")];
        assert_eq!(
            find_model(&models, "llama3.2").map(model_id),
            Some("llama3.2:latest")
        );
        assert_eq!(
            find_model(&models, "llama3.2:1b").map(model_id),
            Some("llama3.2:1b")
        );
        assert!(find_model(&models, "llama3.2:3b").is_none());
    }
}
