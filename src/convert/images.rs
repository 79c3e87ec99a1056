//! Pictures that a normal chat produces by calling the upstream's image tool (protocol §5.5:
//! `extra.image_list` on a delta, phase `image_gen_tool`). They become Markdown images in the
//! answer, each URL once (the upstream repeats the list), and wait for the answer to begin so
//! they never land inside the thinking.

#[derive(Debug, Default)]
pub struct ToolImages {
    seen: Vec<String>,
    held: Vec<String>,
}

impl ToolImages {
    /// Takes a URL from the upstream; a new, usable one is held for the answer.
    pub fn offer(&mut self, url: &str) {
        let url = url.trim();
        if !(url.starts_with("https://") || url.starts_with("http://"))
            || url
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
            || self.seen.iter().any(|s| s == url)
        {
            return;
        }
        self.seen.push(url.to_string());
        // Parentheses would end the Markdown link early.
        let link = url.replace('(', "%28").replace(')', "%29");
        self.held.push(format!("![image]({link})"));
    }

    pub fn has_held(&self) -> bool {
        !self.held.is_empty()
    }

    /// The held images as answer text; `after_text` when the answer already has text.
    pub fn take(&mut self, after_text: bool) -> String {
        let mut out = String::new();
        for (i, md) in std::mem::take(&mut self.held).into_iter().enumerate() {
            if i > 0 || after_text {
                out.push_str("\n\n");
            }
            out.push_str(&md);
        }
        if !after_text {
            out.push_str("\n\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_usable_url_once_as_markdown() {
        let mut t = ToolImages::default();
        assert!(!t.has_held());
        t.offer("https://cdn.example/a.png?key=x");
        t.offer(" https://cdn.example/a.png?key=x ");
        t.offer("javascript:alert(1)");
        t.offer("https://cdn.example/b c.png");
        t.offer("https://cdn.example/(b).png");
        assert!(t.has_held());
        assert_eq!(
            t.take(false),
            "![image](https://cdn.example/a.png?key=x)\n\n![image](https://cdn.example/%28b%29.png)\n\n"
        );
        assert!(!t.has_held());
        t.offer("https://cdn.example/a.png?key=x");
        assert!(!t.has_held(), "seen before");
        t.offer("https://cdn.example/c.png");
        assert_eq!(t.take(true), "\n\n![image](https://cdn.example/c.png)");
    }
}
