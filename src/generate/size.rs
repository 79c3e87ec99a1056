//! The aspect ratio a generation asks for. The upstream only understands five ratio strings
//! (protocol §8.1), while clients send OpenAI pixel sizes (`1792x1024`), other ratios, or
//! nothing and write the ratio into the prompt; all of it is mapped onto those five.

/// The ratios the upstream accepts, with their width / height.
pub const RATIOS: [(&str, f64); 5] = [
    ("1:1", 1.0),
    ("4:3", 4.0 / 3.0),
    ("3:4", 3.0 / 4.0),
    ("16:9", 16.0 / 9.0),
    ("9:16", 9.0 / 16.0),
];

/// The accepted ratio closest to `w / h`. Distance is taken on the log scale so that a
/// landscape size and its portrait twin land on mirrored ratios.
pub fn nearest(w: f64, h: f64) -> &'static str {
    let target = (w / h).ln();
    RATIOS
        .iter()
        .min_by(|a, b| {
            let da = (a.1.ln() - target).abs();
            let db = (b.1.ln() - target).abs();
            da.total_cmp(&db)
        })
        .map_or("1:1", |r| r.0)
}

fn positive(s: &str) -> Option<f64> {
    let v: f64 = s.trim().parse().ok()?;
    (v.is_finite() && v > 0.0).then_some(v)
}

/// A client's `size` -> the upstream ratio; `Ok(None)` for absent or `auto` (the upstream's
/// default), an error message for anything that is neither a ratio nor `WIDTHxHEIGHT`.
pub fn ratio_for(size: &str) -> Result<Option<&'static str>, String> {
    let s = size.trim().to_ascii_lowercase();
    if s.is_empty() || s == "auto" {
        return Ok(None);
    }
    if let Some((name, _)) = RATIOS.iter().find(|(name, _)| *name == s) {
        return Ok(Some(name));
    }
    let pair = s
        .split_once(':')
        .or_else(|| s.split_once('x'))
        .or_else(|| s.split_once('*'))
        .or_else(|| s.split_once('×'));
    match pair.and_then(|(w, h)| Some((positive(w)?, positive(h)?))) {
        Some((w, h)) => Ok(Some(nearest(w, h))),
        None => Err(format!(
            "size {size:?} is not an aspect ratio (1:1, 4:3, 3:4, 16:9, 9:16) or WIDTHxHEIGHT \
             (e.g. 1024x1024, 1792x1024, 1024x1792)"
        )),
    }
}

/// A ratio keyword written in the prompt. `@16:9` (the tag peers document) is removed from
/// the prompt; a bare `16:9` is kept, as it is also part of what the user asked for.
pub fn ratio_in_prompt(prompt: &str) -> (Option<&'static str>, String) {
    let bytes = prompt.as_bytes();
    let digit_at = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_digit);
    let mut best: Option<(usize, &'static str)> = None;
    for (name, _) in RATIOS {
        let mut from = 0;
        while let Some(rel) = prompt[from..].find(name) {
            let at = from + rel;
            let end = at + name.len();
            if (at == 0 || !digit_at(at - 1)) && !digit_at(end) {
                if best.is_none_or(|(b, _)| at < b) {
                    best = Some((at, name));
                }
                break;
            }
            from = at + 1;
        }
    }
    let Some((at, name)) = best else {
        return (None, prompt.to_string());
    };
    if at > 0 && bytes[at - 1] == b'@' {
        let mut cleaned = String::with_capacity(prompt.len());
        cleaned.push_str(prompt[..at - 1].trim_end());
        let rest = prompt[at + name.len()..].trim_start();
        if !cleaned.is_empty() && !rest.is_empty() {
            cleaned.push(' ');
        }
        cleaned.push_str(rest);
        return (Some(name), cleaned);
    }
    (Some(name), prompt.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_map_to_ratios() {
        for (size, want) in [
            ("1:1", "1:1"),
            ("16:9", "16:9"),
            (" 9:16 ", "9:16"),
            ("1024x1024", "1:1"),
            ("1792x1024", "16:9"),
            ("1024x1792", "9:16"),
            ("1536x1024", "4:3"),
            ("1024x1536", "3:4"),
            ("512X512", "1:1"),
            ("1280*720", "16:9"),
            ("720x1280", "9:16"),
            ("3:2", "4:3"),
            ("21:9", "16:9"),
            ("1000x1000", "1:1"),
            ("1100x1000", "1:1"),
            ("1300x1000", "4:3"),
        ] {
            assert_eq!(ratio_for(size), Ok(Some(want)), "{size}");
        }
        assert_eq!(ratio_for("auto"), Ok(None));
        assert_eq!(ratio_for(""), Ok(None));
        for bad in ["big", "0x100", "10x", "-1:2", "x", "nanxnan"] {
            assert!(ratio_for(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prompt_keywords() {
        assert_eq!(
            ratio_in_prompt("a cat @16:9 on a sofa"),
            (Some("16:9"), "a cat on a sofa".to_string())
        );
        assert_eq!(
            ratio_in_prompt("@9:16 a tower"),
            (Some("9:16"), "a tower".to_string())
        );
        assert_eq!(
            ratio_in_prompt("a 4:3 photo of a dog"),
            (Some("4:3"), "a 4:3 photo of a dog".to_string())
        );
        // The earliest keyword wins; numbers that merely contain a ratio do not count.
        assert_eq!(ratio_in_prompt("at 11:15 then 3:4 and 1:1").0, Some("3:4"));
        assert_eq!(ratio_in_prompt("116:90 and 1:10").0, None);
        assert_eq!(ratio_in_prompt("no ratio here").0, None);
    }
}
