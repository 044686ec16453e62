//! `/admin/*`: users, their keys, limits and usage, for the operator's key only.

use actix_web::{HttpResponse, delete, get, patch, post, put, web};
use aiproxy_domain::{
    ApiKey, LimitsPatch, NewUser, RateLimits, UnixMillis, UsageTotals, User, UserId, UserPatch,
    UserQuery,
};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Admin;
use crate::body::JsonBody;
use crate::error::ApiError;
use crate::error_responses::{AdminKeyRefused, BadRequest, Conflict, UnknownUser};
use crate::state::AppState;
use crate::usage::{
    TotalsBody, UsageParams, UsageReport, UsageSummary, parse_time, rfc3339, usage_report,
    usage_summary,
};

const MAX_TEXT: usize = 1000;
/// The largest user body accepted (a user, its limits and its model list).
const MAX_USER_BODY: usize = 1024 * 1024;
/// The largest limits body accepted.
const MAX_LIMITS_BODY: usize = 64 * 1024;
const MAX_MODELS: usize = 256;

/// Distinguishes a field sent as `null` (`Some(None)`) from one not sent (`None`).
fn double_option<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A partial update of limits: only the fields sent change; `null` means unlimited.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"requests_per_minute": 10, "total_token_limit": null}))]
pub struct LimitsUpdate {
    /// Requests per sliding minute.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u64>)]
    pub requests_per_minute: Option<Option<u64>>,
    /// Requests per sliding day.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u64>)]
    pub requests_per_day: Option<Option<u64>>,
    /// Tokens per sliding minute.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u64>)]
    pub tokens_per_minute: Option<Option<u64>>,
    /// Tokens per sliding day.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u64>)]
    pub tokens_per_day: Option<Option<u64>>,
    /// Lifetime tokens.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u64>)]
    pub total_token_limit: Option<Option<u64>>,
    /// Requests in flight at once.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u64>)]
    pub max_concurrent_requests: Option<Option<u64>>,
    /// The largest `num_ctx` this user may ask Ollama for; `null` for the server's cap.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u64>)]
    pub max_num_ctx: Option<Option<u64>>,
    /// The longest `keep_alive` this user may ask for, in seconds; `null` for the server's cap.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u64>)]
    pub max_keep_alive_secs: Option<Option<u64>>,
}

impl From<&LimitsUpdate> for LimitsPatch {
    fn from(u: &LimitsUpdate) -> Self {
        LimitsPatch {
            requests_per_minute: u.requests_per_minute,
            requests_per_day: u.requests_per_day,
            tokens_per_minute: u.tokens_per_minute,
            tokens_per_day: u.tokens_per_day,
            total_token_limit: u.total_token_limit,
            max_concurrent_requests: u.max_concurrent_requests,
            max_num_ctx: u.max_num_ctx,
            max_keep_alive_secs: u.max_keep_alive_secs,
        }
    }
}

/// `POST /admin/users`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"user_id": "alice", "display_name": "Alice", "limits": {"requests_per_minute": 30}}))]
pub struct CreateUserRequest {
    /// 1 to 64 characters from `A-Z a-z 0-9 . _ - @`.
    pub user_id: String,
    /// A human name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Free text for the operator.
    #[serde(default)]
    pub note: Option<String>,
    /// An existing key to import (at least 32 random-looking characters); a new one is
    /// generated when absent.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Limits other than the defaults.
    #[serde(default)]
    pub limits: Option<LimitsUpdate>,
    /// When the key stops working (RFC 3339).
    #[serde(default)]
    pub key_expires_at: Option<String>,
    /// The only models this user may call; absent for all.
    #[serde(default)]
    pub allowed_models: Option<Vec<String>>,
}

/// `PATCH /admin/users/{user_id}`: only the fields sent change; `null` clears.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"disabled": true}))]
pub struct UpdateUserRequest {
    /// A human name.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub display_name: Option<Option<String>>,
    /// Free text.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub note: Option<Option<String>>,
    /// When the key stops working (RFC 3339), or `null` for never.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub key_expires_at: Option<Option<String>>,
    /// The only models this user may call, or `null` for all.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Vec<String>>)]
    pub allowed_models: Option<Option<Vec<String>>>,
    /// Disable (true) or re-enable (false) without losing history.
    #[serde(default)]
    pub disabled: Option<bool>,
}

/// A user as the admin API shows it: never the key, only its prefix.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserBody {
    /// The id.
    pub user_id: String,
    /// A human name.
    pub display_name: Option<String>,
    /// Free text.
    pub note: Option<String>,
    /// The first characters of the current key.
    pub key_prefix: String,
    /// When the key stops working (RFC 3339), or null.
    pub key_expires_at: Option<String>,
    /// The only models this user may call, or null for all.
    pub allowed_models: Option<Vec<String>>,
    /// Whether the user is disabled.
    pub disabled: bool,
    /// When the user was created (RFC 3339).
    pub created_at: String,
    /// The limits in force.
    pub limits: RateLimits,
    /// Lifetime usage, when listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<TotalsBody>,
}

impl UserBody {
    fn new(user: &User, totals: Option<UsageTotals>) -> Self {
        Self {
            user_id: user.id.to_string(),
            display_name: user.display_name.clone(),
            note: user.note.clone(),
            key_prefix: user.key_prefix.clone(),
            key_expires_at: user.key_expires_at.map(rfc3339),
            allowed_models: user.allowed_models.clone(),
            disabled: user.disabled,
            created_at: rfc3339(user.created_at),
            limits: user.limits,
            usage: totals.map(Into::into),
        }
    }
}

/// A user with its new key, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserWithKey {
    /// The user.
    #[serde(flatten)]
    pub user: UserBody,
    /// The whole key. It is stored only as a hash: copy it now.
    pub api_key: String,
}

/// A page of users.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    /// Always `list`.
    pub object: &'static str,
    /// The users of this page, in id order.
    pub data: Vec<UserBody>,
    /// How many users there are in all.
    pub total: u64,
    /// The page size used.
    pub limit: u32,
    /// The offset used.
    pub offset: u64,
    /// Whether more users follow.
    pub has_more: bool,
}

/// Paging of the user list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Users per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Users to skip.
    #[param(minimum = 0)]
    pub offset: Option<u64>,
}

/// What a bulk delete removed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    /// How many users were deleted.
    pub deleted: u64,
}

fn parse_user_id(raw: &str) -> Result<UserId, ApiError> {
    UserId::parse(raw).map_err(ApiError::from)
}

/// A path id that does not parse names no user, so it is a 404 (not a 400).
fn path_user_id(raw: &str) -> Result<UserId, ApiError> {
    UserId::parse(raw).map_err(|_| ApiError::NotFound {
        message: "No user with that id.".into(),
    })
}

fn check_text(value: &Option<String>, field: &str) -> Result<(), ApiError> {
    if value.as_ref().is_some_and(|v| v.chars().count() > MAX_TEXT) {
        return Err(ApiError::bad_request(
            format!("`{field}` must be at most {MAX_TEXT} characters."),
            Some(field.into()),
        ));
    }
    Ok(())
}

fn check_models(models: &Option<Vec<String>>) -> Result<(), ApiError> {
    if let Some(models) = models
        && (models.len() > MAX_MODELS
            || models.iter().any(|m| m.trim().is_empty() || m.len() > 200))
    {
        return Err(ApiError::bad_request(
            format!("`allowed_models` takes up to {MAX_MODELS} non-empty model names."),
            Some("allowed_models".into()),
        ));
    }
    Ok(())
}

/// Creates a user and returns its key (shown only this once).
#[utoipa::path(
    tag = "admin",
    request_body = CreateUserRequest,
    responses(
        (status = 201, body = UserWithKey),
        BadRequest,
        AdminKeyRefused,
        Conflict,
    ),
    security(("admin_key" = []))
)]
#[post("/admin/users")]
pub async fn create_user(
    _admin: Admin,
    body: JsonBody<CreateUserRequest, MAX_USER_BODY>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = body.read().await?;
    let id = parse_user_id(&body.user_id)?;
    check_text(&body.display_name, "display_name")?;
    check_text(&body.note, "note")?;
    check_models(&body.allowed_models)?;
    let key = match &body.api_key {
        Some(raw) => ApiKey::parse_imported(raw)?,
        None => ApiKey::generate(),
    };
    let limits = match &body.limits {
        Some(update) => LimitsPatch::from(update).apply(RateLimits::default())?,
        None => RateLimits::default(),
    };
    let key_expires_at = body
        .key_expires_at
        .as_deref()
        .map(|t| parse_time(t, "key_expires_at"))
        .transpose()?;
    let new = NewUser {
        id,
        display_name: body.display_name,
        note: body.note,
        key_hash: key.hash(),
        key_prefix: key.prefix(),
        key_expires_at,
        allowed_models: body.allowed_models,
        limits,
        created_at: UnixMillis::now(),
    };
    let user = state.store.create_user(new).await?;
    tracing::info!(user_id = %user.id, key_prefix = %user.key_prefix, "user created");
    Ok(HttpResponse::Created().json(UserWithKey {
        user: UserBody::new(&user, None),
        api_key: key.expose().to_owned(),
    }))
}

/// Lists users with their limits and lifetime usage, a page at a time.
#[utoipa::path(
    tag = "admin",
    params(ListParams),
    responses(
        (status = 200, body = UserList),
        BadRequest,
        AdminKeyRefused,
    ),
    security(("admin_key" = []))
)]
#[get("/admin/users")]
pub async fn list_users(
    _admin: Admin,
    params: web::Query<ListParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let limit = params.limit.unwrap_or(100);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::bad_request(
            "`limit` must be between 1 and 1000.",
            Some("limit".into()),
        ));
    }
    let offset = params.offset.unwrap_or(0);
    let (users, total) = state
        .store
        .list_users(&UserQuery::page(limit, offset))
        .await?;
    let has_more = offset.saturating_add(users.len() as u64) < total;
    Ok(HttpResponse::Ok().json(UserList {
        object: "list",
        data: users
            .iter()
            .map(|s| UserBody::new(&s.user, Some(s.totals)))
            .collect(),
        total,
        limit,
        offset,
        has_more,
    }))
}

/// One user: settings, key prefix, limits.
#[utoipa::path(
    tag = "admin",
    params(("user_id" = String, Path)),
    responses(
        (status = 200, body = UserBody),
        AdminKeyRefused,
        UnknownUser,
    ),
    security(("admin_key" = []))
)]
#[get("/admin/users/{user_id}")]
pub async fn get_user(
    _admin: Admin,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path_user_id(&path)?;
    let user = state.store.get_user(&id).await?;
    Ok(HttpResponse::Ok().json(UserBody::new(&user, None)))
}

/// Changes a user's settings: name, note, key expiry, allowed models, disabled.
#[utoipa::path(
    tag = "admin",
    params(("user_id" = String, Path)),
    request_body = UpdateUserRequest,
    responses(
        (status = 200, body = UserBody),
        BadRequest,
        AdminKeyRefused,
        UnknownUser,
    ),
    security(("admin_key" = []))
)]
#[patch("/admin/users/{user_id}")]
pub async fn update_user(
    _admin: Admin,
    path: web::Path<String>,
    body: JsonBody<UpdateUserRequest, MAX_USER_BODY>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path_user_id(&path)?;
    let body = body.read().await?;
    check_text(body.display_name.as_ref().unwrap_or(&None), "display_name")?;
    check_text(body.note.as_ref().unwrap_or(&None), "note")?;
    check_models(body.allowed_models.as_ref().unwrap_or(&None))?;
    let key_expires_at = match body.key_expires_at {
        None => None,
        Some(None) => Some(None),
        Some(Some(text)) => Some(Some(parse_time(&text, "key_expires_at")?)),
    };
    let patch = UserPatch {
        display_name: body.display_name,
        note: body.note,
        key_expires_at,
        allowed_models: body.allowed_models,
        disabled: body.disabled,
    };
    let user = state.store.update_user(&id, &patch).await?;
    state.keys.invalidate(&id);
    Ok(HttpResponse::Ok().json(UserBody::new(&user, None)))
}

/// Deletes a user with its key, limits and usage records.
#[utoipa::path(
    tag = "admin",
    params(("user_id" = String, Path)),
    responses(
        (status = 204, description = "Deleted"),
        AdminKeyRefused,
        UnknownUser,
    ),
    security(("admin_key" = []))
)]
#[delete("/admin/users/{user_id}")]
pub async fn delete_user(
    _admin: Admin,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path_user_id(&path)?;
    let deleted = state.store.delete_user(&id).await?;
    state.keys.invalidate(&id);
    state.admission.forget(&id);
    tracing::info!(user_id = %id, usage_records = deleted.usage_records, "user deleted");
    Ok(HttpResponse::NoContent().finish())
}

/// Deletes every user, with all keys, limits and usage records.
#[utoipa::path(
    tag = "admin",
    responses(
        (status = 200, body = Deleted),
        AdminKeyRefused,
    ),
    security(("admin_key" = []))
)]
#[delete("/admin/users")]
pub async fn delete_all_users(
    _admin: Admin,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let deleted = state.store.delete_all_users().await?;
    state.keys.clear();
    state.admission.forget_all();
    tracing::info!(
        users = deleted.users,
        usage_records = deleted.usage_records,
        "all users deleted"
    );
    Ok(HttpResponse::Ok().json(Deleted {
        deleted: deleted.users,
    }))
}

/// A user's usage, in the same shape as `/v1/usage`.
#[utoipa::path(
    tag = "admin",
    params(("user_id" = String, Path), UsageParams),
    responses(
        (status = 200, body = UsageReport),
        BadRequest,
        AdminKeyRefused,
        UnknownUser,
    ),
    security(("admin_key" = []))
)]
#[get("/admin/users/{user_id}/usage")]
pub async fn user_usage(
    _admin: Admin,
    path: web::Path<String>,
    params: web::Query<UsageParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path_user_id(&path)?;
    state.store.get_user(&id).await?;
    Ok(HttpResponse::Ok().json(usage_report(&state, id, &params).await?))
}

/// Totals per user and model across everyone (and per day with `group_by=day`).
#[utoipa::path(
    tag = "admin",
    params(UsageParams),
    responses(
        (status = 200, body = UsageSummary),
        BadRequest,
        AdminKeyRefused,
    ),
    security(("admin_key" = []))
)]
#[get("/admin/usage/summary")]
pub async fn all_usage_summary(
    _admin: Admin,
    params: web::Query<UsageParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(usage_summary(&state, None, &params, true).await?))
}

/// A user's limits.
#[utoipa::path(
    tag = "admin",
    params(("user_id" = String, Path)),
    responses(
        (status = 200, body = RateLimits),
        AdminKeyRefused,
        UnknownUser,
    ),
    security(("admin_key" = []))
)]
#[get("/admin/users/{user_id}/limits")]
pub async fn get_limits(
    _admin: Admin,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path_user_id(&path)?;
    let user = state.store.get_user(&id).await?;
    Ok(HttpResponse::Ok().json(user.limits))
}

/// Changes a user's limits; only the fields sent change, `null` means unlimited. Takes effect
/// on the user's next request.
#[utoipa::path(
    tag = "admin",
    params(("user_id" = String, Path)),
    request_body = LimitsUpdate,
    responses(
        (status = 200, body = RateLimits),
        BadRequest,
        AdminKeyRefused,
        UnknownUser,
    ),
    security(("admin_key" = []))
)]
#[put("/admin/users/{user_id}/limits")]
pub async fn put_limits(
    _admin: Admin,
    path: web::Path<String>,
    body: JsonBody<LimitsUpdate, MAX_LIMITS_BODY>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path_user_id(&path)?;
    let update = body.read().await?;
    let patch = LimitsPatch::from(&update);
    let user = state.store.get_user(&id).await?;
    let limits = patch.apply(user.limits)?;
    state.store.set_limits(&id, &limits).await?;
    state.keys.invalidate(&id);
    Ok(HttpResponse::Ok().json(limits))
}

/// Issues a new key; the old one stops working at once.
#[utoipa::path(
    tag = "admin",
    params(("user_id" = String, Path)),
    responses(
        (status = 200, body = UserWithKey),
        AdminKeyRefused,
        UnknownUser,
    ),
    security(("admin_key" = []))
)]
#[post("/admin/users/{user_id}/rotate-key")]
pub async fn rotate_key(
    _admin: Admin,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path_user_id(&path)?;
    let key = ApiKey::generate();
    let (hash, prefix) = (key.hash(), key.prefix());
    let current = state.store.get_user(&id).await?;
    let user = state
        .store
        .replace_key(&id, hash, &prefix, current.key_expires_at)
        .await?;
    state.keys.invalidate(&id);
    tracing::info!(user_id = %id, key_prefix = %user.key_prefix, "key rotated");
    Ok(HttpResponse::Ok().json(UserWithKey {
        user: UserBody::new(&user, None),
        api_key: key.expose().to_owned(),
    }))
}
