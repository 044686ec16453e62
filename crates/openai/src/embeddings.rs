//! Embeddings (`POST /v1/embeddings`) and their translation to and from Ollama's
//! `/api/embed`.

use aiproxy_ollama as ollama;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::InvalidRequest;

/// `POST /v1/embeddings` request.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"model": "nomic-embed-text", "input": ["first text", "second text"]}))]
pub struct EmbeddingRequest {
    /// An embedding model, e.g. `nomic-embed-text`.
    pub model: String,
    /// A string or a list of strings (token arrays are not supported by Ollama).
    #[schema(value_type = Object)]
    pub input: Value,
    /// `float` (default) or `base64` (little-endian float32).
    #[serde(default)]
    pub encoding_format: Option<String>,
    /// Truncate the vectors to this many dimensions.
    #[serde(default)]
    pub dimensions: Option<u32>,
}

/// One embedding.
#[derive(Debug, Serialize, ToSchema)]
pub struct Embedding {
    /// Always `embedding`.
    pub object: &'static str,
    /// Position in the input.
    pub index: usize,
    /// Floats, or a base64 string with `encoding_format: base64`.
    #[schema(value_type = Object)]
    pub embedding: Value,
}

/// The embeddings usage (no completion tokens).
#[derive(Debug, Serialize, ToSchema)]
pub struct EmbeddingUsage {
    /// Input tokens.
    pub prompt_tokens: u64,
    /// The same.
    pub total_tokens: u64,
}

/// `POST /v1/embeddings` response.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmbeddingList {
    /// Always `list`.
    pub object: &'static str,
    /// One embedding per input.
    pub data: Vec<Embedding>,
    /// The model as requested.
    pub model: String,
    /// Token counts.
    pub usage: EmbeddingUsage,
}

/// How the vectors are sent back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodingFormat {
    /// A JSON array of numbers.
    Float,
    /// Base64 of the little-endian float32 bytes.
    Base64,
}

/// The Ollama request, plus how to encode its answer.
#[derive(Debug)]
pub struct TranslatedEmbedding {
    /// What to send to `/api/embed`.
    pub request: ollama::EmbedRequest,
    /// How the client wants the vectors.
    pub encoding: EncodingFormat,
}

/// Translates an embeddings request into Ollama's `/api/embed` form.
pub fn embedding_request_to_ollama(
    request: EmbeddingRequest,
) -> Result<TranslatedEmbedding, InvalidRequest> {
    let input = match request.input {
        Value::String(text) => Value::from(vec![text]),
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_string) => {
            Value::Array(items)
        }
        Value::Array(items) if items.is_empty() => {
            return Err(InvalidRequest::new("`input` must not be empty.", "input"));
        }
        _ => {
            return Err(InvalidRequest::new(
                "`input` must be a string or a list of strings; token arrays are not supported.",
                "input",
            ));
        }
    };
    let encoding = match request.encoding_format.as_deref() {
        None | Some("float") => EncodingFormat::Float,
        Some("base64") => EncodingFormat::Base64,
        Some(other) => {
            return Err(InvalidRequest::new(
                format!("Invalid encoding_format `{other}`; use `float` or `base64`."),
                "encoding_format",
            ));
        }
    };
    Ok(TranslatedEmbedding {
        request: ollama::EmbedRequest {
            model: request.model,
            input,
            truncate: None,
            dimensions: request.dimensions,
            keep_alive: None,
            options: None,
        },
        encoding,
    })
}

impl EmbeddingList {
    /// Ollama's answer for `model`, the vectors encoded as asked.
    pub fn from_ollama(
        answer: ollama::EmbedResponse,
        model: String,
        encoding: EncodingFormat,
    ) -> Self {
        let data = answer
            .embeddings
            .into_iter()
            .enumerate()
            .map(|(index, vector)| Embedding {
                object: "embedding",
                index,
                embedding: match encoding {
                    EncodingFormat::Float => Value::from(vector),
                    EncodingFormat::Base64 => {
                        let mut bytes = Vec::with_capacity(vector.len() * 4);
                        for value in vector {
                            bytes.extend_from_slice(&value.to_le_bytes());
                        }
                        Value::from(base64::engine::general_purpose::STANDARD.encode(bytes))
                    }
                },
            })
            .collect();
        let prompt_tokens = answer.prompt_eval_count.unwrap_or(0);
        EmbeddingList {
            object: "list",
            data,
            model,
            usage: EmbeddingUsage {
                prompt_tokens,
                total_tokens: prompt_tokens,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(body: Value) -> Result<TranslatedEmbedding, InvalidRequest> {
        embedding_request_to_ollama(serde_json::from_value(body).unwrap())
    }

    #[test]
    fn input_is_a_string_or_a_list_of_strings() {
        let one = translate(serde_json::json!({"model": "e", "input": "a"})).unwrap();
        assert_eq!(one.request.input, serde_json::json!(["a"]));
        assert_eq!(one.encoding, EncodingFormat::Float);
        for bad in [
            serde_json::json!([]),
            serde_json::json!([1, 2]),
            Value::Null,
        ] {
            let error = translate(serde_json::json!({"model": "e", "input": bad})).unwrap_err();
            assert_eq!(error.param.as_deref(), Some("input"));
        }
        let error =
            translate(serde_json::json!({"model": "e", "input": "a", "encoding_format": "hex"}))
                .unwrap_err();
        assert_eq!(error.param.as_deref(), Some("encoding_format"));
    }

    #[test]
    fn base64_vectors_are_little_endian_float32() {
        let answer = ollama::EmbedResponse {
            embeddings: vec![vec![1.0, -2.5]],
            prompt_eval_count: Some(4),
            ..ollama::EmbedResponse::default()
        };
        let list = EmbeddingList::from_ollama(answer, "e".into(), EncodingFormat::Base64);
        let Value::String(text) = &list.data[0].embedding else {
            panic!("{:?}", list.data[0].embedding);
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap();
        assert_eq!(bytes[..4], 1.0f32.to_le_bytes());
        assert_eq!(bytes[4..], (-2.5f32).to_le_bytes());
        assert_eq!(list.usage.total_tokens, 4);
    }
}
