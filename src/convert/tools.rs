//! Tool calling through the prompt. The upstream's native tools intercept text protocols
//! (protocol §4.2), so tools are described in the prompt in a compact signature form and the
//! model answers with `<tool_call>` blocks that `toolcall` parses out of the stream. Earlier
//! calls and their results are folded back into the transcript in the same notation, so
//! multi-step tool use reads consistently to the model.

use serde_json::Value;

use super::input::{CallRecord, ToolChoice, ToolSpec, Turn};

pub const OPEN: &str = "<tool_call>";
pub const CLOSE: &str = "</tool_call>";

/// A compact TypeScript-like type for a JSON Schema: fewer tokens than the schema itself and
/// unambiguous to the model.
pub fn schema_type(s: &Value, depth: usize) -> String {
    if depth > 6 {
        return "any".into();
    }
    if let Some(vals) = s.get("enum").and_then(Value::as_array) {
        return vals
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join(" | ");
    }
    if let Some(c) = s.get("const") {
        return c.to_string();
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(alts) = s.get(key).and_then(Value::as_array) {
            return alts
                .iter()
                .map(|a| schema_type(a, depth + 1))
                .collect::<Vec<_>>()
                .join(" | ");
        }
    }
    let ty = match s.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(ts)) => {
            return ts
                .iter()
                .filter_map(Value::as_str)
                .map(|t| schema_type(&serde_json::json!({ "type": t }), depth + 1))
                .collect::<Vec<_>>()
                .join(" | ")
        }
        _ if s.get("properties").is_some() => "object",
        _ => "any",
    };
    match ty {
        "integer" | "number" => "number".into(),
        "string" | "boolean" | "null" => ty.into(),
        "array" => {
            let item = s
                .get("items")
                .map_or("any".into(), |i| schema_type(i, depth + 1));
            if item.contains(' ') {
                format!("({item})[]")
            } else {
                format!("{item}[]")
            }
        }
        "object" => object_type(s, depth),
        _ => "any".into(),
    }
}

fn object_type(s: &Value, depth: usize) -> String {
    let Some(props) = s.get("properties").and_then(Value::as_object) else {
        return "object".into();
    };
    let required: Vec<&str> = s
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let fields: Vec<String> = props
        .iter()
        .map(|(k, v)| {
            let opt = if required.contains(&k.as_str()) {
                ""
            } else {
                "?"
            };
            format!("{k}{opt}: {}", schema_type(v, depth + 1))
        })
        .collect();
    format!("{{ {} }}", fields.join("; "))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The instructions block placed before the conversation; empty when tools are off.
pub fn instructions(tools: &[ToolSpec], choice: &ToolChoice, parallel: bool) -> String {
    if tools.is_empty() || *choice == ToolChoice::None {
        return String::new();
    }
    let mut out = String::from(
        "# Tools\nYou can call the tools below. To call one, answer with a block in exactly this form, \
         with valid JSON and nothing else inside it:\n<tool_call>\n{\"name\": \"<tool name>\", \"arguments\": {<arguments>}}\n</tool_call>\n\
         Results come back in later turns as <tool_response> blocks. Use only the listed names; do not put the \
         block in a code fence; do not describe a call instead of making it.\n\n## Available tools\n",
    );
    for t in tools {
        out.push_str("- ");
        out.push_str(&t.name);
        let sig = schema_type(&t.parameters, 0);
        out.push_str(if sig == "object" || sig == "any" {
            "{ }"
        } else {
            &sig
        });
        out.push('\n');
        if !t.description.trim().is_empty() {
            out.push_str("  ");
            out.push_str(&one_line(&t.description));
            out.push('\n');
        }
    }
    match choice {
        ToolChoice::Required => out.push_str("\nYou MUST call at least one tool in this answer.\n"),
        ToolChoice::Named(n) => {
            out.push_str(&format!("\nYou MUST call the tool `{n}` in this answer.\n"))
        }
        _ => {}
    }
    if !parallel {
        out.push_str("Call at most one tool per answer.\n");
    }
    out
}

/// The hint for the one corrective retry when a required call was not made.
pub fn corrective_hint(choice: &ToolChoice) -> String {
    match choice {
        ToolChoice::Named(n) => format!(
            "\n\n[system]\nYour previous answer did not call a tool. Call the tool `{n}` now, using the <tool_call> block form."
        ),
        _ => "\n\n[system]\nYour previous answer did not call a tool. Call one of the tools now, using the <tool_call> block form.".into(),
    }
}

fn escape_attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
}

/// An assistant turn's text with its calls written back in the block notation.
pub fn fold_calls(text: &str, calls: &[CallRecord]) -> String {
    let mut out = text.to_string();
    for c in calls {
        let args: Value =
            serde_json::from_str(&c.arguments).unwrap_or(Value::String(c.arguments.clone()));
        let block = serde_json::json!({"name": c.name, "arguments": args});
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(OPEN);
        out.push('\n');
        out.push_str(&block.to_string());
        out.push('\n');
        out.push_str(CLOSE);
    }
    out
}

/// A tool result turn in the block notation; the name is found from the call id when missing.
pub fn fold_result(turn: &Turn, earlier: &[Turn]) -> String {
    let id = turn.call_id.as_deref().unwrap_or("");
    let name = turn.name.clone().or_else(|| {
        earlier
            .iter()
            .flat_map(|t| &t.calls)
            .find(|c| c.id == id)
            .map(|c| c.name.clone())
    });
    format!(
        "<tool_response tool_call_id=\"{}\" name=\"{}\">\n{}\n</tool_response>",
        escape_attr(id),
        escape_attr(name.as_deref().unwrap_or("")),
        turn.text
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schema_signatures() {
        let s = json!({"type":"object","properties":{
            "city":{"type":"string"},
            "unit":{"type":"string","enum":["c","f"]},
            "days":{"type":"array","items":{"type":"integer"}},
            "opts":{"type":"object","properties":{"x":{"type":["string","null"]}}}},
            "required":["city"]});
        assert_eq!(
            schema_type(&s, 0),
            r#"{ city: string; days?: number[]; opts?: { x?: string | null }; unit?: "c" | "f" }"#
        );
    }

    #[test]
    fn instructions_follow_the_choice() {
        let tools = vec![ToolSpec {
            name: "get_weather".into(),
            description: "Get the\n weather.".into(),
            parameters: json!({"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}),
        }];
        let auto = instructions(&tools, &ToolChoice::Auto, true);
        assert!(auto.contains("- get_weather{ city: string }\n  Get the weather.\n"));
        assert!(!auto.contains("MUST"));
        assert!(
            instructions(&tools, &ToolChoice::Required, true).contains("MUST call at least one")
        );
        assert!(
            instructions(&tools, &ToolChoice::Named("get_weather".into()), false)
                .contains("MUST call the tool `get_weather`")
        );
        assert!(instructions(&tools, &ToolChoice::None, true).is_empty());
        assert!(instructions(&[], &ToolChoice::Auto, true).is_empty());
    }

    #[test]
    fn folding() {
        let calls = vec![CallRecord {
            id: "call_1".into(),
            name: "f".into(),
            arguments: r#"{"a":1}"#.into(),
        }];
        assert_eq!(
            fold_calls("Let me check.", &calls),
            "Let me check.\n<tool_call>\n{\"arguments\":{\"a\":1},\"name\":\"f\"}\n</tool_call>"
        );
        let earlier = vec![Turn {
            calls,
            ..Turn::text(super::super::input::Role::Assistant, "")
        }];
        let result = Turn {
            call_id: Some("call_1".into()),
            ..Turn::text(super::super::input::Role::Tool, "sunny")
        };
        assert_eq!(
            fold_result(&result, &earlier),
            "<tool_response tool_call_id=\"call_1\" name=\"f\">\nsunny\n</tool_response>"
        );
    }
}
