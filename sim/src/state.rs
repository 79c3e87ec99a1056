//! Everything the simulator remembers between requests, and its `/__sim/state` view.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use serde_json::{json, Value};

use crate::answer::{Script, SEARCH_INFO_JSON};
use crate::chats::ChatStore;
use crate::events::Usage;
use crate::faults::FaultQueue;
use crate::media_state::MediaState;

pub const LOG_LIMIT: usize = 200;

#[derive(Debug, Default)]
pub struct Counters {
    pub signins: AtomicU64,
    pub auth_checks: AtomicU64,
    pub models_calls: AtomicU64,
    pub chats_created: AtomicU64,
    pub chats_deleted: AtomicU64,
    pub completions: AtomicU64,
    /// Completion streams whose client (the gateway) went away before the stream ended.
    pub streams_aborted_by_client: AtomicU64,
}

impl Counters {
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn reset(&self) {
        for c in [
            &self.signins,
            &self.auth_checks,
            &self.models_calls,
            &self.chats_created,
            &self.chats_deleted,
            &self.completions,
            &self.streams_aborted_by_client,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

#[derive(Debug, Clone)]
pub struct CompletionRecord {
    pub email: String,
    pub chat_id: String,
    pub response_id: String,
    pub model: String,
    pub chat_type: String,
    pub prompt: String,
    pub answer: String,
    pub reasoning: String,
    pub search: bool,
    pub faults: Vec<String>,
    pub usage: Usage,
    /// Kept raw and parsed only when the state is read, to keep the hot path cheap.
    pub body: Bytes,
    pub at: i64,
}

#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub authorization: bool,
    pub request_id: Option<String>,
    pub source: Option<String>,
    pub version: Option<String>,
    pub bx_v: Option<String>,
    pub cookie_token: bool,
    pub body: Bytes,
    pub at: i64,
}

#[derive(Debug, Default)]
struct Logs {
    completions: VecDeque<CompletionRecord>,
    requests: VecDeque<RequestRecord>,
    per_account: HashMap<String, u64>,
}

#[derive(Debug, Default)]
pub struct SimState {
    pub counters: Counters,
    logs: Mutex<Logs>,
    pub chats: ChatStore,
    pub faults: FaultQueue,
    scripts: Mutex<VecDeque<Script>>,
    pub media: MediaState,
}

fn push_capped<T>(q: &mut VecDeque<T>, item: T) {
    if q.len() >= LOG_LIMIT {
        q.pop_front();
    }
    q.push_back(item);
}

fn body_json(body: &Bytes) -> Value {
    if body.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

impl CompletionRecord {
    fn to_json(&self) -> Value {
        let search = if self.search {
            serde_json::from_str(SEARCH_INFO_JSON).unwrap_or(Value::Null)
        } else {
            json!([])
        };
        json!({
            "email": self.email, "chat_id": self.chat_id, "response_id": self.response_id,
            "model": self.model, "chat_type": self.chat_type, "prompt": self.prompt,
            "answer": self.answer, "reasoning": self.reasoning, "search": search,
            "faults": self.faults,
            "usage": {"input_tokens": self.usage.input,
                      "output_tokens": self.usage.answer + self.usage.reasoning,
                      "reasoning_tokens": self.usage.reasoning},
            "body": body_json(&self.body), "at": self.at,
        })
    }
}

impl RequestRecord {
    fn to_json(&self) -> Value {
        let is_uuid = self
            .request_id
            .as_deref()
            .is_some_and(|r| uuid::Uuid::parse_str(r).is_ok());
        json!({
            "method": self.method, "path": self.path, "authorization": self.authorization,
            "cookie_token": self.cookie_token,
            "x_request_id": self.request_id, "x_request_id_is_uuid": is_uuid,
            "source": self.source, "version": self.version, "bx_v": self.bx_v,
            "body": body_json(&self.body), "at": self.at,
        })
    }
}

impl SimState {
    fn logs(&self) -> std::sync::MutexGuard<'_, Logs> {
        self.logs.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn record_request(&self, r: RequestRecord) {
        push_capped(&mut self.logs().requests, r);
    }

    /// Counts a completion attempt for an account (whatever its outcome).
    pub fn count_completion(&self, email: &str) {
        Counters::bump(&self.counters.completions);
        *self
            .logs()
            .per_account
            .entry(email.to_string())
            .or_insert(0) += 1;
    }

    pub fn record_completion(&self, r: CompletionRecord) {
        push_capped(&mut self.logs().completions, r);
    }

    pub fn push_script(&self, s: Script) {
        self.scripts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(s);
    }

    pub fn take_script(&self) -> Option<Script> {
        self.scripts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    }

    pub fn reset(&self) {
        self.counters.reset();
        *self.logs() = Logs::default();
        self.chats.clear();
        self.faults.clear();
        self.media.clear();
        self.scripts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    pub fn to_json(&self, config: Value, accounts: Vec<&str>) -> Value {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let live = self.chats.live_count();
        let counters = json!({
            "signins": get(&c.signins), "auth_checks": get(&c.auth_checks),
            "models_calls": get(&c.models_calls), "chats_created": get(&c.chats_created),
            "chats_deleted": get(&c.chats_deleted), "live_chats": live,
            "completions": get(&c.completions),
            "streams_aborted_by_client": get(&c.streams_aborted_by_client),
        });
        let (per_account, last, completions, requests) = {
            let logs = self.logs();
            let mut per: serde_json::Map<String, Value> =
                accounts.iter().map(|e| (e.to_string(), json!(0))).collect();
            for (k, v) in &logs.per_account {
                per.insert(k.clone(), json!(v));
            }
            (
                per,
                logs.completions.back().map(CompletionRecord::to_json),
                logs.completions
                    .iter()
                    .map(CompletionRecord::to_json)
                    .collect::<Vec<_>>(),
                logs.requests
                    .iter()
                    .map(RequestRecord::to_json)
                    .collect::<Vec<_>>(),
            )
        };
        let scripts = self.scripts.lock().map(|s| s.len()).unwrap_or(0);
        let mut out = json!({
            "counters": counters.clone(),
            "completions_by_account": per_account,
            "chats_live_ids": self.chats.live_ids(),
            "last_completion": last,
            "completions_log": completions,
            "requests": requests,
            "pending_faults": self.faults.to_json(),
            "pending_scripts": scripts,
            "config": config,
            "media": self.media.to_json(),
        });
        // The counters also appear at top level so `state["completions"]` works too.
        if let (Some(o), Some(cs)) = (out.as_object_mut(), counters.as_object()) {
            for (k, v) in cs {
                o.insert(k.clone(), v.clone());
            }
        }
        out
    }
}
