//! Model names as clients send them: an upstream id plus optional feature suffixes.

/// Media generation a model name (or a request's `chat_type`) can ask for (protocol §4.3, §13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenKind {
    /// Text to image (`t2i`).
    Image,
    /// Edit the image in the conversation (`image_edit`).
    ImageEdit,
    /// Text to video (`t2v`), a polled task upstream.
    Video,
}

impl GenKind {
    /// The upstream `chat_type`.
    pub fn chat_type(self) -> &'static str {
        match self {
            GenKind::Image => "t2i",
            GenKind::ImageEdit => "image_edit",
            GenKind::Video => "t2v",
        }
    }

    /// The model-name suffix `/v1/models` lists for it.
    pub fn suffix(self) -> &'static str {
        match self {
            GenKind::Image => "-image",
            GenKind::ImageEdit => "-image_edit",
            GenKind::Video => "-video",
        }
    }

    pub fn from_chat_type(chat_type: &str) -> Option<GenKind> {
        match chat_type {
            "t2i" => Some(GenKind::Image),
            "image_edit" => Some(GenKind::ImageEdit),
            "t2v" => Some(GenKind::Video),
            _ => None,
        }
    }
}

/// What a requested model name asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// The name with suffixes removed, as the client spelled it.
    pub base: String,
    pub thinking: bool,
    pub search: bool,
    pub generate: Option<GenKind>,
}

/// Longest first, so `-thinking-search` is not read as `-search` on a `-thinking` base.
const SUFFIXES: &[(&str, bool, bool)] = &[
    ("-thinking-search", true, true),
    ("-search-thinking", true, true),
    ("-thinking", true, false),
    ("-search", false, true),
];

/// Both spellings of the edit suffix circulate among peers (protocol §13).
const GEN_SUFFIXES: &[(&str, GenKind)] = &[
    ("-image-edit", GenKind::ImageEdit),
    ("-image_edit", GenKind::ImageEdit),
    ("-image", GenKind::Image),
    ("-video", GenKind::Video),
];

pub fn parse_model(name: &str) -> ModelSpec {
    let name = name.trim();
    let lower = name.to_ascii_lowercase();
    let base = |suffix: &str| name[..name.len() - suffix.len()].to_string();
    for (suffix, kind) in GEN_SUFFIXES {
        if lower.ends_with(suffix) && lower.len() > suffix.len() {
            return ModelSpec {
                base: base(suffix),
                thinking: false,
                search: false,
                generate: Some(*kind),
            };
        }
    }
    for (suffix, thinking, search) in SUFFIXES {
        if lower.ends_with(suffix) && lower.len() > suffix.len() {
            return ModelSpec {
                base: base(suffix),
                thinking: *thinking,
                search: *search,
                generate: None,
            };
        }
    }
    ModelSpec {
        base: name.to_string(),
        thinking: false,
        search: false,
        generate: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes() {
        let m = parse_model("qwen3-max-thinking-search");
        assert_eq!(
            (m.base.as_str(), m.thinking, m.search),
            ("qwen3-max", true, true)
        );
        let m = parse_model("qwen3-max-thinking");
        assert_eq!(
            (m.base.as_str(), m.thinking, m.search),
            ("qwen3-max", true, false)
        );
        let m = parse_model("Qwen3-Max-SEARCH");
        assert_eq!(
            (m.base.as_str(), m.thinking, m.search),
            ("Qwen3-Max", false, true)
        );
        let m = parse_model("qwen3-max");
        assert_eq!(
            (m.base.as_str(), m.thinking, m.search, m.generate),
            ("qwen3-max", false, false, None)
        );
        assert_eq!(parse_model("-thinking").base, "-thinking");
    }

    #[test]
    fn generation_suffixes() {
        for (name, kind) in [
            ("qwen3-max-image", GenKind::Image),
            ("qwen3-max-image_edit", GenKind::ImageEdit),
            ("qwen3-max-image-edit", GenKind::ImageEdit),
            ("Qwen3-Max-VIDEO", GenKind::Video),
        ] {
            let m = parse_model(name);
            assert_eq!(m.generate, Some(kind), "{name}");
            assert!(m.base.eq_ignore_ascii_case("qwen3-max"), "{name}");
            assert!(!m.thinking && !m.search);
        }
        assert_eq!(parse_model("-image").generate, None);
        assert_eq!(GenKind::from_chat_type("t2i"), Some(GenKind::Image));
        assert_eq!(GenKind::from_chat_type("t2t"), None);
        assert_eq!(GenKind::Video.chat_type(), "t2v");
    }
}
