//! Image and video generation: model suffixes and `chat_type` on chat completions, the
//! OpenAI images and videos endpoints, sizes reaching the upstream, image edits finding
//! their image, video polling with keep-alives, and truthful errors.

mod common;

use base64::Engine;
use common::*;
use serde_json::{json, Value};

/// A 1x1 PNG.
const PNG_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

fn fast() -> Vec<(&'static str, &'static str)> {
    vec![
        ("UPLOAD_RETRY_BACKOFF_MS", "10"),
        ("VIDEO_POLL_INTERVAL_MS", "40"),
    ]
}

fn ask(model: &str, prompt: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": prompt}]})
}

fn last_generation(sim: &Proc) -> Value {
    sim_state(sim)["media"]["last_generation"].clone()
}

fn generations(sim: &Proc) -> usize {
    sim_state(sim)["media"]["generations"]
        .as_array()
        .map_or(0, Vec::len)
}

async fn post(gw: &Proc, path: &str, body: Value) -> (u16, Value) {
    let r = client()
        .post(gw.url(path))
        .bearer_auth(USER_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn chat_json(gw: &Proc, body: Value) -> (u16, Value) {
    post(gw, "/v1/chat/completions", body).await
}

fn content(v: &Value) -> String {
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// The URL inside `![image](url)`.
fn image_url(markdown: &str) -> String {
    let start = markdown.find("](").expect("markdown image") + 2;
    markdown[start..markdown[start..].find(')').unwrap() + start].to_string()
}

#[tokio::test]
async fn text_to_image_in_chat_by_suffix_and_by_chat_type() {
    let (sim, gw) = pair(&fast());
    let (st, v) = chat_json(&gw, ask("qwen3-max-image", "a red fox in the snow", false)).await;
    assert_eq!(st, 200, "{v}");
    let text = content(&v);
    assert!(text.starts_with("![image](http"), "{text}");
    let url = image_url(&text);
    assert!(
        url.contains("/cdn/output/") && url.contains(".png?key="),
        "{url}"
    );
    assert_eq!(v["model"], "qwen3-max-image");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let g = last_generation(&sim);
    assert_eq!(
        (g["requested"].as_str(), g["chat_type"].as_str()),
        (Some("t2i"), Some("t2i"))
    );
    assert_eq!(g["result_url"], url.as_str());
    let body = &sim_state(&sim)["last_completion"]["body"];
    assert_eq!(body["messages"][0]["content"], "a red fox in the snow");
    assert_eq!(body["model"], "qwen3-max");

    // Streamed: one content chunk with the Markdown, a stop, [DONE].
    let r = chat(&gw, ask("qwen3-max-image", "a lighthouse", true)).await;
    assert_eq!(r.status(), 200);
    let events = sse_events(&r.text().await.unwrap());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let (streamed, _, chunks) = stream_text(&events);
    assert_eq!(
        image_url(&streamed),
        last_generation(&sim)["result_url"].as_str().unwrap()
    );
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "stop"));

    // chat_type selects it too, streamed or not.
    let mut b = ask("qwen3-max", "a bowl of ramen", false);
    b["chat_type"] = json!("t2i");
    let (st, v) = chat_json(&gw, b.clone()).await;
    assert_eq!(st, 200, "{v}");
    assert!(content(&v).starts_with("![image]("));
    assert_eq!(last_generation(&sim)["chat_type"], "t2i");
    b["stream"] = json!(true);
    let r = chat(&gw, b).await;
    let (streamed, _, _) = stream_text(&sse_events(&r.text().await.unwrap()));
    assert!(streamed.starts_with("![image]("), "{streamed}");

    // A model without image generation, and an unknown chat_type.
    let (st, v) = chat_json(&gw, ask("qwen3-coder-plus-image", "a cat", false)).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (404, Some("model_not_found")),
        "{v}"
    );
    let mut b = ask("qwen3-coder-plus", "a cat", false);
    b["chat_type"] = json!("t2i");
    assert_eq!(chat_json(&gw, b).await.0, 404);
    let mut b = ask("qwen3-max", "a cat", false);
    b["chat_type"] = json!("slides");
    assert_eq!(chat_json(&gw, b).await.0, 400);
}

#[tokio::test]
async fn the_size_reaches_the_upstream_from_field_pixels_or_prompt() {
    let (sim, gw) = pair(&fast());
    let with_size = |size: &str| {
        let mut b = ask("qwen3-max-image", "a mountain lake", false);
        b["size"] = json!(size);
        b
    };
    for (size, ratio) in [
        ("16:9", "16:9"),
        ("1024x1792", "9:16"),
        ("1536x1024", "4:3"),
    ] {
        let (st, v) = chat_json(&gw, with_size(size)).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(last_generation(&sim)["size"], ratio, "{size}");
        let body = &sim_state(&sim)["last_completion"]["body"];
        assert_eq!(body["size"], ratio);
        assert_eq!(body["messages"][0]["size"], ratio);
    }
    // A tag in the prompt sets it and is removed; a bare ratio sets it and stays.
    let (st, _) = chat_json(&gw, ask("qwen3-max-image", "a tall tower @9:16", false)).await;
    assert_eq!(st, 200);
    assert_eq!(last_generation(&sim)["size"], "9:16");
    let body = &sim_state(&sim)["last_completion"]["body"];
    assert_eq!(body["messages"][0]["content"], "a tall tower");
    chat_json(
        &gw,
        ask("qwen3-max-image", "a 3:4 portrait of a cat", false),
    )
    .await;
    assert_eq!(last_generation(&sim)["size"], "3:4");
    // No size anywhere: none is sent, the upstream picks its default.
    chat_json(&gw, ask("qwen3-max-image", "a cat", false)).await;
    assert_eq!(last_generation(&sim)["size"], Value::Null);

    let (st, v) = chat_json(&gw, with_size("enormous")).await;
    assert_eq!(
        (st, v["error"]["param"].as_str()),
        (400, Some("size")),
        "{v}"
    );
}

#[tokio::test]
async fn image_edit_finds_the_image_in_the_last_message_or_an_earlier_answer() {
    let (sim, gw) = pair(&fast());
    let data = format!("data:image/png;base64,{PNG_B64}");
    let b = json!({"model": "qwen3-max-image_edit", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "make the background blue"},
        {"type": "image_url", "image_url": {"url": data}}]}]});
    let (st, v) = chat_json(&gw, b).await;
    assert_eq!(st, 200, "{v}");
    let g = last_generation(&sim);
    assert_eq!(g["chat_type"], "image_edit", "{g}");
    assert!(
        g["files"][0].as_str().unwrap().contains("/cdn/files/"),
        "{g}"
    );
    assert_eq!(
        g["known_uploads"],
        json!([true]),
        "uploaded, then referenced"
    );
    assert_eq!(g["inline_data"], false);
    let body = &sim_state(&sim)["last_completion"]["body"];
    assert_eq!(body["messages"][0]["files"][0]["type"], "image");
    assert_eq!(body["messages"][0]["content"], "make the background blue");

    // A follow-up edits the previous result, named in the assistant's Markdown.
    let (_, first) = chat_json(&gw, ask("qwen3-max-image", "a white cat", false)).await;
    let earlier = content(&first);
    let b = json!({"model": "qwen3-max-image-edit", "stream": true, "messages": [
        {"role": "user", "content": "a white cat"},
        {"role": "assistant", "content": earlier},
        {"role": "user", "content": "now give it a red hat"}]});
    let r = chat(&gw, b).await;
    assert_eq!(r.status(), 200);
    let (streamed, _, _) = stream_text(&sse_events(&r.text().await.unwrap()));
    assert!(streamed.starts_with("![image]("));
    let g = last_generation(&sim);
    assert_eq!(g["chat_type"], "image_edit");
    assert_eq!(g["files"], json!([image_url(&earlier)]));
    assert_eq!(
        sim_state(&sim)["last_completion"]["body"]["messages"][0]["content"],
        "now give it a red hat"
    );

    // Nothing to edit: generated from the prompt instead.
    chat_json(&gw, ask("qwen3-max-image_edit", "a green hat", false)).await;
    let g = last_generation(&sim);
    assert_eq!(
        (g["requested"].as_str(), g["files"].clone()),
        (Some("t2i"), json!([]))
    );
}

#[tokio::test]
async fn video_polls_the_task_and_keeps_the_stream_alive() {
    let (sim, gw) = pair(&fast());
    let r = chat(&gw, ask("qwen3-max-video", "a timelapse of clouds", true)).await;
    assert_eq!(r.status(), 200);
    let raw = r.text().await.unwrap();
    assert!(raw.starts_with(": keep-alive\n\n"), "{raw}");
    assert!(raw.matches(": keep-alive").count() >= 3, "{raw}");
    let events = sse_events(&raw);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let (text, _, _) = stream_text(&events);
    assert!(
        text.contains(".mp4?key=") && text.contains("[Download video]("),
        "{text}"
    );
    let state = sim_state(&sim);
    let task = &state["media"]["tasks"][0];
    assert!(task["polls"].as_u64().unwrap() >= 3, "{task}");
    assert!(text.contains(task["video_url"].as_str().unwrap()));
    let body = &state["last_completion"]["body"];
    assert_eq!(
        (body["chat_type"].as_str(), body["stream"].as_bool()),
        (Some("t2v"), Some(false))
    );

    let (st, v) = chat_json(&gw, ask("qwen3-max-video", "waves at dusk @16:9", false)).await;
    assert_eq!(st, 200, "{v}");
    assert!(content(&v).contains("<video src=\"http"), "{v}");
    assert_eq!(last_generation(&sim)["size"], "16:9");
}

#[tokio::test]
async fn video_failures_are_truthful_errors() {
    let mut env = fast();
    env.push(("VIDEO_TIMEOUT_SECS", "1"));
    let (_sim, gw) = pair(&env);
    let (st, v) = chat_json(
        &gw,
        ask("qwen3-max-video", "rain [[sim:task_never_ends]]", false),
    )
    .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (504, Some("generation_timeout")),
        "{v}"
    );
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("VIDEO_TIMEOUT_SECS"));

    // Streamed, the failure ends the committed stream with an error event.
    let r = chat(
        &gw,
        ask("qwen3-max-video", "rain [[sim:task_never_ends]]", true),
    )
    .await;
    assert_eq!(r.status(), 200);
    let raw = r.text().await.unwrap();
    assert!(raw.contains(": keep-alive"));
    let events = sse_events(&raw);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let err: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(err["error"]["code"], "generation_timeout", "{raw}");

    let (st, v) = chat_json(
        &gw,
        ask("qwen3-max-video", "fire [[sim:task_failed]]", false),
    )
    .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (502, Some("generation_failed")),
        "{v}"
    );
    assert!(
        v["error"]["message"].as_str().unwrap().contains("failed"),
        "{v}"
    );

    let (st, v) = chat_json(&gw, ask("qwen3-max-video", "ice [[sim:task_no_id]]", false)).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (502, Some("generation_failed")),
        "{v}"
    );
    assert!(
        v["error"]["message"].as_str().unwrap().contains("task"),
        "{v}"
    );

    let (st, v) = post(
        &gw,
        "/v1/videos",
        json!({"prompt": "dust [[sim:task_failed]]"}),
    )
    .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (502, Some("generation_failed")),
        "{v}"
    );
}

#[tokio::test]
async fn upstream_failures_fail_over_or_give_their_status() {
    let b = ("b@example.com", "b-password");
    let sim = spawn_sim(&[DEMO, b], &[]);
    let cookies = format!(
        "token={}|||token={}",
        mint(&sim, DEMO.0, 3600),
        mint(&sim, b.0, 3600)
    );
    let base = format!("http://127.0.0.1:{}", sim.port);
    let gw = spawn_gateway(&[
        ("QWEN_BASE_URL", base.as_str()),
        ("COOKIE", cookies.as_str()),
        ("API_KEY", USER_KEY),
        // Failures here are the test's doing: no account may rest or trip its breaker.
        ("RATE_LIMIT_COOLDOWN_MS", "0"),
        ("BREAKER_DEGRADED_AFTER", "50"),
        ("BREAKER_OPEN_AFTER", "50"),
    ]);
    // One account fails; the other one answers.
    inject(&sim, "*", "completions", "http500", 1);
    let (st, v) = post(&gw, "/v1/images/generations", json!({"prompt": "a kite"})).await;
    assert_eq!(st, 200, "{v}");
    let per = sim_state(&sim)["completions_by_account"].clone();
    assert_eq!(
        (per[DEMO.0].as_u64(), per[b.0].as_u64()),
        (Some(1), Some(1)),
        "{per}"
    );
    // Every account fails: the last failure's status, never an empty success.
    inject(&sim, "*", "completions", "http502", 2);
    let (st, v) = post(&gw, "/v1/images/generations", json!({"prompt": "a kite"})).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (502, Some("upstream_error")),
        "{v}"
    );
    inject(&sim, "*", "completions", "empty", 2);
    let (st, v) = chat_json(&gw, ask("qwen3-max-image", "a kite", false)).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (429, Some("upstream_empty_response")),
        "{v}"
    );
    inject(&sim, "*", "completions", "http429", 2);
    let (st, v) = post(&gw, "/v1/videos", json!({"prompt": "a kite"})).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (429, Some("upstream_rate_limited")),
        "{v}"
    );
}

#[tokio::test]
async fn images_generations_url_b64_and_n() {
    let (sim, gw) = pair(&fast());
    let (st, v) = post(
        &gw,
        "/v1/images/generations",
        json!({"prompt": "a red fox"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert!(v["created"].as_u64().unwrap() > 0);
    let url = v["data"][0]["url"].as_str().unwrap();
    assert_eq!(last_generation(&sim)["result_url"], url);

    let cdn = reqwest::get(url).await.unwrap().bytes().await.unwrap();
    let (st, v) = post(
        &gw,
        "/v1/images/generations",
        json!({"prompt": "a red fox", "response_format": "b64_json", "size": "1792x1024",
               "model": "dall-e-3", "quality": "hd"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let b64 = v["data"][0]["b64_json"].as_str().unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    assert_eq!(bytes, cdn.to_vec(), "the bytes the CDN serves");
    assert!(v["data"][0].get("url").is_none());
    assert_eq!(last_generation(&sim)["size"], "16:9");

    let before = generations(&sim);
    let (st, v) = post(
        &gw,
        "/v1/images/generations",
        json!({"prompt": "two owls", "n": 2, "model": "qwen3-max-image"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_ne!(data[0]["url"], data[1]["url"]);
    assert_eq!(
        generations(&sim),
        before + 2,
        "one upstream generation per image"
    );

    for bad in [
        json!({"prompt": "x", "n": 5}),
        json!({"prompt": "x", "n": 0}),
        json!({"prompt": "x", "n": "many"}),
        json!({"prompt": "x", "response_format": "xml"}),
        json!({"prompt": "x", "size": "big"}),
        json!({"n": 1}),
        json!({"prompt": "x", "model": "qwen3-max-video"}),
    ] {
        let (st, v) = post(&gw, "/v1/images/generations", bad.clone()).await;
        assert_eq!(st, 400, "{bad} -> {v}");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    let r = client()
        .post(gw.url("/v1/images/generations"))
        .json(&json!({"prompt": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (st, _) = post(
        &gw,
        "/v1/images/generations",
        json!({"prompt": "x", "model": "nope"}),
    )
    .await;
    assert_eq!(st, 404);
}

const BOUNDARY: &str = "gen-test-boundary-42";

async fn send_form(gw: &Proc, path: &str, body: Vec<u8>) -> reqwest::Response {
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    let req = client().post(gw.url(path)).bearer_auth(USER_KEY);
    req.header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap()
}

fn multipart(boundary: &str, fields: &[(&str, &str)], files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = Vec::new();
    for (k, v) in fields {
        b.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    for (name, data) in files {
        b.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; \
                 filename=\"in.png\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        b.extend_from_slice(data);
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    b
}

#[tokio::test]
async fn images_edits_multipart_and_json() {
    let (sim, gw) = pair(&fast());
    let boundary = BOUNDARY;
    let png = base64::engine::general_purpose::STANDARD
        .decode(PNG_B64)
        .unwrap();
    let body = multipart(
        boundary,
        &[
            ("prompt", "add a rainbow"),
            ("size", "1024x1024"),
            ("mask", "ignored"),
        ],
        &[("image", &png)],
    );
    let r = send_form(&gw, "/v1/images/edits", body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-qwen-gateway-ignored-fields"], "mask");
    let v: Value = r.json().await.unwrap();
    let g = last_generation(&sim);
    assert_eq!(v["data"][0]["url"], g["result_url"]);
    assert_eq!(
        (g["chat_type"].as_str(), g["size"].as_str()),
        (Some("image_edit"), Some("1:1"))
    );
    assert_eq!(g["known_uploads"], json!([true]), "{g}");
    let uploads = sim_state(&sim)["media"]["uploads_log"].clone();
    assert_eq!(uploads[0]["size"], png.len());
    assert_eq!(
        uploads[0]["content_type"], "image/png",
        "sniffed from the bytes"
    );

    let data = format!("data:image/png;base64,{PNG_B64}");
    let (st, v) = post(
        &gw,
        "/v1/images/edits",
        json!({"prompt": "make it night", "images": [{"image_url": data}], "response_format": "b64_json"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert!(v["data"][0]["b64_json"].as_str().unwrap().len() > 10);
    let g = last_generation(&sim);
    assert_eq!(
        (g["chat_type"].as_str(), g["known_uploads"].clone()),
        (Some("image_edit"), json!([true]))
    );

    let (st, v) = post(&gw, "/v1/images/edits", json!({"prompt": "no image"})).await;
    assert_eq!(
        (st, v["error"]["param"].as_str()),
        (400, Some("image")),
        "{v}"
    );
    let not_png = multipart(boundary, &[("prompt", "x")], &[("image", b"hello")]);
    let r = send_form(&gw, "/v1/images/edits", not_png).await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn videos_endpoint_and_model_list() {
    let (sim, gw) = pair(&fast());
    let (st, v) = post(
        &gw,
        "/v1/videos",
        json!({"prompt": "a paper boat", "size": "1280x720",
                                               "seconds": "8"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert!(v["id"].as_str().unwrap().starts_with("video_"));
    assert_eq!(
        (v["object"].as_str(), v["status"].as_str()),
        (Some("video"), Some("completed"))
    );
    assert_eq!(v["model"], "qwen3-max-video");
    let url = v["url"].as_str().unwrap();
    assert!(url.contains(".mp4?key="), "{v}");
    assert_eq!(v["data"][0]["url"], url);
    assert_eq!(last_generation(&sim)["size"], "16:9");

    let models: Value = client()
        .get(gw.url("/v1/models"))
        .bearer_auth(USER_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    for want in ["qwen3-max-image", "qwen3-max-image_edit", "qwen3-max-video"] {
        assert!(ids.contains(&want), "{want} in {ids:?}");
    }
    for absent in [
        "qwen3-coder-plus-image",
        "qwen3-vl-plus-video",
        "qwen3-vl-plus-image",
    ] {
        assert!(!ids.contains(&absent), "{absent} in {ids:?}");
    }
}
