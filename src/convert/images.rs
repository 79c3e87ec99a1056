//! Pictures in answers. The Markdown form and the URL check are shared with the generation
//! routes; [`ToolImages`] handles the pictures a normal chat produces by calling the
//! upstream's image tool (protocol §5.5: `extra.image_list` on a delta, phase
//! `image_gen_tool`): each URL once (the upstream repeats the list), and only once the answer
//! has begun, so they never land inside the thinking.

/// `![image](url)`, the form chat clients render inline.
pub fn markdown(url: &str) -> String {
    format!("![image]({url})")
}

/// An absolute http(s) URL (surrounding blanks ignored) with no blank or control character
/// inside, so it can stand in a Markdown link.
pub fn is_url(s: &str) -> bool {
    let s = s.trim();
    (s.starts_with("https://") || s.starts_with("http://"))
        && !s.contains(|c: char| c.is_whitespace() || c.is_control())
        && s.len() > "http://".len()
}

#[derive(Debug, Default)]
pub struct ToolImages {
    /// Every usable URL so far, in order of arrival.
    seen: Vec<String>,
    /// How many of them the answer already shows.
    shown: usize,
}

impl ToolImages {
    /// Takes a URL from the upstream; a new, usable one waits for the answer.
    pub fn offer(&mut self, url: &str) {
        let url = url.trim();
        if is_url(url) && !self.seen.iter().any(|s| s == url) {
            self.seen.push(url.to_string());
        }
    }

    pub fn has_held(&self) -> bool {
        self.shown < self.seen.len()
    }

    /// The pictures not shown yet, as Markdown separated by blank lines, with one in front
    /// when `after_text` (the answer already has text).
    pub fn take(&mut self, after_text: bool) -> String {
        let mut out = String::new();
        for (i, url) in self.seen[self.shown..].iter().enumerate() {
            if i > 0 || after_text {
                out.push_str("\n\n");
            }
            // Parentheses would end the Markdown link early.
            out.push_str(&markdown(&url.replace('(', "%28").replace(')', "%29")));
        }
        self.shown = self.seen.len();
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
            "![image](https://cdn.example/a.png?key=x)\n\n![image](https://cdn.example/%28b%29.png)"
        );
        assert!(!t.has_held());
        t.offer("https://cdn.example/a.png?key=x");
        assert!(!t.has_held(), "seen before");
        t.offer("https://cdn.example/c.png");
        assert_eq!(t.take(true), "\n\n![image](https://cdn.example/c.png)");
    }

    #[test]
    fn urls() {
        assert!(is_url(" https://cdn/x.png "));
        assert!(is_url("http://a/b"));
        assert!(!is_url("http://"));
        assert!(!is_url("https://cdn/a b.png"));
        assert!(!is_url("https://cdn/a\u{1}.png"));
        assert!(!is_url("ftp://cdn/x.png"));
    }
}
