//! A small `multipart/form-data` reader (RFC 7578) for `POST /v1/images/edits`, the one endpoint whose
//! clients upload files.
//!
//! It is linear and bounded: each delimiter is found with one forward `memmem` search from where the last
//! part ended, so no byte is scanned twice; the number of parts and the size of each part's header block are
//! capped ([`MAX_PARTS`], [`MAX_PART_HEADER_BYTES`]); the whole body is already capped by the gateway's
//! `limits.max_request_body`. Part bodies are borrowed from the request body, never copied.

use memchr::memmem;

/// Most parts one form may have: an edit is a prompt, a few options, and up to 16 images and a mask.
pub const MAX_PARTS: usize = 64;
/// Largest header block of one part (`Content-Disposition`, `Content-Type`, ...).
pub const MAX_PART_HEADER_BYTES: usize = 8 * 1024;
/// RFC 2046 caps a boundary at 70 characters.
const MAX_BOUNDARY: usize = 70;

/// Why a form could not be read; always the client's fault (400).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    #[error("the Content-Type must be multipart/form-data with a boundary parameter")]
    NoBoundary,
    #[error("the multipart boundary must be 1 to 70 characters without quotes or control characters")]
    BadBoundary,
    #[error("the multipart body does not start with its boundary")]
    NoFirstBoundary,
    #[error("the multipart body ends before its closing boundary")]
    Truncated,
    #[error("a multipart part has more than {MAX_PART_HEADER_BYTES} bytes of headers")]
    HeaderTooLarge,
    #[error("a multipart part header is not valid: {0}")]
    BadHeader(&'static str),
    #[error("the form has more than {MAX_PARTS} parts")]
    TooManyParts,
}

/// One field of the form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormPart<'a> {
    /// The `name` of `Content-Disposition: form-data`.
    pub name: &'a str,
    /// The `filename`, for file fields.
    pub filename: Option<&'a str>,
    /// The part's own `Content-Type`, if it sent one.
    pub content_type: Option<&'a str>,
    pub data: &'a [u8],
}

/// The `boundary` parameter of a `multipart/form-data` Content-Type header value.
pub fn boundary(content_type: &str) -> Result<&str, MultipartError> {
    let mut params = content_type.split(';');
    let kind = params.next().unwrap_or_default().trim();
    if !kind.eq_ignore_ascii_case("multipart/form-data") {
        return Err(MultipartError::NoBoundary);
    }
    let value = params
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim())
        .ok_or(MultipartError::NoBoundary)?;
    let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
    let valid = !value.is_empty()
        && value.len() <= MAX_BOUNDARY
        && value.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"');
    if valid {
        Ok(value)
    } else {
        Err(MultipartError::BadBoundary)
    }
}

/// Reads every part of `body`, delimited by `boundary`.
pub fn parse<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<FormPart<'a>>, MultipartError> {
    let dash_boundary = format!("--{boundary}");
    // Every delimiter after the first is preceded by CRLF, which belongs to it, not to the part before.
    let delimiter = format!("\r\n--{boundary}");
    let finder = memmem::Finder::new(delimiter.as_bytes());
    // A preamble before the first boundary is allowed (and ignored); the first boundary may open the body.
    let mut at = if body.starts_with(dash_boundary.as_bytes()) {
        dash_boundary.len()
    } else {
        finder.find(body).ok_or(MultipartError::NoFirstBoundary)? + delimiter.len()
    };
    let mut parts = Vec::new();
    loop {
        let rest = &body[at..];
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        // Transport padding (spaces, tabs) may follow a boundary before its CRLF.
        let padding = rest.iter().take_while(|b| matches!(b, b' ' | b'\t')).count();
        if !rest[padding..].starts_with(b"\r\n") {
            return Err(if rest.len() < padding + 2 {
                MultipartError::Truncated
            } else {
                MultipartError::BadHeader("boundary line")
            });
        }
        if parts.len() == MAX_PARTS {
            return Err(MultipartError::TooManyParts);
        }
        let start = at + padding + 2;
        let window = &body[start..body.len().min(start + MAX_PART_HEADER_BYTES + 4)];
        let header_len = match memmem::find(window, b"\r\n\r\n") {
            Some(n) => n,
            // A part with no headers at all starts with the blank line at once.
            None if window.starts_with(b"\r\n") => 0,
            None if window.len() > MAX_PART_HEADER_BYTES => return Err(MultipartError::HeaderTooLarge),
            None => return Err(MultipartError::Truncated),
        };
        let (headers, data_start) = if window.starts_with(b"\r\n") {
            (&body[start..start], start + 2)
        } else {
            (&body[start..start + header_len], start + header_len + 4)
        };
        let data_len = finder.find(&body[data_start..]).ok_or(MultipartError::Truncated)?;
        parts.push(read_headers(headers, &body[data_start..data_start + data_len])?);
        at = data_start + data_len + delimiter.len();
    }
}

fn read_headers<'a>(headers: &'a [u8], data: &'a [u8]) -> Result<FormPart<'a>, MultipartError> {
    let headers = std::str::from_utf8(headers).map_err(|_| MultipartError::BadHeader("not UTF-8"))?;
    let mut part = FormPart { name: "", filename: None, content_type: None, data };
    let mut named = false;
    for line in headers.split("\r\n") {
        let (key, value) = line.split_once(':').ok_or(MultipartError::BadHeader("a line without a colon"))?;
        let value = value.trim();
        if key.trim().eq_ignore_ascii_case("content-type") {
            part.content_type = Some(value);
        } else if key.trim().eq_ignore_ascii_case("content-disposition") {
            let mut params = split_params(value);
            if !params.next().is_some_and(|kind| kind.trim().eq_ignore_ascii_case("form-data")) {
                return Err(MultipartError::BadHeader("Content-Disposition must be form-data"));
            }
            for param in params {
                let Some((k, v)) = param.split_once('=') else { continue };
                let v = v.trim();
                let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
                match k.trim() {
                    "name" => (part.name, named) = (v, true),
                    "filename" => part.filename = Some(v),
                    _ => {}
                }
            }
        }
    }
    if named {
        Ok(part)
    } else {
        Err(MultipartError::BadHeader("a part without Content-Disposition: form-data; name"))
    }
}

/// Splits a header value at `;` outside double quotes (a filename may contain `;`).
fn split_params(value: &str) -> impl Iterator<Item = &str> {
    let mut quoted = false;
    let mut start = 0;
    let mut cuts = Vec::new();
    for (i, b) in value.bytes().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b';' if !quoted => {
                cuts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    cuts.push(&value[start..]);
    cuts.into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut body = b"preamble\r\n".to_vec();
        for (name, filename, data) in parts {
            body.extend_from_slice(b"--XyZ\r\nContent-Disposition: form-data; name=\"");
            body.extend_from_slice(name.as_bytes());
            body.push(b'"');
            if let Some(f) = filename {
                body.extend_from_slice(format!("; filename=\"{f}\"\r\nContent-Type: image/png").as_bytes());
            }
            body.extend_from_slice(b"\r\n\r\n");
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"--XyZ--\r\n");
        body
    }

    #[test]
    fn reads_fields_and_files_with_their_bytes() {
        let png = b"\x89PNG\r\n\x1a\n\r\n--Xy not a boundary";
        let body = form(&[("prompt", None, b"a cat"), ("image[]", Some("a;b.png"), png), ("n", None, b"2")]);
        let parts = parse(&body, "XyZ").unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!((parts[0].name, parts[0].data), ("prompt", &b"a cat"[..]));
        assert_eq!(parts[1].filename, Some("a;b.png"));
        assert_eq!(parts[1].content_type, Some("image/png"));
        assert_eq!(parts[1].data, png);
        assert_eq!(parts[2].data, b"2");
    }

    #[test]
    fn boundary_comes_from_the_content_type() {
        assert_eq!(boundary("multipart/form-data; boundary=abc").unwrap(), "abc");
        assert_eq!(boundary("Multipart/Form-Data;boundary=\"a b\"").unwrap(), "a b");
        assert_eq!(boundary("multipart/form-data"), Err(MultipartError::NoBoundary));
        assert_eq!(boundary("application/json; boundary=x"), Err(MultipartError::NoBoundary));
        assert_eq!(boundary("multipart/form-data; boundary="), Err(MultipartError::BadBoundary));
        let long = format!("multipart/form-data; boundary={}", "b".repeat(71));
        assert_eq!(boundary(&long), Err(MultipartError::BadBoundary));
    }

    #[test]
    fn hostile_forms_are_refused() {
        let body = form(&[("prompt", None, b"a cat")]);
        // Cut anywhere before the closing boundary: truncated, never a panic or a partial success.
        for cut in 0..body.len() - 8 {
            assert!(parse(&body[..cut], "XyZ").is_err(), "cut at {cut}");
        }
        assert_eq!(parse(b"no boundary here", "XyZ"), Err(MultipartError::NoFirstBoundary));
        let many: Vec<(&str, Option<&str>, &[u8])> =
            (0..MAX_PARTS + 1).map(|_| ("n", None, &b"1"[..])).collect();
        assert_eq!(parse(&form(&many), "XyZ"), Err(MultipartError::TooManyParts));
        let mut huge = b"--XyZ\r\nContent-Disposition: form-data; name=\"x\"\r\nX-Pad: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_PART_HEADER_BYTES + 10));
        huge.extend_from_slice(b"\r\n\r\nv\r\n--XyZ--");
        assert_eq!(parse(&huge, "XyZ"), Err(MultipartError::HeaderTooLarge));
        let nameless = b"--XyZ\r\nContent-Type: text/plain\r\n\r\nv\r\n--XyZ--";
        assert!(matches!(parse(nameless, "XyZ"), Err(MultipartError::BadHeader(_))));
        let not_form = b"--XyZ\r\nContent-Disposition: attachment; name=\"x\"\r\n\r\nv\r\n--XyZ--";
        assert!(matches!(parse(not_form, "XyZ"), Err(MultipartError::BadHeader(_))));
    }

    #[test]
    fn parts_full_of_near_delimiters_keep_their_bytes() {
        // 64 parts of 100 KiB each that almost contain the delimiter everywhere.
        let chunk = b"\r\n--XyY".repeat(100 * 1024 / 7);
        let parts: Vec<(&str, Option<&str>, &[u8])> =
            (0..MAX_PARTS).map(|_| ("n", None, chunk.as_slice())).collect();
        let body = form(&parts);
        let parsed = parse(&body, "XyZ").unwrap();
        assert_eq!(parsed.len(), MAX_PARTS);
        assert!(parsed.iter().all(|p| p.data == chunk.as_slice()));
    }
}
