//! A local token estimate, used only where the upstream reports no usage and to enforce
//! `max_tokens`, which the upstream ignores. Roughly four ASCII characters per token and one
//! token per other character (CJK text is about one token per character).

#[derive(Debug, Default, Clone, Copy)]
pub struct TokenCounter {
    ascii: u64,
    other: u64,
}

impl TokenCounter {
    pub fn tokens(&self) -> u64 {
        self.ascii.div_ceil(4) + self.other
    }

    pub fn add(&mut self, text: &str) {
        for c in text.chars() {
            if c.is_ascii() {
                self.ascii += 1;
            } else {
                self.other += 1;
            }
        }
    }

    /// The longest prefix of `text` that keeps the total within `limit`; adds it.
    pub fn take_within<'a>(&mut self, text: &'a str, limit: u64) -> &'a str {
        for (i, c) in text.char_indices() {
            let mut next = *self;
            if c.is_ascii() {
                next.ascii += 1;
            } else {
                next.other += 1;
            }
            if next.tokens() > limit {
                return &text[..i];
            }
            *self = next;
        }
        text
    }
}

pub fn estimate(text: &str) -> u64 {
    let mut c = TokenCounter::default();
    c.add(text);
    c.tokens()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates() {
        assert_eq!(estimate(""), 0);
        assert_eq!(estimate("abcd"), 1);
        assert_eq!(estimate("abcde"), 2);
        assert_eq!(estimate("你好"), 2);
    }

    #[test]
    fn take_within_limit() {
        let mut c = TokenCounter::default();
        assert_eq!(c.take_within("abcdefghij", 2), "abcdefgh");
        assert_eq!(c.tokens(), 2);
        assert_eq!(c.take_within("x", 2), "");
        let mut c = TokenCounter::default();
        assert_eq!(c.take_within("你好世界", 3), "你好世");
    }
}
