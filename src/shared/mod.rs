//! State shared by several gateway instances through Redis (`REDIS_URL`): identity rests
//! (rate-limit cooldowns, open breakers), in-flight leases (per identity and per key),
//! per-key request windows, usage counters, the upload cache, keys and, with
//! `DATA_SAVE_MODE=redis`, the rest of the data document.
//!
//! Hot-path rules: decisions that must hold across instances (a key's admission, an identity
//! at its cap) are one Lua call each, awaited; nothing else makes a request wait: releases
//! are sent in the background as the request ends, and usage, rests and upload-cache entries
//! go to one writer task that pipelines them. No lock is held across an await.
//!
//! Failures: an unreachable Redis at start stops the gateway (exit 2, naming `REDIS_URL`).
//! Later, the first failed or timed-out call marks Redis degraded: from then on calls are
//! skipped at once and every decision uses this instance's own state (limits per instance,
//! rests seen here only), with one warning in the log and `qwen_gateway_redis_errors_total`
//! / `qwen_gateway_redis_up`, until the sync service's probe (every `REDIS_SYNC_INTERVAL_MS`)
//! reaches Redis again. Usage counted meanwhile is sent then; leases are renewed then.

pub mod backend;
pub mod cache;
pub mod leases;
pub mod limiter;
pub mod rests;
pub mod settings;
pub mod sync;
pub mod usage;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::mpsc;

use settings::RedisSettings;

/// Work for the writer task: commands sent in one pipeline with whatever else is queued.
pub enum Op {
    Cmds(Vec<redis::Cmd>),
    /// Pending usage counters are due.
    FlushUsage,
}

pub struct Shared {
    pub settings: RedisSettings,
    /// Random per process: names this instance's leases.
    pub instance: String,
    /// When `DATA_SAVE_MODE=redis`: identities and settings live in Redis too.
    pub document: bool,
    conn: ConnectionManager,
    client: redis::Client,
    /// Drives the connection made at start; lives as long as the gateway.
    rt: Option<tokio::runtime::Runtime>,
    degraded: AtomicBool,
    ops: mpsc::UnboundedSender<Op>,
    ops_rx: Mutex<Option<mpsc::UnboundedReceiver<Op>>>,
    pub leases: leases::LeaseBook,
    pub usage: usage::PendingUsage,
    pub data_sync: sync::DataSync,
}

/// Runs `f` to completion on a thread of its own, so it works whether or not the caller is
/// inside a runtime (start-up code is called from both).
pub fn block_on<F: Future + Send>(handle: &tokio::runtime::Handle, f: F) -> F::Output
where
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| handle.block_on(f))
            .join()
            .expect("start-up task panicked")
    })
}

impl Shared {
    /// Connects at start; an unreachable Redis is a start-up error naming `REDIS_URL`.
    pub fn connect(settings: &RedisSettings, document: bool) -> Result<Arc<Shared>, String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("redis")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the Redis runtime: {e}"))?;
        let where_ = format!("REDIS_URL {}", settings.redacted_url());
        let client = redis::Client::open(settings.url.as_str())
            .map_err(|_| format!("{where_} is not a valid Redis URL"))?;
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let c = client.clone();
        let timeout = settings.timeout;
        let conn = block_on(rt.handle(), async move {
            let mut conn =
                tokio::time::timeout(timeout * 2, ConnectionManager::new_with_config(c, cfg))
                    .await
                    .map_err(|_| "timed out".to_string())?
                    .map_err(|e| e.to_string())?;
            redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(conn)
        })
        .map_err(|e| {
            format!(
                "cannot connect to Redis at {where_}: {}",
                scrub(&e, &settings.url)
            )
        })?;
        let (tx, rx) = mpsc::unbounded_channel();
        let instance = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        log::info!(
            "shared state in Redis at {} (prefix {:?}, instance {instance})",
            settings.redacted_url(),
            settings.prefix
        );
        crate::metrics::REDIS_UP.set(1);
        Ok(Arc::new(Shared {
            settings: settings.clone(),
            instance,
            document,
            conn,
            client,
            rt: Some(rt),
            degraded: AtomicBool::new(false),
            ops: tx,
            ops_rx: Mutex::new(Some(rx)),
            leases: leases::LeaseBook::default(),
            usage: usage::PendingUsage::default(),
            data_sync: sync::DataSync::default(),
        }))
    }

    pub fn runtime(&self) -> &tokio::runtime::Handle {
        self.rt.as_ref().expect("runtime until drop").handle()
    }

    /// A full key name.
    pub fn key(&self, rest: &str) -> String {
        format!("{}{}", self.settings.prefix, rest)
    }

    pub fn channel(&self) -> String {
        self.key("events")
    }

    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// False from a failed call until the sync service's probe reaches Redis again: the hot
    /// path then uses local state at once instead of waiting on a Redis that is not answering.
    pub fn available(&self) -> bool {
        !self.degraded.load(Ordering::Relaxed)
    }

    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    /// Records a failed call: a warning on the first one only, a metric for each.
    pub fn failed(&self, op: &'static str, e: &dyn std::fmt::Display) {
        crate::metrics::REDIS_ERRORS.with_label_values(&[op]).inc();
        crate::metrics::REDIS_UP.set(0);
        if !self.degraded.swap(true, Ordering::Relaxed) {
            log::warn!(
                "Redis call failed ({op}: {}); using this instance's own state until Redis answers again",
                scrub(&e.to_string(), &self.settings.url)
            );
        }
    }

    /// Records a successful call; logs the recovery once.
    pub fn succeeded(&self) {
        if self.degraded.swap(false, Ordering::Relaxed) {
            crate::metrics::REDIS_UP.set(1);
            log::info!("Redis answers again; shared state resumed");
        }
    }

    /// Runs one Redis call with the configured timeout, skipping it while Redis is failing.
    pub async fn call<T, F>(&self, op: &'static str, f: F) -> Option<T>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        if !self.available() {
            return None;
        }
        match tokio::time::timeout(self.settings.timeout, f).await {
            Ok(Ok(v)) => {
                self.succeeded();
                Some(v)
            }
            Ok(Err(e)) => {
                self.failed(op, &e);
                None
            }
            Err(_) => {
                self.failed(op, &"timed out");
                None
            }
        }
    }

    /// Queues commands for the writer task (never waits).
    pub fn queue(&self, cmds: Vec<redis::Cmd>) {
        let _ = self.ops.send(Op::Cmds(cmds));
    }

    pub(crate) fn wake_usage(&self) {
        let _ = self.ops.send(Op::FlushUsage);
    }

    pub(crate) fn take_ops(&self) -> Option<mpsc::UnboundedReceiver<Op>> {
        self.ops_rx.lock().expect("ops lock").take()
    }

    /// An EVAL command (scripts are small; Redis caches them by digest).
    pub fn eval(script: &str, keys: &[String], args: &[String]) -> redis::Cmd {
        let mut c = redis::cmd("EVAL");
        c.arg(script).arg(keys.len()).arg(keys).arg(args);
        c
    }
}

impl Drop for Shared {
    // Dropping a runtime blocks, which panics inside async code; this never blocks.
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// An error text without the URL's password, whatever the driver put in it.
pub fn scrub(text: &str, url: &str) -> String {
    match url::Url::parse(url)
        .ok()
        .and_then(|u| u.password().map(str::to_string))
    {
        Some(p) if !p.is_empty() => text.replace(&p, "***"),
        _ => text.to_string(),
    }
}

/// The server's clock in Lua (ms), so instances with skewed clocks agree on lease expiries.
pub const LUA_NOW: &str =
    "local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n";
