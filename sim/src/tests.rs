//! Crate-level tests of the pure renderer: framing and event order for each mode.

use serde_json::{json, Value};

use crate::{render_completion_sse, Sim, SimConfig, DEMO_EMAIL};

fn body(prompt: &str, fc: Value, chat_type: &str) -> Value {
    json!({
        "stream": true, "incremental_output": true, "chat_id": "chat-1", "model": "qwen3-max",
        "messages": [{"fid": "m1", "role": "user", "content": prompt, "chat_type": chat_type,
                      "feature_config": fc}],
        "timestamp": 1783327438,
    })
}

/// Checks exact framing and returns the parsed events.
fn events(chunks: &[bytes::Bytes]) -> Vec<Value> {
    chunks
        .iter()
        .map(|c| {
            let s = std::str::from_utf8(c).unwrap();
            assert!(s.starts_with("data: "), "{s:?}");
            assert!(
                s.ends_with("\n\n") && !s[..s.len() - 2].contains('\n'),
                "{s:?}"
            );
            serde_json::from_str(&s[6..s.len() - 2]).unwrap()
        })
        .collect()
}

fn delta(e: &Value) -> &Value {
    &e["choices"][0]["delta"]
}

fn answer_of(evs: &[Value]) -> String {
    evs.iter()
        .filter(|e| delta(e)["phase"] == "answer" && delta(e)["status"] == "typing")
        .map(|e| delta(e)["content"].as_str().unwrap())
        .collect()
}

#[test]
fn plain_answer_framing() {
    let sim = Sim::new(SimConfig::default());
    let b = body(
        "hello there world",
        json!({"output_schema": "phase"}),
        "t2t",
    );
    let chunks = render_completion_sse(&sim, DEMO_EMAIL, &b);
    assert_eq!(
        chunks,
        render_completion_sse(&sim, DEMO_EMAIL, &b),
        "deterministic"
    );
    let evs = events(&chunks);
    assert_eq!(evs[0]["response.created"]["chat_id"], "chat-1");
    assert_eq!(evs[0]["response.created"]["parent_id"], "m1");
    let n = evs.len();
    // created, 4 word deltas, one empty typing delta, finished.
    assert_eq!(n, 7);
    assert_eq!(answer_of(&evs), "Echo: hello there world ");
    assert_eq!(delta(&evs[n - 2])["content"], "");
    assert_eq!(delta(&evs[n - 2])["status"], "typing");
    assert_eq!(delta(&evs[n - 1])["status"], "finished");
    assert!(evs[n - 1].get("usage").is_none());
    let outs: Vec<u64> = evs[1..n - 1]
        .iter()
        .map(|e| e["usage"]["output_tokens"].as_u64().unwrap())
        .collect();
    assert_eq!(outs, [1, 2, 3, 4, 4]);
    assert!(!chunks.iter().any(|c| c.windows(6).any(|w| w == b"[DONE]")));
    let rid = evs[0]["response.created"]["response_id"].clone();
    assert!(evs[1..].iter().all(|e| e["response_id"] == rid));
}

#[test]
fn answer_deltas_and_missing_output_schema() {
    let cfg = SimConfig {
        answer_deltas: Some(5),
        ..SimConfig::default()
    };
    let sim = Sim::new(cfg);
    let evs = events(&render_completion_sse(
        &sim,
        DEMO_EMAIL,
        &body("x", json!({}), "t2t"),
    ));
    let typing: Vec<&str> = evs[1..evs.len() - 2]
        .iter()
        .map(|e| delta(e)["content"].as_str().unwrap())
        .collect();
    assert_eq!(typing, ["w0 ", "w1 ", "w2 ", "w3 ", "w4 "]);
    assert!(evs[1..].iter().all(|e| delta(e).get("phase").is_none()));
}

#[test]
fn thinking_summary_is_cumulative_then_answer() {
    let sim = Sim::new(SimConfig::default());
    let fc =
        json!({"output_schema": "phase", "thinking_enabled": true, "thinking_format": "summary"});
    let evs = events(&render_completion_sse(
        &sim,
        DEMO_EMAIL,
        &body("hi", fc, "t2t"),
    ));
    let summaries: Vec<&Value> = evs
        .iter()
        .filter(|e| delta(e)["phase"] == "thinking_summary" && delta(e)["status"] == "typing")
        .collect();
    assert_eq!(summaries.len(), 3);
    let thoughts = |e: &Value| -> Vec<String> {
        serde_json::from_value(delta(e)["extra"]["summary_thought"]["content"].clone()).unwrap()
    };
    let (a, b, c) = (
        thoughts(summaries[0]),
        thoughts(summaries[1]),
        thoughts(summaries[2]),
    );
    assert_eq!(a.len(), 1);
    assert_eq!(b.len(), 1);
    assert!(
        b[0].starts_with(&a[0]) && b[0].len() > a[0].len(),
        "extends in place"
    );
    assert_eq!(c[0], b[0]);
    assert_eq!(c.len(), 2);
    let titles = &delta(summaries[2])["extra"]["summary_title"]["content"];
    assert_eq!(titles.as_array().unwrap().len(), 2);
    let fin = evs
        .iter()
        .position(|e| delta(e)["phase"] == "thinking_summary" && delta(e)["status"] == "finished")
        .unwrap();
    let first_answer = evs
        .iter()
        .position(|e| delta(e)["phase"] == "answer")
        .unwrap();
    assert!(fin < first_answer);
    assert_eq!(
        summaries[2]["usage"]["output_tokens_details"]["reasoning_tokens"],
        3
    );
    assert_eq!(answer_of(&evs), "Echo: hi ");
}

#[test]
fn thinking_detail_then_answer() {
    let sim = Sim::new(SimConfig::default());
    let fc =
        json!({"output_schema": "phase", "thinking_enabled": true, "thinking_format": "detail"});
    let evs = events(&render_completion_sse(
        &sim,
        DEMO_EMAIL,
        &body("hi", fc, "t2t"),
    ));
    let think: String = evs
        .iter()
        .filter(|e| delta(e)["phase"] == "think" && delta(e)["status"] == "typing")
        .map(|e| delta(e)["content"].as_str().unwrap())
        .collect();
    assert!(think.contains("\n\n"), "{think:?}");
    let last_think = evs
        .iter()
        .rposition(|e| delta(e)["phase"] == "think")
        .unwrap();
    let first_answer = evs
        .iter()
        .position(|e| delta(e)["phase"] == "answer")
        .unwrap();
    assert!(last_think < first_answer);
}

#[test]
fn search_comes_first_and_is_cited() {
    let sim = Sim::new(SimConfig::default());
    let fc = json!({"output_schema": "phase", "thinking_enabled": true});
    let evs = events(&render_completion_sse(
        &sim,
        DEMO_EMAIL,
        &body("news", fc, "search"),
    ));
    let d = delta(&evs[1]);
    assert_eq!(d["name"], "web_search");
    assert_eq!(d["phase"], "web_search");
    let info = d["extra"]["web_search_info"].as_array().unwrap();
    assert_eq!(info.len(), 3);
    assert!(info[2].get("snippet").is_none() && info[2]["url"].is_string());
    assert_eq!(delta(&evs[2])["phase"], "thinking_summary");
    assert!(answer_of(&evs).ends_with("[[1]]"));
}

#[test]
fn fault_directives_are_ignored_but_stripped() {
    let sim = Sim::new(SimConfig::default());
    let b = body(
        "hey [[sim:disconnect=1]][[sim:deltas=2]]",
        json!({"output_schema": "phase"}),
        "t2t",
    );
    let evs = events(&render_completion_sse(&sim, DEMO_EMAIL, &b));
    assert_eq!(answer_of(&evs), "w0 w1 ");
    assert_eq!(delta(evs.last().unwrap())["status"], "finished");
}

mod faults {
    use bytes::Bytes;

    use crate::answer::plan_content;
    use crate::events::EventWriter;
    use crate::faults::UsageStyle;
    use crate::render::{build_plan, End, Frame, Plan};
    use crate::request::CompletionInput;

    fn plan(prompt: &str) -> Plan {
        let body = serde_json::json!({"messages": [{"role": "user", "content": prompt,
            "feature_config": {"output_schema": "phase"}}]});
        let input = CompletionInput::from_json(&body);
        let content = plan_content(&input, &input.faults, None, None);
        let w = EventWriter {
            response_id: "r".into(),
            timestamp: 1,
            with_phase: true,
            usage_style: UsageStyle::Input,
        };
        build_plan(&w, &content, &input.faults, "c", "p", 1000)
    }

    fn text(chunks: &[Bytes]) -> String {
        String::from_utf8(chunks.concat()).unwrap()
    }

    #[test]
    fn disconnect_and_quota_stop_after_n_deltas() {
        let p = plan("a b c [[sim:disconnect=2]]");
        assert_eq!(p.end, End::Disconnect);
        assert_eq!(p.answer, "Echo: a ");
        assert!(!text(&p.chunks()).contains("finished"));

        let p = plan("a b c [[sim:midstream_quota=1]]");
        assert_eq!(p.end, End::Finish);
        let t = text(&p.chunks());
        assert!(t.ends_with("#token-limit\"}}\n\n"), "{t}");
        assert!(!t.contains("finished"));

        // A threshold past the end fires after the last delta.
        let p = plan("a [[sim:disconnect=99]]");
        assert_eq!((p.end, p.answer.as_str()), (End::Disconnect, "Echo: a "));
    }

    #[test]
    fn split_utf8_cuts_inside_a_character() {
        let p = plan("u [[sim:split_utf8]]");
        let cut = p
            .frames
            .iter()
            .find_map(|f| match f {
                Frame::Split(b, at) => Some((b.clone(), *at)),
                _ => None,
            })
            .unwrap();
        assert!(std::str::from_utf8(&cut.0[..cut.1]).is_err());
        assert!(p.answer.ends_with("héllo wörld 你好"));
        assert!(text(&p.chunks()).contains("你好"));
    }

    #[test]
    fn split_gives_two_writes_per_event() {
        let p = plan("a [[sim:split]]");
        assert!(p.frames.iter().all(|f| matches!(f, Frame::Split(..))));
        assert_eq!(p.chunks().len(), p.frames.len() * 2);
    }

    #[test]
    fn noncanonical_is_valid_sse_with_the_same_answer() {
        let p = plan("one two [[sim:noncanonical]]");
        let t = text(&p.chunks());
        assert!(t.contains("event: ping\r\n") && t.contains(": keep-alive\r\n"));
        assert!(!t.contains("data: ") && !t.contains("\n\n"));
        // Minimal spec parser: blocks split on blank lines, data lines joined with \n.
        let mut answer = String::new();
        for block in t.split("\r\n\r\n").filter(|b| !b.is_empty()) {
            let data: Vec<&str> = block
                .split("\r\n")
                .filter_map(|l| l.strip_prefix("data:"))
                .collect();
            if data.is_empty() {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(&data.join("\n")).unwrap();
            let d = &v["choices"][0]["delta"];
            if d["status"] == "typing" {
                answer.push_str(d["content"].as_str().unwrap());
            }
        }
        assert_eq!(answer, "Echo: one two ");
    }

    #[test]
    fn malformed_empty_done_and_after_finished() {
        let t = text(&plan("a [[sim:malformed]]").chunks());
        assert!(t.contains("\"content\":\"trunc\n\n") && t.contains("data:\n\n"));
        let p = plan("a [[sim:empty]]");
        assert_eq!(p.chunks().len(), 2);
        assert!(text(&plan("a [[sim:done]]").chunks()).ends_with("data: [DONE]\n\n"));
        let p = plan("a [[sim:after_finished]]");
        let t = text(&p.chunks());
        assert!(t.find("finished").unwrap() < t.find("late ").unwrap());
        assert_eq!(p.answer, "Echo: a ");
    }

    #[test]
    fn huge_line_has_the_requested_size() {
        let p = plan("a [[sim:huge_line=20000]]");
        let chunks = p.chunks();
        let big = chunks.iter().max_by_key(|c| c.len()).unwrap();
        assert_eq!(big.len(), 20000 + 2);
        let s = std::str::from_utf8(big).unwrap();
        serde_json::from_str::<serde_json::Value>(&s[6..s.len() - 2]).unwrap();
    }
}
