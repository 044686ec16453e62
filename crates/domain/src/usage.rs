use serde::{Deserialize, Serialize};

use crate::{LimitKind, UnixMillis, User, UserId};

/// Which proxy route a request came through: the API it spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `POST /v1/chat/completions` (OpenAI).
    ChatCompletions,
    /// `POST /v1/completions` (OpenAI, legacy).
    Completions,
    /// `POST /v1/embeddings` (OpenAI).
    Embeddings,
    /// `POST /v1/responses` (OpenAI Responses).
    Responses,
    /// `POST /v1/messages` (Anthropic Messages).
    Messages,
    /// `POST /api/chat` (Ollama native).
    OllamaChat,
    /// `POST /api/generate` (Ollama native).
    OllamaGenerate,
    /// `POST /api/embed` (Ollama native).
    OllamaEmbed,
    /// `POST /api/embeddings` (Ollama native, legacy).
    OllamaEmbeddings,
}

impl Endpoint {
    /// Every endpoint, in a fixed order (for counters indexed by endpoint).
    pub const ALL: [Endpoint; 9] = [
        Self::ChatCompletions,
        Self::Completions,
        Self::Embeddings,
        Self::Responses,
        Self::Messages,
        Self::OllamaChat,
        Self::OllamaGenerate,
        Self::OllamaEmbed,
        Self::OllamaEmbeddings,
    ];

    /// The route, which is also the stable name stored with each record and shown in usage
    /// reports, exports and metrics: `/v1/chat/completions`, `/api/chat`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ChatCompletions => "/v1/chat/completions",
            Self::Completions => "/v1/completions",
            Self::Embeddings => "/v1/embeddings",
            Self::Responses => "/v1/responses",
            Self::Messages => "/v1/messages",
            Self::OllamaChat => "/api/chat",
            Self::OllamaGenerate => "/api/generate",
            Self::OllamaEmbed => "/api/embed",
            Self::OllamaEmbeddings => "/api/embeddings",
        }
    }

    /// The inverse of [`Endpoint::as_str`]. Also reads the names stored before routes were
    /// used as names (`chat.completions`, `completions`, `embeddings`).
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "chat.completions" => Some(Self::ChatCompletions),
            "completions" => Some(Self::Completions),
            "embeddings" => Some(Self::Embeddings),
            _ => Self::ALL.into_iter().find(|e| e.as_str() == raw),
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
    /// The proxy's id for the request, unique in the ledger (also sent to the client as
    /// `x-request-id` when the client sent none).
    pub request_id: String,
    /// Who made the request.
    pub user_id: UserId,
    /// The model, as the client named it; only a model the upstream confirmed it serves
    /// (a row is never keyed by a name the upstream refused).
    pub model: String,
    /// Which endpoint it came through.
    pub endpoint: Endpoint,
    /// The Ollama server that answered (its configured id), when known.
    pub backend: Option<String>,
    /// The client's own `x-request-id`, kept for correlation; `request_id` is always the
    /// proxy's and unique.
    pub client_request_id: Option<String>,
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
    /// Only records of this endpoint.
    pub endpoint: Option<Endpoint>,
    /// Only records answered by this backend.
    pub backend: Option<String>,
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

/// A calendar period, in UTC, for grouping records over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// A clock hour.
    Hour,
    /// A day.
    Day,
    /// A calendar month.
    Month,
}

impl Period {
    /// The start of the period that contains `at`.
    pub fn start_of(self, at: UnixMillis) -> UnixMillis {
        const HOUR: i64 = 3_600_000;
        const DAY: i64 = 24 * HOUR;
        match self {
            Self::Hour => UnixMillis(at.0.div_euclid(HOUR) * HOUR),
            Self::Day => UnixMillis(at.0.div_euclid(DAY) * DAY),
            Self::Month => {
                let days = at.0.div_euclid(DAY);
                let (year, month, _) = civil_from_days(days);
                UnixMillis(days_from_civil(year, month, 1) * DAY)
            }
        }
    }
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31), proleptic Gregorian (Howard
/// Hinnant's algorithm), so the domain needs no date crate.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The inverse of [`civil_from_days`].
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// How a summary groups records. Each `true` (and a period) adds a grouping key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageGrouping {
    /// One row per user.
    pub by_user: bool,
    /// One row per model.
    pub by_model: bool,
    /// One row per endpoint.
    pub by_endpoint: bool,
    /// One row per backend (records with no backend form one group).
    pub by_backend: bool,
    /// One row per UTC period.
    pub period: Option<Period>,
}

/// One row of a usage summary: the keys that were asked for, and the totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageSummaryRow {
    /// The user, when grouped by user.
    pub user_id: Option<UserId>,
    /// The model, when grouped by model.
    pub model: Option<String>,
    /// The endpoint, when grouped by endpoint.
    pub endpoint: Option<Endpoint>,
    /// The backend, when grouped by backend (`None` also for the records with no backend).
    pub backend: Option<String>,
    /// The start of the period, when grouped by period.
    pub period_start: Option<UnixMillis>,
    /// The sums for this group.
    pub totals: UsageTotals,
}

/// Where an export continues: the (creation time, request id) of the last record it read.
/// Records are exported in that order, which is unique because request ids are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageCursor {
    /// The last record's creation time.
    pub created_at: UnixMillis,
    /// The last record's request id.
    pub request_id: String,
}

/// Requests refused by one limit for one user within one minute (the unit refusals are
/// stored in: a client hammering a limit costs one row per minute, not one per request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalCount {
    /// Who was refused.
    pub user_id: UserId,
    /// By which limit.
    pub limit: LimitKind,
    /// The start of the minute.
    pub minute: UnixMillis,
    /// How many requests.
    pub count: u64,
}

/// How a refusal summary groups; each `true` (and a period) adds a grouping key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefusalGrouping {
    /// One row per user.
    pub by_user: bool,
    /// One row per limit.
    pub by_limit: bool,
    /// One row per UTC period.
    pub period: Option<Period>,
}

/// One row of a refusal summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalSummaryRow {
    /// The user, when grouped by user.
    pub user_id: Option<UserId>,
    /// The limit, when grouped by limit.
    pub limit: Option<LimitKind>,
    /// The start of the period, when grouped by period.
    pub period_start: Option<UnixMillis>,
    /// Requests refused.
    pub count: u64,
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

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    const DAY: i64 = 24 * HOUR;

    #[test]
    fn periods_start_at_utc_boundaries() {
        // 2026-12-04T15:42:07.123Z
        let at = UnixMillis(days_from_civil(2026, 12, 4) * DAY + 15 * HOUR + 42 * 60_000 + 7_123);
        assert_eq!(
            Period::Hour.start_of(at),
            UnixMillis(days_from_civil(2026, 12, 4) * DAY + 15 * HOUR)
        );
        assert_eq!(
            Period::Day.start_of(at),
            UnixMillis(days_from_civil(2026, 12, 4) * DAY)
        );
        assert_eq!(
            Period::Month.start_of(at),
            UnixMillis(days_from_civil(2026, 12, 1) * DAY)
        );
        assert_eq!(Period::Day.start_of(UnixMillis(-1)), UnixMillis(-DAY));
    }

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn endpoints_are_stored_as_their_routes_and_old_names_still_read() {
        for endpoint in Endpoint::ALL {
            assert_eq!(Endpoint::parse(endpoint.as_str()), Some(endpoint));
            assert!(endpoint.as_str().starts_with('/'));
        }
        assert_eq!(
            Endpoint::parse("chat.completions"),
            Some(Endpoint::ChatCompletions)
        );
        assert_eq!(Endpoint::parse("/v1/nope"), None);
    }
}
