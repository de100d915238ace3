//! The `image` content block an image model's answer becomes for Anthropic clients: the upstream's
//! `inlineData` as `{"type":"image","source":{"type":"base64","media_type","data"}}`, the same shape clients
//! send images in. A stream carries it whole in `content_block_start` (there is no image delta), then
//! `content_block_stop`. The base64 is written once, straight from the upstream event.

use crate::stream::json::{write_escaped, write_str, write_u64};

/// Appends the block's JSON.
pub(super) fn write_block(out: &mut Vec<u8>, mime_type: &str, data: &str) {
    out.reserve(data.len() + 96);
    out.extend_from_slice(b"{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":");
    write_str(out, mime_type);
    out.extend_from_slice(b",\"data\":\"");
    write_escaped(out, data);
    out.extend_from_slice(b"\"}}");
}

/// The block as one JSON value, for the folded `message`.
pub(super) fn block(mime_type: &str, data: &str) -> Vec<u8> {
    let mut out = Vec::new();
    write_block(&mut out, mime_type, data);
    out
}

/// Appends the `content_block_start` frame carrying the whole block and its `content_block_stop`.
pub(super) fn write_frames(out: &mut Vec<u8>, index: u32, mime_type: &str, data: &str) {
    out.extend_from_slice(b"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":");
    write_u64(out, u64::from(index));
    out.extend_from_slice(b",\"content_block\":");
    write_block(out, mime_type, data);
    out.extend_from_slice(
        b"}\n\nevent: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":",
    );
    write_u64(out, u64::from(index));
    out.extend_from_slice(b"}\n\n");
}
