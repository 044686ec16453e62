//! Bearer-key extractors: [`AuthedUser`] for `/v1/*`, [`Admin`] for `/admin/*`.

use std::future::{Ready, ready};
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use aiproxy_domain::{ApiKey, UnixMillis, User, secrets_equal};
use futures_util::future::{Either, LocalBoxFuture};

use crate::error::ApiError;
use crate::state::AppState;

/// The user whose key came with the request: known, enabled and not expired.
#[derive(Debug, Clone)]
pub struct AuthedUser(pub Arc<User>);

/// Proof that the request carried the operator's admin key.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

const NO_KEY: &str = "You didn't provide an API key. Send it in an Authorization header as Bearer auth (Authorization: Bearer YOUR_KEY).";
const BAD_KEY: &str = "Incorrect API key provided.";

/// The key from `Authorization: Bearer <key>`; the scheme is case-insensitive.
fn bearer(req: &HttpRequest) -> Result<&str, ApiError> {
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthorized {
            message: NO_KEY.into(),
        })?;
    let text = header.to_str().map_err(|_| ApiError::Unauthorized {
        message: "The Authorization header is not valid text.".into(),
    })?;
    let (scheme, key) = text
        .trim()
        .split_once(' ')
        .ok_or_else(|| ApiError::Unauthorized {
            message: "The Authorization header must be `Bearer YOUR_KEY`.".into(),
        })?;
    if !scheme.eq_ignore_ascii_case("bearer") || key.trim().is_empty() {
        return Err(ApiError::Unauthorized {
            message: "The Authorization header must be `Bearer YOUR_KEY`.".into(),
        });
    }
    Ok(key.trim())
}

fn state(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::Internal("AppState is not registered".into()))
}

impl FromRequest for AuthedUser {
    type Error = ApiError;
    type Future =
        Either<Ready<Result<Self, ApiError>>, LocalBoxFuture<'static, Result<Self, ApiError>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let found = bearer(req)
            .and_then(|raw| {
                ApiKey::parse(raw).map_err(|_| ApiError::Unauthorized {
                    message: BAD_KEY.into(),
                })
            })
            .and_then(|key| Ok((key.hash(), state(req)?)));
        let (hash, state) = match found {
            Ok(found) => found,
            Err(error) => return Either::Left(ready(Err(error))),
        };
        // A known key is answered on the spot; only a key not seen since start-up (or since
        // it changed) waits for the database.
        if let Some(user) = state.keys.get(&hash) {
            return Either::Left(ready(usable(user).map(AuthedUser)));
        }
        Either::Right(Box::pin(async move {
            // Noted before the read: an admin change that lands meanwhile keeps what this
            // read saw out of the cache (see `KeyCache`).
            let epoch = state.keys.epoch();
            let found = state.store.find_user_by_key(&hash).await?;
            let user = Arc::new(found.ok_or_else(|| ApiError::Unauthorized {
                message: BAD_KEY.into(),
            })?);
            state.keys.insert(hash, user.clone(), epoch);
            usable(user).map(AuthedUser)
        }))
    }
}

/// Refuses the key of a disabled user and an expired key.
fn usable(user: Arc<User>) -> Result<Arc<User>, ApiError> {
    if user.disabled {
        return Err(ApiError::Unauthorized {
            message: "This API key belongs to a disabled user.".into(),
        });
    }
    if user
        .key_expires_at
        .is_some_and(|expiry| expiry <= UnixMillis::now())
    {
        return Err(ApiError::Unauthorized {
            message: "This API key has expired. Ask the operator for a new one.".into(),
        });
    }
    Ok(user)
}

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let result = bearer(req).and_then(|key| {
            let state = state(req)?;
            if secrets_equal(key, &state.settings.admin_api_key) {
                Ok(Admin)
            } else {
                Err(ApiError::Unauthorized {
                    message: "Incorrect admin key provided.".into(),
                })
            }
        });
        ready(result)
    }
}
