//! Model names as clients send them: an upstream id plus optional feature suffixes.

/// What a requested model name asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// The name with suffixes removed, as the client spelled it.
    pub base: String,
    pub thinking: bool,
    pub search: bool,
}

/// Longest first, so `-thinking-search` is not read as `-search` on a `-thinking` base.
const SUFFIXES: &[(&str, bool, bool)] = &[
    ("-thinking-search", true, true),
    ("-search-thinking", true, true),
    ("-thinking", true, false),
    ("-search", false, true),
];

pub fn parse_model(name: &str) -> ModelSpec {
    let name = name.trim();
    let lower = name.to_ascii_lowercase();
    for (suffix, thinking, search) in SUFFIXES {
        if lower.ends_with(suffix) && lower.len() > suffix.len() {
            return ModelSpec {
                base: name[..name.len() - suffix.len()].to_string(),
                thinking: *thinking,
                search: *search,
            };
        }
    }
    ModelSpec {
        base: name.to_string(),
        thinking: false,
        search: false,
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
            (m.base.as_str(), m.thinking, m.search),
            ("qwen3-max", false, false)
        );
        assert_eq!(parse_model("-thinking").base, "-thinking");
    }
}
