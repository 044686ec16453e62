//! The models the simulator serves, and Ollama's `host/namespace/model:tag` name resolution.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// The registry a bare model name belongs to, as in Ollama's `model.ParseName`.
pub const DEFAULT_HOST: &str = "registry.ollama.ai";
/// The namespace a bare model name belongs to.
pub const DEFAULT_NAMESPACE: &str = "library";
/// The tag a model name without `:tag` gets.
pub const DEFAULT_TAG: &str = "latest";

/// What a model can do, with Ollama's spelling (`/api/show` and `/api/tags` `capabilities`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    /// Text generation: required by `/api/chat` and `/api/generate`.
    Completion,
    /// Tool calling: required when a chat request carries `tools`.
    Tools,
    /// Images in messages are looked at (the reply mentions them).
    Vision,
    /// An embedding model.
    Embedding,
    /// A thinking model: it thinks unless `think` is false; without it `think: true` is
    /// refused with 400.
    Thinking,
    /// Fill-in-the-middle: required when `/api/generate` carries `suffix`.
    Insert,
}

/// One installed model as `/api/tags` and `/api/show` describe it.
///
/// `name` is the full display name with its tag (`llama3.2:latest`); requests may use any
/// spelling that resolves to it (see [`ModelName`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimModel {
    /// Display name with tag, e.g. `llama3.2:latest`.
    pub name: String,
    /// What the model supports; drives the 400 "does not support …" answers.
    pub capabilities: Vec<Capability>,
    /// `details.family`, e.g. `llama`.
    pub family: String,
    /// `details.families`.
    pub families: Vec<String>,
    /// `details.parameter_size`, e.g. `3.2B`.
    pub parameter_size: String,
    /// `details.quantization_level`, e.g. `Q4_K_M`.
    pub quantization_level: String,
    /// `details.format`, `gguf` for every real local model.
    pub format: String,
    /// Size on disk in bytes (`size` in `/api/tags`).
    pub size: u64,
    /// The manifest digest, 64 hex characters.
    pub digest: String,
    /// `modified_at`, already formatted the way Ollama sends it (local time with offset).
    pub modified_at: String,
    /// The context window, reported by `/api/show` and `/api/ps`.
    pub context_length: u64,
    /// The length of the vectors `/api/embed` returns for this model.
    pub embedding_length: usize,
}

impl SimModel {
    /// `llama3.2:latest`: completion and tools.
    pub fn llama3_2() -> Self {
        Self {
            name: "llama3.2:latest".into(),
            capabilities: vec![Capability::Completion, Capability::Tools],
            family: "llama".into(),
            families: vec!["llama".into()],
            parameter_size: "3.2B".into(),
            quantization_level: "Q4_K_M".into(),
            format: "gguf".into(),
            size: 2_019_393_189,
            digest: "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72".into(),
            modified_at: "2025-05-04T17:37:44.706015396-07:00".into(),
            context_length: 131_072,
            embedding_length: 3072,
        }
    }

    /// `moondream:latest`: completion and vision, no tools.
    pub fn moondream() -> Self {
        Self {
            name: "moondream:latest".into(),
            capabilities: vec![Capability::Completion, Capability::Vision],
            family: "phi2".into(),
            families: vec!["phi2".into(), "clip".into()],
            parameter_size: "1B".into(),
            quantization_level: "Q4_0".into(),
            format: "gguf".into(),
            size: 1_738_451_197,
            digest: "55fc3abd386771e5b5d1bbcc732f3c3f4df6e9f9f08f1131f9cc27ba2d1eec5b".into(),
            modified_at: "2025-05-04T17:41:02.13265209-07:00".into(),
            context_length: 2048,
            embedding_length: 2048,
        }
    }

    /// `nomic-embed-text:latest`: embedding only, 768 dimensions.
    pub fn nomic_embed_text() -> Self {
        Self {
            name: "nomic-embed-text:latest".into(),
            capabilities: vec![Capability::Embedding],
            family: "nomic-bert".into(),
            families: vec!["nomic-bert".into()],
            parameter_size: "137M".into(),
            quantization_level: "F16".into(),
            format: "gguf".into(),
            size: 274_302_450,
            digest: "0a109f422b47e3a30ba2b10eca18548e944e8a23073ee3f3e947efcf3c45e59f".into(),
            modified_at: "2025-05-04T17:45:13.5520935-07:00".into(),
            context_length: 2048,
            embedding_length: 768,
        }
    }

    /// `llama3.2:1b`: completion and tools, in the default catalog only.
    pub fn llama3_2_1b() -> Self {
        Self {
            name: "llama3.2:1b".into(),
            parameter_size: "1.2B".into(),
            quantization_level: "Q8_0".into(),
            size: 1_321_098_329,
            digest: "14316704286ddeae99db8699c13d8c5a9e010aea7edd980f5691c2760284158d".into(),
            modified_at: "2025-05-04T17:50:21.8315473-07:00".into(),
            embedding_length: 2048,
            ..Self::llama3_2()
        }
    }

    /// `gemma3:1b`: completion only (no tools), in the default catalog only.
    pub fn gemma3_1b() -> Self {
        Self {
            name: "gemma3:1b".into(),
            capabilities: vec![Capability::Completion],
            family: "gemma3".into(),
            families: vec!["gemma3".into()],
            parameter_size: "999.89M".into(),
            quantization_level: "Q4_K_M".into(),
            format: "gguf".into(),
            size: 815_319_791,
            digest: "d080a98fbf7dcfc62b47a3cd33b8d68534864df070d0638ccd466844fd222bee".into(),
            modified_at: "2025-05-04T17:52:40.4204713-07:00".into(),
            context_length: 32_768,
            embedding_length: 1152,
        }
    }

    /// `all-minilm:latest`: embedding only, 384 dimensions, in the default catalog only.
    pub fn all_minilm() -> Self {
        Self {
            name: "all-minilm:latest".into(),
            capabilities: vec![Capability::Embedding],
            family: "bert".into(),
            families: vec!["bert".into()],
            parameter_size: "23M".into(),
            quantization_level: "F16".into(),
            format: "gguf".into(),
            size: 45_960_996,
            digest: "acfd61fa1f0e0d256836404a6bd514f7192755336e05afc25b91aed3fe9b8f0a".into(),
            modified_at: "2025-05-04T17:55:02.0926014-07:00".into(),
            context_length: 512,
            embedding_length: 384,
        }
    }

    /// `qwen3:0.6b`: completion, tools and thinking, in the default catalog only.
    pub fn qwen3_0_6b() -> Self {
        Self {
            name: "qwen3:0.6b".into(),
            capabilities: vec![
                Capability::Completion,
                Capability::Tools,
                Capability::Thinking,
            ],
            family: "qwen3".into(),
            families: vec!["qwen3".into()],
            parameter_size: "751.63M".into(),
            quantization_level: "Q4_K_M".into(),
            format: "gguf".into(),
            size: 522_653_767,
            digest: "514cf42a1ceb1dee40909507b7b0f29ef9e471786ec0d58304e75ae68cf34c10".into(),
            modified_at: "2025-05-04T17:58:19.3510512-07:00".into(),
            context_length: 40_960,
            embedding_length: 1024,
        }
    }

    /// `qwen2.5-coder:0.5b`: completion, tools and insert (`suffix`), in the default catalog
    /// only.
    pub fn qwen2_5_coder_0_5b() -> Self {
        Self {
            name: "qwen2.5-coder:0.5b".into(),
            capabilities: vec![
                Capability::Completion,
                Capability::Tools,
                Capability::Insert,
            ],
            family: "qwen2".into(),
            families: vec!["qwen2".into()],
            parameter_size: "494.03M".into(),
            quantization_level: "Q4_K_M".into(),
            format: "gguf".into(),
            size: 397_821_319,
            digest: "4e80b584cece775d8b97ff5e5761f908895c6ad48b74b68655b1651a074e6ada".into(),
            modified_at: "2025-05-04T18:01:47.7720516-07:00".into(),
            context_length: 32_768,
            embedding_length: 896,
        }
    }

    /// The three default models.
    pub fn defaults() -> Vec<Self> {
        vec![
            Self::llama3_2(),
            Self::moondream(),
            Self::nomic_embed_text(),
        ]
    }

    /// What `/api/pull` can fetch by default: the defaults plus `llama3.2:1b`, `gemma3:1b`,
    /// `qwen3:0.6b` (a thinking model), `qwen2.5-coder:0.5b` (fill-in-the-middle) and
    /// `all-minilm`.
    pub fn catalog() -> Vec<Self> {
        let mut catalog = Self::defaults();
        catalog.extend([
            Self::llama3_2_1b(),
            Self::gemma3_1b(),
            Self::qwen3_0_6b(),
            Self::qwen2_5_coder_0_5b(),
            Self::all_minilm(),
        ]);
        catalog
    }

    /// The digest of the model's weights layer (`sha256:<hex>`), what a pull shows and
    /// `/api/blobs` finds. The simulator gives each model one layer, derived from its digest.
    pub fn layer_digest(&self) -> String {
        let hash = Sha256::digest(self.digest.as_bytes());
        let hex: String = hash.iter().map(|byte| format!("{byte:02x}")).collect();
        format!("sha256:{hex}")
    }

    /// Whether the model has `capability`.
    pub fn has(&self, capability: Capability) -> bool {
        self.capabilities.contains(&capability)
    }

    /// The fully qualified name Ollama puts in capability errors,
    /// e.g. `registry.ollama.ai/library/llama3.2:latest`.
    pub fn qualified_name(&self) -> String {
        match ModelName::parse(&self.name) {
            Ok(name) => name.qualified(),
            Err(_) => self.name.clone(),
        }
    }
}

/// Why a requested model name was refused before any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    /// The name was empty or only whitespace.
    Empty,
    /// The name has characters or parts Ollama does not accept.
    Invalid,
}

/// A parsed `[host/][namespace/]model[:tag]` name with Ollama's defaults filled in.
///
/// Parts compare case-insensitively, as Ollama matches installed names, so
/// `llama3.2`, `Llama3.2:latest` and `registry.ollama.ai/library/llama3.2:latest` are one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelName {
    /// Registry host, `registry.ollama.ai` by default.
    pub host: String,
    /// Namespace, `library` by default.
    pub namespace: String,
    /// The model part.
    pub model: String,
    /// The tag, `latest` by default.
    pub tag: String,
}

impl ModelName {
    /// Parses a requested name (surrounding whitespace is ignored, as Ollama trims it).
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(NameError::Empty);
        }
        // A digest suffix pins a blob; the simulator has one blob per name, so it is ignored.
        let without_digest = trimmed.split('@').next().unwrap_or(trimmed);
        let last_slash = without_digest.rfind('/');
        let (path, tag) = match without_digest.rfind(':') {
            Some(colon) if last_slash.is_none_or(|slash| colon > slash) => {
                (&without_digest[..colon], &without_digest[colon + 1..])
            }
            _ => (without_digest, DEFAULT_TAG),
        };
        let parts: Vec<&str> = path.split('/').collect();
        let (host, namespace, model) = match parts.as_slice() {
            [model] => (DEFAULT_HOST, DEFAULT_NAMESPACE, *model),
            [namespace, model] => (DEFAULT_HOST, *namespace, *model),
            [host, namespace, model] => (*host, *namespace, *model),
            _ => return Err(NameError::Invalid),
        };
        let valid = is_valid_part(host, 350, true)
            && is_valid_part(namespace, 80, false)
            && is_valid_part(model, 80, false)
            && is_valid_part(tag, 80, false);
        if !valid {
            return Err(NameError::Invalid);
        }
        Ok(Self {
            host: host.to_ascii_lowercase(),
            namespace: namespace.to_ascii_lowercase(),
            model: model.to_ascii_lowercase(),
            tag: tag.to_ascii_lowercase(),
        })
    }

    /// `host/namespace/model:tag`.
    pub fn qualified(&self) -> String {
        format!(
            "{}/{}/{}:{}",
            self.host, self.namespace, self.model, self.tag
        )
    }

    /// The shortest spelling Ollama displays: `model:tag` for the default registry and namespace.
    pub fn display_shortest(&self) -> String {
        if self.host != DEFAULT_HOST {
            self.qualified()
        } else if self.namespace != DEFAULT_NAMESPACE {
            format!("{}/{}:{}", self.namespace, self.model, self.tag)
        } else {
            format!("{}:{}", self.model, self.tag)
        }
    }
}

fn is_valid_part(part: &str, max_len: usize, is_host: bool) -> bool {
    let mut chars = part.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    part.len() <= max_len
        && (first.is_ascii_alphanumeric() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c) || (is_host && c == ':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_names_get_registry_namespace_and_latest() {
        let name = ModelName::parse("llama3.2").unwrap();
        assert_eq!(
            name.qualified(),
            "registry.ollama.ai/library/llama3.2:latest"
        );
        assert_eq!(name.display_shortest(), "llama3.2:latest");
    }

    #[test]
    fn every_spelling_of_one_model_resolves_alike() {
        let expected = ModelName::parse("llama3.2:latest").unwrap();
        for spelling in [
            " llama3.2 ",
            "Llama3.2:Latest",
            "library/llama3.2",
            "registry.ollama.ai/library/llama3.2:latest",
            "llama3.2@sha256:abc",
        ] {
            assert_eq!(ModelName::parse(spelling).unwrap(), expected, "{spelling}");
        }
        assert_ne!(ModelName::parse("llama3.2:1b").unwrap(), expected);
    }

    #[test]
    fn hosts_with_ports_keep_their_colon_out_of_the_tag() {
        let name = ModelName::parse("localhost:5000/me/tiny").unwrap();
        assert_eq!(name.host, "localhost:5000");
        assert_eq!(name.tag, "latest");
        assert_eq!(name.display_shortest(), "localhost:5000/me/tiny:latest");
    }

    #[test]
    fn empty_and_malformed_names_are_refused() {
        assert_eq!(ModelName::parse("  "), Err(NameError::Empty));
        assert_eq!(ModelName::parse("bad name!"), Err(NameError::Invalid));
        assert_eq!(ModelName::parse("a/b/c/d"), Err(NameError::Invalid));
        assert_eq!(ModelName::parse("model:"), Err(NameError::Invalid));
    }

    #[test]
    fn qualified_name_is_what_capability_errors_print() {
        assert_eq!(
            SimModel::moondream().qualified_name(),
            "registry.ollama.ai/library/moondream:latest"
        );
    }
}
