//! What a chat conversation asks a generation for: the prompt, the ratio and, for an edit,
//! the image to edit. Pure.
//!
//! Image and video models take a description, not a transcript, so only the latest user
//! message is the prompt (protocol §8.1); the history matters only as the place an edit's
//! image may come from.

use crate::convert::input::{ChatInput, Role, Turn};
use crate::convert::model::{parse_model, GenKind};
use crate::openai::error::ApiError;

use super::extract::markdown_images;
use super::size::{ratio_for, ratio_in_prompt};
use super::upstream::InputImage;

/// At most this many images go into one edit (the upstream's `image_max_count` is 5).
pub const MAX_EDIT_IMAGES: usize = 5;

/// The generation a chat request asks for, from its model suffix or its `chat_type`.
/// The suffix wins when both are given; a `chat_type` that names nothing known is a 400.
pub fn requested_kind(input: &ChatInput) -> Result<Option<GenKind>, ApiError> {
    if let Some(kind) = parse_model(&input.model).generate {
        return Ok(Some(kind));
    }
    match input.chat_type.as_deref().map(str::trim) {
        None | Some("" | "t2t") => Ok(None),
        Some(ct) => GenKind::from_chat_type(ct).map(Some).ok_or_else(|| {
            ApiError::invalid_param(
                "chat_type",
                format!("chat_type '{ct}' is not one of t2t, t2i, image_edit, t2v."),
            )
        }),
    }
}

/// The ratio from `size`, else from a keyword in the prompt (which may be removed from it).
pub fn size_and_prompt(
    size: Option<&str>,
    prompt: &str,
) -> Result<(Option<&'static str>, String), ApiError> {
    let from_field = match size {
        Some(s) => ratio_for(s).map_err(|m| ApiError::invalid_param("size", m))?,
        None => None,
    };
    let (from_prompt, cleaned) = ratio_in_prompt(prompt);
    match from_field {
        Some(r) => Ok((Some(r), prompt.to_string())),
        None => Ok((from_prompt, cleaned)),
    }
}

/// The images an edit works on: those of the latest user message; failing that, the most
/// recent earlier one, an assistant's Markdown image (an earlier result) or a user's image.
pub fn edit_images(turns: &[Turn]) -> Vec<InputImage> {
    let Some(last) = turns.iter().rposition(|t| t.role == Role::User) else {
        return Vec::new();
    };
    let own: Vec<InputImage> = turns[last]
        .media
        .iter()
        .filter(|m| !m.video)
        .take(MAX_EDIT_IMAGES)
        .map(|m| InputImage::Source(m.source.clone()))
        .collect();
    if !own.is_empty() {
        return own;
    }
    for t in turns[..last].iter().rev() {
        match t.role {
            Role::Assistant => {
                if let Some(url) = markdown_images(&t.text).pop() {
                    return vec![if url.starts_with("data:") {
                        InputImage::Source(url)
                    } else {
                        InputImage::Linked(url)
                    }];
                }
            }
            Role::User => {
                if let Some(m) = t.media.iter().rev().find(|m| !m.video) {
                    return vec![InputImage::Source(m.source.clone())];
                }
            }
            _ => {}
        }
    }
    Vec::new()
}

/// The generation a chat request describes, before its model is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatGeneration {
    pub kind: GenKind,
    pub prompt: String,
    pub size: Option<&'static str>,
    pub images: Vec<InputImage>,
}

/// Reads the generation a chat request describes; an edit with nothing to edit becomes
/// text-to-image, as peers do.
pub fn from_chat(input: &ChatInput, kind: GenKind) -> Result<ChatGeneration, ApiError> {
    let text = input
        .turns
        .iter()
        .rev()
        .find(|t| t.role == Role::User)
        .map_or("", |t| t.text.trim());
    if text.is_empty() {
        return Err(ApiError::invalid_param(
            "messages",
            "The last user message has no text to use as the prompt.",
        ));
    }
    let (size, prompt) = size_and_prompt(input.size.as_deref(), text)?;
    let (kind, images) = match kind {
        GenKind::ImageEdit => {
            let images = edit_images(&input.turns);
            if images.is_empty() {
                (GenKind::Image, images)
            } else {
                (GenKind::ImageEdit, images)
            }
        }
        other => (other, Vec::new()),
    };
    Ok(ChatGeneration {
        kind,
        prompt,
        size,
        images,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::input::MediaRef;

    fn user_with(text: &str, media: &[&str]) -> Turn {
        Turn {
            media: media
                .iter()
                .map(|s| MediaRef {
                    video: false,
                    source: s.to_string(),
                })
                .collect(),
            ..Turn::text(Role::User, text)
        }
    }

    #[test]
    fn kinds() {
        let mut i = ChatInput::new("qwen3-max-video", vec![]);
        assert_eq!(requested_kind(&i).unwrap(), Some(GenKind::Video));
        i.model = "qwen3-max".into();
        assert_eq!(requested_kind(&i).unwrap(), None);
        i.chat_type = Some("t2i".into());
        assert_eq!(requested_kind(&i).unwrap(), Some(GenKind::Image));
        i.chat_type = Some("deep_research".into());
        assert_eq!(requested_kind(&i).unwrap_err().param, Some("chat_type"));
    }

    #[test]
    fn sizes() {
        assert_eq!(
            size_and_prompt(Some("1792x1024"), "a cat @9:16").unwrap(),
            (Some("16:9"), "a cat @9:16".into())
        );
        assert_eq!(
            size_and_prompt(None, "a cat @9:16").unwrap(),
            (Some("9:16"), "a cat".into())
        );
        assert_eq!(
            size_and_prompt(None, "a cat").unwrap(),
            (None, "a cat".into())
        );
        assert_eq!(
            size_and_prompt(Some("huge"), "a cat").unwrap_err().param,
            Some("size")
        );
    }

    #[test]
    fn edit_image_selection() {
        let latest = vec![
            Turn::text(Role::Assistant, "![image](https://cdn/old.png)"),
            user_with("make it blue", &["data:image/png;base64,AAAA"]),
        ];
        assert_eq!(
            edit_images(&latest),
            vec![InputImage::Source("data:image/png;base64,AAAA".into())]
        );
        let history = vec![
            user_with("draw a cat", &[]),
            Turn::text(
                Role::Assistant,
                "![image](https://cdn/a.png) ![image](https://cdn/b.png)",
            ),
            user_with("now make it blue", &[]),
        ];
        assert_eq!(
            edit_images(&history),
            vec![InputImage::Linked("https://cdn/b.png".into())]
        );
        let older_user = vec![
            user_with("this one", &["https://example.com/p.png"]),
            Turn::text(Role::Assistant, "Nice picture."),
            user_with("edit it", &[]),
        ];
        assert_eq!(
            edit_images(&older_user),
            vec![InputImage::Source("https://example.com/p.png".into())]
        );
        assert!(edit_images(&[user_with("nothing", &[])]).is_empty());
    }

    #[test]
    fn chat_generation() {
        let mut i = ChatInput::new("m-image_edit", vec![user_with("a red fox @4:3", &[])]);
        let g = from_chat(&i, GenKind::ImageEdit).unwrap();
        assert_eq!(g.kind, GenKind::Image, "nothing to edit: text to image");
        assert_eq!((g.prompt.as_str(), g.size), ("a red fox", Some("4:3")));
        assert!(g.images.is_empty());
        i.turns = vec![user_with("  ", &[])];
        assert_eq!(from_chat(&i, GenKind::Image).unwrap_err().status, 400);
    }
}
