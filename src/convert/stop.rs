//! Stop sequences, enforced by the gateway because the upstream ignores them. Text that could
//! still become a match is held back, so a stop split across upstream deltas is caught too.

#[derive(Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
    longest: usize,
}

impl StopMatcher {
    pub fn new(stops: Vec<String>) -> Self {
        let longest = stops.iter().map(String::len).max().unwrap_or(0);
        StopMatcher {
            stops,
            held: String::new(),
            longest,
        }
    }

    pub fn is_active(&self) -> bool {
        !self.stops.is_empty()
    }

    /// Feeds text; `emit` receives what is safe to send. Returns true when a stop matched: the
    /// text before it has been emitted and everything after it must be dropped.
    pub fn push(&mut self, text: &str, mut emit: impl FnMut(&str)) -> bool {
        if self.stops.is_empty() {
            emit(text);
            return false;
        }
        self.held.push_str(text);
        // The match that ends first is the one a streaming reader sees first, so cutting there
        // gives the same result however the text was split (it matters when one stop contains
        // another); ties go to the earlier start.
        let first = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()).map(|p| (p + s.len(), p)))
            .min()
            .map(|(_, p)| p);
        if let Some(pos) = first {
            if pos > 0 {
                emit(&self.held[..pos]);
            }
            self.held.clear();
            return true;
        }
        let keep = self.partial_suffix();
        let cut = self.held.len() - keep;
        if cut > 0 {
            emit(&self.held[..cut]);
            self.held.drain(..cut);
        }
        false
    }

    /// Releases held text at the end of the answer (it can no longer become a match).
    pub fn flush(&mut self, mut emit: impl FnMut(&str)) {
        if !self.held.is_empty() {
            emit(&self.held);
            self.held.clear();
        }
    }

    /// Length of the longest suffix of `held` that is a proper prefix of some stop sequence.
    /// Such a suffix always starts on a char boundary, because it equals the start of a str.
    fn partial_suffix(&self) -> usize {
        let h = self.held.as_bytes();
        let max = self.longest.saturating_sub(1).min(h.len());
        (1..=max)
            .rev()
            .find(|&k| {
                let tail = &h[h.len() - k..];
                self.stops.iter().any(|s| s.as_bytes().starts_with(tail))
            })
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let mut m = StopMatcher::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = String::new();
        for p in pieces {
            if m.push(p, |t| out.push_str(t)) {
                return (out, true);
            }
        }
        m.flush(|t| out.push_str(t));
        (out, false)
    }

    #[test]
    fn cuts_before_match_across_pieces() {
        assert_eq!(
            run(&["END"], &["abc E", "N", "D tail"]),
            ("abc ".into(), true)
        );
        assert_eq!(run(&["END"], &["abc EN", "x"]), ("abc ENx".into(), false));
        assert_eq!(run(&["\n\n", "###"], &["a\n", "\nb"]), ("a".into(), true));
        assert_eq!(run(&["é!"], &["caf", "é", "!"]), ("caf".into(), true));
        assert_eq!(run(&[], &["x"]), ("x".into(), false));
    }

    #[test]
    fn every_split_of_text_gives_same_result() {
        let text = "hello wörld STOP after";
        let whole = run(&["STOP", "wörx"], &[text]);
        let idx: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
        for &i in &idx {
            for &j in &idx {
                if j < i {
                    continue;
                }
                let got = run(&["STOP", "wörx"], &[&text[..i], &text[i..j], &text[j..]]);
                assert_eq!(got, whole);
            }
        }
    }
}
