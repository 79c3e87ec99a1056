//! Image and video generation (protocol §5.5, §8): t2i and image_edit completions stream one
//! `image_gen` event whose `content` is the full CDN URL; t2v answers synchronous JSON with a
//! task id, and `GET /api/v1/tasks/status/<id>` moves that task from pending through running
//! to success (or failure) over `task_polls` polls.

use bytes::Bytes;
use pingora::protocols::http::ServerSession;
use serde_json::{json, Value};

use crate::cdn;
use crate::chats::Turn;
use crate::events::{data_frame, EventWriter, Usage};
use crate::faults::{Endpoint, Faults};
use crate::http::{self, Outcome, Request};
use crate::jwt;
use crate::media_state::{GenerationRecord, MediaState, Task, TaskFate, TaskStatus};
use crate::oss_sign::percent_decode;
use crate::render::{End, Frame, Plan, MODERATION_INPUT};
use crate::replies;
use crate::request::CompletionInput;
use crate::state::CompletionRecord;
use crate::stream::stream_plan;
use crate::Inner;

/// Who asked, and in which chat.
pub struct Ctx<'a> {
    pub email: &'a str,
    pub user_id: &'a str,
    pub chat_id: &'a str,
}

/// `[[h, w]]` for an aspect-ratio `size` (the 16:9 value is the one in the 2026 capture).
pub fn image_hw(size: Option<&str>) -> (u32, u32) {
    match size.map(str::trim) {
        Some("16:9") => (1152, 2048),
        Some("9:16") => (2048, 1152),
        Some("4:3") => (1536, 2048),
        Some("3:4") => (2048, 1536),
        Some("3:2") => (1365, 2048),
        Some("2:3") => (2048, 1365),
        _ => (1024, 1024),
    }
}

/// The media-relevant parts of a completion body.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MediaInput {
    pub size: Option<String>,
    pub files: Vec<String>,
    pub inline_data: bool,
}

fn url_of(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s),
        Value::Object(o) => ["url", "image", "video", "file_url"]
            .iter()
            .find_map(|k| o.get(*k).and_then(url_of)),
        _ => None,
    }
}

/// Reads `size` (top level, message, or `extra.meta`) and every referenced media URL:
/// `files[]` on the message or at top level, and `image`/`video`/`image_url` content parts.
pub fn media_input(body: &Value, raw: &[u8]) -> MediaInput {
    let last = body
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.last());
    let size = body
        .get("size")
        .or_else(|| last.and_then(|m| m.get("size")))
        .or_else(|| last.and_then(|m| m.pointer("/extra/meta/size")))
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut files = Vec::new();
    for list in [last.and_then(|m| m.get("files")), body.get("files")] {
        for f in list.and_then(Value::as_array).into_iter().flatten() {
            files.extend(url_of(f).map(str::to_string));
        }
    }
    let parts = last
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array);
    for p in parts.into_iter().flatten() {
        let t = p.get("type").and_then(Value::as_str).unwrap_or("");
        if matches!(
            t,
            "image" | "video" | "image_url" | "video_url" | "input_image"
        ) {
            let v = p.get(t).or_else(|| p.get("url"));
            files.extend(v.and_then(url_of).map(str::to_string));
        }
    }
    let inline_data = raw.windows(5).any(|w| w.eq_ignore_ascii_case(b"data:"))
        && raw.windows(8).any(|w| w == b";base64,");
    MediaInput {
        size,
        files,
        inline_data,
    }
}

/// Whether a URL names an object this sim's OSS stored (`.../cdn/files/<bucket>/<key>`).
fn is_known_upload(media: &MediaState, url: &str) -> bool {
    let Some(at) = url.find("/cdn/files/") else {
        return false;
    };
    let rest = &url[at + "/cdn/files/".len()..];
    let path = rest.split(['?', '#']).next().unwrap_or("");
    media.has_object_path(&percent_decode(path))
}

fn record_generation(
    sim: &Inner,
    ctx: &Ctx<'_>,
    requested: &str,
    served: &str,
    mi: MediaInput,
    result_url: Option<String>,
    task_id: Option<String>,
) {
    let media = &sim.state.media;
    let known_uploads = mi.files.iter().map(|u| is_known_upload(media, u)).collect();
    media.record_generation(GenerationRecord {
        email: ctx.email.to_string(),
        chat_id: ctx.chat_id.to_string(),
        requested: requested.to_string(),
        served: served.to_string(),
        size: mi.size,
        files: mi.files,
        known_uploads,
        inline_data: mi.inline_data,
        result_url,
        task_id,
    });
}

fn image_event(w: &EventWriter, url: &str, hw: (u32, u32), input_tokens: u64) -> Bytes {
    let ev = json!({
        "choices": [{"delta": {"role": "assistant", "content": url, "phase": "image_gen",
                                "status": "typing",
                                "extra": {"output_image_hw": [[hw.0, hw.1]]}}}],
        "response_id": w.response_id,
        "usage": {"input_tokens": input_tokens, "output_tokens": 0,
                  "total_tokens": input_tokens, "width": hw.1, "height": hw.0},
        "timestamp": w.timestamp,
    });
    data_frame(&ev.to_string())
}

fn phase_event(w: &EventWriter, status: &str) -> Bytes {
    let ev = json!({
        "choices": [{"delta": {"role": "assistant", "content": "", "phase": "image_gen",
                                "status": status}}],
        "response_id": w.response_id,
    });
    data_frame(&ev.to_string())
}

/// A t2i or image_edit completion (the caller has checked auth, chat and `stream:true`).
#[allow(clippy::too_many_arguments)]
pub async fn image(
    sim: &Inner,
    s: &mut ServerSession,
    ctx: Ctx<'_>,
    body: &Value,
    raw: &Bytes,
    input: &CompletionInput,
    faults: &Faults,
    mut record: CompletionRecord,
) -> Outcome {
    let mi = media_input(body, raw);
    // §4.3: image_edit needs an input image; without one it is served as t2i.
    let served = if input.chat_type == "image_edit" && !mi.files.is_empty() {
        "image_edit"
    } else {
        "t2i"
    };
    let now = jwt::now_secs();
    let w = EventWriter {
        response_id: uuid::Uuid::new_v4().to_string(),
        timestamp: now,
        with_phase: true,
        usage_style: faults.usage,
    };
    let url = format!(
        "{}/cdn/output/{}/t2i/{}/{}.png?key={}",
        cdn::origin(s),
        ctx.user_id,
        w.response_id,
        now * 1000,
        cdn::url_key()
    );
    let parent_id = input
        .parent_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let input_tokens = 1000 + input.prompt_chars.div_ceil(4) as u64;
    let mut frames = vec![
        Frame::Data(w.created(ctx.chat_id, &parent_id)),
        Frame::Data(phase_event(&w, "typing")),
    ];
    let mut end = End::Finish;
    let mut answer = String::new();
    if faults.moderation {
        frames.push(Frame::Data(data_frame(MODERATION_INPUT)));
    } else if faults.disconnect.is_some() {
        end = End::Disconnect;
    } else {
        if !faults.empty {
            let hw = image_hw(mi.size.as_deref());
            frames.push(Frame::Data(image_event(&w, &url, hw, input_tokens)));
            answer = url.clone();
        }
        frames.push(Frame::Data(phase_event(&w, "finished")));
    }
    let plan = Plan {
        frames,
        end,
        answer: answer.clone(),
        reasoning: String::new(),
        search: false,
        usage: Usage {
            input: input_tokens,
            ..Usage::default()
        },
    };
    record.response_id = w.response_id.clone();
    record.answer = answer.clone();
    record.usage = plan.usage;
    sim.state.chats.add_turn(
        ctx.chat_id,
        Turn {
            user_msg_id: parent_id,
            response_id: w.response_id.clone(),
            prompt: input.prompt.clone(),
            answer: answer.clone(),
            reasoning: String::new(),
            search: false,
            model: input.model.clone(),
            timestamp: now,
        },
    );
    sim.state.record_completion(record);
    let result = (!answer.is_empty()).then_some(answer);
    record_generation(sim, &ctx, &input.chat_type, served, mi, result, None);
    let delay = faults
        .delay_ms
        .unwrap_or_else(|| sim.runtime.delta_delay_ms());
    stream_plan(s, &plan, delay, faults.gzip, &sim.state.counters).await
}

/// A t2v completion: synchronous JSON with `data.messages[0].extra.wanx.task_id` (§8.3).
#[allow(clippy::too_many_arguments)]
pub async fn video(
    sim: &Inner,
    s: &mut ServerSession,
    ctx: Ctx<'_>,
    body: &Value,
    raw: &Bytes,
    input: &CompletionInput,
    faults: &Faults,
    mut record: CompletionRecord,
) -> Outcome {
    let mi = media_input(body, raw);
    let task_id = uuid::Uuid::new_v4().to_string();
    let response_id = uuid::Uuid::new_v4().to_string();
    let m = faults.media;
    let extra = if m.task_no_id {
        json!({"wanx": {}})
    } else {
        let fate = if m.task_failed {
            TaskFate::Fail
        } else if m.task_never_ends {
            TaskFate::Never
        } else {
            TaskFate::Succeed
        };
        let video_url = format!(
            "{}/cdn/output/{}/t2v/{task_id}/{}.mp4?key={}",
            cdn::origin(s),
            ctx.user_id,
            jwt::now_secs() * 1000,
            cdn::url_key()
        );
        sim.state.media.add_task(
            &task_id,
            Task {
                email: ctx.email.to_string(),
                polls: 0,
                fate,
                video_url,
            },
        );
        json!({"wanx": {"task_id": task_id}})
    };
    record.response_id = response_id.clone();
    sim.state.record_completion(record);
    let tid = (!m.task_no_id).then(|| task_id.clone());
    record_generation(sim, &ctx, &input.chat_type, "t2v", mi, None, tid);
    let out = json!({
        "success": true, "request_id": uuid::Uuid::new_v4().to_string(),
        "data": {"model": input.model, "chat_id": ctx.chat_id, "response_id": response_id,
                 "messages": [{"role": "assistant", "content": "", "extra": extra}]},
    });
    Outcome::from_write(http::json(s, 200, out.to_string()).await)
}

/// `GET /api/v1/tasks/status/<task_id>`.
pub async fn task_status(sim: &Inner, s: &mut ServerSession, req: &Request, id: &str) -> Outcome {
    let Some((acc, _)) = sim.authenticate(req) else {
        return replies::unauthorized(s).await;
    };
    let faults = sim.faults_for(&acc.email, Endpoint::Tasks);
    if let Some(o) = replies::before_response(s, &faults).await {
        return o;
    }
    let fate = if faults.media.task_failed {
        Some(TaskFate::Fail)
    } else if faults.media.task_never_ends {
        Some(TaskFate::Never)
    } else {
        None
    };
    let media = &sim.state.media;
    MediaState::bump(&media.task_polls_served, 1);
    let Some(status) = media.poll_task(id, &acc.email, fate) else {
        let out = replies::envelope("Not_Found", "task not found");
        return Outcome::from_write(http::json(s, 404, out).await);
    };
    let (content, message) = match &status {
        TaskStatus::Success(url) => (url.as_str(), ""),
        TaskStatus::Failed => ("", "Video generation failed (simulated task_failed)."),
        _ => ("", ""),
    };
    let out = json!({"task_id": id, "task_status": status.name(), "content": content,
                     "message": message});
    Outcome::from_write(http::json(s, 200, out.to_string()).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_input_collects_every_reference() {
        let body = json!({"size": "16:9", "files": [{"type": "image", "url": "http://top"}],
            "messages": [{"role": "user", "files": [{"type": "image", "url": "http://f0"}],
                "content": [{"type": "text", "text": "hi"}, {"type": "image", "image": "http://p"},
                            {"type": "image_url", "image_url": {"url": "http://iu"}}]}]});
        let raw = body.to_string();
        let mi = media_input(&body, raw.as_bytes());
        assert_eq!(mi.size.as_deref(), Some("16:9"));
        assert_eq!(
            mi.files,
            ["http://f0", "http://top", "http://p", "http://iu"]
        );
        assert!(!mi.inline_data);
        let body = json!({"messages": [{"size": "1:1", "content": [
            {"type": "image", "image": "data:image/png;base64,AAAA"}]}]});
        let raw = body.to_string();
        let mi = media_input(&body, raw.as_bytes());
        assert_eq!(mi.size.as_deref(), Some("1:1"));
        assert!(mi.inline_data);
    }

    #[test]
    fn sizes() {
        assert_eq!(image_hw(Some("16:9")), (1152, 2048));
        assert_eq!(image_hw(None), (1024, 1024));
    }
}
