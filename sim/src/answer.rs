//! What a completion says: the answer deltas, the thinking, and the search results. Kept
//! apart from the wire format so tests can reason about content without parsing events.

use serde::Deserialize;

use crate::faults::Faults;
use crate::request::{CompletionInput, ThinkingFormat};

/// A pre-registered reply for the next completion (`POST /__sim/script`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Script {
    #[serde(default)]
    pub answer: Vec<String>,
    #[serde(default)]
    pub thinking: Option<Vec<String>>,
}

/// The thinking to stream, already in the requested format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Thinking {
    None,
    /// Snapshots of `(summary_title.content, summary_thought.content)`, each the full list so far.
    Summary(Vec<(Vec<String>, Vec<String>)>),
    /// Incremental `think` deltas.
    Detail(Vec<String>),
}

impl Thinking {
    /// The reasoning text a consumer should end up with.
    pub fn reasoning(&self) -> String {
        match self {
            Thinking::None => String::new(),
            Thinking::Summary(steps) => steps
                .last()
                .map(|(_, thoughts)| thoughts.join("\n\n"))
                .unwrap_or_default(),
            Thinking::Detail(parts) => parts.concat(),
        }
    }

    /// One reasoning token per thinking event keeps usage monotonic and easy to check.
    pub fn len(&self) -> usize {
        match self {
            Thinking::None => 0,
            Thinking::Summary(s) => s.len(),
            Thinking::Detail(d) => d.len(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Content {
    pub answer: Vec<String>,
    pub thinking: Thinking,
    pub search: bool,
}

pub const NATIVE_TOOL_ANSWER: [&str; 5] = ["Tool ", "search ", "does ", "not ", "exists."];
const ECHO_TAIL_CHARS: usize = 64;
const DEFAULT_TITLES: [&str; 2] = ["Understanding the request", "Planning the reply"];
const THOUGHT_START: &str = "Reading the message";
const THOUGHT_FIRST: &str = "Reading the message and its intent.";
const THOUGHT_SECOND: &str = "I will echo it back with a prefix.";

/// `Echo: ` + the last 64 characters of the prompt, one word per delta.
pub fn echo_deltas(prompt: &str) -> Vec<String> {
    let count = prompt.chars().count();
    let tail: String = prompt
        .chars()
        .skip(count.saturating_sub(ECHO_TAIL_CHARS))
        .collect();
    let mut out = Vec::with_capacity(16);
    out.push("Echo: ".to_string());
    out.extend(tail.split_whitespace().map(|w| format!("{w} ")));
    out
}

pub fn numbered_deltas(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("w{i} ")).collect()
}

/// Summary snapshots: the second one extends the last thought in place (not a new element),
/// the third appends, so consumers must diff text rather than count elements.
fn default_summary() -> Thinking {
    let t1 = vec![DEFAULT_TITLES[0].to_string()];
    let t2: Vec<String> = DEFAULT_TITLES.iter().map(|s| s.to_string()).collect();
    Thinking::Summary(vec![
        (t1.clone(), vec![THOUGHT_START.to_string()]),
        (t1, vec![THOUGHT_FIRST.to_string()]),
        (
            t2,
            vec![THOUGHT_FIRST.to_string(), THOUGHT_SECOND.to_string()],
        ),
    ])
}

fn detail_from(text: &str) -> Thinking {
    Thinking::Detail(text.split_inclusive(' ').map(str::to_string).collect())
}

fn thinking_for(format: ThinkingFormat, script: Option<&[String]>) -> Thinking {
    match (format, script) {
        (ThinkingFormat::Summary, None) => default_summary(),
        (ThinkingFormat::Detail, None) => {
            detail_from(&format!("{THOUGHT_FIRST}\n\n{THOUGHT_SECOND}"))
        }
        (ThinkingFormat::Summary, Some(parts)) => Thinking::Summary(
            (1..=parts.len())
                .map(|n| {
                    let titles = (1..=n).map(|i| format!("Step {i}")).collect();
                    (titles, parts[..n].to_vec())
                })
                .collect(),
        ),
        (ThinkingFormat::Detail, Some(parts)) => Thinking::Detail(parts.to_vec()),
    }
}

/// Chooses the content. Precedence: script, native-tool interception, `deltas=N`
/// directive, configured `answer_deltas`, echo.
pub fn plan_content(
    input: &CompletionInput,
    faults: &Faults,
    script: Option<Script>,
    answer_deltas: Option<usize>,
) -> Content {
    let search = input.chat_type == "search";
    let scripted_thinking = script.as_ref().and_then(|s| s.thinking.clone());
    let mut echo = false;
    let mut answer = if let Some(s) = script {
        s.answer
    } else if faults.native_tool || input.function_calling {
        NATIVE_TOOL_ANSWER.iter().map(|s| s.to_string()).collect()
    } else if let Some(n) = faults.deltas.or(answer_deltas) {
        numbered_deltas(n)
    } else {
        echo = true;
        echo_deltas(&input.prompt)
    };
    if echo && search {
        answer.push("[[1]]".to_string());
    }
    if faults.split_utf8 {
        answer.extend(["héllo ", "wörld ", "你好"].map(String::from));
    }
    let wants_thinking = input.thinking.is_some() || faults.disconnect_after_thinking;
    let thinking = if wants_thinking {
        thinking_for(input.thinking_format, scripted_thinking.as_deref())
    } else {
        Thinking::None
    };
    Content {
        answer,
        thinking,
        search,
    }
}

/// Three results; the last has only `url` and `title`, as some upstream items do.
pub const SEARCH_INFO_JSON: &str = concat!(
    r#"[{"url":"https://example.com/qwen-sim/one","title":"Simulated result one","#,
    r#""snippet":"The first simulated search snippet.","hostname":"example.com","date":" (2026-06-09)"},"#,
    r#"{"url":"https://docs.example.org/qwen-sim/two","title":"Simulated result two","#,
    r#""snippet":"The second simulated search snippet.","hostname":"docs.example.org","date":" (2026-06-10)"},"#,
    r#"{"url":"https://news.example.net/qwen-sim/three","title":"Simulated result three"}]"#
);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(prompt: &str, extra: serde_json::Value) -> CompletionInput {
        let mut msg = json!({"role": "user", "content": prompt,
            "feature_config": {"output_schema": "phase"}});
        if let Some(o) = extra.as_object() {
            for (k, v) in o {
                msg[k] = v.clone();
            }
        }
        CompletionInput::from_json(&json!({"messages": [msg]}))
    }

    #[test]
    fn echo_takes_last_64_chars_word_by_word() {
        assert_eq!(echo_deltas("hi there"), ["Echo: ", "hi ", "there "]);
        let long = format!("{} tail end", "x".repeat(100));
        let d = echo_deltas(&long);
        assert_eq!(d.concat().len(), "Echo: ".len() + 64 + 1);
        assert_eq!(d.last().unwrap(), "end ");
        assert_eq!(echo_deltas(""), ["Echo: "]);
    }

    #[test]
    fn precedence() {
        let i = input("a b [[sim:deltas=3]]", json!({}));
        let c = plan_content(&i, &i.faults, None, Some(9));
        assert_eq!(c.answer, ["w0 ", "w1 ", "w2 "]);
        let i = input("a b", json!({}));
        assert_eq!(
            plan_content(&i, &i.faults, None, Some(2)).answer,
            ["w0 ", "w1 "]
        );
        let s = Script {
            answer: vec!["<tool_c".into(), "all>".into()],
            thinking: None,
        };
        assert_eq!(
            plan_content(&i, &i.faults, Some(s), Some(2)).answer,
            ["<tool_c", "all>"]
        );
        let i = input("x [[sim:native_tool]]", json!({}));
        assert_eq!(
            plan_content(&i, &i.faults, None, None).answer.concat(),
            "Tool search does not exists."
        );
    }

    #[test]
    fn summary_thinking_is_cumulative() {
        let i = input("q", json!({"feature_config": {"thinking_enabled": true}}));
        let c = plan_content(&i, &i.faults, None, None);
        let Thinking::Summary(steps) = &c.thinking else {
            panic!("summary expected")
        };
        for w in steps.windows(2) {
            let (prev, next) = (&w[0].1, &w[1].1);
            assert!(next.len() >= prev.len());
            let last = prev.len() - 1;
            assert_eq!(prev[..last], next[..last]);
            assert!(next[last].starts_with(&prev[last]));
        }
        assert!(
            steps.windows(2).any(|w| w[0].1.len() == w[1].1.len()),
            "an in-place extension"
        );
        assert_eq!(
            c.thinking.reasoning(),
            format!("{THOUGHT_FIRST}\n\n{THOUGHT_SECOND}")
        );
    }

    #[test]
    fn detail_and_scripted_thinking() {
        let fc = json!({"feature_config": {"thinking_enabled": true, "thinking_format": "detail"}});
        let i = input("q", fc);
        let c = plan_content(&i, &i.faults, None, None);
        assert!(matches!(c.thinking, Thinking::Detail(_)));
        assert_eq!(
            c.thinking.reasoning(),
            format!("{THOUGHT_FIRST}\n\n{THOUGHT_SECOND}")
        );
        let i = input("q", json!({"feature_config": {"thinking_enabled": true}}));
        let s = Script {
            answer: vec!["a".into()],
            thinking: Some(vec!["x".into(), "y".into()]),
        };
        let c = plan_content(&i, &i.faults, Some(s), None);
        assert_eq!(c.thinking.reasoning(), "x\n\ny");
    }

    #[test]
    fn search_cites_and_list_is_valid() {
        let i = input("find it", json!({"chat_type": "search"}));
        let c = plan_content(&i, &i.faults, None, None);
        assert!(c.search);
        assert_eq!(c.answer.last().unwrap(), "[[1]]");
        let v: serde_json::Value = serde_json::from_str(SEARCH_INFO_JSON).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 3);
        assert!(v[2].get("snippet").is_none());
    }
}
