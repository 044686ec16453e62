//! What every handler shares: the store, admission, the key cache and the settings.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use aiproxy_domain::{Admission, ApiKeyHash, Store, User, UserId, unpoison};

/// Settings of the HTTP layer.
#[derive(Clone)]
pub struct ApiSettings {
    /// The operator's key for `/admin/*`.
    pub admin_api_key: String,
    /// The largest request body accepted, in bytes (images arrive inline, so it is generous).
    pub max_body_bytes: usize,
    /// How images given by URL are fetched.
    pub image_fetch: crate::image_fetch::ImageFetchSettings,
    /// Serve `/metrics` without the admin key (for a scraper on a trusted network).
    pub metrics_public: bool,
}

impl std::fmt::Debug for ApiSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiSettings")
            .field("admin_api_key", &"[redacted]")
            .field("max_body_bytes", &self.max_body_bytes)
            .field("image_fetch", &self.image_fetch)
            .field("metrics_public", &self.metrics_public)
            .finish()
    }
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            admin_api_key: "admin-secret-key".into(),
            max_body_bytes: 32 * 1024 * 1024,
            image_fetch: crate::image_fetch::ImageFetchSettings::default(),
            metrics_public: false,
        }
    }
}

/// State shared by every worker; build it once and hand it to [`crate::configure`] through
/// `web::Data`.
pub struct AppState {
    /// Where users, keys and usage live.
    pub store: Arc<dyn Store>,
    /// Who may make a request now; records each admitted request's usage row.
    pub admission: Arc<dyn Admission>,
    /// Keys already looked up, so the common request costs no database round trip.
    pub keys: KeyCache,
    /// Settings.
    pub settings: ApiSettings,
    /// Counters for `/metrics`.
    pub metrics: crate::metrics::Metrics,
    /// Appends metrics the HTTP layer cannot see (the storage engine's writer, say) to the
    /// `/metrics` text.
    pub extra_metrics: Option<ExtraMetrics>,
}

/// A function that appends Prometheus text to `/metrics`.
pub type ExtraMetrics = Arc<dyn Fn(&mut String) + Send + Sync>;

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State over a store and an admission engine.
    pub fn new(
        store: Arc<dyn Store>,
        admission: Arc<dyn Admission>,
        settings: ApiSettings,
    ) -> Self {
        Self {
            store,
            admission,
            keys: KeyCache::default(),
            settings,
            metrics: crate::metrics::Metrics::default(),
            extra_metrics: None,
        }
    }

    /// Adds a source of extra `/metrics` lines.
    pub fn with_extra_metrics(mut self, extra: ExtraMetrics) -> Self {
        self.extra_metrics = Some(extra);
        self
    }
}

/// Users by key hash. Every admin change to a user drops that user's entries at once, so a
/// deleted, disabled or rotated key stops working on the very next request.
#[derive(Debug, Default)]
pub struct KeyCache {
    users: RwLock<HashMap<ApiKeyHash, Arc<User>>>,
}

impl KeyCache {
    pub(crate) fn get(&self, hash: &ApiKeyHash) -> Option<Arc<User>> {
        unpoison(self.users.read()).get(hash).cloned()
    }

    pub(crate) fn insert(&self, hash: ApiKeyHash, user: Arc<User>) {
        unpoison(self.users.write()).insert(hash, user);
    }

    /// Drops every cached entry of `user`.
    pub fn invalidate(&self, user: &UserId) {
        unpoison(self.users.write()).retain(|_, cached| &cached.id != user);
    }

    /// Drops everything.
    pub fn clear(&self) {
        unpoison(self.users.write()).clear();
    }
}

#[cfg(test)]
mod tests {
    use aiproxy_domain::{ApiKey, RateLimits, UnixMillis};

    use super::*;

    #[test]
    fn the_key_cache_keeps_working_after_a_panic_poisoned_its_lock() {
        let cache = Arc::new(KeyCache::default());
        let key = ApiKey::generate().hash();
        let user = Arc::new(User {
            id: UserId::parse("alice").unwrap(),
            display_name: None,
            note: None,
            key_prefix: String::new(),
            limits: RateLimits::default(),
            disabled: false,
            key_expires_at: None,
            allowed_models: None,
            created_at: UnixMillis(0),
        });
        cache.insert(key, user.clone());
        let holder = cache.clone();
        let panicked = std::thread::spawn(move || {
            let _guard = holder.users.write();
            panic!("a panic while holding the cache");
        })
        .join();
        assert!(panicked.is_err());
        assert!(cache.get(&key).is_some(), "still served from the cache");
        cache.invalidate(&user.id);
        assert!(cache.get(&key).is_none(), "and still invalidated");
    }
}
