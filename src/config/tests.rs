//! Settings loading and validation.

use super::*;

fn load(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let env: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Settings::load(&HashMap::new(), &move |k| env.get(k).cloned())
}

#[test]
fn defaults() {
    let s = load(&[]).unwrap();
    assert_eq!(s.listen, "0.0.0.0:8000");
    assert_eq!(s.qwen_base_url, "https://chat.qwen.ai");
    assert!(s.server_mode);
    assert_eq!(s.reasoning_output, ReasoningOutput::Field);
    assert_eq!(s.video_poll_interval, Duration::from_secs(5));
    assert_eq!(s.video_timeout, Duration::from_secs(600));
}

#[test]
fn seed_names_and_aliases() {
    let s = load(&[
        ("PORT", "9000"),
        ("LISTEN_ADDRESS", "localhost"),
        ("QWEN_CHAT_PROXY_URL", "http://127.0.0.1:1234/"),
        ("API_KEY", "sk-admin, sk-user"),
        ("OUTPUT_THINK", "false"),
    ])
    .unwrap();
    assert_eq!(s.listen, "127.0.0.1:9000");
    assert_eq!(s.qwen_base_url, "http://127.0.0.1:1234");
    assert_eq!(s.api_keys, vec!["sk-admin", "sk-user"]);
    assert_eq!(s.admin_key(), Some("sk-admin"));
    assert_eq!(s.reasoning_output, ReasoningOutput::Hidden);
}

#[test]
fn invalid_values_name_the_setting() {
    for (k, v) in [
        ("SERVER_PORT", "abc"),
        ("SERVER_MODE", "maybe"),
        ("SEARCH_INFO_MODE", "html"),
        ("QWEN_BASE_URL", "ftp://x"),
        ("UPSTREAM_IDLE_TIMEOUT_MS", "0"),
        ("ACCOUNTS", "nopassword"),
        ("POOL_STRATEGY", "random"),
        ("CHAT_CLEANUP", "sometimes"),
        ("VIDEO_POLL_INTERVAL_MS", "0"),
        ("VIDEO_TIMEOUT_SECS", "0"),
        ("DATA_SAVE_MODE", "redis"),
        ("DATA_SAVE_MODE", "disk"),
        ("REDIS_URL", "http://not-redis"),
        ("KEY_RPM_LIMIT", "-1"),
        ("KEY_MAX_CONCURRENT", "many"),
        // Durations past any use would overflow clock arithmetic at request time.
        ("SSE_KEEPALIVE_SECS", "18446744073709551615"),
        ("UPSTREAM_TOTAL_TIMEOUT_MS", "18446744073709551615"),
        ("TOKEN_REFRESH_INTERVAL_HOURS", "5124095576030432"),
        ("VIDEO_TIMEOUT_SECS", "315360001"),
    ] {
        let e = load(&[(k, v)]).unwrap_err();
        assert!(e.0.contains(k), "{e}");
    }
}

#[test]
fn data_save_modes() {
    assert_eq!(load(&[]).unwrap().data_save, DataSave::None);
    assert_eq!(
        load(&[("DATA_SAVE_MODE", "file"), ("DATA_DIR", "/var/lib/qg")])
            .unwrap()
            .data_save,
        DataSave::File("/var/lib/qg/qwen-gateway-data.json".into())
    );
    assert_eq!(
        load(&[("DATA_SAVE_MODE", "file"), ("DATA_FILE", "/x/d.json")])
            .unwrap()
            .data_save,
        DataSave::File("/x/d.json".into())
    );
    let s = load(&[
        ("DATA_SAVE_MODE", "redis"),
        ("REDIS_URL", "redis://127.0.0.1:6379"),
    ])
    .unwrap();
    assert_eq!(s.data_save, DataSave::Redis);
    assert_eq!(s.redis.unwrap().prefix, "qwen-gateway:");
    for bad in [
        vec![("DATA_SAVE_MODE", "redis")],
        vec![
            ("DATA_SAVE_MODE", "file"),
            ("REDIS_URL", "redis://127.0.0.1:6379"),
        ],
    ] {
        let e = load(&bad).unwrap_err();
        assert!(
            e.0.contains("DATA_SAVE_MODE") && e.0.contains("REDIS_URL"),
            "{e}"
        );
    }
}

#[test]
fn cookie_forms() {
    assert_eq!(split_cookies("a=1 |||b=2|||  "), vec!["a=1", "b=2"]);
    assert_eq!(
        split_cookies("# comment\na=1\n\n b=2 \r\n"),
        vec!["a=1", "b=2"]
    );
}

#[test]
fn file_forms() {
    let m = parse_file("# c\nexport A=\"x y\"\nB='z'\nC=1", false).unwrap();
    assert_eq!(m["A"], "x y");
    assert_eq!(m["B"], "z");
    let m = parse_file(r#"{"SERVER_PORT":8001,"SERVER_MODE":true,"X":null}"#, true).unwrap();
    assert_eq!(m["SERVER_PORT"], "8001");
    assert_eq!(m["SERVER_MODE"], "true");
    assert!(parse_file("NOEQUALS", false).is_err());
}
