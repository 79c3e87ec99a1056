//! The background side of shared state, one Pingora background service with three loops:
//!
//! * the writer: sends queued commands (rests, upload cache entries, key clean-ups) and
//!   pending usage in pipelines;
//! * the clock: every `REDIS_SYNC_INTERVAL_MS` re-reads the rests of every identity and, if
//!   the data version moved, the data document (the safety net under pub/sub, and the bound
//!   on staleness when a message is missed); every third of `REDIS_LEASE_TTL_MS` renews this
//!   instance's leases; while Redis is failing, probes it;
//! * the subscriber: takes `rest <fingerprint>` and `data` messages from the event channel and
//!   applies them at once (re-subscribing after a lost connection, then refreshing all).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use futures_util::StreamExt;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::{Op, Shared};
use crate::gateway::Gateway;

/// Most commands sent in one pipeline.
const BATCH: usize = 512;

/// Which data version this instance has taken in; one reload at a time.
#[derive(Default)]
pub struct DataSync {
    version: AtomicI64,
    lock: tokio::sync::Mutex<()>,
}

impl DataSync {
    /// Records the version of a document just loaded.
    pub fn loaded(&self, version: i64) {
        self.version.store(version, Ordering::Release);
    }
}

pub struct SharedService {
    pub gw: Arc<Gateway>,
}

/// Reloads the data document when another instance changed it; `true` when it did.
pub async fn reload_if_changed(gw: &Gateway) -> bool {
    let Some(s) = gw.state.shared() else {
        return false;
    };
    let Some(v) = s.data_version().await else {
        return false;
    };
    if v == s.data_sync.version.load(Ordering::Acquire) {
        return false;
    }
    let _g = s.data_sync.lock.lock().await;
    if v == s.data_sync.version.load(Ordering::Acquire) {
        return true;
    }
    let (doc, v) = match s.load_document().await {
        Ok(d) => d,
        Err(e) => {
            s.failed("data", &e);
            return false;
        }
    };
    let changes = gw.state.apply_remote(doc).await;
    crate::gateway::follow_identities(gw, changes);
    s.data_sync.version.store(v, Ordering::Release);
    true
}

async fn writer(s: Arc<Shared>, mut rx: tokio::sync::mpsc::UnboundedReceiver<Op>) {
    while let Some(first) = rx.recv().await {
        let mut cmds = Vec::new();
        let mut next = Some(first);
        while let Some(op) = next.take() {
            if let Op::Cmds(c) = op {
                cmds.extend(c);
            }
            if cmds.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        let usage = s.usage.take();
        if !s.available() {
            // Leases heal by themselves (see `leases`); usage waits for Redis.
            s.usage.restore(usage);
            continue;
        }
        cmds.extend(s.usage_cmds(&usage));
        if cmds.is_empty() {
            continue;
        }
        let mut p = redis::pipe();
        for c in cmds {
            p.add_command(c);
        }
        let mut conn = s.conn();
        if s.call("write", p.query_async::<()>(&mut conn))
            .await
            .is_none()
        {
            s.usage.restore(usage);
        }
    }
}

async fn clock(gw: Arc<Gateway>, s: Arc<Shared>) {
    let mut sync = tokio::time::interval(s.settings.sync_interval);
    let mut renew =
        tokio::time::interval((s.settings.lease_ttl / 3).max(std::time::Duration::from_millis(10)));
    sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = renew.tick() => s.renew().await,
            _ = sync.tick() => {
                if s.is_degraded() {
                    probe(&s).await;
                }
                s.refresh_rests(&gw.pool).await;
                reload_if_changed(&gw).await;
                s.wake_usage();
            }
        }
    }
}

/// Tries Redis directly (calls are skipped while degraded) to find out whether it is back.
async fn probe(s: &Shared) {
    let mut conn = s.conn();
    let ok = tokio::time::timeout(
        s.settings.timeout,
        redis::cmd("PING").query_async::<String>(&mut conn),
    )
    .await;
    match ok {
        Ok(Ok(_)) => {
            s.succeeded();
            // Leases dropped while Redis was away come back at once.
            s.renew().await;
        }
        Ok(Err(e)) => s.failed("probe", &e),
        Err(_) => s.failed("probe", &"timed out"),
    }
}

async fn subscriber(gw: Arc<Gateway>, s: Arc<Shared>) {
    loop {
        match s.client().get_async_pubsub().await {
            Ok(mut ps) => {
                if ps.subscribe(s.channel()).await.is_ok() {
                    // Anything missed while not subscribed.
                    s.refresh_rests(&gw.pool).await;
                    reload_if_changed(&gw).await;
                    let mut stream = ps.on_message();
                    while let Some(msg) = stream.next().await {
                        let text: String = msg.get_payload().unwrap_or_default();
                        on_message(&gw, &s, &text).await;
                    }
                }
                // Whatever broke the subscription likely broke the other connection too:
                // local state until the probe has seen Redis answer.
                s.failed("subscribe", &"the event subscription ended");
            }
            Err(e) => s.failed("subscribe", &e),
        }
        tokio::time::sleep(s.settings.sync_interval).await;
    }
}

async fn on_message(gw: &Gateway, s: &Shared, text: &str) {
    if let Some(fp) = text.strip_prefix("rest ") {
        if let Some(r) = s.rests(&[fp.to_string()]).await {
            gw.pool
                .apply_shared_rest(fp, r.into_iter().next().flatten(), Instant::now());
        }
    } else if text == "data" {
        reload_if_changed(gw).await;
    }
}

#[async_trait]
impl BackgroundService for SharedService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(s) = self.gw.state.shared().cloned() else {
            return;
        };
        let Some(rx) = s.take_ops() else {
            return;
        };
        let w = tokio::spawn(writer(s.clone(), rx));
        let c = tokio::spawn(clock(self.gw.clone(), s.clone()));
        let p = tokio::spawn(subscriber(self.gw.clone(), s.clone()));
        let _ = shutdown.changed().await;
        c.abort();
        p.abort();
        // Pending usage and releases go out before the process ends.
        s.wake_usage();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        w.abort();
    }
}
