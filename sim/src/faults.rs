//! Fault injection: the names, the `[[sim:NAME=ARG]]` prompt directives, and the per-account
//! queue filled by `POST /__sim/inject`. Both routes end in the same [`Faults`] value.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::media_faults::MediaFaults;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Completions,
    ChatsNew,
    Auth,
    Signin,
    Models,
    Delete,
    /// `POST /api/v{1,2}/files/getstsToken`.
    Sts,
    /// The OSS emulator's `PUT /<bucket>/<key>` (matched by the account the STS token was issued to).
    Oss,
    /// `GET /api/v1/tasks/status/<id>`.
    Tasks,
}

impl Endpoint {
    pub fn parse(s: &str) -> Option<Endpoint> {
        Some(match s.trim() {
            "completions" | "completion" => Endpoint::Completions,
            "chats_new" => Endpoint::ChatsNew,
            "auth" | "auths" => Endpoint::Auth,
            "signin" => Endpoint::Signin,
            "models" => Endpoint::Models,
            "delete" => Endpoint::Delete,
            "sts" => Endpoint::Sts,
            "oss" => Endpoint::Oss,
            "tasks" | "task" => Endpoint::Tasks,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Completions => "completions",
            Endpoint::ChatsNew => "chats_new",
            Endpoint::Auth => "auth",
            Endpoint::Signin => "signin",
            Endpoint::Models => "models",
            Endpoint::Delete => "delete",
            Endpoint::Sts => "sts",
            Endpoint::Oss => "oss",
            Endpoint::Tasks => "tasks",
        }
    }
}

/// A fault that replaces the endpoint's normal answer with a fixed reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarlyReply {
    Unauthorized,
    UnauthorizedJson,
    Http429,
    RateLimitJson,
    Transient,
    Waf,
    Waf200,
    WafSse,
    Http500,
    Http502,
    ChatsNew500,
    ChatsNewFail,
    ChatsNewNoId,
    Delete500,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UsageStyle {
    /// `input_tokens`/`output_tokens`, as captured from upstream in 2026.
    #[default]
    Input,
    /// `prompt_tokens`/`completion_tokens`, what older peers expect.
    Prompt,
    None,
}

/// Everything that alters one response. Also carries the two non-fault directives
/// (`deltas=N`, `delay=MS`) because they arrive through the same channel.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    pub names: Vec<String>,
    pub early: Option<EarlyReply>,
    pub slow_headers_ms: Option<u64>,
    pub no_headers: bool,
    pub gzip: bool,

    pub ratelimit_sse: bool,
    pub empty: bool,
    pub midstream_quota: Option<usize>,
    pub moderation: bool,
    pub moderation_output: Option<usize>,
    pub malformed: bool,
    pub noncanonical: bool,
    pub split: bool,
    pub split_utf8: bool,
    pub disconnect: Option<usize>,
    /// Like `disconnect`, but with a TCP RST instead of a FIN.
    pub reset: Option<usize>,
    pub disconnect_after_thinking: bool,
    pub slow_first_event_ms: Option<u64>,
    pub idle_gap_ms: Option<u64>,
    pub native_tool: bool,
    /// A normal chat calling the image tool: `extra.image_list`, during the thinking if any.
    pub image_tool: bool,
    pub done: bool,
    pub usage: UsageStyle,
    pub huge_line: Option<usize>,
    pub after_finished: bool,
    pub never_end: bool,
    /// Upload and generation faults (`sts_*`, `oss_*`, `task_*`).
    pub media: MediaFaults,

    pub deltas: Option<usize>,
    pub delay_ms: Option<u64>,
}

/// Upper bound for `huge_line`, so a typo cannot make the sim allocate gigabytes.
const MAX_HUGE_LINE: usize = 64 << 20;

fn num<T: std::str::FromStr>(arg: Option<&str>, default: T) -> T {
    arg.and_then(|a| a.trim().parse().ok()).unwrap_or(default)
}

impl Faults {
    /// Applies one fault by name; unknown names are ignored (returns false).
    pub fn apply(&mut self, name: &str, arg: Option<&str>) -> bool {
        let name = name.trim();
        let early = |f: &mut Faults, r| {
            f.early.get_or_insert(r);
        };
        match name {
            "unauthorized" => early(self, EarlyReply::Unauthorized),
            "unauthorized_json" => early(self, EarlyReply::UnauthorizedJson),
            "http429" => early(self, EarlyReply::Http429),
            "ratelimit_json" => early(self, EarlyReply::RateLimitJson),
            "transient" => early(self, EarlyReply::Transient),
            "waf" => early(self, EarlyReply::Waf),
            "waf200" => early(self, EarlyReply::Waf200),
            "waf_sse" => early(self, EarlyReply::WafSse),
            "http500" => early(self, EarlyReply::Http500),
            "http502" => early(self, EarlyReply::Http502),
            "chats_new_500" => early(self, EarlyReply::ChatsNew500),
            "chats_new_fail" => early(self, EarlyReply::ChatsNewFail),
            "chats_new_noid" => early(self, EarlyReply::ChatsNewNoId),
            "delete_500" => early(self, EarlyReply::Delete500),
            "slow_headers" => self.slow_headers_ms = Some(num(arg, 2000)),
            "no_headers" => self.no_headers = true,
            "gzip" => self.gzip = true,
            "ratelimit_sse" => self.ratelimit_sse = true,
            "empty" => self.empty = true,
            "midstream_quota" => self.midstream_quota = Some(num(arg, 2)),
            "moderation" => self.moderation = true,
            "moderation_output" => self.moderation_output = Some(num(arg, 2)),
            "malformed" => self.malformed = true,
            "noncanonical" => self.noncanonical = true,
            "split" => self.split = true,
            "split_utf8" => self.split_utf8 = true,
            "disconnect" => self.disconnect = Some(num(arg, 2)),
            "reset" => self.reset = Some(num(arg, 2)),
            "disconnect_after_thinking" => self.disconnect_after_thinking = true,
            "slow_first_event" => self.slow_first_event_ms = Some(num(arg, 2000)),
            "idle_gap" => self.idle_gap_ms = Some(num(arg, 2000)),
            "native_tool" => self.native_tool = true,
            "image_tool" => self.image_tool = true,
            "done" => self.done = true,
            "prompt_usage" => self.usage = UsageStyle::Prompt,
            "no_usage" => self.usage = UsageStyle::None,
            "huge_line" => self.huge_line = Some(num(arg, 100_000usize).min(MAX_HUGE_LINE)),
            "after_finished" => self.after_finished = true,
            "never_end" => self.never_end = true,
            "deltas" => self.deltas = arg.and_then(|a| a.trim().parse().ok()),
            "delay" => self.delay_ms = arg.and_then(|a| a.trim().parse().ok()),
            other if self.media.apply(other) => {}
            _ => return false,
        }
        self.names.push(match arg {
            Some(a) => format!("{name}={a}"),
            None => name.to_string(),
        });
        true
    }
}

const OPEN: &str = "[[sim:";
const CLOSE: &str = "]]";

/// Removes every `[[sim:NAME]]` / `[[sim:NAME=ARG]]` from `text`, applying each to `faults`.
/// Borrows when there is nothing to strip, which is the benchmark case.
pub fn strip_directives<'a>(text: &'a str, faults: &mut Faults) -> Cow<'a, str> {
    if !text.contains(OPEN) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        let after = &rest[start + OPEN.len()..];
        let Some(end) = after.find(CLOSE) else { break };
        out.push_str(&rest[..start]);
        let spec = &after[..end];
        let (name, arg) = match spec.split_once('=') {
            Some((n, a)) => (n, Some(a)),
            None => (spec, None),
        };
        faults.apply(name, arg);
        rest = &after[end + CLOSE.len()..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[derive(Debug, Clone)]
struct Injected {
    /// Lower-cased account email, or `*` for every account.
    email: String,
    endpoint: Endpoint,
    mode: String,
    arg: Option<String>,
    /// Calls left; `None` means until reset.
    remaining: Option<u32>,
}

/// Faults queued through `/__sim/inject`, matched per account and endpoint.
#[derive(Debug, Default)]
pub struct FaultQueue {
    items: Mutex<Vec<Injected>>,
    // Lets the common "nothing queued" case skip the lock entirely.
    any: AtomicBool,
}

impl FaultQueue {
    pub fn push(
        &self,
        email: &str,
        endpoint: Endpoint,
        mode: &str,
        arg: Option<String>,
        count: u32,
    ) {
        let mut items = self.items.lock().unwrap_or_else(|e| e.into_inner());
        items.push(Injected {
            email: email.trim().to_ascii_lowercase(),
            endpoint,
            mode: mode.trim().to_string(),
            arg,
            remaining: (count > 0).then_some(count),
        });
        self.any.store(true, Ordering::Release);
    }

    pub fn clear(&self) {
        self.items.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.any.store(false, Ordering::Release);
    }

    /// Applies (and consumes one use of) every queued fault for this account and endpoint.
    pub fn take(&self, email: &str, endpoint: Endpoint, faults: &mut Faults) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        let mut items = self.items.lock().unwrap_or_else(|e| e.into_inner());
        for it in items.iter_mut() {
            if it.endpoint == endpoint && (it.email == "*" || it.email.eq_ignore_ascii_case(email))
            {
                faults.apply(&it.mode, it.arg.as_deref());
                if let Some(r) = it.remaining.as_mut() {
                    *r = r.saturating_sub(1);
                }
            }
        }
        items.retain(|it| it.remaining != Some(0));
        self.any.store(!items.is_empty(), Ordering::Release);
    }

    pub fn to_json(&self) -> serde_json::Value {
        let items = self.items.lock().unwrap_or_else(|e| e.into_inner());
        serde_json::Value::Array(
            items
                .iter()
                .map(|it| {
                    serde_json::json!({
                        "email": it.email, "endpoint": it.endpoint.name(), "mode": it.mode,
                        "arg": it.arg, "remaining": it.remaining,
                    })
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_are_parsed_and_stripped() {
        let mut f = Faults::default();
        let out = strip_directives(
            "hello [[sim:disconnect=3]]world[[sim:split]] [[sim:bogus]] [[1]] end",
            &mut f,
        );
        assert_eq!(out, "hello world  [[1]] end");
        assert_eq!(f.disconnect, Some(3));
        assert!(f.split);
        assert_eq!(f.names, vec!["disconnect=3", "split"]);
    }

    #[test]
    fn no_directive_borrows() {
        let mut f = Faults::default();
        assert!(matches!(
            strip_directives("plain", &mut f),
            Cow::Borrowed("plain")
        ));
        assert!(f.names.is_empty());
        // An unterminated directive is left as text.
        assert_eq!(strip_directives("a [[sim:split", &mut f), "a [[sim:split");
    }

    #[test]
    fn defaults_and_early_precedence() {
        let mut f = Faults::default();
        f.apply("midstream_quota", None);
        f.apply("http429", None);
        f.apply("waf", None);
        f.apply("deltas", Some("7"));
        f.apply("huge_line", Some("999999999999"));
        assert_eq!(f.midstream_quota, Some(2));
        assert_eq!(f.early, Some(EarlyReply::Http429));
        assert_eq!(f.deltas, Some(7));
        assert_eq!(f.huge_line, Some(MAX_HUGE_LINE));
    }

    #[test]
    fn queue_counts_and_wildcards() {
        let q = FaultQueue::default();
        q.push("a@x", Endpoint::Completions, "http429", None, 2);
        q.push("*", Endpoint::ChatsNew, "chats_new_fail", None, 0);
        let take = |email, ep| {
            let mut f = Faults::default();
            q.take(email, ep, &mut f);
            f.early
        };
        assert_eq!(take("b@x", Endpoint::Completions), None);
        assert_eq!(
            take("A@X", Endpoint::Completions),
            Some(EarlyReply::Http429)
        );
        assert_eq!(
            take("a@x", Endpoint::Completions),
            Some(EarlyReply::Http429)
        );
        assert_eq!(take("a@x", Endpoint::Completions), None);
        for _ in 0..3 {
            assert_eq!(
                take("z@x", Endpoint::ChatsNew),
                Some(EarlyReply::ChatsNewFail)
            );
        }
        q.clear();
        assert_eq!(take("z@x", Endpoint::ChatsNew), None);
    }
}
