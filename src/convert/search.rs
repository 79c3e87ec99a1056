//! Renders web-search sources (protocol §5.4) for clients, as a Markdown table or as lines.

use crate::config::SearchInfoMode;
use crate::qwen::events::SearchItem;

pub fn render(items: &[SearchItem], mode: SearchInfoMode) -> String {
    let mut out = String::new();
    match mode {
        SearchInfoMode::Table => {
            out.push_str("| # | Source | Site |\n|---|---|---|\n");
            for (i, it) in items.iter().enumerate() {
                out.push_str(&format!(
                    "| {} | [{}]({}) | {} |\n",
                    i + 1,
                    cell(title(it)),
                    it.url,
                    cell(host(it))
                ));
            }
        }
        SearchInfoMode::Text => {
            for (i, it) in items.iter().enumerate() {
                out.push_str(&format!(
                    "[{}] [{}]({}) | {}\n",
                    i + 1,
                    title(it),
                    it.url,
                    host(it)
                ));
            }
        }
    }
    out
}

fn title(it: &SearchItem) -> &str {
    if it.title.trim().is_empty() {
        "untitled"
    } else {
        it.title.trim()
    }
}

fn host(it: &SearchItem) -> &str {
    if !it.hostname.trim().is_empty() {
        return it.hostname.trim();
    }
    let rest = it.url.split("://").nth(1).unwrap_or(&it.url);
    rest.split('/')
        .next()
        .filter(|h| !h.is_empty())
        .unwrap_or("unknown")
}

/// Table cells cannot hold pipes or line breaks.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items() -> Vec<SearchItem> {
        vec![
            SearchItem {
                url: "https://a.example/x".into(),
                title: "A | b".into(),
                hostname: "a.example".into(),
                snippet: String::new(),
            },
            SearchItem {
                url: "https://b.example/y".into(),
                title: "".into(),
                hostname: "".into(),
                snippet: String::new(),
            },
        ]
    }

    #[test]
    fn table_and_text() {
        let t = render(&items(), SearchInfoMode::Table);
        assert!(t.contains("| 1 | [A \\| b](https://a.example/x) | a.example |"));
        assert!(t.contains("| 2 | [untitled](https://b.example/y) | b.example |"));
        let t = render(&items(), SearchInfoMode::Text);
        assert!(t.starts_with("[1] [A | b](https://a.example/x) | a.example\n"));
    }
}
