//! Settings: an optional file (`KEY=VALUE` lines, or the seed's `config.json`) overridden by the
//! environment, keeping the seeds' variable names. Everything is validated once at start so a
//! typo fails loudly with the name of the setting instead of surfacing as odd behaviour later.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

/// Where reasoning text goes in OpenAI responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasoningOutput {
    /// `reasoning_content` beside `content` (what current OpenAI-compatible clients read).
    Field,
    /// Inside `content`, wrapped in `<think>` tags, for clients that only show `content`.
    Tags,
    /// Dropped.
    Hidden,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchInfoMode {
    Table,
    Text,
}

/// The upstream's two thinking stream formats; we ask for one, and parse both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThinkingFormat {
    Detail,
    Summary,
}

impl ThinkingFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ThinkingFormat::Detail => "detail",
            ThinkingFormat::Summary => "summary",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolStrategy {
    RoundRobin,
    LeastInFlight,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatCleanup {
    /// Delete each chat the gateway created as soon as its request ends.
    AfterUse,
    /// Periodically delete the account's chats beyond the first page (the seed's behaviour).
    Sweep,
    Off,
}

/// When a streamed answer's 200 and event-stream header go to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamCommit {
    /// With the first converted output: a failure before it gets a truthful status.
    FirstOutput,
    /// As soon as an upstream accepts the completion, with a comment line as the first
    /// bytes; fail-over before the first output still happens unseen, but when every
    /// attempt fails the client learns it from an error event instead of a status.
    Accepted,
}

/// Thresholds and cooldowns of the per-identity circuit breaker.
#[derive(Debug, Clone, Copy)]
pub struct BreakerSettings {
    /// Consecutive failures after which an identity is `degraded` (still used).
    pub degraded_after: u32,
    /// Consecutive failures after which it is `down` (skipped until the cooldown ends).
    pub open_after: u32,
    pub open_cooldown: Duration,
    /// How long a rate-limited identity rests when the upstream gives no `Retry-After`.
    pub rate_limit_cooldown: Duration,
}

pub use crate::store::mode::DataSave;

#[derive(Clone)]
pub struct Settings {
    pub listen: String,
    pub api_keys: Vec<String>,
    pub server_mode: bool,
    pub debug_mode: bool,
    pub log_level: String,
    pub qwen_base_url: String,
    /// The Qwen Code upstream behind `/cli/v1/...` (resolved on first use).
    pub cli_base_url: String,
    pub qwen_token: Option<String>,
    pub cookies: Vec<String>,
    /// `(email, password)` accounts signed in with the SHA-256 password form.
    pub accounts: Vec<(String, String)>,
    /// The settings file whose `QWEN_TOKEN` the gateway writes refreshed tokens back to.
    pub token_file: Option<std::path::PathBuf>,
    pub pool_strategy: PoolStrategy,
    /// 0 = no cap.
    pub max_in_flight_per_identity: usize,
    pub breaker: BreakerSettings,
    pub token_refresh_ahead: Duration,
    pub chat_cleanup: ChatCleanup,
    pub chat_sweep_interval: Duration,
    pub reasoning_output: ReasoningOutput,
    pub thinking_format: ThinkingFormat,
    pub search_info_mode: SearchInfoMode,
    pub simple_model_map: bool,
    pub vision_fallback_model: String,
    pub auto_refresh_token: bool,
    pub token_refresh_interval_hours: u64,
    pub models_cache_ttl: Duration,
    pub max_body_bytes: usize,
    pub max_sse_line_bytes: usize,
    pub upstream_retries: usize,
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub idle_timeout: Duration,
    pub total_timeout: Duration,
    pub threads: usize,
    /// After SIGTERM, how long open streams may run before shutdown (Pingora sleeps all of it).
    pub grace_period_secs: u64,
    pub graceful_shutdown_timeout_secs: u64,
    /// Image and video input: upload, fetch guard and size limits.
    pub media: crate::media::settings::MediaSettings,
    /// The upload cache (`CACHE_MODE`), shared by every clone of the settings.
    pub media_cache: std::sync::Arc<crate::media::cache::UploadCache>,
    /// Longest wait between reads of a client's request body.
    pub client_body_timeout: Duration,
    pub stream_commit: StreamCommit,
    /// After this long without output on a stream whose 200 is out, a `: keep-alive` comment
    /// goes to the client (proxies and serverless hosts cut idle responses); `None` = never.
    pub sse_keepalive: Option<Duration>,
    /// How long a kept-alive client connection may idle, and the longest wait between reads of
    /// every later request's header on it.
    pub client_keepalive_secs: u64,
    /// Video generation: how often the upstream task is polled, and how long it may take.
    pub video_poll_interval: Duration,
    pub video_timeout: Duration,
    /// Where Prometheus metrics are served; `None` when `METRICS_LISTEN=off`.
    pub metrics_listen: Option<String>,
    pub file_log: Option<FileLog>,
    /// `DATA_SAVE_MODE` (with `DATA_FILE` / `DATA_DIR`).
    pub data_save: DataSave,
    /// `REDIS_URL` and friends: state shared with other instances; `None` = this process only.
    pub redis: Option<crate::shared::settings::RedisSettings>,
    /// Default per-key limits for user keys without their own (0 = none).
    pub key_rpm_limit: u32,
    pub key_max_concurrent: u32,
}

#[derive(Debug, Clone)]
pub struct FileLog {
    pub dir: std::path::PathBuf,
    pub max_bytes: u64,
    pub max_files: usize,
}

impl fmt::Debug for Settings {
    // Hand-written so that secrets can never reach a log through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("api_keys", &format_args!("[{} keys]", self.api_keys.len()))
            .field("server_mode", &self.server_mode)
            .field("qwen_base_url", &self.qwen_base_url)
            .field("qwen_token", &self.qwen_token.as_ref().map(|_| "<set>"))
            .field("cookies", &format_args!("[{} cookies]", self.cookies.len()))
            .field(
                "accounts",
                &format_args!("[{} accounts]", self.accounts.len()),
            )
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Parses a settings file: `config.json` (an object of settings) or `KEY=VALUE` lines with `#`
/// comments and optional quotes.
pub fn parse_file(text: &str, json: bool) -> Result<HashMap<String, String>, ConfigError> {
    let mut map = HashMap::new();
    if json {
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| ConfigError(format!("config file is not valid JSON: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| ConfigError("config file must hold a JSON object".into()))?;
        for (k, v) in obj {
            let s = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => continue,
                other => other.to_string(),
            };
            map.insert(k.clone(), s);
        }
        return Ok(map);
    }
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (k, v) = line.split_once('=').ok_or_else(|| {
            ConfigError(format!("config file line {}: expected KEY=VALUE", n + 1))
        })?;
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|x| x.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
            .unwrap_or(v);
        map.insert(k.trim().to_string(), v.to_string());
    }
    Ok(map)
}

/// Looks a setting up: the environment first, then the file.
struct Source<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    file: &'a HashMap<String, String>,
}

impl Source<'_> {
    fn get(&self, key: &str) -> Option<String> {
        (self.env)(key)
            .or_else(|| self.file.get(key).cloned())
            .filter(|v| !v.trim().is_empty())
    }

    fn first(&self, keys: &[&str]) -> Option<String> {
        keys.iter().find_map(|k| self.get(k))
    }

    fn bool(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(ConfigError(format!(
                    "{key} must be true or false, got {v:?}"
                ))),
            },
        }
    }

    fn num<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| ConfigError(format!("{key} must be a whole number, got {v:?}"))),
        }
    }

    /// A whole number of `unit`s that, as a duration, stays within [`MAX_DURATION_SECS`].
    fn bounded(&self, key: &str, default: u64, unit_secs: f64) -> Result<u64, ConfigError> {
        let n: u64 = self.num(key, default)?;
        if n as f64 * unit_secs > MAX_DURATION_SECS as f64 {
            return Err(ConfigError(format!(
                "{key} names more than 10 years ({n}); use a smaller value"
            )));
        }
        Ok(n)
    }

    fn secs(&self, key: &str, default: u64) -> Result<u64, ConfigError> {
        self.bounded(key, default, 1.0)
    }

    fn millis_or_zero(&self, key: &str, default_ms: u64) -> Result<Duration, ConfigError> {
        Ok(Duration::from_millis(self.bounded(key, default_ms, 0.001)?))
    }

    fn millis(&self, key: &str, default_ms: u64) -> Result<Duration, ConfigError> {
        let ms = self.bounded(key, default_ms, 0.001)?;
        if ms == 0 {
            return Err(ConfigError(format!("{key} must be greater than 0")));
        }
        Ok(Duration::from_millis(ms))
    }
}

/// The longest duration any setting may name: far beyond any use, and small enough that adding
/// it to a clock reading cannot overflow (which panics, request by request).
const MAX_DURATION_SECS: u64 = 10 * 365 * 24 * 3600;

/// Splits the seed's cookie forms: `|||`-separated, or one per line with `#` comments. Stray
/// whitespace and line breaks inside a cookie are removed, as browsers' copy-paste adds them.
pub fn split_cookies(raw: &str) -> Vec<String> {
    raw.split("|||")
        .flat_map(|part| part.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.chars().filter(|c| *c != '\r' && *c != '\n').collect())
        .collect()
}

impl Settings {
    /// Builds settings from a file map and an environment lookup.
    pub fn load(
        file: &HashMap<String, String>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let s = Source { env, file };
        let port: u16 = match s.first(&["SERVER_PORT", "PORT", "SERVICE_PORT"]) {
            None => 8000,
            Some(p) => p.trim().parse().ok().filter(|p| *p > 0).ok_or_else(|| {
                ConfigError(format!("SERVER_PORT must be a port number, got {p:?}"))
            })?,
        };
        let host = s.get("LISTEN_ADDRESS").unwrap_or_else(|| "0.0.0.0".into());
        let host = if host == "localhost" {
            "127.0.0.1".into()
        } else {
            host
        };
        let listen = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };

        let api_keys: Vec<String> = s
            .get("API_KEY")
            .map(|v| {
                v.split(',')
                    .map(|k| k.trim().to_string())
                    .filter(|k| !k.is_empty())
                    .collect()
            })
            .unwrap_or_default();

        let base = s
            .first(&["QWEN_BASE_URL", "QWEN_CHAT_PROXY_URL"])
            .unwrap_or_else(|| "https://chat.qwen.ai".into());
        let base = base.trim().trim_end_matches('/').to_string();
        crate::qwen::client::BaseUrl::parse(&base)
            .map_err(|e| ConfigError(format!("QWEN_BASE_URL is invalid: {e}")))?;

        let mut cookies = s
            .get("COOKIE")
            .map(|c| split_cookies(&c))
            .unwrap_or_default();
        if let Some(path) = s.get("COOKIE_FILE") {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| ConfigError(format!("COOKIE_FILE {path:?} cannot be read: {e}")))?;
            cookies.extend(split_cookies(&text));
        } else if s.get("COOKIE").is_none() && std::path::Path::new("cookie.txt").is_file() {
            // The seed reads cookie.txt from its working directory when nothing else is given.
            let text = std::fs::read_to_string("cookie.txt")
                .map_err(|e| ConfigError(format!("cookie.txt cannot be read: {e}")))?;
            cookies.extend(split_cookies(&text));
        }
        let accounts = match s.get("ACCOUNTS") {
            None => Vec::new(),
            Some(v) => v
                .split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(|a| match a.split_once(':') {
                    Some((e, p)) if !e.trim().is_empty() && !p.is_empty() => {
                        Ok((e.trim().to_string(), p.to_string()))
                    }
                    _ => Err(ConfigError(
                        "ACCOUNTS must be email:password[,email:password...]".into(),
                    )),
                })
                .collect::<Result<_, _>>()?,
        };
        let pool_strategy = match s.get("POOL_STRATEGY").as_deref().map(str::trim) {
            None | Some("round_robin") => PoolStrategy::RoundRobin,
            Some("least_in_flight") => PoolStrategy::LeastInFlight,
            Some(other) => {
                return Err(ConfigError(format!(
                    "POOL_STRATEGY must be round_robin or least_in_flight, got {other:?}"
                )))
            }
        };
        let chat_cleanup = match s.get("CHAT_CLEANUP").as_deref().map(str::trim) {
            None | Some("after_use") => ChatCleanup::AfterUse,
            Some("sweep") => ChatCleanup::Sweep,
            Some("off") => ChatCleanup::Off,
            Some(other) => {
                return Err(ConfigError(format!(
                    "CHAT_CLEANUP must be after_use, sweep or off, got {other:?}"
                )))
            }
        };
        let stream_commit = match s.get("STREAM_COMMIT").as_deref().map(str::trim) {
            None | Some("first_output") => StreamCommit::FirstOutput,
            Some("accepted") => StreamCommit::Accepted,
            Some(other) => {
                return Err(ConfigError(format!(
                    "STREAM_COMMIT must be first_output or accepted, got {other:?}"
                )))
            }
        };
        let (media, media_cache) = crate::media::settings::MediaSettings::from_lookup(|k| s.get(k))
            .map_err(ConfigError)?;
        let breaker = BreakerSettings {
            degraded_after: s.num("BREAKER_DEGRADED_AFTER", 2)?,
            open_after: s.num("BREAKER_OPEN_AFTER", 5)?,
            open_cooldown: s.millis_or_zero("BREAKER_COOLDOWN_MS", 120_000)?,
            rate_limit_cooldown: s.millis_or_zero("RATE_LIMIT_COOLDOWN_MS", 60_000)?,
        };
        if breaker.open_after == 0 || breaker.degraded_after > breaker.open_after {
            return Err(ConfigError(
                "BREAKER_OPEN_AFTER must be at least 1 and not below BREAKER_DEGRADED_AFTER".into(),
            ));
        }

        let output_think = s.bool("OUTPUT_THINK", true)?;
        let reasoning_output = if !output_think {
            ReasoningOutput::Hidden
        } else {
            match s.get("THINK_OUTPUT_FORMAT").as_deref().map(str::trim) {
                None | Some("reasoning_content") => ReasoningOutput::Field,
                Some("think_tags") => ReasoningOutput::Tags,
                Some(other) => {
                    return Err(ConfigError(format!(
                        "THINK_OUTPUT_FORMAT must be reasoning_content or think_tags, got {other:?}"
                    )))
                }
            }
        };
        let search_info_mode = match s.get("SEARCH_INFO_MODE").as_deref().map(str::trim) {
            None | Some("table") => SearchInfoMode::Table,
            Some("text") => SearchInfoMode::Text,
            Some(other) => {
                return Err(ConfigError(format!(
                    "SEARCH_INFO_MODE must be table or text, got {other:?}"
                )))
            }
        };
        let thinking_format = match s.get("THINKING_FORMAT").as_deref().map(str::trim) {
            None | Some("detail") => ThinkingFormat::Detail,
            Some("summary") => ThinkingFormat::Summary,
            Some(other) => {
                return Err(ConfigError(format!(
                    "THINKING_FORMAT must be detail or summary, got {other:?}"
                )))
            }
        };
        let log_level = s
            .get("LOG_LEVEL")
            .unwrap_or_else(|| "info".into())
            .to_ascii_lowercase();
        if !["error", "warn", "info", "debug", "trace"].contains(&log_level.as_str()) {
            return Err(ConfigError(format!(
                "LOG_LEVEL must be one of error, warn, info, debug, trace; got {log_level:?}"
            )));
        }
        let threads: usize = s.num(
            "THREADS",
            std::thread::available_parallelism().map_or(1, |n| n.get()),
        )?;
        if threads == 0 {
            return Err(ConfigError("THREADS must be at least 1".into()));
        }
        let max_body_bytes: usize = s.num("MAX_BODY_BYTES", 32 * 1024 * 1024)?;
        let max_sse_line_bytes: usize = s.num("MAX_SSE_LINE_BYTES", 4 * 1024 * 1024)?;
        if max_body_bytes < 1024 || max_sse_line_bytes < 1024 {
            return Err(ConfigError(
                "MAX_BODY_BYTES and MAX_SSE_LINE_BYTES must be at least 1024".into(),
            ));
        }

        let video_timeout_secs: u64 = s.secs("VIDEO_TIMEOUT_SECS", 600)?;
        if video_timeout_secs == 0 {
            return Err(ConfigError(
                "VIDEO_TIMEOUT_SECS must be greater than 0".into(),
            ));
        }

        let redis = crate::shared::settings::RedisSettings::from_lookup(|k| s.get(k))
            .map_err(ConfigError)?;
        let data_save =
            DataSave::from_lookup(|k| s.get(k), redis.is_some()).map_err(ConfigError)?;

        Ok(Settings {
            listen,
            api_keys,
            server_mode: s.bool("SERVER_MODE", true)?,
            debug_mode: s.bool("DEBUG_MODE", false)?,
            log_level,
            qwen_base_url: base,
            cli_base_url: s
                .first(&["QWEN_CLI_BASE_URL", "QWEN_CLI_PROXY_URL"])
                .unwrap_or_else(|| "https://portal.qwen.ai".into())
                .trim()
                .trim_end_matches('/')
                .to_string(),
            qwen_token: s.get("QWEN_TOKEN").map(|t| t.trim().to_string()),
            cookies,
            accounts,
            token_file: None,
            pool_strategy,
            max_in_flight_per_identity: s.num("MAX_IN_FLIGHT_PER_IDENTITY", 0)?,
            breaker,
            token_refresh_ahead: Duration::from_secs(
                s.secs("TOKEN_REFRESH_AHEAD_SECS", 24 * 3600)?,
            ),
            chat_cleanup,
            chat_sweep_interval: s.millis("CHAT_SWEEP_INTERVAL_MS", 3_600_000)?,
            reasoning_output,
            thinking_format,
            search_info_mode,
            simple_model_map: s.bool("SIMPLE_MODEL_MAP", false)?,
            vision_fallback_model: s
                .get("VISION_FALLBACK_MODEL")
                .unwrap_or_else(|| "qwen3-vl-plus".into()),
            auto_refresh_token: s.bool("AUTO_REFRESH_TOKEN", true)?,
            token_refresh_interval_hours: s.bounded("TOKEN_REFRESH_INTERVAL_HOURS", 24, 3600.0)?,
            models_cache_ttl: Duration::from_secs(s.secs("MODELS_CACHE_TTL", 3600)?),
            max_body_bytes,
            max_sse_line_bytes,
            upstream_retries: s.num("UPSTREAM_RETRIES", 2)?,
            connect_timeout: s.millis("UPSTREAM_CONNECT_TIMEOUT_MS", 10_000)?,
            first_byte_timeout: s.millis("UPSTREAM_FIRST_BYTE_TIMEOUT_MS", 60_000)?,
            idle_timeout: s.millis("UPSTREAM_IDLE_TIMEOUT_MS", 120_000)?,
            total_timeout: s.millis("UPSTREAM_TOTAL_TIMEOUT_MS", 600_000)?,
            threads,
            client_body_timeout: s.millis("CLIENT_BODY_TIMEOUT_MS", 60_000)?,
            stream_commit,
            sse_keepalive: match s.secs("SSE_KEEPALIVE_SECS", 15)? {
                0 => None,
                n => Some(Duration::from_secs(n)),
            },
            client_keepalive_secs: match s.secs("CLIENT_KEEPALIVE_SECS", 60)? {
                0 => {
                    return Err(ConfigError(
                        "CLIENT_KEEPALIVE_SECS must be greater than 0".into(),
                    ))
                }
                n => n,
            },
            video_poll_interval: s.millis("VIDEO_POLL_INTERVAL_MS", 5_000)?,
            video_timeout: Duration::from_secs(video_timeout_secs),
            media,
            media_cache: std::sync::Arc::new(media_cache),
            metrics_listen: match s.get("METRICS_LISTEN") {
                Some(v) if v.trim() == "off" => None,
                Some(v) => Some(v.trim().to_string()),
                None => Some("127.0.0.1:9464".into()),
            },
            file_log: if s.bool("ENABLE_FILE_LOG", false)? {
                Some(FileLog {
                    dir: s.get("LOG_DIR").unwrap_or_else(|| "./logs".into()).into(),
                    max_bytes: s.num::<u64>("MAX_LOG_FILE_SIZE", 10)?.max(1) * 1024 * 1024,
                    max_files: s.num::<usize>("MAX_LOG_FILES", 5)?.max(1),
                })
            } else {
                None
            },
            grace_period_secs: s.secs("GRACE_PERIOD_SECS", 30)?,
            data_save,
            redis,
            key_rpm_limit: s.num("KEY_RPM_LIMIT", 0)?,
            key_max_concurrent: s.num("KEY_MAX_CONCURRENT", 0)?,
            graceful_shutdown_timeout_secs: s.secs("GRACEFUL_SHUTDOWN_TIMEOUT_SECS", 5)?,
        })
    }

    /// The admin key is the first configured key (the seed's rule).
    pub fn admin_key(&self) -> Option<&str> {
        self.api_keys.first().map(String::as_str)
    }
}

#[cfg(test)]
mod tests;
