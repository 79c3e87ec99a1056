//! Agent clients end to end: tool calling on the chat endpoint, the Anthropic Messages API and
//! the OpenAI Responses API, against scripted upstream answers.

mod common;

use common::*;
use serde_json::{json, Value};

fn weather_tool() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "Current weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])
}

fn script(sim: &Proc, answer: &[&str]) {
    assert_eq!(
        http(
            sim.port,
            "POST",
            "/__sim/script",
            Some(&json!({ "answer": answer }))
        )
        .0,
        200
    );
}

const CALL: &[&str] = &[
    "I'll check.",
    "\n<tool_c",
    "all>\n{\"name\": \"get_we",
    "ather\", \"arguments\": {\"city\": \"Par",
    "is\"}}\n</tool_call>",
];

fn last_prompt(sim: &Proc) -> String {
    sim_state(sim)["last_completion"]["prompt"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Tool-call deltas of a chat stream, merged per index: (id, name, arguments).
fn stream_calls(chunks: &[Value]) -> Vec<(String, String, String)> {
    let mut calls: Vec<(String, String, String)> = Vec::new();
    for c in chunks {
        let Some(tcs) = c["choices"]
            .get(0)
            .and_then(|ch| ch["delta"]["tool_calls"].as_array())
        else {
            continue;
        };
        for tc in tcs {
            let i = tc["index"].as_u64().unwrap() as usize;
            if i == calls.len() {
                calls.push((
                    tc["id"].as_str().unwrap().into(),
                    tc["function"]["name"].as_str().unwrap().into(),
                    String::new(),
                ));
            }
            calls[i]
                .2
                .push_str(tc["function"]["arguments"].as_str().unwrap_or(""));
        }
    }
    calls
}

#[tokio::test]
async fn streamed_tool_calls_are_parsed_out_of_split_text() {
    let (sim, gw) = pair(&[]);
    script(&sim, CALL);
    let r = chat(
        &gw,
        json!({"model": "qwen3-max", "stream": true, "tools": weather_tool(),
        "messages": [{"role": "user", "content": "Weather in Paris?"}]}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let (content, _, chunks) = stream_text(&sse_events(&r.text().await.unwrap()));
    assert_eq!(content, "I'll check.");
    let calls = stream_calls(&chunks);
    assert_eq!(calls.len(), 1);
    assert!(calls[0].0.starts_with("call_"));
    assert_eq!(calls[0].1, "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(&calls[0].2).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
    let prompt = last_prompt(&sim);
    assert!(prompt.starts_with("# Tools\n"), "{prompt}");
    assert!(
        prompt.contains("- get_weather{ city: string }\n  Current weather"),
        "{prompt}"
    );
}

#[tokio::test]
async fn non_streamed_calls_have_null_content_and_history_is_folded_back() {
    let (sim, gw) = pair(&[]);
    script(&sim, &["<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Oslo\"}}\n</tool_call>"]);
    let v: Value = chat(
        &gw,
        json!({"model": "qwen3-max", "tools": weather_tool(),
        "messages": [{"role": "user", "content": "Weather in Oslo?"}]}),
    )
    .await
    .json()
    .await
    .unwrap();
    let msg = &v["choices"][0]["message"];
    assert!(msg["content"].is_null(), "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let call = &msg["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let id = call["id"].as_str().unwrap().to_string();

    // Step two: the call and its result go back; the answer is plain text.
    script(&sim, &["It is 3C in Oslo."]);
    let v: Value = chat(
        &gw,
        json!({"model": "qwen3-max", "tools": weather_tool(), "messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": null, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": id, "content": "3C"}]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "It is 3C in Oslo.");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let prompt = last_prompt(&sim);
    assert!(prompt.contains("[assistant]\n<tool_call>\n{\"arguments\":{\"city\":\"Oslo\"},\"name\":\"get_weather\"}\n</tool_call>"), "{prompt}");
    assert!(prompt.contains(&format!("[tool]\n<tool_response tool_call_id=\"{id}\" name=\"get_weather\">\n3C\n</tool_response>")), "{prompt}");
}

#[tokio::test]
async fn tool_choice_modes() {
    let (sim, gw) = pair(&[]);
    // none: tools are not described, and markup-looking text is just text.
    let v: Value = chat(
        &gw,
        json!({"model": "qwen3-max", "tools": weather_tool(), "tool_choice": "none",
        "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(!last_prompt(&sim).contains("# Tools"));
    assert_eq!(v["choices"][0]["finish_reason"], "stop");

    // required, ignored by the model: one corrective retry, which calls.
    script(&sim, &["I think it is sunny."]);
    script(&sim, CALL);
    let before = sim_state(&sim)["completions"].as_u64().unwrap();
    for stream in [false, true] {
        if stream {
            script(&sim, &["Still no call."]);
            script(&sim, CALL);
        }
        let r = chat(&gw, json!({"model": "qwen3-max", "stream": stream, "tools": weather_tool(), "tool_choice": "required",
            "messages": [{"role": "user", "content": "Weather in Paris?"}]}))
        .await;
        let text = r.text().await.unwrap();
        let calls = if stream {
            stream_calls(&stream_text(&sse_events(&text)).2).len()
        } else {
            let v: Value = serde_json::from_str(&text).unwrap();
            v["choices"][0]["message"]["tool_calls"]
                .as_array()
                .map_or(0, |a| a.len())
        };
        assert_eq!(calls, 1, "stream={stream}: {text}");
        assert!(
            !text.contains("sunny") && !text.contains("Still no call"),
            "the ignored answer never reaches the client"
        );
    }
    assert_eq!(sim_state(&sim)["completions"].as_u64().unwrap(), before + 4);
    assert!(last_prompt(&sim).contains("did not call a tool"));

    // named
    script(&sim, CALL);
    chat(
        &gw,
        json!({"model": "qwen3-max", "tools": weather_tool(),
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert!(last_prompt(&sim).contains("You MUST call the tool `get_weather`"));
    let r = chat(
        &gw,
        json!({"model": "qwen3-max", "tools": weather_tool(),
        "tool_choice": {"type": "function", "function": {"name": "nope"}},
        "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn several_calls_fences_and_malformed_blocks() {
    let (sim, gw) = pair(&[]);
    let tools = json!([
        {"type": "function", "function": {"name": "a", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "b", "parameters": {"type": "object"}}}]);
    script(&sim, &["```json\n<tool_call>\n{\"name\":\"a\",\"arguments\":{\"x\":1,}}\n</tool_call>\n```\n<tool_call>{\"name\":\"b\",\"arguments\":{}}</tool_call>"]);
    let v: Value = chat(&gw, json!({"model": "qwen3-max", "tools": tools, "messages": [{"role": "user", "content": "x"}]}))
        .await
        .json()
        .await
        .unwrap();
    let calls = v["choices"][0]["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["function"]["arguments"], "{\"x\":1}");
    assert!(v["choices"][0]["message"]["content"].is_null(), "{v}");

    script(
        &sim,
        &["Answer: <tool_call>this is not json</tool_call> done."],
    );
    let v: Value = chat(&gw, json!({"model": "qwen3-max", "tools": tools, "messages": [{"role": "user", "content": "x"}]}))
        .await
        .json()
        .await
        .unwrap();
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        !content.contains("<tool_call>") && !content.contains("</tool_call>"),
        "{content}"
    );
    assert!(content.contains("this is not json"));
    assert_eq!(v["choices"][0]["finish_reason"], "stop");

    // parallel_tool_calls=false keeps only the first call.
    script(&sim, &["<tool_call>{\"name\":\"a\",\"arguments\":{}}</tool_call><tool_call>{\"name\":\"b\",\"arguments\":{}}</tool_call>"]);
    let v: Value = chat(
        &gw,
        json!({"model": "qwen3-max", "tools": tools, "parallel_tool_calls": false,
        "messages": [{"role": "user", "content": "x"}]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

async fn post(gw: &Proc, path: &str, headers: &[(&str, &str)], body: Value) -> reqwest::Response {
    let mut r = client().post(gw.url(path)).json(&body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

fn anthropic_events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let mut lines = e.lines();
            let name = lines
                .next()
                .unwrap()
                .strip_prefix("event: ")
                .unwrap()
                .to_string();
            let data: Value =
                serde_json::from_str(lines.next().unwrap().strip_prefix("data: ").unwrap())
                    .unwrap();
            assert_eq!(data["type"], name.as_str());
            (name, data)
        })
        .collect()
}

#[tokio::test]
async fn anthropic_messages_stream_and_whole() {
    let (sim, gw) = pair(&[("THINKING_FORMAT", "summary")]);
    let key = [("x-api-key", USER_KEY), ("anthropic-version", "2023-06-01")];
    let r = post(
        &gw,
        "/v1/messages",
        &key,
        json!({"model": "qwen3-max", "max_tokens": 1024, "temperature": 0.3,
        "system": "Be brief.", "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [{"role": "user", "content": "Why is the sky blue?"}]}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-qwen-gateway-ignored-fields"], "temperature");
    let v: Value = r.json().await.unwrap();
    let last = sim_state(&sim)["last_completion"].clone();
    assert_eq!(v["type"], "message");
    assert!(v["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(v["content"][0]["type"], "thinking");
    assert_eq!(v["content"][0]["thinking"], last["reasoning"]);
    assert_eq!(
        v["content"][1],
        json!({"type": "text", "text": last["answer"]})
    );
    assert_eq!(v["stop_reason"], "end_turn");
    assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert!(last["prompt"]
        .as_str()
        .unwrap()
        .starts_with("[system]\nBe brief."));

    let r = post(
        &gw,
        "/v1/messages",
        &key,
        json!({"model": "qwen3-max", "max_tokens": 1024, "stream": true,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [{"role": "user", "content": "Stream it"}]}),
    )
    .await;
    let events = anthropic_events(&r.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        &names[..3],
        &["message_start", "ping", "content_block_start"]
    );
    assert_eq!(
        &names[names.len() - 2..],
        &["message_delta", "message_stop"]
    );
    assert_eq!(events[2].1["content_block"]["type"], "thinking");
    let text: String = events
        .iter()
        .filter(|(n, d)| n == "content_block_delta" && d["delta"]["type"] == "text_delta")
        .map(|(_, d)| d["delta"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        text,
        sim_state(&sim)["last_completion"]["answer"]
            .as_str()
            .unwrap()
    );
    // Every started block is stopped, in order.
    let starts: Vec<u64> = events
        .iter()
        .filter(|(n, _)| n == "content_block_start")
        .map(|(_, d)| d["index"].as_u64().unwrap())
        .collect();
    let stops: Vec<u64> = events
        .iter()
        .filter(|(n, _)| n == "content_block_stop")
        .map(|(_, d)| d["index"].as_u64().unwrap())
        .collect();
    assert_eq!(starts, vec![0, 1]);
    assert_eq!(starts, stops);
}

#[tokio::test]
async fn anthropic_tools_errors_and_token_counting() {
    let (sim, gw) = pair(&[]);
    let key = [("authorization", "Bearer sk-test-user-0123456789")];
    let tools = json!([{"name": "get_weather", "description": "w", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
    script(&sim, CALL);
    let v: Value = post(
        &gw,
        "/v1/messages",
        &key,
        json!({"model": "qwen3-max", "max_tokens": 512, "tools": tools,
        "messages": [{"role": "user", "content": "Weather in Paris?"}]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(
        v["content"][0],
        json!({"type": "text", "text": "I'll check."})
    );
    assert_eq!(v["content"][1]["type"], "tool_use");
    assert_eq!(v["content"][1]["input"], json!({"city": "Paris"}));
    let tool_id = v["content"][1]["id"].as_str().unwrap().to_string();

    script(&sim, CALL);
    let r = post(
        &gw,
        "/v1/messages",
        &key,
        json!({"model": "qwen3-max", "max_tokens": 512, "tools": tools, "stream": true,
        "messages": [{"role": "user", "content": "Weather in Paris?"}]}),
    )
    .await;
    let events = anthropic_events(&r.text().await.unwrap());
    let json_in: String = events
        .iter()
        .filter(|(_, d)| d["delta"]["type"] == "input_json_delta")
        .map(|(_, d)| d["delta"]["partial_json"].as_str().unwrap())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&json_in).unwrap(),
        json!({"city": "Paris"})
    );
    let delta = events.iter().find(|(n, _)| n == "message_delta").unwrap();
    assert_eq!(delta.1["delta"]["stop_reason"], "tool_use");

    // The result goes back as a tool_result block.
    script(&sim, &["Sunny."]);
    post(&gw, "/v1/messages", &key, json!({"model": "qwen3-max", "max_tokens": 512, "tools": tools, "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": tool_id, "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_id, "content": "22C"}]}]}))
    .await;
    assert!(last_prompt(&sim).contains("name=\"get_weather\">\n22C\n</tool_response>"));

    // Errors come in Anthropic's shape.
    let r = post(&gw, "/v1/messages", &[], json!({"model": "qwen3-max", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "authentication_error");
    let r = post(
        &gw,
        "/v1/messages",
        &key,
        json!({"model": "nope", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["type"],
        "not_found_error"
    );
    let r = post(
        &gw,
        "/v1/messages",
        &key,
        json!({"model": "qwen3-max", "max_tokens": 5, "messages": []}),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["type"],
        "invalid_request_error"
    );
    let r = post(&gw, "/v1/messages", &key, json!({"model": "qwen3-max", "max_tokens": 5, "messages": [{"role": "user", "content": "[[sim:http429]]"}]})).await;
    assert_eq!(r.status(), 429);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["type"],
        "rate_limit_error"
    );

    let v: Value = post(
        &gw,
        "/v1/messages/count_tokens",
        &key,
        json!({"model": "qwen3-max", "tools": tools,
        "messages": [{"role": "user", "content": "Hello there, how are you today?"}]}),
    )
    .await
    .json()
    .await
    .unwrap();
    let n = v["input_tokens"].as_u64().unwrap();
    assert!(n > 10, "{v}");
}

fn responses_events(text: &str) -> Vec<Value> {
    let events = anthropic_events(text)
        .into_iter()
        .map(|(_, d)| d)
        .collect::<Vec<_>>();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["sequence_number"], i as u64);
    }
    events
}

#[tokio::test]
async fn responses_api_stream_whole_and_function_calls() {
    let (sim, gw) = pair(&[]);
    let key = [("authorization", "Bearer sk-test-user-0123456789")];
    let v: Value = post(
        &gw,
        "/v1/responses",
        &key,
        json!({"model": "qwen3-max", "instructions": "Be brief.", "input": "Hello!"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    let msg = v["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["type"] == "message")
        .unwrap();
    assert_eq!(
        msg["content"][0]["text"],
        sim_state(&sim)["last_completion"]["answer"]
    );
    assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0);

    let tools = json!([{"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
    script(&sim, CALL);
    let r = post(&gw, "/v1/responses", &key, json!({"model": "qwen3-max", "stream": true, "tools": tools,
        "reasoning": {"effort": "high"}, "input": [{"role": "user", "content": "Weather in Paris?"}]}))
    .await;
    let events = responses_events(&r.text().await.unwrap());
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(&types[..2], &["response.created", "response.in_progress"]);
    assert_eq!(types.last(), Some(&"response.completed"));
    assert!(types.contains(&"response.output_text.delta"));
    assert!(types.contains(&"response.function_call_arguments.delta"));
    let done = events.last().unwrap();
    let out = done["response"]["output"].as_array().unwrap();
    let call = out.iter().find(|o| o["type"] == "function_call").unwrap();
    assert_eq!(call["name"], "get_weather");
    let call_id = call["call_id"].as_str().unwrap().to_string();

    script(&sim, &["Sunny in Paris."]);
    let v: Value = post(&gw, "/v1/responses", &key, json!({"model": "qwen3-max", "tools": tools, "input": [
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "function_call", "call_id": call_id, "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
        {"type": "function_call_output", "call_id": call_id, "output": "22C"}]}))
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["output"][0]["content"][0]["text"], "Sunny in Paris.");
    assert!(last_prompt(&sim).contains("22C\n</tool_response>"));
}
