//! `qwen-gateway --probe`: one tiny request through each configured identity against the
//! configured upstream, step by step, so an operator learns the day the upstream changes its
//! protocol. Every step reports ok or the reason it failed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::config::{ReasoningOutput, SearchInfoMode};
use crate::convert::classify::{Failure, FailureClass};
use crate::convert::request::ChatPlan;
use crate::convert::stream::{ConvertOptions, Converter, Step};
use crate::gateway::Gateway;
use crate::openai::completion::Aggregator;
use crate::pool::{tokens, Identity};
use crate::qwen::body::{completion_body, new_chat_body, MessageIds};
use crate::qwen::headers::{self, Credentials};
use crate::qwen::{api, models};
use crate::sse::SseDecoder;

#[derive(Debug)]
pub struct StepReport {
    pub identity: String,
    pub step: &'static str,
    pub result: Result<String, String>,
}

fn fail(f: Failure) -> String {
    format!("{}: {}", f.class.as_str(), f.detail)
}

const STEP_TIMEOUT: Duration = Duration::from_secs(60);

async fn step<T>(
    out: &mut Vec<StepReport>,
    identity: &str,
    name: &'static str,
    fut: impl std::future::Future<Output = Result<(T, String), String>>,
) -> Option<T> {
    let r = match tokio::time::timeout(STEP_TIMEOUT, fut).await {
        Ok(r) => r,
        Err(_) => Err("timed out".into()),
    };
    let (value, result) = match r {
        Ok((v, note)) => (Some(v), Ok(note)),
        Err(e) => (None, Err(e)),
    };
    out.push(StepReport {
        identity: identity.to_string(),
        step: name,
        result,
    });
    value
}

/// Reads a completion stream to its end through the real converter and checks its shape.
async fn completion(
    gw: &Gateway,
    creds: &Credentials<'_>,
    plan: &ChatPlan,
    chat_id: &str,
) -> Result<String, String> {
    let path = format!("/api/v2/chat/completions?chat_id={chat_id}");
    let mut req = gw.upstream.request("POST", &path);
    headers::apply(&mut req, &gw.upstream.base, creds, "text/event-stream");
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let body = completion_body(plan, chat_id, &MessageIds::random(), secs);
    let mut ex = gw
        .upstream
        .send(req, Bytes::from(body))
        .await
        .map_err(fail)?;
    if ex.status != 200 || !ex.is_event_stream() {
        let status = ex.status;
        let text = ex.read_to_end(64 * 1024).await.unwrap_or_default();
        gw.upstream.abort(ex).await;
        let f = crate::convert::classify::classify_status(status, None, &text);
        return Err(format!("HTTP {status}, not an event stream ({})", fail(f)));
    }
    let opts = ConvertOptions {
        reasoning: ReasoningOutput::Field,
        search_mode: SearchInfoMode::Text,
        stop: vec![],
        max_tokens: None,
        prompt_estimate: 0,
        tools: None,
    };
    let mut conv = Converter::new(Aggregator::default(), opts);
    let mut dec = SseDecoder::new(gw.settings.max_sse_line_bytes);
    let mut events = 0u32;
    let mut step = Step::Continue;
    while step == Step::Continue {
        match ex.read().await.map_err(fail)? {
            Some(chunk) => {
                dec.feed(&chunk, |e| {
                    events += 1;
                    if step == Step::Continue {
                        step = conv.on_event(e);
                    }
                })
                .map_err(|e| format!("{e:?}"))?;
            }
            None => {
                dec.finish(|e| {
                    if step == Step::Continue {
                        step = conv.on_event(e);
                    }
                });
                if step == Step::Continue {
                    step = conv.on_eof();
                }
            }
        }
    }
    gw.upstream.abort(ex).await;
    match step {
        Step::Done => {
            let agg = conv.sink();
            let usage = agg.finish.map(|(_, u)| u).unwrap_or_default();
            Ok(format!(
                "{events} events, {} answer chars, usage reported: {}, malformed lines: {}",
                agg.content.chars().count(),
                !usage.estimated,
                conv.malformed()
            ))
        }
        Step::Failed(f) => Err(fail(f)),
        Step::Continue => Err("the stream did not finish".into()),
    }
}

async fn probe_identity(gw: &Gateway, id: &Identity, out: &mut Vec<StepReport>) {
    let label = id.label.as_str();
    if id.token().is_none() {
        let obtained = step(out, label, "obtain_token", async {
            tokens::refresh_identity(gw, id)
                .await
                .map(|_| ((), "token obtained".into()))
                .map_err(fail)
        })
        .await;
        if obtained.is_none() {
            return;
        }
    }
    let Some(token) = id.token() else { return };
    let creds = Credentials {
        token: &token,
        cookie: id.cookie(),
    };
    step(out, label, "token_check", async {
        let t = api::token_from_bearer(&gw.upstream, &token)
            .await
            .map_err(fail)?;
        let exp = crate::qwen::jwt::expiry(&t);
        Ok((
            (),
            format!("valid; token expiry readable: {}", exp.is_some()),
        ))
    })
    .await;
    let model = step(out, label, "models", async {
        let raw = api::list_models(&gw.upstream, &creds).await.map_err(fail)?;
        let parsed: Vec<_> = raw.iter().filter_map(models::parse).collect();
        let first = parsed
            .first()
            .ok_or("the model list is empty or unreadable")?;
        let with_meta = raw
            .iter()
            .filter(|m| m.pointer("/info/meta").is_some())
            .count();
        Ok((
            first.id.clone(),
            format!("{} models, {} with metadata", parsed.len(), with_meta),
        ))
    })
    .await;
    let Some(model) = model else { return };
    let plan = ChatPlan {
        requested_model: model.clone(),
        upstream_model: model,
        chat_type: "t2t",
        thinking: false,
        thinking_format: gw.runtime().thinking_format,
        prompt: "Reply with the single word OK.".into(),
        stream: true,
        include_usage: false,
        stop: vec![],
        max_tokens: None,
        tools: None,
        corrective: false,
        media: vec![],
    };
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let chat_id = step(out, label, "chats_new", async {
        let id = api::new_chat(&gw.upstream, &creds, new_chat_body(&plan, millis))
            .await
            .map_err(fail)?;
        Ok((id, "chat created".into()))
    })
    .await;
    let Some(chat_id) = chat_id else { return };
    step(out, label, "completion_stream", async {
        completion(gw, &creds, &plan, &chat_id)
            .await
            .map(|n| ((), n))
    })
    .await;
    step(out, label, "delete_chat", async {
        api::delete_chat(&gw.upstream, &creds, &chat_id)
            .await
            .map(|_| ((), "deleted".into()))
            .map_err(fail)
    })
    .await;
}

/// Probes every identity in turn; true when every step passed.
pub async fn run(gw: &Gateway) -> (bool, Vec<StepReport>) {
    let mut out = Vec::new();
    if gw.pool.all().is_empty() {
        out.push(StepReport {
            identity: "-".into(),
            step: "configuration",
            result: Err(fail(Failure::new(
                FailureClass::Auth,
                "no identity is configured (QWEN_TOKEN, COOKIE, COOKIE_FILE or ACCOUNTS)",
            ))),
        });
    }
    for id in gw.pool.all().iter() {
        probe_identity(gw, id, &mut out).await;
    }
    let ok = out.iter().all(|s| s.result.is_ok());
    (ok, out)
}
