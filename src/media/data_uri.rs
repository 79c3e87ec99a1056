//! `data:<mime>[;param=value]*;base64,<payload>` URIs, as OpenAI clients send inline images.
//! Parsed strictly: anything that is not base64 media of an accepted type is a clear 400,
//! because passing a broken image on would only surface later as a vaguer upstream error.

use base64::alphabet::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use bytes::Bytes;

use super::error::MediaError;
use super::MediaKind;

/// Standard alphabet; padding optional because some encoders drop it.
const LENIENT_PADDING: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataUri {
    /// Lower-case `type/subtype`, parameters removed.
    pub mime: String,
    pub bytes: Bytes,
}

/// True for strings that should go through [`parse`] rather than be fetched.
pub fn is_data_uri(s: &str) -> bool {
    s.len() >= 5 && s.as_bytes()[..5].eq_ignore_ascii_case(b"data:")
}

fn valid_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
}

/// Parses a base64 data URI of the accepted kind, refusing more than `max_bytes` decoded.
pub fn parse(uri: &str, kind: MediaKind, max_bytes: usize) -> Result<DataUri, MediaError> {
    let bad = |m: &str| MediaError::BadInput(m.to_string());
    if !is_data_uri(uri) {
        return Err(bad("not a data: URI"));
    }
    let (header, payload) = uri[5..]
        .split_once(',')
        .ok_or_else(|| bad("the data: URI has no ',' before its payload"))?;
    let mut parts = header.split(';');
    let mime = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let is_base64 = parts.any(|p| p.trim().eq_ignore_ascii_case("base64"));
    if !is_base64 {
        return Err(bad(
            "only base64 data: URIs are supported (';base64,' is missing)",
        ));
    }
    let (main, sub) = mime.split_once('/').ok_or_else(|| {
        bad("the data: URI has no media type (expected e.g. data:image/png;base64,...)")
    })?;
    if !valid_token(main) || !valid_token(sub) {
        return Err(MediaError::BadInput(format!(
            "the data: URI media type {mime:?} is malformed"
        )));
    }
    if !kind.accepts(&mime) {
        return Err(MediaError::BadInput(format!(
            "the data: URI has type {mime}, expected {}",
            kind.expected()
        )));
    }
    // Line-wrapped base64 (76-column MIME style) is common; whitespace carries no data.
    let compact: Vec<u8> = payload
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    // Refuse before decoding: 4 base64 characters carry 3 bytes.
    if compact.len() / 4 * 3 > max_bytes + 3 {
        return Err(MediaError::TooLarge {
            limit: max_bytes,
            what: kind.noun().to_string(),
        });
    }
    let bytes = LENIENT_PADDING.decode(&compact).map_err(|e| {
        MediaError::BadInput(format!("the data: URI payload is not valid base64 ({e})"))
    })?;
    if bytes.is_empty() {
        return Err(bad("the data: URI payload is empty"));
    }
    if bytes.len() > max_bytes {
        return Err(MediaError::TooLarge {
            limit: max_bytes,
            what: kind.noun().to_string(),
        });
    }
    Ok(DataUri {
        mime,
        bytes: Bytes::from(bytes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG_B64: &str = "iVBORw0KGgo=";

    #[test]
    fn accepts_well_formed() {
        let d = parse(
            &format!("data:image/png;base64,{PNG_B64}"),
            MediaKind::Image,
            100,
        )
        .unwrap();
        assert_eq!(d.mime, "image/png");
        assert_eq!(&d.bytes[..], b"\x89PNG\r\n\x1a\n");
        // Parameters, case, wrapped lines and missing padding are all fine.
        let d = parse(
            "DATA:Image/JPEG;name=a.jpg;BASE64,iVBO\r\nRw0K\nGgo",
            MediaKind::Image,
            100,
        )
        .unwrap();
        assert_eq!((d.mime.as_str(), d.bytes.len()), ("image/jpeg", 8));
        let d = parse("data:video/mp4;base64,AAAA", MediaKind::ImageOrVideo, 100).unwrap();
        assert_eq!(d.mime, "video/mp4");
        assert!(is_data_uri("Data:x") && !is_data_uri("http://x") && !is_data_uri("dat"));
    }

    #[test]
    fn refuses_malformed() {
        let err = |uri: &str| match parse(uri, MediaKind::Image, 100) {
            Err(MediaError::BadInput(m)) => m,
            other => panic!("{uri}: {other:?}"),
        };
        assert!(err("data:image/png;base64").contains("','"));
        assert!(err("data:image/png,rawtext").contains("base64"));
        assert!(err("data:;base64,AAAA").contains("media type"));
        assert!(err("data:image/p ng;base64,AAAA").contains("malformed"));
        assert!(err("data:text/plain;base64,AAAA").contains("expected an image"));
        assert!(err("data:video/mp4;base64,AAAA").contains("expected an image"));
        assert!(err("data:image/png;base64,@@@@").contains("not valid base64"));
        assert!(err("data:image/png;base64,iVBORw0KGgo=x").contains("not valid base64"));
        assert!(err("data:image/png;base64,").contains("empty"));
        assert!(err("http://x").contains("not a data"));
    }

    #[test]
    fn size_cap() {
        let big = "A".repeat(200);
        assert!(matches!(
            parse(
                &format!("data:image/png;base64,{big}"),
                MediaKind::Image,
                100
            ),
            Err(MediaError::TooLarge { limit: 100, .. })
        ));
        // Exactly at the limit passes: 8 chars -> 6 bytes.
        assert!(parse("data:image/png;base64,AAAAAAAA", MediaKind::Image, 6).is_ok());
        assert!(matches!(
            parse("data:image/png;base64,AAAAAAAA", MediaKind::Image, 5),
            Err(MediaError::TooLarge { .. })
        ));
    }
}
