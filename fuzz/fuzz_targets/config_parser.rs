//! Settings files through both parsers and `Settings::load`.
//!
//! Input: any bytes, read as text (lossily). Checks: no panic; `parse_file` in both forms either
//! gives a map or an error about the config file; `Settings::load` with that map as the file, and
//! again with it as the environment, gives the same outcome, and every error it returns names the
//! setting at fault; accepted settings hold their invariants (bounds, a parsable base URL).

#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use qwen_gateway::config::{parse_file, Settings};
use qwen_gateway::qwen::client::BaseUrl;

/// Every setting `Settings::load` reads, by any of its names.
const SETTINGS: &[&str] = &[
    "SERVER_PORT",
    "PORT",
    "SERVICE_PORT",
    "LISTEN_ADDRESS",
    "API_KEY",
    "SERVER_MODE",
    "DEBUG_MODE",
    "LOG_LEVEL",
    "QWEN_BASE_URL",
    "QWEN_CHAT_PROXY_URL",
    "QWEN_TOKEN",
    "COOKIE",
    "COOKIE_FILE",
    "OUTPUT_THINK",
    "THINK_OUTPUT_FORMAT",
    "THINKING_FORMAT",
    "SEARCH_INFO_MODE",
    "SIMPLE_MODEL_MAP",
    "VISION_FALLBACK_MODEL",
    "AUTO_REFRESH_TOKEN",
    "TOKEN_REFRESH_INTERVAL_HOURS",
    "MODELS_CACHE_TTL",
    "MAX_BODY_BYTES",
    "MAX_SSE_LINE_BYTES",
    "UPSTREAM_RETRIES",
    "UPSTREAM_CONNECT_TIMEOUT_MS",
    "UPSTREAM_FIRST_BYTE_TIMEOUT_MS",
    "UPSTREAM_IDLE_TIMEOUT_MS",
    "UPSTREAM_TOTAL_TIMEOUT_MS",
    "THREADS",
];

/// Loads with the map as the file, and with it as the environment; both must agree.
fn load(mut map: HashMap<String, String>) {
    // COOKIE_FILE makes `load` read a file; a fuzzer-chosen path (/dev/zero, a FIFO) would hang
    // the run, so it is kept out. It is the only setting that touches the filesystem.
    map.remove("COOKIE_FILE");
    let none = |_: &str| None;
    let from_file = Settings::load(&map, &none);
    let empty = HashMap::new();
    let env = |k: &str| map.get(k).cloned();
    let from_env = Settings::load(&empty, &env);
    match (&from_file, &from_env) {
        (Ok(a), Ok(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}")),
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("file and environment disagree: {from_file:?} / {from_env:?}"),
    }
    match from_file {
        Err(e) => assert!(
            SETTINGS.iter().any(|s| e.0.contains(s)),
            "error names no setting: {e}"
        ),
        Ok(s) => {
            assert!(s.max_body_bytes >= 1024 && s.max_sse_line_bytes >= 1024);
            assert!(s.threads >= 1);
            assert!(!s.connect_timeout.is_zero() && !s.total_timeout.is_zero());
            assert!(BaseUrl::parse(&s.qwen_base_url).is_ok());
            assert!(!s.qwen_base_url.ends_with('/'));
            assert!(s.api_keys.iter().all(|k| !k.is_empty() && k.trim() == k));
            assert!(s.cookies.iter().all(|c| !c.is_empty() && !c.contains('\n')));
            assert_eq!(s.admin_key(), s.api_keys.first().map(String::as_str));
            assert!(["error", "warn", "info", "debug", "trace"].contains(&s.log_level.as_str()));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match parse_file(&text, false) {
        Ok(map) => {
            for k in map.keys() {
                assert_eq!(k.trim(), k, "keys are trimmed");
                assert!(!k.contains('\n'));
            }
            load(map);
        }
        Err(e) => assert!(e.0.starts_with("config file line "), "{e}"),
    }
    match parse_file(&text, true) {
        Ok(map) => load(map),
        Err(e) => assert!(e.0.starts_with("config file "), "{e}"),
    }
});
