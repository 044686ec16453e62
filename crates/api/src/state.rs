//! What every handler shares: the store, admission, the key cache and the settings.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// Users by key hash, so the common request costs no database round trip.
///
/// Revocation is linearizable: once an admin change has been committed and its
/// [`KeyCache::invalidate`] (or [`KeyCache::clear`]) has returned, no request that starts
/// later is let in with what the change revoked. A miss reads the store and may then race
/// with an invalidation; so every invalidation moves an epoch, a miss notes the epoch before
/// it reads ([`KeyCache::epoch`]) and inserts only if the epoch has not moved since, checked
/// under the write lock ([`KeyCache::insert`]). An entry read before the change therefore
/// either lands before the invalidation (which then removes it) or not at all.
#[derive(Debug, Default)]
pub struct KeyCache {
    users: RwLock<HashMap<ApiKeyHash, Arc<User>>>,
    /// Moved, under the write lock, by every invalidation.
    epoch: AtomicU64,
}

impl KeyCache {
    pub(crate) fn get(&self, hash: &ApiKeyHash) -> Option<Arc<User>> {
        unpoison(self.users.read()).get(hash).cloned()
    }

    /// The epoch to hand to [`KeyCache::insert`]; read it before asking the store. Read under
    /// the lock, so it is never older than an invalidation that has returned.
    pub fn epoch(&self) -> u64 {
        let _users = unpoison(self.users.read());
        self.epoch.load(Ordering::Relaxed)
    }

    /// Caches `user` under `hash` unless an invalidation ran since `epoch` was read (what
    /// the store said may then be stale); returns whether it did.
    pub fn insert(&self, hash: ApiKeyHash, user: Arc<User>, epoch: u64) -> bool {
        let mut users = unpoison(self.users.write());
        if self.epoch.load(Ordering::Relaxed) != epoch {
            return false;
        }
        users.insert(hash, user);
        true
    }

    /// Drops every cached entry of `user`, and any entry a lookup now in flight would add.
    pub fn invalidate(&self, user: &UserId) {
        let mut users = unpoison(self.users.write());
        self.epoch.fetch_add(1, Ordering::Relaxed);
        users.retain(|_, cached| &cached.id != user);
    }

    /// Drops everything, and any entry a lookup now in flight would add.
    pub fn clear(&self) {
        let mut users = unpoison(self.users.write());
        self.epoch.fetch_add(1, Ordering::Relaxed);
        users.clear();
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
        assert!(cache.insert(key, user.clone(), cache.epoch()));
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

    #[test]
    fn a_lookup_that_read_before_an_invalidation_inserts_nothing() {
        let cache = KeyCache::default();
        let hash = ApiKey::generate().hash();
        let alice = || {
            Arc::new(User {
                id: UserId::parse("alice").unwrap(),
                display_name: None,
                note: None,
                key_prefix: String::new(),
                limits: RateLimits::default(),
                disabled: false,
                key_expires_at: None,
                allowed_models: None,
                created_at: UnixMillis(0),
            })
        };
        let epoch = cache.epoch();
        // ...the store is read here, then the admin's change commits and invalidates...
        cache.invalidate(&UserId::parse("alice").unwrap());
        assert!(!cache.insert(hash, alice(), epoch));
        assert!(cache.get(&hash).is_none());
        // A lookup that starts afterwards caches what it read.
        let epoch = cache.epoch();
        assert!(cache.insert(hash, alice(), epoch));
        assert!(cache.get(&hash).is_some());
        cache.clear();
        assert!(cache.get(&hash).is_none());
        assert!(!cache.insert(hash, alice(), epoch));
    }
}
