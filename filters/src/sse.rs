//! Incremental Server-Sent Events framing of the upstream byte stream.
//!
//! Upstream bodies arrive in chunks that align with neither events, lines nor UTF-8 characters, so bytes are
//! only interpreted once a whole line is buffered. Complete lines are read straight out of each pushed chunk;
//! only an unterminated tail is copied aside, and it is never scanned again. Every event is bounded by a size
//! cap so a misbehaving upstream cannot grow a buffer without limit.
//!
//! The writers at the bottom produce the SSE frames Levitate sends to clients.

use std::collections::VecDeque;

use memchr::{memchr, memchr2};

/// Why the upstream byte stream cannot be framed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// One event (its data plus the line being read) grew beyond the configured cap.
    #[error("upstream SSE event exceeds {limit} bytes")]
    EventTooLarge { limit: usize },
}

/// One dispatched event: its optional `event:` name and its `data:` lines joined with `\n`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: Vec<u8>,
}

/// Splits a pushed byte stream into [`SseEvent`]s, following the WHATWG event-stream rules that matter to an
/// API client: `\n`, `\r\n` and `\r` line ends; `:` comments; `field: value` with one optional space stripped;
/// multiple `data:` lines joined with `\n`; an event ends at a blank line; an event without `data` is dropped.
/// `id:` and `retry:` are ignored (a proxy neither reconnects nor resumes).
#[derive(Debug)]
pub struct SseFramer {
    max_event_bytes: usize,
    /// The unterminated line carried over from earlier chunks; known to hold no line end.
    partial: Vec<u8>,
    /// The last chunk ended with `\r`: a `\n` opening the next chunk completes that line end.
    skip_lf: bool,
    /// The event being assembled.
    name: Option<String>,
    data: Vec<u8>,
    has_data: bool,
    ready: VecDeque<SseEvent>,
    /// Set once the cap was exceeded; the stream cannot be resynchronised and stays failed.
    failed: bool,
}

impl SseFramer {
    /// A framer that fails once a single event exceeds `max_event_bytes`.
    pub fn new(max_event_bytes: usize) -> Self {
        SseFramer {
            max_event_bytes,
            partial: Vec::new(),
            skip_lf: false,
            name: None,
            data: Vec::new(),
            has_data: false,
            ready: VecDeque::new(),
            failed: false,
        }
    }

    /// Feeds the next chunk of the byte stream. Completed events become available from
    /// [`next_event`](Self::next_event). After an error the framer stays failed.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), SseError> {
        if self.failed {
            return Err(self.too_large());
        }
        let result = self.push_lines(chunk);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn push_lines(&mut self, mut chunk: &[u8]) -> Result<(), SseError> {
        if self.skip_lf && !chunk.is_empty() {
            self.skip_lf = false;
            if chunk[0] == b'\n' {
                chunk = &chunk[1..];
            }
        }
        while let Some(end) = memchr2(b'\n', b'\r', chunk) {
            let terminator_len = if chunk[end] == b'\r' {
                match chunk.get(end + 1) {
                    Some(b'\n') => 2,
                    Some(_) => 1,
                    None => {
                        self.skip_lf = true;
                        1
                    }
                }
            } else {
                1
            };
            if self.partial.is_empty() {
                self.line(&chunk[..end])?;
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&chunk[..end]);
                let result = self.line(&line);
                line.clear();
                self.partial = line;
                result?;
            }
            chunk = &chunk[end + terminator_len..];
        }
        if self.data.len() + self.partial.len() + chunk.len() > self.max_event_bytes {
            return Err(self.too_large());
        }
        self.partial.extend_from_slice(chunk);
        Ok(())
    }

    /// The next complete event, in stream order.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        self.ready.pop_front()
    }

    /// Ends the input: an unterminated last line and an event without its closing blank line are completed
    /// (upstreams do end that way). Returns the next pending event; keep draining with
    /// [`next_event`](Self::next_event).
    pub fn finish(&mut self) -> Option<SseEvent> {
        if !self.failed && !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            if self.line(&line).is_err() {
                self.failed = true;
            }
        }
        if !self.failed {
            self.dispatch();
        }
        self.next_event()
    }

    fn too_large(&self) -> SseError {
        SseError::EventTooLarge { limit: self.max_event_bytes }
    }

    /// Interprets one complete line (without its terminator).
    fn line(&mut self, line: &[u8]) -> Result<(), SseError> {
        if line.is_empty() {
            self.dispatch();
            return Ok(());
        }
        let (field, value) = match memchr(b':', line) {
            Some(0) => return Ok(()), // a comment, e.g. a keep-alive
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &line[line.len()..]),
        };
        match field {
            b"data" => {
                let separator = usize::from(self.has_data);
                if self.data.len() + separator + value.len() > self.max_event_bytes {
                    return Err(self.too_large());
                }
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => {
                if value.len() > self.max_event_bytes {
                    return Err(self.too_large());
                }
                self.name = Some(String::from_utf8_lossy(value).into_owned());
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self) {
        if self.has_data {
            let data = std::mem::take(&mut self.data);
            self.ready.push_back(SseEvent { event: self.name.take(), data });
            self.has_data = false;
        } else {
            self.name = None;
        }
    }
}

/// Appends `data: <json>\n\n`, the only frame shape OpenAI and Gemini clients read.
pub fn write_data_event(out: &mut Vec<u8>, json: &[u8]) {
    out.reserve(json.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
}

/// Appends `event: <name>\ndata: <json>\n\n`, the frame shape of Anthropic's stream.
pub fn write_named_event(out: &mut Vec<u8>, name: &str, json: &[u8]) {
    out.reserve(name.len() + json.len() + 16);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.push(b'\n');
    write_data_event(out, json);
}

/// Frames `bytes` as if it arrived in reads split at `cuts`, handing each event's data to `on_event`: the
/// stream machines' tests use it to prove their output does not depend on where reads split.
#[cfg(test)]
pub(crate) fn frame_in_cuts(bytes: &[u8], cuts: &[usize], mut on_event: impl FnMut(&mut [u8])) {
    let mut framer = SseFramer::new(1 << 20);
    let mut start = 0;
    for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
        framer.push(&bytes[start..cut]).expect("within the test cap");
        start = cut;
        while let Some(mut event) = framer.next_event() {
            on_event(&mut event.data);
        }
    }
    while let Some(mut event) = framer.finish() {
        on_event(&mut event.data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut framer = SseFramer::new(1 << 20);
        let mut events = Vec::new();
        for chunk in chunks {
            framer.push(chunk).unwrap();
            while let Some(event) = framer.next_event() {
                events.push(event);
            }
        }
        while let Some(event) = framer.finish() {
            events.push(event);
        }
        events
    }

    fn data(events: &[SseEvent]) -> Vec<String> {
        events.iter().map(|e| String::from_utf8(e.data.clone()).unwrap()).collect()
    }

    #[test]
    fn frames_events_at_blank_lines() {
        let events = frame_all(&[b"data: {\"a\":1}\n\ndata: {\"b\":2}\n\n"]);
        assert_eq!(data(&events), ["{\"a\":1}", "{\"b\":2}"]);
        assert_eq!(events[0].event, None);
    }

    #[test]
    fn accepts_crlf_and_bare_cr_line_ends() {
        let events = frame_all(&[b"data: a\r\n\r\ndata: b\r\rdata: c\n\n"]);
        assert_eq!(data(&events), ["a", "b", "c"]);
    }

    #[test]
    fn crlf_split_across_chunks_is_one_line_end() {
        let events = frame_all(&[b"data: a\r", b"\n\r", b"\ndata: b\r", b"\r", b"\n"]);
        assert_eq!(data(&events), ["a", "b"]);
    }

    #[test]
    fn joins_multiple_data_lines_with_newline() {
        let events = frame_all(&[b"data: one\ndata:two\ndata\n\n"]);
        assert_eq!(data(&events), ["one\ntwo\n"]);
    }

    #[test]
    fn strips_only_one_space_after_the_colon() {
        let events = frame_all(&[b"data:  two spaces\n\n"]);
        assert_eq!(data(&events), [" two spaces"]);
    }

    #[test]
    fn ignores_comments_ids_and_events_without_data() {
        let events = frame_all(&[b": keep-alive\n\nid: 7\nretry: 10\n\nevent: ping\n\ndata: x\n\n"]);
        assert_eq!(data(&events), ["x"]);
        assert_eq!(events[0].event, None);
    }

    #[test]
    fn keeps_the_event_name() {
        let events = frame_all(&[b"event: message_start\ndata: {}\n\n"]);
        assert_eq!(events[0].event.as_deref(), Some("message_start"));
    }

    #[test]
    fn reassembles_utf8_split_inside_a_line() {
        let text = "data: héllo 世界 🎉\n\n".as_bytes();
        for cut in 0..text.len() {
            let events = frame_all(&[&text[..cut], &text[cut..]]);
            assert_eq!(data(&events), ["héllo 世界 🎉"], "cut at {cut}");
        }
    }

    #[test]
    fn finish_completes_a_trailing_event() {
        assert_eq!(data(&frame_all(&[b"data: a\n\ndata: tail"])), ["a", "tail"]);
        assert_eq!(data(&frame_all(&[b"data: tail\n"])), ["tail"]);
        assert!(frame_all(&[b""]).is_empty());
    }

    #[test]
    fn rejects_an_event_over_the_cap_and_stays_failed() {
        let mut framer = SseFramer::new(8);
        assert!(framer.push(b"data: 1234\n").is_ok());
        assert_eq!(framer.push(b"data: 5678\n"), Err(SseError::EventTooLarge { limit: 8 }));
        assert!(framer.push(b"\n").is_err());
    }

    #[test]
    fn rejects_an_unterminated_line_over_the_cap() {
        let mut framer = SseFramer::new(16);
        assert!(framer.push(b"data: 0123456789").is_ok());
        assert!(framer.push(b"abcdef").is_err());
    }

    #[test]
    fn the_cap_applies_per_event() {
        let mut framer = SseFramer::new(8);
        for _ in 0..100 {
            framer.push(b"data: 12345678\n\n").unwrap();
            assert_eq!(framer.next_event().unwrap().data, b"12345678");
        }
    }

    #[test]
    fn writes_data_and_named_events() {
        let mut out = Vec::new();
        write_data_event(&mut out, b"{}");
        write_named_event(&mut out, "ping", b"{\"type\":\"ping\"}");
        assert_eq!(out, b"data: {}\n\nevent: ping\ndata: {\"type\":\"ping\"}\n\n");
    }
}
