use serde::{Deserialize, Serialize};

use crate::{UnixMillis, User, UserId};

/// Which proxy endpoint a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `POST /v1/chat/completions`.
    ChatCompletions,
    /// `POST /v1/completions`.
    Completions,
    /// `POST /v1/embeddings`.
    Embeddings,
}

impl Endpoint {
    /// The stable name stored with each record.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ChatCompletions => "chat.completions",
            Self::Completions => "completions",
            Self::Embeddings => "embeddings",
        }
    }

    /// The inverse of [`Endpoint::as_str`].
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "chat.completions" => Some(Self::ChatCompletions),
            "completions" => Some(Self::Completions),
            "embeddings" => Some(Self::Embeddings),
            _ => None,
        }
    }
}

/// How a request that reached Ollama ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageStatus {
    /// The whole answer was produced and handed to the client.
    Ok,
    /// Ollama failed, before or during the answer.
    Error,
    /// The client went away before the answer was complete.
    Aborted,
}

impl UsageStatus {
    /// The stable name stored with each record.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Aborted => "aborted",
        }
    }

    /// The inverse of [`UsageStatus::as_str`].
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "ok" => Some(Self::Ok),
            "error" => Some(Self::Error),
            "aborted" => Some(Self::Aborted),
            _ => None,
        }
    }
}

/// One request's usage: the unit of billing and auditing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    /// The proxy's id for the request (also sent to the client as `x-request-id`).
    pub request_id: String,
    /// Who made the request.
    pub user_id: UserId,
    /// The model as the client named it.
    pub model: String,
    /// Which endpoint it came through.
    pub endpoint: Endpoint,
    /// Tokens Ollama evaluated from the prompt.
    pub prompt_tokens: u64,
    /// Tokens Ollama generated.
    pub completion_tokens: u64,
    /// How the request ended.
    pub status: UsageStatus,
    /// Wall time from admission to the last byte, in milliseconds.
    pub duration_ms: u64,
    /// When the request was admitted.
    pub created_at: UnixMillis,
}

impl UsageRecord {
    /// Prompt plus completion tokens.
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

/// A user with its lifetime usage, as listings show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSummary {
    /// The user.
    pub user: User,
    /// Everything the user has used, over its whole life.
    pub totals: UsageTotals,
}

/// Sums over a set of usage records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageTotals {
    /// Number of records.
    pub requests: u64,
    /// Sum of prompt tokens.
    pub prompt_tokens: u64,
    /// Sum of completion tokens.
    pub completion_tokens: u64,
    /// Sum of both.
    pub total_tokens: u64,
}

impl UsageTotals {
    /// Adds one record to the sums.
    pub fn add(&mut self, record: &UsageRecord) {
        self.requests += 1;
        self.prompt_tokens += record.prompt_tokens;
        self.completion_tokens += record.completion_tokens;
        self.total_tokens += record.total_tokens();
    }
}

/// Which records a query covers. Every field narrows; an empty filter covers everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageFilter {
    /// Only this user's records.
    pub user_id: Option<UserId>,
    /// Only records created at or after this time.
    pub start: Option<UnixMillis>,
    /// Only records created before this time.
    pub end: Option<UnixMillis>,
    /// Only records for this model.
    pub model: Option<String>,
}

/// A page of records with the totals of everything the filter covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageQuery {
    /// Which records.
    pub filter: UsageFilter,
    /// At most this many records, newest first.
    pub limit: u32,
    /// Skip this many of the newest records first.
    pub offset: u64,
}

/// The answer to a [`UsageQuery`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsagePage {
    /// Totals over every record the filter covers (not only this page).
    pub totals: UsageTotals,
    /// The records of this page, newest first.
    pub records: Vec<UsageRecord>,
}

/// How a summary groups records. Each `true` adds a grouping key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageGrouping {
    /// One row per user.
    pub by_user: bool,
    /// One row per model.
    pub by_model: bool,
    /// One row per UTC day.
    pub by_day: bool,
}

/// One row of a usage summary: the keys that were asked for, and the totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageSummaryRow {
    /// The user, when grouped by user.
    pub user_id: Option<UserId>,
    /// The model, when grouped by model.
    pub model: Option<String>,
    /// The UTC day as `YYYY-MM-DD`, when grouped by day.
    pub day: Option<String>,
    /// The sums for this group.
    pub totals: UsageTotals,
}

/// The part of the records the rate limiter needs to rebuild its windows after a restart:
/// one user's requests admitted within the same second, merged (the limiter's finest bucket is
/// a second, so merging loses nothing, and a busy day's history stays small).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageEvent {
    /// Whose requests.
    pub user_id: UserId,
    /// When they were admitted: the start of their second, or the exact time of a single
    /// request.
    pub at: UnixMillis,
    /// How many requests this event stands for.
    pub requests: u32,
    /// Their prompt plus completion tokens.
    pub total_tokens: u64,
}
