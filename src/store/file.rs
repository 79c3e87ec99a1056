//! `DATA_SAVE_MODE=file`: the document in one JSON file, replaced atomically (a sibling
//! temporary file written with mode 0600 and synced, then renamed over the old one), so a
//! crash leaves either the old or the new file, never half of one.
//!
//! Two processes can hold the same file for a while (the old and the new one of a graceful
//! reload): each notices when the file is no longer the one it last read or wrote, and takes
//! in the other's changes before its next write (`State::persist`), instead of overwriting them.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use super::{Backend, Document, StoreError};

pub struct FileBackend {
    path: PathBuf,
    /// The file as this process last read or wrote it.
    seen: Mutex<Option<Stamp>>,
}

/// Tells one version of the file from another: every write renames a new file into place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    modified: Option<SystemTime>,
    len: u64,
}

impl Stamp {
    fn of(m: &fs::Metadata) -> Stamp {
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(m);
        #[cfg(not(unix))]
        let inode = 0;
        Stamp {
            inode,
            modified: m.modified().ok(),
            len: m.len(),
        }
    }
}

impl FileBackend {
    pub fn new(path: PathBuf) -> Self {
        FileBackend {
            path,
            seen: Mutex::new(None),
        }
    }

    /// The file's name with `suffix` appended, beside it.
    fn sibling(&self, suffix: &str) -> PathBuf {
        let mut p = self.path.as_os_str().to_owned();
        p.push(suffix);
        PathBuf::from(p)
    }

    /// Per process, so that two processes saving at once never write into one temporary file.
    fn tmp_path(&self) -> PathBuf {
        self.sibling(&format!(".tmp.{}", std::process::id()))
    }

    fn set_seen(&self, m: &fs::Metadata) {
        *self.seen.lock().expect("seen lock") = Some(Stamp::of(m));
    }
}

#[cfg(unix)]
fn restrict(opts: &mut OpenOptions) {
    use std::os::unix::fs::OpenOptionsExt;
    opts.mode(0o600);
}

#[cfg(not(unix))]
fn restrict(_: &mut OpenOptions) {}

#[cfg(unix)]
fn tighten(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        log::warn!(
            "{} was readable by others (mode {mode:o}); set to 0600",
            path.display()
        );
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn tighten(_: &Path) -> std::io::Result<()> {
    Ok(())
}

fn create_dir(dir: &Path) -> std::io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

#[async_trait::async_trait]
impl Backend for FileBackend {
    fn name(&self) -> &'static str {
        "file"
    }

    fn location(&self) -> String {
        format!("DATA_FILE {}", self.path.display())
    }

    async fn load(&self) -> Result<Option<Document>, StoreError> {
        self.read()
    }

    async fn save(&self, _: &Document, doc: &Document) -> Result<(), StoreError> {
        self.write(doc)
    }

    async fn changed_elsewhere(&self) -> Result<Option<Document>, StoreError> {
        let m = match fs::metadata(&self.path) {
            Ok(m) => m,
            // Removed by hand: nothing to take in, and the next save writes it again.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.unreadable(e)),
        };
        if Some(Stamp::of(&m)) == *self.seen.lock().expect("seen lock") {
            return Ok(None);
        }
        self.read()
    }

    fn hold(&self) -> Result<Option<Box<dyn Send>>, StoreError> {
        let err = |e: std::io::Error| {
            StoreError(format!(
                "DATA_FILE {}: cannot lock it for saving: {e}",
                self.path.display()
            ))
        };
        if let Some(dir) = self.path.parent() {
            create_dir(dir).map_err(err)?;
        }
        let mut opts = OpenOptions::new();
        opts.write(true).create(true).truncate(false);
        restrict(&mut opts);
        let f = opts.open(self.sibling(".lock")).map_err(err)?;
        // Held for one read and one write of a small file by the other process at most.
        f.lock().map_err(err)?;
        Ok(Some(Box::new(f)))
    }
}

impl FileBackend {
    fn unreadable(&self, e: std::io::Error) -> StoreError {
        StoreError(format!(
            "DATA_FILE {} cannot be read: {e}",
            self.path.display()
        ))
    }

    fn read(&self) -> Result<Option<Document>, StoreError> {
        use std::io::Read;
        let mut f = match fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.unreadable(e)),
        };
        let mut text = String::new();
        f.read_to_string(&mut text)
            .map_err(|e| self.unreadable(e))?;
        // The version read, whatever replaces the name meanwhile.
        if let Ok(m) = f.metadata() {
            self.set_seen(&m);
        }
        tighten(&self.path).map_err(|e| {
            StoreError(format!(
                "DATA_FILE {} permissions cannot be set: {e}",
                self.path.display()
            ))
        })?;
        serde_json::from_str(&text).map(Some).map_err(|e| {
            StoreError(format!(
                "DATA_FILE {} is not a valid data file: {e}",
                self.path.display()
            ))
        })
    }

    fn write(&self, doc: &Document) -> Result<(), StoreError> {
        let err = |what: &str, e: std::io::Error| {
            StoreError(format!("DATA_FILE {}: {what}: {e}", self.path.display()))
        };
        let json = serde_json::to_vec_pretty(doc).expect("the document serialises");
        if let Some(dir) = self.path.parent() {
            create_dir(dir).map_err(|e| err("cannot create its directory", e))?;
        }
        let tmp = self.tmp_path();
        // A leftover from a crash may have other permissions: start from nothing.
        let _ = fs::remove_file(&tmp);
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        restrict(&mut opts);
        let mut f = opts
            .open(&tmp)
            .map_err(|e| err("cannot create the temporary file", e))?;
        f.write_all(&json)
            .and_then(|()| f.write_all(b"\n"))
            .and_then(|()| f.sync_all())
            .map_err(|e| err("cannot write the temporary file", e))?;
        // A rename keeps the inode and the modification time: this is the file's new stamp.
        let written = f.metadata();
        drop(f);
        fs::rename(&tmp, &self.path).map_err(|e| err("cannot replace the file", e))?;
        if let Ok(m) = written {
            self.set_seen(&m);
        }
        // The rename itself is durable once the directory is synced.
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_atomically_with_0600_and_loads_back() {
        let dir = std::env::temp_dir().join(format!("qg-store-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let path = dir.join("sub").join("data.json");
        let b = FileBackend::new(path.clone());
        assert!(b.read().unwrap().is_none());
        let mut doc = Document::default();
        doc.settings
            .insert("upstream_retries".into(), serde_json::json!(3));
        b.write(&doc).unwrap();
        b.write(&doc).unwrap();
        assert!(!b.tmp_path().exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let back = b.read().unwrap().unwrap();
        assert_eq!(back.settings["upstream_retries"], 3);
        fs::write(&path, "{ not json").unwrap();
        assert!(b.read().unwrap_err().0.contains("DATA_FILE"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
