//! Token counts, as every OpenAI answer reports them.

use serde::Serialize;
use utoipa::ToSchema;

/// Token counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Usage {
    /// Tokens in the prompt (Ollama's `prompt_eval_count`).
    pub prompt_tokens: u64,
    /// Tokens generated (Ollama's `eval_count`).
    pub completion_tokens: u64,
    /// Their sum.
    pub total_tokens: u64,
}

impl Usage {
    /// Counts with their total.
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
        }
    }

    /// Ollama's counts; a count Ollama left out is 0.
    pub fn from_ollama(prompt_eval_count: Option<u64>, eval_count: Option<u64>) -> Self {
        Self::new(prompt_eval_count.unwrap_or(0), eval_count.unwrap_or(0))
    }
}
