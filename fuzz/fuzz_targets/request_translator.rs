//! OpenAI request bodies through parsing, translation and the upstream body builders.
//!
//! Every input is used twice: as a raw request body (the seeds are real JSON bodies), and through
//! `arbitrary` as a structured request that is serialised to JSON first, so that deep
//! combinations of roles, part types, stops and limits are reached without the fuzzer having to
//! discover JSON syntax. Checks: no panic; a refused request is a 400 whose error JSON is valid; an
//! accepted one gives an upstream body that is valid JSON, round-trips, and holds exactly one user
//! message whose content is the plan's prompt (the flattened conversation: a lone user message
//! verbatim, every turn's text in order). For structured requests, acceptance and the prompt are
//! also checked against an independent model of the rules.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use qwen_gateway::convert::input::Role as TurnRole;
use qwen_gateway::config::ThinkingFormat;
use qwen_gateway::convert::request::{flatten, translate, ChatPlan};
use qwen_gateway::openai::error::ApiError;
use qwen_gateway::openai::request::{ChatRequest, ROLES};
use qwen_gateway::qwen::body::{completion_body, new_chat_body, MessageIds};
use serde_json::{json, Value};

fn check_error(e: &ApiError) {
    assert_eq!(e.status, 400, "{e:?}");
    assert!(!e.message.is_empty());
    let v: Value = serde_json::from_slice(&e.to_json()).expect("error JSON");
    assert_eq!(v["error"]["message"], e.message.as_str());
}

/// Parses and translates; on success checks the upstream bodies. Returns the outcome.
fn pipeline(body: &[u8]) -> Option<Result<(ChatRequest, ChatPlan), ApiError>> {
    let req = match ChatRequest::parse(body) {
        Ok(r) => r,
        Err(e) => {
            check_error(&e);
            return None;
        }
    };
    let fmt = if body.len().is_multiple_of(2) {
        ThinkingFormat::Detail
    } else {
        ThinkingFormat::Summary
    };
    let input = match req.to_input() {
        Ok(i) => i,
        Err(e) => {
            check_error(&e);
            return Some(Err(e));
        }
    };
    let plan = match translate(&input, fmt) {
        Ok(p) => p,
        Err(e) => {
            check_error(&e);
            if e.param == Some("messages") {
                assert!(
                    flatten(&input.turns, false).trim().is_empty(),
                    "refused a conversation with text"
                );
            }
            return Some(Err(e));
        }
    };
    if plan.tools.is_none() {
        assert_eq!(plan.prompt, flatten(&input.turns, false));
    }
    assert!(!plan.prompt.trim().is_empty());

    // The text of every turn appears in the prompt, in order (tool folding rewrites turns, so
    // only plain conversations are checked this way).
    let plain = plan.tools.is_none()
        && input.turns.iter().all(|t| t.calls.is_empty() && t.role != TurnRole::Tool);
    if plain {
        let texts: Vec<&str> = input
            .turns
            .iter()
            .map(|t| t.text.as_str())
            .filter(|t| !t.trim().is_empty())
            .collect();
        if let [only] = texts.as_slice() {
            let lone_user = input
                .turns
                .iter()
                .filter(|t| !t.text.trim().is_empty())
                .all(|t| t.role == TurnRole::User);
            if lone_user {
                assert_eq!(&plan.prompt, only, "a lone user message must go through verbatim");
            }
        }
        let mut at = 0;
        for t in &texts {
            let i = plan.prompt[at..]
                .find(t)
                .unwrap_or_else(|| panic!("turn text {t:?} missing or out of order"));
            at += i + t.len();
        }
    }
    assert_eq!(plan.stop, req.stop_sequences());
    assert!(plan.stop.iter().all(|s| !s.is_empty()));
    if let Some(m) = plan.max_tokens {
        assert!((1..=1_000_000).contains(&m));
    }

    let ids = MessageIds {
        fid: "f".into(),
        child: "c".into(),
    };
    let raw = completion_body(&plan, "chat-1", &ids, 7);
    let v: Value = serde_json::from_slice(&raw).expect("upstream body is JSON");
    let again: Value = serde_json::from_slice(&serde_json::to_vec(&v).unwrap()).unwrap();
    assert_eq!(v, again, "upstream body does not round-trip");
    let list = v["messages"].as_array().expect("messages list");
    assert_eq!(list.len(), 1, "exactly one upstream message");
    assert_eq!(list[0]["content"], plan.prompt.as_str());
    assert_eq!(list[0]["role"], "user");
    assert_eq!(v["model"], plan.upstream_model.as_str());
    assert_eq!(v["chat_id"], "chat-1");
    let fc = &list[0]["feature_config"];
    assert_eq!(fc["thinking_enabled"], plan.thinking);
    assert_eq!(fc["thinking_format"], fmt.as_str());
    assert_eq!(fc["auto_search"], plan.chat_type == "search");
    let nc: Value = serde_json::from_slice(&new_chat_body(&plan, 5)).expect("chats/new JSON");
    assert_eq!(nc["models"][0], plan.upstream_model.as_str());
    Some(Ok((req, plan)))
}

#[derive(Debug, Arbitrary)]
enum Model {
    Known(u8),
    Custom(String),
    Empty,
    Missing,
}

const MODELS: [&str; 8] = [
    "qwen3-max",
    "qwen3-max-thinking",
    "qwen3-max-search",
    "qwen3-max-thinking-search",
    "qwen3-max-search-thinking",
    "QWEN3-MAX-THINKING",
    "-thinking",
    " qwen3-vl-plus ",
];

#[derive(Debug, Arbitrary)]
enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
    Function,
    Other(String),
}

impl Role {
    fn name(&self) -> &str {
        match self {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
            Role::Function => "function",
            Role::Other(s) => s,
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Part {
    Text(String),
    InputText(String),
    TextWithoutText,
    Image,
    Other(String),
}

#[derive(Debug, Arbitrary)]
enum Content {
    Missing,
    Null,
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Arbitrary)]
struct Msg {
    role: Role,
    content: Content,
    name: Option<String>,
}

#[derive(Debug, Arbitrary)]
enum Stop {
    Missing,
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Arbitrary)]
struct Req {
    model: Model,
    messages: Option<Vec<Msg>>,
    stream: Option<bool>,
    include_usage: Option<Option<bool>>,
    max_tokens: Option<i64>,
    max_completion_tokens: Option<i64>,
    stop: Stop,
    n: Option<i64>,
    enable_thinking: Option<bool>,
    reasoning_effort: Option<String>,
    temperature: Option<f32>,
}

impl Msg {
    fn text(&self) -> String {
        match &self.content {
            Content::Missing | Content::Null => String::new(),
            Content::Text(s) => s.clone(),
            Content::Parts(ps) => ps
                .iter()
                .map(|p| match p {
                    Part::Text(s) | Part::InputText(s) => s.as_str(),
                    _ => "",
                })
                .collect(),
        }
    }

    fn valid(&self) -> bool {
        ROLES.contains(&self.role.name())
            && match &self.content {
                Content::Parts(ps) => ps
                    .iter()
                    .all(|p| matches!(p, Part::Text(_) | Part::InputText(_))),
                _ => true,
            }
    }
}

impl Req {
    fn to_json(&self) -> Value {
        let mut v = json!({});
        match &self.model {
            Model::Known(i) => v["model"] = json!(MODELS[usize::from(*i) % MODELS.len()]),
            Model::Custom(s) => v["model"] = json!(s),
            Model::Empty => v["model"] = json!(""),
            Model::Missing => {}
        }
        if let Some(ms) = &self.messages {
            let list: Vec<Value> = ms
                .iter()
                .map(|m| {
                    let mut o = json!({"role": m.role.name()});
                    match &m.content {
                        Content::Missing => {}
                        Content::Null => o["content"] = Value::Null,
                        Content::Text(s) => o["content"] = json!(s),
                        Content::Parts(ps) => {
                            o["content"] = ps
                                .iter()
                                .map(|p| match p {
                                    Part::Text(s) => json!({"type":"text","text":s}),
                                    Part::InputText(s) => json!({"type":"input_text","text":s}),
                                    Part::TextWithoutText => json!({"type":"text"}),
                                    Part::Image => {
                                        json!({"type":"image_url","image_url":{"url":"data:,"}})
                                    }
                                    Part::Other(s) => json!({"type": s, "x": 1}),
                                })
                                .collect()
                        }
                    }
                    if let Some(n) = &m.name {
                        o["name"] = json!(n);
                    }
                    o
                })
                .collect();
            v["messages"] = Value::Array(list);
        }
        if let Some(s) = self.stream {
            v["stream"] = json!(s);
        }
        if let Some(iu) = self.include_usage {
            v["stream_options"] = match iu {
                Some(b) => json!({ "include_usage": b }),
                None => json!({}),
            };
        }
        if let Some(m) = self.max_tokens {
            v["max_tokens"] = json!(m);
        }
        if let Some(m) = self.max_completion_tokens {
            v["max_completion_tokens"] = json!(m);
        }
        match &self.stop {
            Stop::Missing => {}
            Stop::One(s) => v["stop"] = json!(s),
            Stop::Many(l) => v["stop"] = json!(l),
        }
        if let Some(n) = self.n {
            v["n"] = json!(n);
        }
        if let Some(b) = self.enable_thinking {
            v["enable_thinking"] = json!(b);
        }
        if let Some(e) = &self.reasoning_effort {
            v["reasoning_effort"] = json!(e);
        }
        if let Some(t) = self.temperature.filter(|t| t.is_finite()) {
            v["temperature"] = json!(t);
        }
        v
    }

    /// The validation rules, restated independently of `ChatRequest::validate`.
    fn valid(&self) -> bool {
        let model_ok = match &self.model {
            Model::Known(_) => true,
            Model::Custom(s) => !s.trim().is_empty(),
            Model::Empty | Model::Missing => false,
        };
        let limit_ok = |m: Option<i64>| m.is_none_or(|m| (1..=1_000_000).contains(&m));
        let stops = match &self.stop {
            Stop::Missing => 0,
            Stop::One(s) => usize::from(!s.is_empty()),
            Stop::Many(l) => l.iter().filter(|s| !s.is_empty()).count(),
        };
        model_ok
            && self
                .messages
                .as_ref()
                .is_some_and(|ms| !ms.is_empty() && ms.iter().all(Msg::valid))
            && self.n.is_none_or(|n| n == 1)
            && limit_ok(self.max_tokens)
            && limit_ok(self.max_completion_tokens)
            && stops <= 16
    }

    /// The flattening rule, restated: a lone user turn verbatim, else `[role]` headed turns.
    fn expected_prompt(&self) -> String {
        let turns: Vec<(&str, String)> = self
            .messages
            .iter()
            .flatten()
            .map(|m| {
                let r = match m.role.name() {
                    "developer" => "system",
                    "function" => "tool",
                    r => r,
                };
                (r, m.text())
            })
            .filter(|(_, t)| !t.trim().is_empty())
            .collect();
        if let [("user", t)] = turns.as_slice() {
            return t.clone();
        }
        turns
            .iter()
            .map(|(r, t)| format!("[{r}]\n{t}"))
            .collect::<Vec<_>>()
            .join("\n\n")
    }
}

fuzz_target!(|data: &[u8]| {
    pipeline(data);

    let Ok(req) = Req::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    let body = serde_json::to_vec(&req.to_json()).unwrap();
    let got = pipeline(&body);
    assert_eq!(
        got.is_some(),
        req.valid(),
        "acceptance differs from the rules: {req:?}"
    );
    let want = req.expected_prompt();
    match got {
        Some(Ok((_, plan))) => assert_eq!(plan.prompt, want),
        Some(Err(_)) => assert!(want.trim().is_empty()),
        None => {}
    }
});
