//! `POST /v1/images/generations` and `POST /v1/images/edits`: the OpenAI Images API over
//! the upstream's t2i and image_edit chats. Each of the `n` images is its own upstream
//! generation; `b64_json` makes the gateway download the result and encode it.

use base64::Engine;
use pingora::proxy::Session;
use serde_json::{json, Value};

use crate::context::RequestCtx;
use crate::convert::model::{parse_model, GenKind};
use crate::gateway::Gateway;
use crate::generate::body::GenSpec;
use crate::generate::failover::Tally;
use crate::generate::multipart::sniff_image;
use crate::generate::prompt::{size_and_prompt, MAX_EDIT_IMAGES};
use crate::generate::upstream::{InputImage, Job};
use crate::generate::{self, MAX_IMAGES};
use crate::media::{essence, MediaError};
use crate::openai::error::ApiError;

use super::form::{self, Fields};

const GENERATION_FIELDS: &[&str] = &["prompt", "model", "n", "size", "response_format"];
const EDIT_FIELDS: &[&str] = &[
    "prompt",
    "model",
    "n",
    "size",
    "response_format",
    "image",
    "image[]",
    "images",
];

/// The fields both endpoints share, validated.
struct Params {
    prompt: String,
    size: Option<&'static str>,
    /// The requested model without its generation suffix; `None` for the gateway's choice.
    model: Option<String>,
    n: usize,
    b64: bool,
}

impl Params {
    fn read(f: &Fields) -> Result<Params, ApiError> {
        let prompt = f
            .text("prompt")?
            .ok_or_else(|| ApiError::invalid_param("prompt", "'prompt' is required."))?;
        let n = match f.text("n")? {
            None => 1,
            Some(s) => s
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=MAX_IMAGES as i64).contains(n))
                .ok_or_else(|| {
                    ApiError::invalid_param(
                        "n",
                        format!("n must be a whole number from 1 to {MAX_IMAGES}, got {s}."),
                    )
                })? as usize,
        };
        let b64 = match f.text("response_format")?.as_deref() {
            None | Some("url") => false,
            Some("b64_json") => true,
            Some(other) => {
                return Err(ApiError::invalid_param(
                    "response_format",
                    format!("response_format must be url or b64_json, got '{other}'."),
                ))
            }
        };
        let (size, prompt) = size_and_prompt(f.text("size")?.as_deref(), &prompt)?;
        let model = match f.text("model")? {
            None => None,
            Some(m) => {
                let spec = parse_model(&m);
                match spec.generate {
                    Some(GenKind::Video) => {
                        return Err(ApiError::invalid_param(
                            "model",
                            format!("'{m}' is a video model; use POST /v1/videos."),
                        ))
                    }
                    Some(_) => Some(spec.base),
                    None => Some(m),
                }
            }
        };
        Ok(Params {
            prompt,
            size,
            model,
            n,
            b64,
        })
    }
}

pub async fn generations(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), ApiError> {
    let (creds, f) = form::read(gw, session, ctx).await?;
    let p = Params::read(&f)?;
    let ignored = f.ignored(GENERATION_FIELDS);
    serve(
        gw,
        session,
        ctx,
        creds,
        p,
        GenKind::Image,
        Vec::new(),
        ignored,
    )
    .await
}

pub async fn edits(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), ApiError> {
    let (creds, f) = form::read(gw, session, ctx).await?;
    let p = Params::read(&f)?;
    let images = input_images(&f, gw.settings.media.max_image_bytes)?;
    let ignored = f.ignored(EDIT_FIELDS);
    serve(
        gw,
        session,
        ctx,
        creds,
        p,
        GenKind::ImageEdit,
        images,
        ignored,
    )
    .await
}

/// The images to edit: file parts (or URL text parts) of a form, or `image` / `images` in
/// JSON as data URIs, URLs or `{"url"|"image_url": ...}` objects.
fn input_images(f: &Fields, max_bytes: usize) -> Result<Vec<InputImage>, ApiError> {
    let mut out = Vec::new();
    for part in f.parts(&["image", "image[]"]) {
        if part.filename.is_none() {
            out.push(InputImage::Source(part.text()));
            continue;
        }
        if part.data.len() > max_bytes {
            let what = format!("image '{}'", part.filename.as_deref().unwrap_or(""));
            return Err(MediaError::TooLarge {
                limit: max_bytes,
                what,
            }
            .to_api_error());
        }
        let declared = part.content_type.as_deref().map(essence);
        let mime = match declared {
            Some(m) if m.starts_with("image/") && m.len() > 6 => m,
            _ => sniff_image(&part.data).map(str::to_string).ok_or_else(|| {
                MediaError::BadInput(format!(
                    "the file '{}' is not an image",
                    part.filename.as_deref().unwrap_or("")
                ))
                .to_api_error()
            })?,
        };
        out.push(InputImage::Bytes {
            bytes: part.data.clone(),
            mime,
        });
    }
    for field in ["image", "images"] {
        match f.json(field) {
            None => {}
            Some(Value::Array(items)) => {
                for item in items {
                    out.push(json_image(item)?);
                }
            }
            Some(item) => out.push(json_image(item)?),
        }
    }
    if out.is_empty() {
        return Err(ApiError::invalid_param(
            "image",
            "'image' is required: a file part, a data: URI or an image URL.",
        ));
    }
    if out.len() > MAX_EDIT_IMAGES {
        return Err(ApiError::invalid_param(
            "image",
            format!("At most {MAX_EDIT_IMAGES} images can be edited at once."),
        ));
    }
    Ok(out)
}

fn json_image(v: &Value) -> Result<InputImage, ApiError> {
    let s = v
        .as_str()
        .or_else(|| v.get("url").and_then(Value::as_str))
        .or_else(|| v.get("image_url").and_then(Value::as_str))
        .or_else(|| v.pointer("/image_url/url").and_then(Value::as_str))
        .map(str::trim)
        .filter(|s| !s.is_empty());
    match s {
        Some(s) => Ok(InputImage::Source(s.to_string())),
        None => Err(ApiError::invalid_param(
            "image",
            "Each image must be a data: URI, an http(s) URL, or an object with 'url' or \
             'image_url'.",
        )),
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
    creds: Option<crate::auth::ClientCredentials>,
    p: Params,
    kind: GenKind,
    images: Vec<InputImage>,
    ignored: Option<String>,
) -> Result<(), ApiError> {
    let ephemeral = generate::ephemeral(gw, creds).await?;
    let model = generate::resolve_model(gw, ephemeral.as_ref(), p.model.as_deref(), kind).await?;
    ctx.model = Some(format!("{model}{}", kind.suffix()));
    let job = Job {
        spec: GenSpec {
            kind,
            model,
            prompt: p.prompt,
            size: p.size,
        },
        images,
    };
    let tally = Tally::default();
    let result = generate::images(gw, session, &tally, ephemeral.as_ref(), &job, p.n, p.b64).await;
    tally.apply(ctx);
    let Some(results) = result? else {
        ctx.status = 499;
        return Ok(());
    };
    let data: Vec<Value> = results
        .into_iter()
        .map(|(r, bytes)| match bytes {
            Some(b) => json!({"b64_json": base64::engine::general_purpose::STANDARD.encode(&b)}),
            None => json!({"url": r.url}),
        })
        .collect();
    let body = json!({"created": now_secs(), "data": data});
    form::answer(session, ctx, &body, ignored).await;
    Ok(())
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
