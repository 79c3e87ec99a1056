//! Upload cache keyed by the SHA-256 of the file's bytes (protocol §7.5): the same image sent
//! again (a chat history repeats its images on every turn) is referenced by the URL of its
//! first upload instead of being uploaded again. In memory (bounded LRU) by default, or a
//! directory of `<sha>.txt` files holding the URL (`CACHE_MODE=file`) that several gateway
//! processes can share: entries are written to a temporary file and renamed into place, so a
//! reader never sees half a URL. The cache is only an optimisation: its I/O errors are
//! logged and treated as misses, never as upload failures.
//!
//! With several instances (Redis), a [`RemoteCache`] is consulted after a local miss and told
//! about every new upload, so the same file through any instance is uploaded once.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use lru::LruCache;
use sha2::{Digest, Sha256};

use super::flight::{Flight, Flights};

pub const DEFAULT_CAPACITY: usize = 1024;
pub const DEFAULT_DIR: &str = "./caches";

enum Backend {
    Memory(Mutex<LruCache<String, (String, Instant)>>),
    Dir(PathBuf),
    Off,
}

pub struct UploadCache {
    backend: Backend,
    /// Entries older than this are misses; uploaded URLs may be pre-signed and expire.
    ttl: Option<Duration>,
    remote: OnceLock<Arc<dyn RemoteCache>>,
    flights: Flights,
}

/// A cache shared with other instances, behind the local one.
#[async_trait::async_trait]
pub trait RemoteCache: Send + Sync {
    async fn get(&self, key: &str) -> Option<String>;
    /// Remembers `url` (without waiting); `ttl` is the cache's entry lifetime, if any.
    fn put(&self, key: &str, url: &str, ttl: Option<Duration>);
}

impl std::fmt::Debug for UploadCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dir = match &self.backend {
            Backend::Dir(d) => Some(d),
            _ => None,
        };
        f.debug_struct("UploadCache")
            .field("mode", &self.mode())
            .field("dir", &dir)
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// The cache key: lower-case hex SHA-256 of the content.
pub fn content_key(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn valid_key(key: &str) -> bool {
    key.len() == 64 && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn valid_url(url: &str) -> bool {
    (url.starts_with("https://") || url.starts_with("http://"))
        && !url.bytes().any(|b| b.is_ascii_control() || b == b' ')
}

impl UploadCache {
    /// An in-memory LRU holding at most `capacity` URLs (at least one).
    pub fn memory(capacity: usize) -> UploadCache {
        let cap = NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN);
        UploadCache {
            backend: Backend::Memory(Mutex::new(LruCache::new(cap))),
            ttl: None,
            remote: OnceLock::new(),
            flights: Flights::default(),
        }
    }

    /// A directory of `<sha>.txt` files, created if missing.
    pub fn dir(path: impl Into<PathBuf>) -> std::io::Result<UploadCache> {
        let path = path.into();
        std::fs::create_dir_all(&path)?;
        Ok(UploadCache {
            backend: Backend::Dir(path),
            ttl: None,
            remote: OnceLock::new(),
            flights: Flights::default(),
        })
    }

    /// A cache that remembers nothing.
    pub fn disabled() -> UploadCache {
        UploadCache {
            backend: Backend::Off,
            ttl: None,
            remote: OnceLock::new(),
            flights: Flights::default(),
        }
    }

    /// From the `CACHE_MODE` (`default`/`memory`, `file`, `off`) and `CACHE_DIR` settings.
    pub fn from_settings(mode: &str, dir: &str, capacity: usize) -> Result<UploadCache, String> {
        match mode.trim().to_ascii_lowercase().as_str() {
            "" | "default" | "memory" => Ok(UploadCache::memory(capacity)),
            "file" => {
                let dir = if dir.trim().is_empty() {
                    DEFAULT_DIR
                } else {
                    dir.trim()
                };
                UploadCache::dir(dir).map_err(|e| format!("CACHE_DIR {dir:?} is not usable: {e}"))
            }
            "off" | "none" => Ok(UploadCache::disabled()),
            other => Err(format!(
                "CACHE_MODE must be default, file or off, not {other:?}"
            )),
        }
    }

    pub fn with_ttl(mut self, ttl: Option<Duration>) -> UploadCache {
        self.ttl = ttl;
        self
    }

    /// Shares entries with other instances from now on (not with `CACHE_MODE=off`).
    pub fn attach_remote(&self, remote: Arc<dyn RemoteCache>) {
        if !matches!(self.backend, Backend::Off) {
            let _ = self.remote.set(remote);
        }
    }

    /// The URL for `key` here, else from the shared cache (then kept here too).
    pub async fn lookup(&self, key: &str) -> Option<String> {
        if let Some(url) = self.get(key) {
            return Some(url);
        }
        let remote = self.remote.get()?;
        if !valid_key(key) {
            return None;
        }
        let url = remote.get(key).await.filter(|u| valid_url(u))?;
        self.put(key, &url);
        Some(url)
    }

    /// Joins the upload of `key` in progress, if any (see `flight`); `None` when nothing is
    /// remembered, so that waiting could not help.
    pub fn flight(&self, key: &str) -> Option<Flight<'_>> {
        (!matches!(self.backend, Backend::Off)).then(|| self.flights.join(key))
    }

    /// Remembers `url` here and in the shared cache.
    pub fn remember(&self, key: &str, url: &str) {
        self.put(key, url);
        if let Some(r) = self.remote.get() {
            if valid_key(key) && valid_url(url) {
                r.put(key, url, self.ttl);
            }
        }
    }

    fn file(dir: &Path, key: &str) -> PathBuf {
        dir.join(format!("{key}.txt"))
    }

    /// The URL stored for `key` (see [`content_key`]), if any and still fresh.
    pub fn get(&self, key: &str) -> Option<String> {
        if !valid_key(key) {
            return None;
        }
        match &self.backend {
            Backend::Off => None,
            Backend::Memory(m) => {
                let mut lru = m.lock().unwrap_or_else(|e| e.into_inner());
                let (url, at) = lru.get(key)?;
                if self.ttl.is_some_and(|ttl| at.elapsed() > ttl) {
                    lru.pop(key);
                    return None;
                }
                Some(url.clone())
            }
            Backend::Dir(dir) => {
                let path = Self::file(dir, key);
                if let Some(ttl) = self.ttl {
                    let age = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| SystemTime::now().duration_since(t).ok())?;
                    if age > ttl {
                        return None;
                    }
                }
                let text = match std::fs::read_to_string(&path) {
                    Ok(t) => t,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
                    Err(e) => {
                        log::warn!("upload cache: cannot read {}: {e}", path.display());
                        return None;
                    }
                };
                let url = text.trim();
                valid_url(url).then(|| url.to_string())
            }
        }
    }

    /// Remembers `url` for `key`. Invalid keys or URLs are ignored.
    pub fn put(&self, key: &str, url: &str) {
        if !valid_key(key) || !valid_url(url) {
            return;
        }
        match &self.backend {
            Backend::Off => {}
            Backend::Memory(m) => {
                m.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .put(key.to_string(), (url.to_string(), Instant::now()));
            }
            Backend::Dir(dir) => {
                if let Err(e) = write_atomically(dir, key, url) {
                    log::warn!("upload cache: cannot write {key} in {}: {e}", dir.display());
                }
            }
        }
    }

    pub fn mode(&self) -> &'static str {
        match self.backend {
            Backend::Memory(_) => "default",
            Backend::Dir(_) => "file",
            Backend::Off => "off",
        }
    }
}

/// Temp file in the same directory, then `rename`, which replaces atomically on one
/// filesystem: concurrent writers of the same key each install a complete file.
fn write_atomically(dir: &Path, key: &str, url: &str) -> std::io::Result<()> {
    let tmp = dir.join(format!(
        ".{key}.{}.{}.tmp",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::write(&tmp, format!("{url}\n"))?;
    std::fs::rename(&tmp, UploadCache::file(dir, key)).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u8) -> String {
        content_key(&[i])
    }

    #[test]
    fn memory_is_bounded_lru() {
        let c = UploadCache::memory(2);
        c.put(&key(1), "https://a/1");
        c.put(&key(2), "https://a/2");
        assert_eq!(c.get(&key(1)).as_deref(), Some("https://a/1"));
        c.put(&key(3), "https://a/3");
        // 2 was least recently used.
        assert_eq!(c.get(&key(2)), None);
        assert!(c.get(&key(1)).is_some() && c.get(&key(3)).is_some());
        c.put("../../etc/passwd", "https://a/x");
        c.put(&key(4), "javascript:alert(1)");
        assert_eq!(c.get(&key(4)), None);
        assert_eq!(c.get("../../etc/passwd"), None);
    }

    #[test]
    fn ttl_expires() {
        let c = UploadCache::memory(4).with_ttl(Some(Duration::ZERO));
        c.put(&key(1), "https://a/1");
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(c.get(&key(1)), None);
    }

    #[test]
    fn directory_is_shared_and_atomic() {
        let dir = std::env::temp_dir().join(format!("qwen-cache-test-{}", fastrand::u64(..)));
        let a = UploadCache::from_settings("file", dir.to_str().unwrap(), 0).unwrap();
        let b = UploadCache::dir(&dir).unwrap();
        assert_eq!(a.mode(), "file");
        let k = content_key(b"image bytes");
        assert_eq!(k.len(), 64);
        assert_eq!(b.get(&k), None);
        a.put(&k, "https://cdn.example/u/1.png?key=x");
        assert_eq!(
            b.get(&k).as_deref(),
            Some("https://cdn.example/u/1.png?key=x")
        );
        assert_eq!(
            std::fs::read_to_string(dir.join(format!("{k}.txt"))).unwrap(),
            "https://cdn.example/u/1.png?key=x\n"
        );
        // Many concurrent writers of one key: the file always holds one whole URL.
        std::thread::scope(|s| {
            for i in 0..8 {
                let a = &a;
                let k = &k;
                s.spawn(move || {
                    for j in 0..20 {
                        a.put(k, &format!("https://cdn.example/{i}/{j}.png"));
                    }
                });
            }
            for _ in 0..50 {
                let got = b.get(&k).unwrap();
                assert!(got.starts_with("https://cdn.example/"), "{got}");
                assert!(got.ends_with(".png") || got.ends_with("?key=x"), "{got}");
            }
        });
        let leftovers = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".tmp")
            })
            .count();
        assert_eq!(leftovers, 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn settings() {
        assert_eq!(
            UploadCache::from_settings("", "", 10).unwrap().mode(),
            "default"
        );
        assert_eq!(
            UploadCache::from_settings("off", "", 10).unwrap().mode(),
            "off"
        );
        assert!(UploadCache::from_settings("redis", "", 10)
            .unwrap_err()
            .contains("CACHE_MODE"));
        let off = UploadCache::disabled();
        off.put(&key(1), "https://a");
        assert_eq!(off.get(&key(1)), None);
    }
}
