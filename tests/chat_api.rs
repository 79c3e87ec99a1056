//! The OpenAI chat API end to end: the real gateway binary in front of the simulated upstream.

mod common;

use common::*;
use serde_json::{json, Value};

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

async fn stream_body(gw: &Proc, body: Value) -> (u16, reqwest::header::HeaderMap, String) {
    let r = chat(gw, body).await;
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap())
}

fn last_completion(sim: &Proc) -> Value {
    sim_state(sim)["last_completion"].clone()
}

#[tokio::test]
async fn streaming_answer_follows_the_openai_chunk_format() {
    let (sim, gw) = pair(&[]);
    let (status, headers, text) = stream_body(
        &gw,
        json!({"model": "qwen3-max", "stream": true, "messages": user("Tell me a story")}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let events = sse_events(&text);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let (content, reasoning, chunks) = stream_text(&events);
    let expected = last_completion(&sim)["answer"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!expected.is_empty());
    assert_eq!(content, expected);
    assert_eq!(reasoning, "");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let id = chunks[0]["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("chatcmpl-"));
    for c in &chunks {
        assert_eq!(c["id"], id.as_str());
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], "qwen3-max");
        assert!(c["created"].as_u64().unwrap() > 1_700_000_000);
        assert!(c.get("usage").is_none(), "usage only when asked: {c}");
    }
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
    assert!(chunks[..chunks.len() - 1]
        .iter()
        .all(|c| c["choices"][0]["finish_reason"].is_null()));
}

#[tokio::test]
async fn include_usage_adds_one_final_usage_chunk() {
    let (_sim, gw) = pair(&[]);
    let (_, _, text) = stream_body(
        &gw,
        json!({"model": "qwen3-max", "stream": true, "stream_options": {"include_usage": true}, "messages": user("hi")}),
    )
    .await;
    let (_, _, chunks) = stream_text(&sse_events(&text));
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    let u = &last["usage"];
    assert!(u["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(u["completion_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()
    );
    assert!(chunks[..chunks.len() - 1]
        .iter()
        .all(|c| c["usage"].is_null() && c.get("usage").is_some()));
}

#[tokio::test]
async fn non_streaming_answer_is_one_completion_with_upstream_usage() {
    let (sim, gw) = pair(&[]);
    let r = chat(
        &gw,
        json!({"model": "qwen3-max", "messages": user("What is Rust?")}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "qwen3-max");
    let last = last_completion(&sim);
    assert_eq!(v["choices"][0]["message"]["content"], last["answer"]);
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    // The upstream body carries the mandatory phase schema and a single flattened message.
    let body = &last["body"];
    assert_eq!(
        body["messages"][0]["feature_config"]["output_schema"],
        "phase"
    );
    assert_eq!(body["messages"].as_array().unwrap().len(), 1);
    assert_eq!(body["stream"], true);
}

#[tokio::test]
async fn history_is_flattened_into_one_upstream_message() {
    let (sim, gw) = pair(&[]);
    let r = chat(
        &gw,
        json!({"model": "qwen3-max", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": [{"type": "text", "text": "And now?"}]}
        ]}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let prompt = last_completion(&sim)["body"]["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        prompt,
        "[system]\nBe brief.\n\n[user]\nHi\n\n[assistant]\nHello!\n\n[user]\nAnd now?"
    );
}

async fn thinking_case(format: &str, output: &[(&str, &str)]) -> (Value, Value) {
    let mut env = vec![("THINKING_FORMAT", format)];
    env.extend_from_slice(output);
    let (sim, gw) = pair(&env);
    let r = chat(
        &gw,
        json!({"model": "qwen3-max-thinking", "messages": user("Think about it")}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    (v, last_completion(&sim))
}

#[tokio::test]
async fn both_thinking_formats_give_exact_reasoning() {
    for format in ["detail", "summary"] {
        let (v, last) = thinking_case(format, &[]).await;
        assert_eq!(
            last["body"]["messages"][0]["feature_config"]["thinking_enabled"],
            true
        );
        let expected = last["reasoning"].as_str().unwrap();
        assert!(!expected.is_empty(), "{format}");
        assert_eq!(
            v["choices"][0]["message"]["reasoning_content"], expected,
            "{format}"
        );
        assert_eq!(
            v["choices"][0]["message"]["content"], last["answer"],
            "{format}"
        );
    }
}

#[tokio::test]
async fn thinking_streams_as_reasoning_content_and_can_be_tags_or_hidden() {
    let (sim, gw) = pair(&[("THINKING_FORMAT", "summary")]);
    let (_, _, text) = stream_body(
        &gw,
        json!({"model": "qwen3-max", "enable_thinking": true, "stream": true, "messages": user("Why?")}),
    )
    .await;
    let (content, reasoning, _) = stream_text(&sse_events(&text));
    let last = last_completion(&sim);
    assert_eq!(reasoning, last["reasoning"].as_str().unwrap());
    assert_eq!(content, last["answer"].as_str().unwrap());

    let (v, last) = thinking_case("detail", &[("THINK_OUTPUT_FORMAT", "think_tags")]).await;
    let expected = format!(
        "<think>\n{}\n</think>\n\n{}",
        last["reasoning"].as_str().unwrap(),
        last["answer"].as_str().unwrap()
    );
    assert_eq!(v["choices"][0]["message"]["content"], expected.as_str());

    let (v, last) = thinking_case("detail", &[("OUTPUT_THINK", "false")]).await;
    assert!(v["choices"][0]["message"]
        .get("reasoning_content")
        .is_none());
    assert_eq!(v["choices"][0]["message"]["content"], last["answer"]);
}

#[tokio::test]
async fn search_sources_render_as_table_or_text() {
    let (sim, gw) = pair(&[]);
    let r = chat(
        &gw,
        json!({"model": "qwen3-max-search", "messages": user("news today")}),
    )
    .await;
    let v: Value = r.json().await.unwrap();
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(
        last_completion(&sim)["body"]["messages"][0]["chat_type"],
        "search"
    );
    assert!(content.contains("| # | Source | Site |"), "{content}");
    assert!(content.contains("[[1]]"), "{content}");

    let (_sim, gw) = pair(&[("SEARCH_INFO_MODE", "text")]);
    let v: Value = chat(
        &gw,
        json!({"model": "qwen3-max-search", "messages": user("news")}),
    )
    .await
    .json()
    .await
    .unwrap();
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(content.contains("\n[1] ["), "{content}");
}

#[tokio::test]
async fn stop_sequences_and_max_tokens_are_enforced_by_the_gateway() {
    let (sim, gw) = pair(&[]);
    let script = json!({"answer": ["Hello ", "wor", "ld ST", "OP and more", " text"]});
    assert_eq!(
        http(sim.port, "POST", "/__sim/script", Some(&script)).0,
        200
    );
    let (_, _, text) = stream_body(
        &gw,
        json!({"model": "qwen3-max", "stream": true, "stop": ["STOP"], "messages": user("x")}),
    )
    .await;
    let (content, _, chunks) = stream_text(&sse_events(&text));
    assert_eq!(content, "Hello world ");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );

    assert_eq!(
        http(sim.port, "POST", "/__sim/script", Some(&script)).0,
        200
    );
    let v: Value = chat(
        &gw,
        json!({"model": "qwen3-max", "max_tokens": 2, "messages": user("x")}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "Hello wo");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
}

#[tokio::test]
async fn bad_requests_get_precise_openai_errors() {
    let (_sim, gw) = pair(&[("MAX_BODY_BYTES", "4096")]);
    let c = client();
    let post = |body: String, ct: &'static str| {
        c.post(gw.url("/v1/chat/completions"))
            .bearer_auth(USER_KEY)
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let cases: Vec<(String, &str, u16, &str)> = vec![
        ("{not json".into(), "application/json", 400, "not valid JSON"),
        (json!({"model": "qwen3-max"}).to_string(), "application/json", 400, "'messages' is required"),
        (json!({"model": "qwen3-max", "messages": []}).to_string(), "application/json", 400, "at least one"),
        (json!({"messages": user("x")}).to_string(), "application/json", 400, "'model' is required"),
        (json!({"model": "qwen3-max", "messages": [{"role": "wizard", "content": "x"}]}).to_string(), "application/json", 400, "wizard"),
        (json!({"model": "qwen3-max", "n": 3, "messages": user("x")}).to_string(), "application/json", 400, "n=3"),
        (json!({"model": "qwen3-max", "max_tokens": -1, "messages": user("x")}).to_string(), "application/json", 400, "max_tokens"),
        (json!({"model": "qwen3-max", "messages": [{"role": "user", "content": [{"type": "holo"}]}]}).to_string(), "application/json", 400, "unknown type"),
        (json!({"model": "no-such-model", "messages": user("x")}).to_string(), "application/json", 404, "does not exist"),
        (json!({"model": "qwen3-coder-plus-thinking", "messages": user("x")}).to_string(), "application/json", 404, "does not exist"),
        ("x=1".into(), "application/x-www-form-urlencoded", 415, "Content-Type"),
        (json!({"model": "qwen3-max", "messages": user(&"x".repeat(5000))}).to_string(), "application/json", 413, "larger than"),
    ];
    for (body, ct, status, needle) in cases {
        let r = post(body.clone(), ct).await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{body}");
        let v: Value = r.json().await.unwrap();
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{body}: {v}");
        assert!(
            v["error"]["type"].is_string() && v["error"]["code"].is_string(),
            "{v}"
        );
    }
}

#[tokio::test]
async fn keys_are_checked_and_routes_are_known() {
    let (_sim, gw) = pair(&[]);
    let c = client();
    let body = json!({"model": "qwen3-max", "messages": user("x")});
    let r = c
        .post(gw.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_api_key");
    assert!(!v.to_string().contains(USER_KEY));
    let r = c
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("sk-wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .post(gw.url("/v1/chat/completions"))
        .header("x-api-key", ADMIN_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c.get(gw.url("/v1/nothing")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    let r = c.get(gw.url("/v1/chat/completions")).send().await.unwrap();
    assert_eq!(r.status(), 405);
}

#[tokio::test]
async fn models_list_variants_and_health_reports_without_secrets() {
    let (sim, gw) = pair(&[]);
    let c = client();
    assert_eq!(
        c.get(gw.url("/v1/models")).send().await.unwrap().status(),
        401
    );
    let v: Value = c
        .get(gw.url("/v1/models"))
        .bearer_auth(USER_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    for want in [
        "qwen3-max",
        "qwen3-max-thinking",
        "qwen3-max-search",
        "qwen3-max-thinking-search",
        "qwen3-coder-plus",
    ] {
        assert!(ids.contains(&want), "{want} in {ids:?}");
    }
    assert!(!ids.contains(&"qwen3-coder-plus-thinking"));
    let open: Value = c
        .get(gw.url("/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(open["data"], v["data"]);
    // Cached: a second listing does not call the upstream again.
    let calls = sim_state(&sim)["models_calls"].as_u64().unwrap();
    c.get(gw.url("/models")).send().await.unwrap();
    assert_eq!(sim_state(&sim)["models_calls"].as_u64().unwrap(), calls);

    let h = c
        .get(gw.url("/health"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let hv: Value = serde_json::from_str(&h).unwrap();
    assert_eq!(hv["status"], "ok");
    assert_eq!(hv["token"]["valid"], true);
    assert!(hv["token"]["remaining_secs"].as_i64().unwrap() > 3000);
    assert!(hv["version"].is_string());
    let token = mint(&sim, DEMO.0, 3600);
    let secret_prefix = &token[..20];
    assert!(
        !h.contains(secret_prefix) && !h.contains(USER_KEY) && !h.contains(ADMIN_KEY),
        "{h}"
    );

    let (_sim, gw) = pair(&[("SIMPLE_MODEL_MAP", "true")]);
    let v: Value = c
        .get(gw.url("/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| !m["id"].as_str().unwrap().contains("-thinking")));
}

#[tokio::test]
async fn upstream_requests_carry_the_expected_headers() {
    let (sim, gw) = pair(&[]);
    chat(&gw, json!({"model": "qwen3-max", "messages": user("x")})).await;
    let reqs = sim_state(&sim)["requests"].as_array().unwrap().clone();
    let completion = reqs
        .iter()
        .find(|r| {
            r["path"]
                .as_str()
                .unwrap_or("")
                .starts_with("/api/v2/chat/completions")
        })
        .expect("a completion request");
    assert_eq!(completion["authorization"], true, "{completion}");
    assert_eq!(completion["x_request_id_is_uuid"], true, "{completion}");
    assert!(reqs.iter().any(|r| r["path"] == "/api/v2/chats/new"));
}

#[tokio::test]
async fn client_mode_takes_credentials_from_the_request() {
    let sim = spawn_sim(&[DEMO], &[]);
    let base = format!("http://127.0.0.1:{}", sim.port);
    let gw = spawn_gateway(&[
        ("QWEN_BASE_URL", base.as_str()),
        ("SERVER_MODE", "false"),
        ("API_KEY", USER_KEY),
    ]);
    let token = mint(&sim, DEMO.0, 3600);
    let c = client();
    let body = json!({"model": "qwen3-max", "messages": user("client mode")});
    let r = c
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(format!("{USER_KEY};{token}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(USER_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(format!("sk-bad;{token}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// What the sim's `image_tool` reports, as the gateway shows it.
const TOOL_IMAGE: &str =
    "![image](https://cdn.qwenlm.ai/output/sim/t2i/tool/1780000000.png?key=sim)";

#[tokio::test]
async fn pictures_from_the_image_tool_open_the_answer_once() {
    // The sim reports the picture during the thinking and again after it.
    let (sim, gw) = pair(&[("THINKING_FORMAT", "detail")]);
    let (status, _, text) = stream_body(
        &gw,
        json!({"model": "qwen3-max-thinking", "stream": true,
               "messages": user("[[sim:image_tool]] draw a cat")}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let (content, reasoning, _) = stream_text(&sse_events(&text));
    let last = last_completion(&sim);
    let answer = last["answer"].as_str().unwrap();
    assert_eq!(content, format!("{TOOL_IMAGE}\n\n{answer}"));
    assert_eq!(reasoning, last["reasoning"].as_str().unwrap());

    // Unstreamed, without thinking: the same answer.
    let r = chat(
        &gw,
        json!({"model": "qwen3-max", "messages": user("[[sim:image_tool]] draw a dog")}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let answer = last_completion(&sim)["answer"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        format!("{TOOL_IMAGE}\n\n{answer}")
    );

    // Thinking inside tags: the picture comes after the closing tag.
    let (sim, gw) = pair(&[
        ("THINKING_FORMAT", "detail"),
        ("THINK_OUTPUT_FORMAT", "think_tags"),
    ]);
    let r = chat(
        &gw,
        json!({"model": "qwen3-max-thinking", "messages": user("[[sim:image_tool]] draw")}),
    )
    .await;
    let v: Value = r.json().await.unwrap();
    let last = last_completion(&sim);
    assert_eq!(
        v["choices"][0]["message"]["content"],
        format!(
            "<think>\n{}\n</think>\n\n{TOOL_IMAGE}\n\n{}",
            last["reasoning"].as_str().unwrap(),
            last["answer"].as_str().unwrap()
        )
    );
}
