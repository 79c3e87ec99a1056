//! `POST /v1/videos`: text to video over the upstream's t2v task.
//!
//! OpenAI's video API answers at once with a `queued` job that the client polls. The
//! upstream task is not stored here, so this endpoint waits for it instead (up to
//! `VIDEO_TIMEOUT_SECS`) and answers one video object in OpenAI's shape with `status:
//! "completed"`, plus the file's `url` (and `data: [{url}]`, the shape other Qwen gateways
//! return).

use pingora::proxy::Session;
use serde_json::json;

use crate::context::RequestCtx;
use crate::convert::model::{parse_model, GenKind};
use crate::gateway::Gateway;
use crate::generate::body::GenSpec;
use crate::generate::failover::Tally;
use crate::generate::prompt::size_and_prompt;
use crate::generate::upstream::Job;
use crate::generate::{self};
use crate::openai::error::ApiError;

use super::form;
use super::images::now_secs;

const FIELDS: &[&str] = &["prompt", "model", "size"];

pub async fn create(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), ApiError> {
    let started = now_secs();
    let (creds, f) = form::read(gw, session, ctx).await?;
    let prompt = f
        .text("prompt")?
        .ok_or_else(|| ApiError::invalid_param("prompt", "'prompt' is required."))?;
    if f.json("input_reference").is_some() || f.parts(&["input_reference"]).next().is_some() {
        return Err(ApiError::invalid_param(
            "input_reference",
            "input_reference (image to video) is not supported by the Qwen web upstream.",
        ));
    }
    let size_field = f.text("size")?;
    let (size, prompt) = size_and_prompt(size_field.as_deref(), &prompt)?;
    let model = match f.text("model")? {
        Some(m) => {
            let spec = parse_model(&m);
            match spec.generate {
                Some(GenKind::Video) => Some(spec.base),
                Some(_) => {
                    return Err(ApiError::invalid_param(
                        "model",
                        format!("'{m}' is an image model; use POST /v1/images/generations."),
                    ))
                }
                None => Some(m),
            }
        }
        None => None,
    };
    let ignored = f.ignored(FIELDS);
    let ephemeral = generate::ephemeral(gw, creds).await?;
    let kind = GenKind::Video;
    let model = generate::resolve_model(gw, ephemeral.as_ref(), model.as_deref(), kind).await?;
    let model_name = format!("{model}{}", kind.suffix());
    ctx.model = Some(model_name.clone());
    let job = Job {
        spec: GenSpec {
            kind,
            model,
            prompt,
            size,
        },
        images: Vec::new(),
    };
    let tally = Tally::default();
    let result = generate::video(gw, session, &tally, ephemeral.as_ref(), &job).await;
    tally.apply(ctx);
    let Some((url, task_id)) = result? else {
        ctx.status = 499;
        return Ok(());
    };
    let body = json!({
        "id": format!("video_{}", uuid::Uuid::new_v4().simple()),
        "object": "video",
        "created": started,
        "created_at": started,
        "completed_at": now_secs(),
        "status": "completed",
        "progress": 100,
        "model": model_name,
        "prompt": job.spec.prompt,
        "size": size_field.or(size.map(str::to_string)),
        "url": url,
        "data": [{"url": url}],
        "upstream_task_id": task_id,
        "error": null,
    });
    form::answer(session, ctx, &body, ignored).await;
    Ok(())
}
