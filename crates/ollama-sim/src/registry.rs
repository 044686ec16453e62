//! The instance's models: which are installed (`/api/tags`), which are loaded in memory
//! (`/api/ps`) and until when, which models could be installed, and the clock that keep-alives
//! run on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use time::OffsetDateTime;

use crate::model::{ModelName, SimModel};

/// How long a model stays loaded after a request, as Ollama's `keep_alive` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAlive {
    /// Unload this long after the request (zero: at once).
    For(Duration),
    /// Never unload (a negative `keep_alive`).
    Forever,
}

impl KeepAlive {
    /// Ollama's default (`OLLAMA_KEEP_ALIVE` unset): five minutes.
    pub const DEFAULT: KeepAlive = KeepAlive::For(Duration::from_secs(300));

    /// From a number of seconds as Ollama reads `keep_alive`: negative means forever.
    pub fn from_secs_f64(seconds: f64) -> Self {
        if seconds < 0.0 {
            return KeepAlive::Forever;
        }
        // Go truncates to whole nanoseconds; a value past Go's range is as good as forever.
        Duration::try_from_secs_f64(seconds).map_or(KeepAlive::Forever, KeepAlive::For)
    }

    /// Whether this unloads the model at once.
    pub fn is_zero(self) -> bool {
        self == KeepAlive::For(Duration::ZERO)
    }

    /// When a model used at `now` expires. Forever is `now` plus Go's largest duration
    /// (about 292 years), which is what Ollama's `/api/ps` then shows.
    pub fn expiry(self, now: OffsetDateTime) -> OffsetDateTime {
        let forever = time::Duration::nanoseconds(i64::MAX);
        let span = match self {
            KeepAlive::Forever => forever,
            KeepAlive::For(duration) => time::Duration::try_from(duration).unwrap_or(forever),
        };
        now.checked_add(span)
            .or_else(|| now.checked_add(forever))
            .unwrap_or(now)
    }
}

/// The simulator's clock: real UTC time plus an offset that tests move forward, so keep-alives
/// expire without anyone waiting.
#[derive(Debug, Default)]
pub(crate) struct SimClock {
    offset_nanos: AtomicI64,
}

impl SimClock {
    pub(crate) fn now(&self) -> OffsetDateTime {
        let offset = time::Duration::nanoseconds(self.offset_nanos.load(Ordering::Relaxed));
        let real = OffsetDateTime::now_utc();
        real.checked_add(offset).unwrap_or(real)
    }

    pub(crate) fn advance(&self, by: Duration) {
        let nanos = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
        // fetch_update never fails with a closure that always returns Some.
        let _ = self
            .offset_nanos
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(old.saturating_add(nanos))
            });
    }
}

/// One model in memory, as `/api/ps` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedModel {
    /// The installed model's display name, e.g. `llama3.2:latest`.
    pub name: String,
    /// When it unloads (now + keep-alive at its last use).
    pub expires_at: OffsetDateTime,
    /// The context window it was loaded with.
    pub context_length: u64,
}

/// A model with its name parsed once, so lookups do not re-parse every installed name.
#[derive(Debug, Clone)]
struct Entry {
    name: ModelName,
    model: Arc<SimModel>,
}

impl Entry {
    fn new(model: SimModel) -> Option<Self> {
        let name = ModelName::parse(&model.name).ok()?;
        Some(Self {
            name,
            model: Arc::new(model),
        })
    }
}

#[derive(Debug)]
struct Loaded {
    entry: Entry,
    keep_alive: KeepAlive,
    expires_at: OffsetDateTime,
    context_length: u64,
}

/// Why a model set could not be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RegistryError {
    /// The name is neither installed nor in the catalog.
    Unknown(String),
    /// The name is not installed, so it cannot be loaded.
    NotInstalled(String),
}

impl std::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegistryError::Unknown(name) => {
                write!(f, "model {name:?} is neither installed nor in the catalog")
            }
            RegistryError::NotInstalled(name) => {
                write!(f, "model {name:?} is not installed, so it cannot be loaded")
            }
        }
    }
}

/// The mutable model state of one instance.
#[derive(Debug)]
pub(crate) struct Registry {
    installed: Vec<Entry>,
    loaded: Vec<Loaded>,
    catalog: Vec<Entry>,
    /// Uploaded blobs by file name (`sha256-<hex>`, as Ollama names them on disk) → size.
    blobs: BTreeMap<String, u64>,
    default_keep_alive: KeepAlive,
    default_num_ctx: u64,
}

impl Registry {
    pub(crate) fn new(
        installed: &[SimModel],
        catalog: &[SimModel],
        default_keep_alive: KeepAlive,
        default_num_ctx: u64,
    ) -> Self {
        let mut registry = Self {
            installed: Vec::new(),
            loaded: Vec::new(),
            catalog: catalog.iter().cloned().filter_map(Entry::new).collect(),
            blobs: BTreeMap::new(),
            default_keep_alive,
            default_num_ctx,
        };
        for model in installed {
            if let Some(entry) = Entry::new(model.clone()) {
                registry.installed.push(entry);
            }
        }
        registry
    }

    /// The installed model a parsed name refers to.
    pub(crate) fn find(&self, name: &ModelName) -> Option<Arc<SimModel>> {
        self.installed
            .iter()
            .find(|entry| entry.name == *name)
            .map(|entry| Arc::clone(&entry.model))
    }

    /// The catalog model (what a pull can fetch) a parsed name refers to.
    pub(crate) fn find_in_catalog(&self, name: &ModelName) -> Option<Arc<SimModel>> {
        self.catalog
            .iter()
            .find(|entry| entry.name == *name)
            .map(|entry| Arc::clone(&entry.model))
    }

    /// Installed, then catalog: what a control request may name. An installed model keeps its
    /// identity, so its loaded state carries over.
    fn find_known(&self, raw: &str) -> Option<Entry> {
        let name = ModelName::parse(raw).ok()?;
        self.installed
            .iter()
            .chain(&self.catalog)
            .find(|entry| entry.name == name)
            .cloned()
    }

    /// Every installed model, in `/api/tags` order.
    pub(crate) fn installed(&self) -> Vec<Arc<SimModel>> {
        self.installed
            .iter()
            .map(|entry| Arc::clone(&entry.model))
            .collect()
    }

    /// Installs `model`, replacing one of the same name; a new model is listed first (Ollama
    /// lists the most recently modified first).
    pub(crate) fn install(&mut self, model: SimModel) {
        let Some(entry) = Entry::new(model) else {
            return;
        };
        if let Some(existing) = self.installed.iter_mut().find(|e| e.name == entry.name) {
            *existing = entry.clone();
        } else {
            self.installed.insert(0, entry.clone());
        }
        // A loaded copy of the old version now points at the new one.
        for loaded in &mut self.loaded {
            if loaded.entry.name == entry.name {
                loaded.entry = entry.clone();
            }
        }
    }

    /// Removes an installed model (and unloads it); returns it if it was there.
    pub(crate) fn remove(&mut self, name: &ModelName) -> Option<Arc<SimModel>> {
        let position = self.installed.iter().position(|e| e.name == *name)?;
        let entry = self.installed.remove(position);
        self.loaded.retain(|loaded| loaded.entry.name != *name);
        Some(entry.model)
    }

    /// Replaces the installed set by the named models (installed or catalog); models no
    /// longer installed are unloaded.
    pub(crate) fn set_installed(&mut self, names: &[String]) -> Result<(), RegistryError> {
        let mut entries: Vec<Entry> = Vec::with_capacity(names.len());
        for raw in names {
            let entry = self
                .find_known(raw)
                .ok_or_else(|| RegistryError::Unknown(raw.clone()))?;
            if !entries.iter().any(|e| e.name == entry.name) {
                entries.push(entry);
            }
        }
        self.installed = entries;
        let installed = &self.installed;
        self.loaded
            .retain(|loaded| installed.iter().any(|e| e.name == loaded.entry.name));
        Ok(())
    }

    /// Makes exactly the named installed models loaded, each with the default keep-alive from
    /// `now` (models already loaded keep their expiry).
    pub(crate) fn set_loaded(
        &mut self,
        names: &[String],
        now: OffsetDateTime,
    ) -> Result<(), RegistryError> {
        let mut wanted = Vec::new();
        for raw in names {
            let entry = ModelName::parse(raw)
                .ok()
                .and_then(|name| self.installed.iter().find(|e| e.name == name))
                .ok_or_else(|| RegistryError::NotInstalled(raw.clone()))?;
            wanted.push(entry.clone());
        }
        self.loaded
            .retain(|loaded| wanted.iter().any(|e| e.name == loaded.entry.name));
        for entry in wanted {
            if !self.loaded.iter().any(|l| l.entry.name == entry.name) {
                self.insert_loaded(entry, self.default_keep_alive, None, now);
            }
        }
        Ok(())
    }

    fn insert_loaded(
        &mut self,
        entry: Entry,
        keep_alive: KeepAlive,
        num_ctx: Option<u64>,
        now: OffsetDateTime,
    ) {
        let context_length = num_ctx
            .unwrap_or(self.default_num_ctx)
            .min(entry.model.context_length);
        self.loaded.push(Loaded {
            entry,
            keep_alive,
            expires_at: keep_alive.expiry(now),
            context_length,
        });
    }

    /// Records that a request used `model` at `now`: it is loaded (or stays loaded) until
    /// `now` + keep-alive. Like Ollama, a request without `keep_alive` keeps the duration the
    /// model was loaded with, and a new `num_ctx` reloads it with that context.
    pub(crate) fn touch(
        &mut self,
        model: &Arc<SimModel>,
        keep_alive: Option<KeepAlive>,
        num_ctx: Option<u64>,
        now: OffsetDateTime,
    ) {
        self.prune(now);
        if let Some(loaded) = self
            .loaded
            .iter_mut()
            .find(|loaded| Arc::ptr_eq(&loaded.entry.model, model))
        {
            if let Some(keep_alive) = keep_alive {
                loaded.keep_alive = keep_alive;
            }
            loaded.expires_at = loaded.keep_alive.expiry(now);
            if let Some(num_ctx) = num_ctx {
                loaded.context_length = num_ctx.min(loaded.entry.model.context_length);
            }
            return;
        }
        let Some(entry) = self
            .installed
            .iter()
            .find(|e| Arc::ptr_eq(&e.model, model))
            .cloned()
        else {
            return;
        };
        let keep_alive = keep_alive.unwrap_or(self.default_keep_alive);
        self.insert_loaded(entry, keep_alive, num_ctx, now);
    }

    /// Unloads `model` at once (a `keep_alive: 0` load request).
    pub(crate) fn unload(&mut self, model: &Arc<SimModel>) {
        self.loaded
            .retain(|loaded| !Arc::ptr_eq(&loaded.entry.model, model));
    }

    /// The size of a blob this instance holds: one uploaded with `POST /api/blobs`, or the
    /// layer of an installed model. `digest` is `sha256:<hex>` or `sha256-<hex>`.
    pub(crate) fn blob_size(&self, digest: &str) -> Option<u64> {
        let file = blob_file(digest);
        self.blobs.get(&file).copied().or_else(|| {
            self.installed
                .iter()
                .find(|entry| blob_file(&entry.model.layer_digest()) == file)
                .map(|entry| entry.model.size)
        })
    }

    pub(crate) fn add_blob(&mut self, digest: &str, size: u64) {
        self.blobs.insert(blob_file(digest), size);
    }

    fn prune(&mut self, now: OffsetDateTime) {
        self.loaded.retain(|loaded| loaded.expires_at > now);
    }

    /// The models loaded at `now`, longest remaining keep-alive first (as `/api/ps` lists them).
    pub(crate) fn loaded(&mut self, now: OffsetDateTime) -> Vec<(Arc<SimModel>, LoadedModel)> {
        self.prune(now);
        let mut models: Vec<_> = self
            .loaded
            .iter()
            .map(|loaded| {
                (
                    Arc::clone(&loaded.entry.model),
                    LoadedModel {
                        name: loaded.entry.model.name.clone(),
                        expires_at: loaded.expires_at,
                        context_length: loaded.context_length,
                    },
                )
            })
            .collect();
        // Ollama compares whole seconds, and its sort is stable.
        models.sort_by_key(|(_, loaded)| std::cmp::Reverse(loaded.expires_at.unix_timestamp()));
        models
    }
}

/// The file a digest names on disk: Ollama replaces `:` by `-` (and keeps the case).
fn blob_file(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        Registry::new(
            &[SimModel::llama3_2(), SimModel::moondream()],
            &SimModel::catalog(),
            KeepAlive::DEFAULT,
            4096,
        )
    }

    fn parsed(name: &str) -> ModelName {
        ModelName::parse(name).unwrap()
    }

    #[test]
    fn keep_alive_follows_go_rules() {
        assert_eq!(KeepAlive::from_secs_f64(-1.0), KeepAlive::Forever);
        assert!(KeepAlive::from_secs_f64(0.0).is_zero());
        assert_eq!(
            KeepAlive::from_secs_f64(1.5),
            KeepAlive::For(Duration::from_millis(1500))
        );
        let now = OffsetDateTime::UNIX_EPOCH;
        assert_eq!(KeepAlive::Forever.expiry(now).year(), 2262);
    }

    #[test]
    fn touched_models_load_and_expire_on_the_clock() {
        let mut registry = registry();
        let llama = registry.find(&parsed("llama3.2")).unwrap();
        let start = OffsetDateTime::now_utc();
        registry.touch(&llama, None, Some(8192), start);
        let loaded = registry.loaded(start);
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].1.context_length, 8192);
        assert_eq!(loaded[0].1.expires_at, start + time::Duration::minutes(5));
        assert!(
            registry
                .loaded(start + time::Duration::minutes(5))
                .is_empty()
        );
    }

    #[test]
    fn a_request_without_keep_alive_keeps_the_loaded_duration() {
        let mut registry = registry();
        let llama = registry.find(&parsed("llama3.2")).unwrap();
        let start = OffsetDateTime::now_utc();
        registry.touch(&llama, Some(KeepAlive::Forever), None, start);
        registry.touch(&llama, None, None, start + time::Duration::hours(1));
        let loaded = registry.loaded(start + time::Duration::days(365));
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].1.context_length, 4096);
    }

    #[test]
    fn sets_name_installed_or_catalog_models_and_unload_removed_ones() {
        let mut registry = registry();
        let now = OffsetDateTime::now_utc();
        registry
            .set_loaded(&["llama3.2".into(), "moondream".into()], now)
            .unwrap();
        registry
            .set_installed(&["moondream".into(), "gemma3:1b".into()])
            .unwrap();
        let names: Vec<String> = registry
            .installed()
            .iter()
            .map(|m| m.name.clone())
            .collect();
        assert_eq!(names, ["moondream:latest", "gemma3:1b"]);
        let loaded: Vec<String> = registry
            .loaded(now)
            .into_iter()
            .map(|(_, l)| l.name)
            .collect();
        assert_eq!(loaded, ["moondream:latest"]);
        assert_eq!(
            registry.set_installed(&["nothing-like-it".into()]),
            Err(RegistryError::Unknown("nothing-like-it".into()))
        );
        assert_eq!(
            registry.set_loaded(&["gemma3:1b".into(), "llama3.2".into()], now),
            Err(RegistryError::NotInstalled("llama3.2".into()))
        );
    }

    #[test]
    fn blobs_are_uploaded_ones_or_installed_layers() {
        let mut registry = registry();
        let layer = SimModel::llama3_2().layer_digest();
        assert_eq!(registry.blob_size(&layer), Some(SimModel::llama3_2().size));
        assert_eq!(
            registry.blob_size(&layer.replacen(':', "-", 1)),
            Some(SimModel::llama3_2().size)
        );
        let uploaded = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(registry.blob_size(&uploaded), None);
        registry.add_blob(&uploaded, 3);
        assert_eq!(registry.blob_size(&uploaded.replacen(':', "-", 1)), Some(3));
    }

    #[test]
    fn install_puts_new_models_first_and_remove_unloads() {
        let mut registry = registry();
        let now = OffsetDateTime::now_utc();
        let mut copy = SimModel::llama3_2();
        copy.name = "mine:latest".into();
        registry.install(copy);
        assert_eq!(registry.installed()[0].name, "mine:latest");
        let mine = registry.find(&parsed("mine")).unwrap();
        registry.touch(&mine, None, None, now);
        assert!(registry.remove(&parsed("mine")).is_some());
        assert!(registry.loaded(now).is_empty());
        assert!(registry.remove(&parsed("mine")).is_none());
    }
}
