//! `multipart/form-data` (RFC 7578) as the OpenAI SDKs and curl send it for image edits and
//! videos. Pure and bounded by the already size-limited body; only what those clients send
//! is needed (CRLF framing, `Content-Disposition` names and filenames, a part `Content-Type`).

use bytes::Bytes;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub data: Bytes,
}

impl Part {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).trim().to_string()
    }
}

/// The `boundary` parameter of a `multipart/form-data` content type.
pub fn boundary(content_type: &str) -> Option<String> {
    let mut parts = content_type.split(';');
    let essence = parts.next()?.trim();
    if !essence.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let v = v.trim().trim_matches('"');
        (!v.is_empty() && v.len() <= 200).then(|| v.to_string())
    })
}

/// A `name="value"` parameter of a header value (quotes optional).
fn param(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

pub fn parse(body: &Bytes, boundary: &str) -> Result<Vec<Part>, String> {
    let delim = format!("--{boundary}");
    let next_delim = format!("\r\n--{boundary}");
    let finder = memchr::memmem::Finder::new(delim.as_bytes());
    let next_finder = memchr::memmem::Finder::new(next_delim.as_bytes());
    let start = finder
        .find(body)
        .ok_or("the multipart body has no boundary line")?;
    let mut pos = start + delim.len();
    let mut parts = Vec::new();
    loop {
        let rest = &body[pos..];
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        let Some(after_line) = rest.iter().position(|&b| b == b'\n') else {
            return Err("the multipart body ends after a boundary".into());
        };
        let head_start = pos + after_line + 1;
        let head_len = memchr::memmem::find(&body[head_start..], b"\r\n\r\n")
            .ok_or("a multipart part has no end of headers")?;
        let head = std::str::from_utf8(&body[head_start..head_start + head_len])
            .map_err(|_| "a multipart part has non-UTF-8 headers")?;
        let data_start = head_start + head_len + 4;
        let data_len = next_finder
            .find(&body[data_start..])
            .ok_or("a multipart part is not terminated by the boundary")?;
        let mut part = Part {
            name: String::new(),
            filename: None,
            content_type: None,
            data: body.slice(data_start..data_start + data_len),
        };
        for line in head.split("\r\n") {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            if k.trim().eq_ignore_ascii_case("content-disposition") {
                part.name = param(v, "name").unwrap_or_default();
                part.filename = param(v, "filename");
            } else if k.trim().eq_ignore_ascii_case("content-type") {
                part.content_type = Some(v.trim().to_ascii_lowercase());
            }
        }
        parts.push(part);
        pos = data_start + data_len + next_delim.len();
    }
}

/// The image type from magic bytes, for file parts sent as `application/octet-stream`.
pub fn sniff_image(b: &[u8]) -> Option<&'static str> {
    if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if b.starts_with(b"\xff\xd8\xff") {
        Some("image/jpeg")
    } else if b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if b.len() >= 12 && &b[..4] == b"RIFF" && &b[8..12] == b"WEBP" {
        Some("image/webp")
    } else if b.starts_with(b"BM") {
        Some("image/bmp")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries() {
        assert_eq!(
            boundary("multipart/form-data; boundary=abc123").as_deref(),
            Some("abc123")
        );
        assert_eq!(
            boundary("Multipart/Form-Data;charset=utf-8; Boundary=\"x y\"").as_deref(),
            Some("x y")
        );
        assert_eq!(boundary("application/json"), None);
        assert_eq!(boundary("multipart/form-data"), None);
    }

    #[test]
    fn parts() {
        let body = Bytes::from_static(
            b"preamble\r\n--XX\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\na red\r\nfox\r\n\
              --XX\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\
              Content-Type: image/PNG\r\n\r\n\x89PNG\r\n\x1a\n--X\r\n--XX--\r\n",
        );
        let p = parse(&body, "XX").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[0].name.as_str(), p[0].text()),
            ("prompt", "a red\r\nfox".into())
        );
        assert_eq!(p[1].filename.as_deref(), Some("a.png"));
        assert_eq!(p[1].content_type.as_deref(), Some("image/png"));
        assert_eq!(&p[1].data[..], b"\x89PNG\r\n\x1a\n--X");
        assert_eq!(sniff_image(&p[1].data), Some("image/png"));
        assert!(parse(&Bytes::from_static(b"nothing"), "XX").is_err());
        let open = Bytes::from_static(b"--XX\r\nContent-Disposition: form-data; name=a\r\n\r\nx");
        assert!(parse(&open, "XX").is_err());
        assert_eq!(
            parse(&Bytes::from_static(b"--XX--\r\n"), "XX").unwrap(),
            vec![]
        );
    }

    #[test]
    fn sniffing() {
        assert_eq!(sniff_image(b"\xff\xd8\xff\xe0"), Some("image/jpeg"));
        assert_eq!(sniff_image(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff_image(b"hello"), None);
    }
}
