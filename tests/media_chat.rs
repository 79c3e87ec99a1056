//! Image input on the chat endpoint: uploaded to the upstream's storage and referenced by URL,
//! cached by content, guarded, and a failed upload is an error the client sees.

mod common;

use common::*;
use serde_json::{json, Value};

/// A 1x1 PNG.
const PNG_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

fn image_message(url: &str, model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": url}}]}]})
}

fn uploads(sim: &Proc) -> Vec<Value> {
    sim_state(sim)["media"]["uploads_log"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn data_uri_images_are_uploaded_once_and_referenced_by_url() {
    let (sim, gw) = pair(&[("UPLOAD_RETRY_BACKOFF_MS", "10")]);
    let data = format!("data:image/png;base64,{PNG_B64}");
    let r = chat(&gw, image_message(&data, "qwen3-max")).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let body = sim_state(&sim)["last_completion"]["body"].clone();
    let content = &body["messages"][0]["content"];
    assert_eq!(content[0]["type"], "text");
    let url = content[1]["image"].as_str().unwrap().to_string();
    assert!(url.contains("/cdn/files/"), "{url}");
    assert!(
        !body.to_string().contains("base64,"),
        "the image is never sent inline"
    );
    assert_eq!(uploads(&sim).len(), 1);
    assert_eq!(uploads(&sim)[0]["size"], 70);

    // The same image again: no second upload.
    let r = chat(&gw, image_message(&data, "qwen3-max")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(uploads(&sim).len(), 1);
}

#[tokio::test]
async fn vision_fallback_and_guards() {
    let (sim, gw) = pair(&[
        ("UPLOAD_RETRY_BACKOFF_MS", "10"),
        ("MAX_IMAGE_BYTES", "2000"),
    ]);
    let data = format!("data:image/png;base64,{PNG_B64}");
    // qwen3-coder-plus has no vision: the whole request goes to the fallback model.
    let r = chat(&gw, image_message(&data, "qwen3-coder-plus")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        sim_state(&sim)["last_completion"]["body"]["model"],
        "qwen3-vl-plus"
    );

    // A private-address URL is refused before anything is fetched.
    let cdn = format!("http://127.0.0.1:{}/cdn/output/x.png?key=k", sim.port);
    let r = chat(&gw, image_message(&cdn, "qwen3-max")).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "media_url_refused", "{v}");
    let r = chat(
        &gw,
        image_message("http://169.254.169.254/latest/meta-data", "qwen3-max"),
    )
    .await;
    assert_eq!(r.status(), 400);

    // Too big, and not base64 at all.
    let big = format!("data:image/png;base64,{}", "A".repeat(4000));
    let r = chat(&gw, image_message(&big, "qwen3-max")).await;
    assert_eq!(r.status(), 413);
    let r = chat(
        &gw,
        image_message("data:image/png;base64,!!!not-base64!!!", "qwen3-max"),
    )
    .await;
    assert_eq!(r.status(), 400);

    // A failed upload is an error with the reason, not a silent text-only answer.
    inject(&sim, "*", "sts", "sts_403", 1);
    let before = sim_state(&sim)["completions"].as_u64().unwrap();
    let other = "iVBORw0KGgoAAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs=";
    let r = chat(
        &gw,
        image_message(&format!("data:image/png;base64,{other}"), "qwen3-max"),
    )
    .await;
    assert!(r.status().as_u16() >= 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "media_upload_failed", "{v}");
    assert_eq!(
        sim_state(&sim)["completions"].as_u64().unwrap(),
        before,
        "no completion was attempted"
    );
}

#[tokio::test]
async fn remote_urls_are_fetched_and_uploaded_when_allowed() {
    let (sim, gw) = pair(&[
        ("ALLOW_PRIVATE_IMAGE_URLS", "true"),
        ("UPLOAD_RETRY_BACKOFF_MS", "10"),
    ]);
    let cdn = format!("http://127.0.0.1:{}/cdn/output/pic.png?key=k", sim.port);
    let r = chat(&gw, image_message(&cdn, "qwen3-max")).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let body = sim_state(&sim)["last_completion"]["body"].clone();
    let url = body["messages"][0]["content"][1]["image"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        url.contains("/cdn/files/") && !url.contains("pic.png"),
        "re-uploaded, not passed through: {url}"
    );
    assert_eq!(uploads(&sim).len(), 1);
}

#[tokio::test]
async fn anthropic_and_responses_images_take_the_same_upload_path() {
    let (sim, gw) = pair(&[("UPLOAD_RETRY_BACKOFF_MS", "10")]);
    let c = client();
    let r = c
        .post(gw.url("/v1/messages"))
        .header("x-api-key", USER_KEY)
        .json(&json!({"model": "qwen3-max", "max_tokens": 100, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
            {"type": "text", "text": "Describe it."}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = sim_state(&sim)["last_completion"]["body"].clone();
    assert!(body["messages"][0]["content"][1]["image"]
        .as_str()
        .unwrap()
        .contains("/cdn/files/"));

    let r = c
        .post(gw.url("/v1/responses"))
        .bearer_auth(USER_KEY)
        .json(
            &json!({"model": "qwen3-max", "input": [{"role": "user", "content": [
            {"type": "input_text", "text": "And this?"},
            {"type": "input_image", "image_url": format!("data:image/png;base64,{PNG_B64}")}]}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The same bytes: still one upload.
    assert_eq!(uploads(&sim).len(), 1);
}
