//! `DATA_SAVE_MODE`: where keys, identities, settings and usage changed through the admin API
//! are kept, and how that combines with shared state (`REDIS_URL`).

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSave {
    /// In memory only: admin changes last until the process stops. With `REDIS_URL`, keys and
    /// usage are shared in Redis all the same (sharing them is what makes them outlast one
    /// instance).
    None,
    /// One JSON file, replaced atomically (temp file + rename), mode 0600.
    File(PathBuf),
    /// In Redis (needs `REDIS_URL`): keys, identities, settings, shared by every instance.
    Redis,
}

impl DataSave {
    /// From `DATA_SAVE_MODE` (with `DATA_FILE` / `DATA_DIR`); `redis` says whether `REDIS_URL`
    /// is set.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>, redis: bool) -> Result<Self, String> {
        let mode = match get("DATA_SAVE_MODE").as_deref().map(str::trim) {
            None | Some("none") => DataSave::None,
            Some("file") => DataSave::File(match get("DATA_FILE") {
                Some(f) => f.trim().into(),
                None => Path::new(get("DATA_DIR").as_deref().map_or("./data", str::trim))
                    .join("qwen-gateway-data.json"),
            }),
            Some("redis") => DataSave::Redis,
            Some(other) => {
                return Err(format!(
                    "DATA_SAVE_MODE must be none, file or redis, got {other:?}"
                ))
            }
        };
        match (&mode, redis) {
            (DataSave::Redis, false) => Err(
                "DATA_SAVE_MODE=redis needs REDIS_URL (redis://[user:password@]host:port[/db])"
                    .into(),
            ),
            // Keys and usage live in Redis then; a file per instance would be a second copy
            // of them that drifts from the shared one.
            (DataSave::File(_), true) => Err(
                "DATA_SAVE_MODE=file cannot be combined with REDIS_URL (shared state): use DATA_SAVE_MODE=redis or none"
                    .into(),
            ),
            _ => Ok(mode),
        }
    }
}
