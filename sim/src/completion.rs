//! `POST /api/v2/chat/completions`: validation, fault selection, content and recording.
//! The streaming itself is in `stream.rs`; the event sequence in `render.rs`.

use bytes::Bytes;
use pingora::protocols::http::ServerSession;
use sha2::{Digest, Sha256};

use crate::answer::{plan_content, Script};
use crate::chats::{Lookup, Turn};
use crate::events::EventWriter;
use crate::faults::{Endpoint, Faults};
use crate::generation::{self, Ctx};
use crate::http::{self, Outcome, Request};
use crate::jwt;
use crate::render::{build_plan, Plan};
use crate::replies;
use crate::request::CompletionInput;
use crate::routes::parse_body;
use crate::state::CompletionRecord;
use crate::stream::stream_plan;
use crate::Inner;

/// Upstream's hidden system prompt makes even "hi" cost about a thousand input tokens.
const HIDDEN_PROMPT_TOKENS: u64 = 1000;

fn input_tokens(input: &CompletionInput) -> u64 {
    HIDDEN_PROMPT_TOKENS + input.prompt_chars.div_ceil(4) as u64
}

struct Prepared {
    plan: Plan,
    response_id: String,
    parent_id: String,
}

/// The identifiers one response carries.
struct Ids<'a> {
    chat_id: &'a str,
    response_id: String,
    parent_id: String,
    timestamp: i64,
}

fn prepare(
    sim: &Inner,
    input: &CompletionInput,
    faults: &Faults,
    script: Option<Script>,
    ids: Ids<'_>,
) -> Prepared {
    let content = plan_content(input, faults, script, sim.runtime.answer_deltas());
    let writer = EventWriter {
        response_id: ids.response_id,
        timestamp: ids.timestamp,
        with_phase: input.with_phase,
        usage_style: faults.usage,
    };
    let plan = build_plan(
        &writer,
        &content,
        faults,
        ids.chat_id,
        &ids.parent_id,
        input_tokens(input),
    );
    Prepared {
        plan,
        response_id: writer.response_id,
        parent_id: ids.parent_id,
    }
}

/// A UUID-shaped id derived from the inputs, for the deterministic pure renderer.
fn derived_uuid(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
        h.update([0]);
    }
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&h.finalize()[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

pub fn render_pure(sim: &Inner, email: &str, body: &serde_json::Value) -> Vec<Bytes> {
    let input = CompletionInput::from_json(body);
    // Only the non-fault directive that changes content survives.
    let faults = Faults {
        deltas: input.faults.deltas,
        ..Faults::default()
    };
    let body_text = body.to_string();
    let response_id = derived_uuid(&[email.as_bytes(), body_text.as_bytes()]);
    let parent_id = input
        .parent_id
        .clone()
        .unwrap_or_else(|| derived_uuid(&[b"parent", body_text.as_bytes()]));
    let chat_id = input.chat_id.clone().unwrap_or_default();
    let timestamp = input.timestamp.unwrap_or_else(jwt::now_secs);
    let ids = Ids {
        chat_id: &chat_id,
        response_id,
        parent_id,
        timestamp,
    };
    let p = prepare(sim, &input, &faults, None, ids);
    p.plan.chunks()
}

pub async fn handle(sim: &Inner, s: &mut ServerSession, req: &Request) -> Outcome {
    let Some((acc, _)) = sim.authenticate(req) else {
        return replies::unauthorized(s).await;
    };
    let Some(body) = parse_body(req) else {
        return replies::bad_json(s).await;
    };
    let mut input = CompletionInput::from_json(&body);
    let chat_id = req
        .query_param("chat_id")
        .map(str::to_string)
        .or_else(|| input.chat_id.clone())
        .unwrap_or_default();
    if !matches!(sim.state.chats.check(&chat_id, &acc.email), Lookup::Found) {
        let out = replies::envelope("Not_Found", "chat not found");
        return Outcome::from_write(http::json(s, 200, out).await);
    }

    let mut faults = std::mem::take(&mut input.faults);
    sim.state
        .faults
        .take(&acc.email, Endpoint::Completions, &mut faults);
    sim.state.count_completion(&acc.email);
    let now = jwt::now_secs();
    let mut record = CompletionRecord {
        email: acc.email.clone(),
        chat_id: chat_id.clone(),
        response_id: String::new(),
        model: input.model.clone(),
        chat_type: input.chat_type.clone(),
        prompt: input.prompt.clone(),
        answer: String::new(),
        reasoning: String::new(),
        search: false,
        faults: faults.names.clone(),
        usage: Default::default(),
        body: req.body.clone(),
        at: now,
    };

    if faults.early.is_some() || faults.no_headers {
        sim.state.record_completion(record);
        return replies::before_response(s, &faults)
            .await
            .unwrap_or(Outcome::Close);
    }
    let ctx = || Ctx {
        email: &acc.email,
        user_id: &acc.id,
        chat_id: &chat_id,
    };
    // t2v is answered synchronously (§8.3), whatever the stream flag says.
    if input.chat_type == "t2v" {
        return generation::video(sim, s, ctx(), &body, &req.body, &input, &faults, record).await;
    }
    if !input.stream {
        sim.state.record_completion(record);
        let out = replies::envelope("Bad_Request", "stream must be true");
        return Outcome::from_write(http::json(s, 200, out).await);
    }

    if matches!(input.chat_type.as_str(), "t2i" | "image_edit") {
        return generation::image(sim, s, ctx(), &body, &req.body, &input, &faults, record).await;
    }

    let parent_id = input
        .parent_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let ids = Ids {
        chat_id: &chat_id,
        response_id: uuid::Uuid::new_v4().to_string(),
        parent_id,
        timestamp: now,
    };
    let p = prepare(sim, &input, &faults, sim.state.take_script(), ids);
    record.response_id = p.response_id.clone();
    record.answer = p.plan.answer.clone();
    record.reasoning = p.plan.reasoning.clone();
    record.search = p.plan.search;
    record.usage = p.plan.usage;
    sim.state.chats.add_turn(
        &chat_id,
        Turn {
            user_msg_id: p.parent_id,
            response_id: p.response_id,
            prompt: input.prompt,
            answer: p.plan.answer.clone(),
            reasoning: p.plan.reasoning.clone(),
            search: p.plan.search,
            model: input.model,
            timestamp: now,
        },
    );
    sim.state.record_completion(record);

    if let Some(ms) = faults.slow_headers_ms {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    let delay = faults
        .delay_ms
        .unwrap_or_else(|| sim.runtime.delta_delay_ms());
    stream_plan(s, &p.plan, delay, faults.gzip, &sim.state.counters).await
}
