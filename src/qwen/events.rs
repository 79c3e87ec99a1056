//! Upstream SSE event payloads (protocol §5), deserialised into borrowed structs: unknown keys
//! are skipped without building a tree, and strings without escapes are not copied.

use std::borrow::Cow;
use std::sync::LazyLock;

use memchr::memmem;

use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

#[derive(Debug, Default, Deserialize)]
pub struct RawEvent<'a> {
    #[serde(borrow, default, deserialize_with = "first_choice")]
    pub choices: Option<RawChoice<'a>>,
    /// Kept raw: every event repeats the cumulative usage and only the last one matters, and
    /// parsing each into fields cost about a fifth of the whole conversion.
    #[serde(borrow)]
    pub usage: Option<&'a RawValue>,
    #[serde(borrow)]
    pub error: Option<RawError<'a>>,
    pub success: Option<bool>,
    #[serde(borrow)]
    pub data: Option<RawData<'a>>,
    #[serde(rename = "response.created")]
    pub created: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawChoice<'a> {
    #[serde(borrow)]
    pub delta: Option<RawDelta<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawDelta<'a> {
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub content: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub phase: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub status: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub name: Option<Cow<'a, str>>,
    /// Boxed: most events have none, and every event is moved a few times on its way.
    #[serde(borrow)]
    pub extra: Option<Box<RawExtra<'a>>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawExtra<'a> {
    #[serde(borrow)]
    pub summary_thought: Option<RawContentList<'a>>,
    pub web_search_info: Option<Vec<SearchItem>>,
    /// Pictures from the image tool in a normal chat (§5.5).
    #[serde(borrow, default)]
    pub image_list: Option<Vec<RawImage<'a>>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawImage<'a> {
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub image: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub url: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawContentList<'a> {
    #[serde(borrow, default)]
    pub content: Vec<Cow<'a, str>>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct SearchItem {
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub snippet: String,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
pub struct RawUsage {
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub output_tokens_details: Option<RawOutputDetails>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
pub struct RawOutputDetails {
    pub reasoning_tokens: Option<u64>,
}

impl RawUsage {
    /// The fields of a raw usage object; `None` when it is not one.
    pub fn parse(raw: &[u8]) -> Option<RawUsage> {
        serde_json::from_slice(raw).ok()
    }
}

/// The `reasoning_tokens` count in a raw usage object, found by scanning rather than parsing
/// (it is needed from every event): usage holds only numbers and small objects of numbers,
/// so the key cannot turn up inside a string.
pub fn reasoning_tokens(raw: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"reasoning_tokens\"";
    static FINDER: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(KEY));
    let at = FINDER.find(raw)? + KEY.len();
    let rest = raw[at..].trim_ascii_start().strip_prefix(b":")?;
    let rest = rest.trim_ascii_start();
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

#[derive(Debug, Default, Deserialize)]
pub struct RawError<'a> {
    #[serde(borrow)]
    pub code: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub message: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub details: Option<Cow<'a, str>>,
}

/// The `data` of a `{"success":false,"data":{...}}` envelope; also the nested
/// `{"data":{"error":{...}}}` variant.
#[derive(Debug, Default, Deserialize)]
pub struct RawData<'a> {
    #[serde(borrow)]
    pub code: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub details: Option<Cow<'a, str>>,
    pub num: Option<serde_json::Number>,
    #[serde(borrow)]
    pub error: Option<RawError<'a>>,
}

/// An optional string that borrows from the input unless it has escapes. serde's `borrow`
/// only borrows a bare `Cow<str>`; inside an `Option` it copies every string, which was three
/// allocations per upstream event (content, phase, status).
fn opt_str<'de, D>(d: D) -> Result<Option<Cow<'de, str>>, D::Error>
where
    D: Deserializer<'de>,
{
    struct Str<'a>(Cow<'a, str>);
    impl<'de> Deserialize<'de> for Str<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Str<'de>;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a string")
                }
                fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                    Ok(Str(Cow::Borrowed(v)))
                }
                fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                    Ok(Str(Cow::Owned(v.to_owned())))
                }
                fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                    Ok(Str(Cow::Owned(v)))
                }
            }
            d.deserialize_str(V)
        }
    }
    Ok(Option::<Str<'de>>::deserialize(d)?.map(|s| s.0))
}

/// The upstream always sends one choice; keeping only the first avoids a Vec per event.
fn first_choice<'de, D>(d: D) -> Result<Option<RawChoice<'de>>, D::Error>
where
    D: Deserializer<'de>,
{
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<RawChoice<'de>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of choices")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let first = seq.next_element::<RawChoice<'de>>()?;
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(first)
        }
    }
    d.deserialize_any(V)
}

pub fn parse(data: &[u8]) -> Result<RawEvent<'_>, serde_json::Error> {
    serde_json::from_slice(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_delta() {
        let e = parse(br#"{"choices":[{"delta":{"role":"assistant","content":"Hi \u00e9","phase":"answer","status":"typing"}}],"response_id":"r","usage":{"input_tokens":10,"output_tokens":2,"output_tokens_details":{"reasoning_tokens":1}}}"#).unwrap();
        let d = e.choices.unwrap().delta.unwrap();
        assert_eq!(d.content.as_deref(), Some("Hi é"));
        assert!(matches!(d.content, Some(Cow::Owned(_))), "escaped: copied");
        assert_eq!(d.phase.as_deref(), Some("answer"));
        assert!(matches!(d.phase, Some(Cow::Borrowed(_))), "plain: borrowed");
        assert!(matches!(d.status, Some(Cow::Borrowed("typing"))));
        assert!(d.name.is_none());
        let n = parse(br#"{"choices":[{"delta":{"content":null,"phase":"answer"}}]}"#).unwrap();
        assert!(n.choices.unwrap().delta.unwrap().content.is_none());
        assert!(parse(br#"{"choices":[{"delta":{"content":7}}]}"#).is_err());
        let raw = e.usage.unwrap().get().as_bytes();
        let u = RawUsage::parse(raw).unwrap();
        assert_eq!((u.input_tokens, u.output_tokens), (Some(10), Some(2)));
        assert_eq!(reasoning_tokens(raw), Some(1));
        assert_eq!(
            u.output_tokens_details.and_then(|d| d.reasoning_tokens),
            Some(1)
        );
    }

    #[test]
    fn reasoning_tokens_are_found_by_scanning() {
        for (raw, want) in [
            (
                &br#"{"output_tokens_details":{"reasoning_tokens":102,"text_tokens":4}}"#[..],
                Some(102),
            ),
            (
                br#"{"output_tokens_details" : { "reasoning_tokens" :  7 } }"#,
                Some(7),
            ),
            (
                br#"{"output_tokens_details":{"reasoning_tokens":null}}"#,
                None,
            ),
            (br#"{"output_tokens":3}"#, None),
            (
                br#"{"output_tokens_details":{"reasoning_tokens":99999999999999999999999}}"#,
                None,
            ),
            (br#"{"reasoning_tokens""#, None),
        ] {
            assert_eq!(
                reasoning_tokens(raw),
                want,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        assert!(RawUsage::parse(b"[1]").is_none());
    }

    #[test]
    fn created_summary_search_and_errors() {
        assert!(parse(br#"{"response.created":{"chat_id":"c"}}"#)
            .unwrap()
            .created
            .is_some());
        let e = parse(br#"{"choices":[{"delta":{"phase":"thinking_summary","extra":{"summary_thought":{"content":["a","b"]}}}}]}"#).unwrap();
        let d = e.choices.unwrap().delta.unwrap();
        assert_eq!(
            d.extra.unwrap().summary_thought.unwrap().content,
            vec!["a", "b"]
        );
        let e = parse(br#"{"choices":[{"delta":{"name":"web_search","extra":{"web_search_info":[{"url":"u","title":"t"}]}}}]}"#).unwrap();
        let info = e
            .choices
            .unwrap()
            .delta
            .unwrap()
            .extra
            .unwrap()
            .web_search_info
            .unwrap();
        assert_eq!(info[0].url, "u");
        let e = parse(br#"{"success":false,"data":{"code":"RateLimited","num":2,"details":"x"}}"#)
            .unwrap();
        assert_eq!(e.success, Some(false));
        assert_eq!(e.data.unwrap().code.as_deref(), Some("RateLimited"));
        let e = parse(br#"{"error":{"code":"internal_error","message":"quota"}}"#).unwrap();
        assert_eq!(e.error.unwrap().code.as_deref(), Some("internal_error"));
        assert!(parse(br#"{"choices":null}"#).unwrap().choices.is_none());
    }
}
