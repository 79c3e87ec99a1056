//! Log output: stderr, and optionally a size-rotated file (`ENABLE_FILE_LOG`, `LOG_DIR`,
//! `MAX_LOG_FILE_SIZE` in MB, `MAX_LOG_FILES`). Lines are built only from names, ids and
//! numbers; no code path formats a credential into a log line.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;

use crate::config::{FileLog, Settings};

/// Writes to stderr and to a file that is rotated to `.1`, `.2`, ... when it grows too big.
pub struct RotatingFile {
    cfg: FileLog,
    path: PathBuf,
    file: File,
    size: u64,
}

impl RotatingFile {
    pub fn open(cfg: FileLog) -> io::Result<Self> {
        std::fs::create_dir_all(&cfg.dir)?;
        let path = cfg.dir.join("qwen-gateway.log");
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            cfg,
            path,
            file,
            size,
        })
    }

    fn rotated(&self, n: usize) -> PathBuf {
        let mut p = self.path.as_os_str().to_owned();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    fn rotate(&mut self) -> io::Result<()> {
        let keep = self.cfg.max_files.saturating_sub(1);
        if keep == 0 {
            self.file = File::create(&self.path)?;
        } else {
            let _ = std::fs::remove_file(self.rotated(keep));
            for n in (1..keep).rev() {
                let _ = std::fs::rename(self.rotated(n), self.rotated(n + 1));
            }
            std::fs::rename(&self.path, self.rotated(1))?;
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
        }
        self.size = 0;
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = io::stderr().write_all(buf);
        if self.size + buf.len() as u64 > self.cfg.max_bytes && self.size > 0 {
            self.rotate()?;
        }
        self.file.write_all(buf)?;
        self.size += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Installs the logger; `DEBUG_MODE` means `debug` level.
pub fn init(settings: &Settings) -> io::Result<()> {
    let level = if settings.debug_mode {
        "debug".to_string()
    } else {
        settings.log_level.clone()
    };
    let mut b = env_logger::Builder::new();
    b.parse_filters(&level).format_timestamp_millis();
    if let Some(cfg) = &settings.file_log {
        b.target(env_logger::Target::Pipe(Box::new(RotatingFile::open(
            cfg.clone(),
        )?)));
    }
    let _ = b.try_init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_and_keeps_at_most_max_files() {
        let dir = std::env::temp_dir().join(format!("qg-log-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut f = RotatingFile::open(FileLog {
            dir: dir.clone(),
            max_bytes: 100,
            max_files: 3,
        })
        .unwrap();
        for i in 0..20 {
            f.write_all(format!("line {i:04} {}\n", "x".repeat(30)).as_bytes())
                .unwrap();
        }
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec![
                "qwen-gateway.log",
                "qwen-gateway.log.1",
                "qwen-gateway.log.2"
            ]
        );
        for n in &names {
            assert!(std::fs::metadata(dir.join(n)).unwrap().len() <= 100);
        }
        let newest = std::fs::read_to_string(dir.join("qwen-gateway.log")).unwrap();
        assert!(newest.contains("line 0019"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
