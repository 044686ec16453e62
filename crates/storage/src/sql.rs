//! SQL fragments and row conversions shared by the user and usage queries.

use aiproxy_domain::{
    Endpoint, LimitKind, RateLimits, UnixMillis, UsageFilter, UsageRecord, UsageStatus,
    UsageTotals, User, UserId,
};
use rusqlite::Row;
use rusqlite::types::{Type, Value};

/// SQLite integers are signed; counts beyond `i64::MAX` cannot occur in practice, and
/// saturating keeps one absurd value from failing a whole batch.
pub(crate) fn to_sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The columns [`user_from_row`] reads, in order. A macro so that whole statements can be
/// built with `concat!` as `&'static str` (and cached as prepared statements).
macro_rules! user_columns {
    () => {
        "u.id, u.display_name, u.note, u.allowed_models, u.disabled, u.created_at, \
         k.key_prefix, k.expires_at, \
         l.user_id IS NOT NULL, l.requests_per_minute, l.requests_per_day, \
         l.tokens_per_minute, l.tokens_per_day, l.total_token_limit, l.max_concurrent_requests, \
         l.max_num_ctx, l.max_keep_alive_secs"
    };
}
pub(crate) use user_columns;

/// How many columns `user_columns!` has; columns after them start at this index.
pub(crate) const USER_COLUMN_COUNT: usize = 17;

/// `SELECT` of every user column, keyed on the user (a user without a key or a limits row
/// still shows).
macro_rules! select_user {
    () => {
        concat!(
            "SELECT ",
            $crate::sql::user_columns!(),
            " FROM users u \
              LEFT JOIN api_keys k ON k.user_id = u.id \
              LEFT JOIN rate_limits l ON l.user_id = u.id"
        )
    };
}
pub(crate) use select_user;

/// Reads a count stored as a (never negative) SQLite integer.
pub(crate) fn count_at(row: &Row<'_>, column: usize) -> rusqlite::Result<u64> {
    let value: i64 = row.get(column)?;
    u64::try_from(value).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(column, value))
}

fn optional_count_at(row: &Row<'_>, column: usize) -> rusqlite::Result<Option<u64>> {
    match row.get::<_, Option<i64>>(column)? {
        None => Ok(None),
        Some(value) => u64::try_from(value)
            .map(Some)
            .map_err(|_| rusqlite::Error::IntegralValueOutOfRange(column, value)),
    }
}

fn conversion_error(
    column: usize,
    ty: Type,
    error: impl std::error::Error + Send + Sync + 'static,
) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, ty, Box::new(error))
}

pub(crate) fn user_id_at(row: &Row<'_>, column: usize) -> rusqlite::Result<UserId> {
    let raw: String = row.get(column)?;
    UserId::parse(&raw).map_err(|e| conversion_error(column, Type::Text, e))
}

pub(crate) fn optional_user_id_at(
    row: &Row<'_>,
    column: usize,
) -> rusqlite::Result<Option<UserId>> {
    match row.get::<_, Option<String>>(column)? {
        None => Ok(None),
        Some(raw) => UserId::parse(&raw)
            .map(Some)
            .map_err(|e| conversion_error(column, Type::Text, e)),
    }
}

pub(crate) fn allowed_models_to_sql(models: Option<&Vec<String>>) -> Option<String> {
    // Serialising a list of strings cannot fail; `ok()` only avoids an unwrap.
    models.and_then(|m| serde_json::to_string(m).ok())
}

/// Reads a [`User`] from a row whose first columns are `user_columns!`.
pub(crate) fn user_from_row(row: &Row<'_>) -> rusqlite::Result<User> {
    let allowed_models = match row.get::<_, Option<String>>(3)? {
        None => None,
        Some(json) => Some(
            serde_json::from_str::<Vec<String>>(&json)
                .map_err(|e| conversion_error(3, Type::Text, e))?,
        ),
    };
    let has_limits_row: bool = row.get(8)?;
    let limits = if has_limits_row {
        RateLimits {
            requests_per_minute: optional_count_at(row, 9)?,
            requests_per_day: optional_count_at(row, 10)?,
            tokens_per_minute: optional_count_at(row, 11)?,
            tokens_per_day: optional_count_at(row, 12)?,
            total_token_limit: optional_count_at(row, 13)?,
            max_concurrent_requests: optional_count_at(row, 14)?,
            max_num_ctx: optional_count_at(row, 15)?,
            max_keep_alive_secs: optional_count_at(row, 16)?,
        }
    } else {
        RateLimits::default()
    };
    Ok(User {
        id: user_id_at(row, 0)?,
        display_name: row.get(1)?,
        note: row.get(2)?,
        allowed_models,
        disabled: row.get(4)?,
        created_at: UnixMillis(row.get(5)?),
        key_prefix: row.get::<_, Option<String>>(6)?.unwrap_or_default(),
        key_expires_at: row.get::<_, Option<i64>>(7)?.map(UnixMillis),
        limits,
    })
}

/// Reads four sums starting at `first`: requests, prompt, completion and total tokens.
pub(crate) fn totals_from_row(row: &Row<'_>, first: usize) -> rusqlite::Result<UsageTotals> {
    Ok(UsageTotals {
        requests: count_at(row, first)?,
        prompt_tokens: count_at(row, first + 1)?,
        completion_tokens: count_at(row, first + 2)?,
        total_tokens: count_at(row, first + 3)?,
    })
}

/// The columns [`usage_from_row`] reads, in order.
pub(crate) const USAGE_COLUMNS: &str = "request_id, user_id, model, endpoint, prompt_tokens, \
     completion_tokens, status, duration_ms, created_at, backend, client_request_id";

pub(crate) fn usage_from_row(row: &Row<'_>) -> rusqlite::Result<UsageRecord> {
    let status: String = row.get(6)?;
    Ok(UsageRecord {
        request_id: row.get(0)?,
        user_id: user_id_at(row, 1)?,
        model: row.get(2)?,
        endpoint: endpoint_at(row, 3)?,
        backend: row.get(9)?,
        client_request_id: row.get(10)?,
        prompt_tokens: count_at(row, 4)?,
        completion_tokens: count_at(row, 5)?,
        status: UsageStatus::parse(&status)
            .ok_or_else(|| conversion_error(6, Type::Text, UnknownName(status)))?,
        duration_ms: count_at(row, 7)?,
        created_at: UnixMillis(row.get(8)?),
    })
}

pub(crate) fn endpoint_at(row: &Row<'_>, column: usize) -> rusqlite::Result<Endpoint> {
    let raw: String = row.get(column)?;
    Endpoint::parse(&raw).ok_or_else(|| conversion_error(column, Type::Text, UnknownName(raw)))
}

pub(crate) fn optional_endpoint_at(
    row: &Row<'_>,
    column: usize,
) -> rusqlite::Result<Option<Endpoint>> {
    match row.get_ref(column)? {
        rusqlite::types::ValueRef::Null => Ok(None),
        _ => endpoint_at(row, column).map(Some),
    }
}

pub(crate) fn limit_kind_at(row: &Row<'_>, column: usize) -> rusqlite::Result<LimitKind> {
    let raw: String = row.get(column)?;
    LimitKind::parse(&raw).ok_or_else(|| conversion_error(column, Type::Text, UnknownName(raw)))
}

#[derive(Debug, thiserror::Error)]
#[error("unknown name '{0}' stored in the database")]
struct UnknownName(String);

/// A `WHERE` clause (possibly empty) for a usage filter, with its parameters in order.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct UsageWhere {
    pub(crate) sql: String,
    pub(crate) params: Vec<Value>,
}

impl UsageWhere {
    pub(crate) fn new(filter: &UsageFilter) -> Self {
        let mut conditions = Vec::new();
        let mut params = Vec::new();
        if let Some(user_id) = &filter.user_id {
            conditions.push("user_id = ?");
            params.push(Value::Text(user_id.as_str().to_owned()));
        }
        if let Some(model) = &filter.model {
            conditions.push("model = ?");
            params.push(Value::Text(model.clone()));
        }
        if let Some(endpoint) = filter.endpoint {
            conditions.push("endpoint = ?");
            params.push(Value::Text(endpoint.as_str().to_owned()));
        }
        if let Some(backend) = &filter.backend {
            conditions.push("backend = ?");
            params.push(Value::Text(backend.clone()));
        }
        if let Some(start) = filter.start {
            conditions.push("created_at >= ?");
            params.push(Value::Integer(start.0));
        }
        if let Some(end) = filter.end {
            conditions.push("created_at < ?");
            params.push(Value::Integer(end.0));
        }
        let sql = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        Self { sql, params }
    }

    /// This clause with one more condition.
    pub(crate) fn and(mut self, condition: &str, params: impl IntoIterator<Item = Value>) -> Self {
        self.sql = if self.sql.is_empty() {
            format!("WHERE {condition}")
        } else {
            format!("{} AND {condition}", self.sql)
        };
        self.params.extend(params);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_filter_has_no_where_clause() {
        assert_eq!(
            UsageWhere::new(&UsageFilter::default()),
            UsageWhere::default()
        );
    }

    #[test]
    fn every_filter_field_adds_a_condition_with_its_parameter() {
        let filter = UsageFilter {
            user_id: Some(UserId::parse("alice").unwrap()),
            start: Some(UnixMillis(10)),
            end: Some(UnixMillis(20)),
            model: Some("llama3.2".into()),
            endpoint: Some(Endpoint::OllamaChat),
            backend: Some("gpu-1".into()),
        };
        let clause = UsageWhere::new(&filter);
        assert_eq!(
            clause.sql,
            "WHERE user_id = ? AND model = ? AND endpoint = ? AND backend = ? \
             AND created_at >= ? AND created_at < ?"
        );
        assert_eq!(
            clause.params,
            [
                Value::Text("alice".into()),
                Value::Text("llama3.2".into()),
                Value::Text("/api/chat".into()),
                Value::Text("gpu-1".into()),
                Value::Integer(10),
                Value::Integer(20),
            ]
        );
    }

    #[test]
    fn huge_counts_saturate_instead_of_failing() {
        assert_eq!(to_sql_int(u64::MAX), i64::MAX);
        assert_eq!(to_sql_int(42), 42);
    }
}
