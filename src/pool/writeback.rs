//! Writes a refreshed token back to the settings file it came from, after copying the previous
//! file to `<file>.bak`, and replacing the file atomically (write a sibling, then rename).

use std::io;
use std::path::{Path, PathBuf};

/// The file's text with `QWEN_TOKEN` set to `token`, keeping every other line as it was.
pub fn with_token(text: &str, token: &str, json: bool) -> io::Result<String> {
    if json {
        let mut v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let obj = v
            .as_object_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not a JSON object"))?;
        obj.insert("QWEN_TOKEN".into(), serde_json::Value::String(token.into()));
        return Ok(serde_json::to_string_pretty(&v)? + "\n");
    }
    let mut out = String::with_capacity(text.len() + token.len());
    let mut replaced = false;
    for line in text.lines() {
        let bare = line
            .trim_start()
            .strip_prefix("export ")
            .unwrap_or(line.trim_start());
        if !replaced
            && bare
                .split_once('=')
                .is_some_and(|(k, _)| k.trim() == "QWEN_TOKEN")
        {
            out.push_str("QWEN_TOKEN=");
            out.push_str(token);
            replaced = true;
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    if !replaced {
        out.push_str("QWEN_TOKEN=");
        out.push_str(token);
        out.push('\n');
    }
    Ok(out)
}

pub fn backup_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".bak");
    PathBuf::from(p)
}

pub fn write_token(path: &Path, token: &str) -> io::Result<()> {
    let text = std::fs::read_to_string(path)?;
    let json = path.extension().is_some_and(|e| e == "json");
    let new = with_token(&text, token, json)?;
    std::fs::copy(path, backup_path(path))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, new)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_form_keeps_other_lines() {
        let t = "# c\nAPI_KEY=k\nexport QWEN_TOKEN=old\nX=1\n";
        assert_eq!(
            with_token(t, "new", false).unwrap(),
            "# c\nAPI_KEY=k\nQWEN_TOKEN=new\nX=1\n"
        );
        assert_eq!(
            with_token("A=1", "t", false).unwrap(),
            "A=1\nQWEN_TOKEN=t\n"
        );
    }

    #[test]
    fn json_form() {
        let out = with_token(r#"{"QWEN_TOKEN":"old","SERVER_PORT":8000}"#, "new", true).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["QWEN_TOKEN"], "new");
        assert_eq!(v["SERVER_PORT"], 8000);
    }

    #[test]
    fn writes_with_a_backup() {
        let dir = std::env::temp_dir().join(format!("qg-wb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("gateway.env");
        std::fs::write(&f, "QWEN_TOKEN=old\n").unwrap();
        write_token(&f, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "QWEN_TOKEN=new\n");
        assert_eq!(
            std::fs::read_to_string(backup_path(&f)).unwrap(),
            "QWEN_TOKEN=old\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
