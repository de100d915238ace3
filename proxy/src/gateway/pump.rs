//! Driving one upstream answer to the client: open the exchange (leases, retries) racing the client's
//! disconnect, pump the upstream SSE through the protocol's stream machine, keep the client alive while
//! upstream is silent, retry an answer that produced nothing, and close the stream in its own protocol.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use levitate_filters::error::{ClientError, ErrorKind};
use levitate_filters::inner::InnerRequest;
use levitate_filters::sse::SseFramer;
use levitate_filters::stream::{Fold, Folded, Translator};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use super::ctx::RequestCtx;
use super::exchange::{self, Attempts};
use super::respond::respond;
use super::signatures;
use super::Gateway;
use crate::config::Snapshot;
use crate::pool::models::VersionGate;
use crate::pool::Lease;
use crate::upstream::{UpstreamError, UpstreamResponse};

/// Largest single SSE event accepted from upstream (a big inline image can be several MiB).
const MAX_UPSTREAM_EVENT: usize = 32 * 1024 * 1024;
/// How long upstream may be silent before the client gets a keep-alive.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Client output read ahead of a slow client; beyond it, upstream waits for the client (backpressure).
const READ_AHEAD: usize = 256 * 1024;
/// Output buffer capacity kept between writes. Most writes are one event of a few hundred bytes; a burst (an
/// inline image, a read-ahead) gives its buffer back after the write, so a stream idling between chunks holds
/// little (issue 13: open streams must be cheap).
const OUT_KEPT: usize = 4 * 1024;

impl Gateway {
    /// Runs the upstream exchange (leases, retries) and records what it did in the request's context.
    ///
    /// Raced against the client: if it leaves while we wait for the first byte (a long thinking pause, a
    /// queue for a busy account), the attempt is dropped at once, which closes the upstream connection.
    pub(super) async fn open_upstream(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        call: &mut UpstreamCall<'_>,
    ) -> std::result::Result<(UpstreamResponse, Lease), ClientError> {
        let waited = Instant::now();
        let opening =
            exchange::open(&self.app, call.snapshot, call.upstream_model, call.inner, &mut call.attempts);
        let opened = tokio::select! {
            opened = opening => opened,
            _ = session.as_downstream_mut().read_body_or_idle(true) => {
                tracing::info!("client disconnected before the first byte; upstream attempt dropped");
                Err(ClientError::new(499, ErrorKind::InvalidRequest, "client closed the request"))
            }
        };
        ctx.note_attempts(&call.attempts, waited);
        opened
    }

    /// Answers with the protocol's stream machine, or its fold when the client did not ask to stream.
    ///
    /// An upstream 200 that ends before the machine has any output (no part at all, PROTOCOL.md §2) is not
    /// passed on while `pool.max_attempts` allows another attempt: the exchange moves to another account and
    /// a fresh machine reads its answer. The last attempt's answer is the client's, empty or not.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn answer<O: Clone, S: Translator + 'static, F: Fold + 'static>(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        mut call: UpstreamCall<'_>,
        stream: bool,
        options: O,
        new_stream: fn(O) -> S,
        new_fold: fn(O) -> F,
    ) -> std::result::Result<(), ClientError> {
        loop {
            let (response, lease) = self.open_upstream(session, ctx, &mut call).await?;
            let account = lease.account.clone();
            let mut machine: Box<dyn Translator> = if stream {
                Box::new(new_stream(options.clone()))
            } else {
                Box::new(Folded::new(new_fold(options.clone())))
            };
            let (failure, pending) = match self.pump(session, ctx, response, lease, machine.as_mut()).await {
                Pumped::Ended { failure, pending } => (failure, pending),
                Pumped::ClientGone => return Ok(()),
            };
            let empty =
                failure.is_none() && ctx.status == 0 && pending.is_empty() && !machine.emitted_anything();
            if empty && call.attempts.may_retry(call.snapshot) {
                exchange::on_empty_answer(&self.app, &account, &call.attempts);
                continue;
            }
            if let Some(gate) = failure.as_ref().and_then(VersionGate::of_error) {
                // Every account would answer the same: no retry, the condition is the operator's to fix.
                super::models::on_version_gate(&self.app, call.snapshot, call.upstream_model, gate);
            } else if failure.is_none() && !empty {
                self.app.pool.lift_version_gate(call.upstream_model);
            }
            let unwritten = ctx.status == 0 && pending.is_empty();
            let gated = failure.as_ref().is_some_and(|f| VersionGate::of_error(f).is_some());
            let retryable = failure.as_ref().is_some_and(|e| e.status == 429 || e.status >= 500);
            if unwritten && retryable && !gated && call.attempts.may_retry(call.snapshot) {
                let status = failure.as_ref().map_or(502, |e| e.status);
                exchange::on_stream_error(&self.app, &account, &call.attempts, status);
                continue;
            }
            return self.close(session, ctx, machine.as_mut(), failure, pending).await;
        }
    }

    /// Reads the upstream answer through a translator, streaming its output to the client as it comes, and
    /// racing the client's disconnect. The closing events are [`close`](Self::close)'s, so the caller can
    /// still retry an answer that produced nothing.
    ///
    /// The response header is written only when the translator first has output, so an upstream error that
    /// arrives as the first event still becomes a proper error status. While upstream is silent (long
    /// thinking), keep-alives go out every [`KEEPALIVE_INTERVAL`] so proxies in front do not time out.
    ///
    /// A slow client must not hold an account: what upstream has already sent is read ahead of the client
    /// (up to [`READ_AHEAD`] bytes of output), so an answer that is complete upstream releases its lease
    /// before the client has drained it, and a write that makes no progress for `limits.client_write_timeout`
    /// (the session's write timeout, also HTTP/2 flow control) ends the stream and frees the slot.
    pub(super) async fn pump(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        mut response: UpstreamResponse,
        lease: Lease,
        machine: &mut dyn Translator,
    ) -> Pumped {
        // However the pump ends (or is dropped), its buffers are free: this worker may give memory back.
        let _stream_end = crate::memory::StreamEnd;
        let streaming = machine.streams();
        let mut reader = UpstreamReader::new();
        let mut out = Vec::new();
        let mut next_keepalive = tokio::time::Instant::now() + KEEPALIVE_INTERVAL;
        while !reader.done {
            let read_started = Instant::now();
            let chunk = tokio::select! {
                chunk = response.read_chunk() => chunk,
                _ = session.as_downstream_mut().read_body_or_idle(true) => {
                    // The client left: stop paying for tokens nobody will read.
                    tracing::info!("client disconnected; cancelling the upstream request");
                    response.abort().await;
                    drop(lease);
                    signatures::remember(&self.app, ctx, machine.take_signatures());
                    ctx.status = 499;
                    return Pumped::ClientGone;
                }
                _ = tokio::time::sleep_until(next_keepalive), if streaming => {
                    next_keepalive = tokio::time::Instant::now() + KEEPALIVE_INTERVAL;
                    machine.keepalive(&mut out);
                    if !self.flush(session, ctx, machine.content_type(), &mut out).await {
                        response.abort().await;
                        return Pumped::ClientGone;
                    }
                    continue;
                }
            };
            ctx.upstream_wait += read_started.elapsed();
            reader.take(chunk, machine, &mut out);
            // What upstream has already delivered is taken now, without waiting: a complete answer ends here
            // and frees its account even if the client then drains it slowly.
            while !reader.done && out.len() < READ_AHEAD {
                match response.read_chunk().now_or_never() {
                    Some(chunk) => reader.take(chunk, machine, &mut out),
                    None => break,
                }
            }
            if reader.done {
                break;
            }
            if streaming && !out.is_empty() {
                next_keepalive = tokio::time::Instant::now() + KEEPALIVE_INTERVAL;
                if !self.flush(session, ctx, machine.content_type(), &mut out).await {
                    tracing::info!(
                        "client stopped reading or left; ending the stream and freeing the account"
                    );
                    response.abort().await;
                    drop(lease);
                    signatures::remember(&self.app, ctx, machine.take_signatures());
                    return Pumped::ClientGone;
                }
            }
        }
        if !reader.cut {
            if let Some(mut event) = reader.framer.finish() {
                if let Err(e) = machine.on_event(&mut event.data, &mut out) {
                    reader.failure = Some(e.to_client_error());
                }
            }
        }
        if reader.cut {
            response.abort().await;
        } else {
            response.release(&self.app.upstream).await;
        }
        drop(lease);
        signatures::remember(&self.app, ctx, machine.take_signatures());
        Pumped::Ended { failure: reader.failure, pending: out }
    }

    /// Ends the answer: an in-stream upstream error before any output becomes an error status; one after
    /// output ends the stream with the protocol's error event (OpenAI: an `error` event the SDKs raise);
    /// otherwise the machine's closing events go out (a `length` end when the upstream ended cleanly without
    /// a finish reason, as Google's silent cut does).
    pub(super) async fn close(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        machine: &mut dyn Translator,
        failure: Option<ClientError>,
        mut out: Vec<u8>,
    ) -> std::result::Result<(), ClientError> {
        if let Some(error) = &failure {
            if ctx.status == 0 && out.is_empty() {
                // Nothing reached the client yet: answer with the upstream's error, translated.
                return Err(error.clone());
            }
        }
        if !machine.finished_by_upstream() {
            ctx.truncated = true;
            self.app.metrics.stream_truncated(ctx.protocol.as_str());
        }
        ctx.usage = machine.usage();
        match &failure {
            Some(error) => machine.fail(error, &mut out),
            None => machine.finish(&mut out),
        }
        if machine.streams() {
            self.flush(session, ctx, machine.content_type(), &mut out).await;
            let _ = session.write_response_body(None, true).await;
        } else {
            let content_type = machine.content_type();
            respond(session, ctx, 200, &[("Content-Type", content_type)], out).await;
        }
        Ok(())
    }

    /// Writes pending stream output, sending the response header first if it has not gone out yet.
    /// Returns false when the client is gone.
    pub(super) async fn flush(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        content_type: &'static str,
        out: &mut Vec<u8>,
    ) -> bool {
        if out.is_empty() {
            return true;
        }
        if ctx.status == 0 {
            self.write_stream_header(session, ctx, content_type).await;
        }
        ctx.first_byte.get_or_insert_with(|| ctx.started.elapsed());
        let chunk = take_output(out);
        session.write_response_body(Some(chunk), false).await.is_ok()
    }

    pub(super) async fn write_stream_header(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        content_type: &str,
    ) {
        ctx.status = 200;
        ctx.stream = Some(self.app.metrics.stream_started());
        let Ok(mut header) = ResponseHeader::build(200, Some(5)) else { return };
        let _ = header.insert_header("Content-Type", content_type);
        let _ = header.insert_header("Cache-Control", "no-cache");
        let _ = header.insert_header("X-Accel-Buffering", "no");
        if !session.as_downstream().is_http2() {
            // Without it an HTTP/1.1 body would be close-delimited.
            let _ = header.insert_header("Transfer-Encoding", "chunked");
        }
        let _ = session.write_response_header(Box::new(header), false).await;
    }
}

/// The pending output as one write, leaving `out` empty. Its capacity is kept for the next event unless a
/// burst grew it past [`OUT_KEPT`]: then it is given back rather than held while the stream idles.
fn take_output(out: &mut Vec<u8>) -> Bytes {
    let chunk = Bytes::copy_from_slice(out);
    out.clear();
    if out.capacity() > OUT_KEPT {
        *out = Vec::new();
    }
    chunk
}

/// One client request's upstream side: what is sent, and what its attempts did so far (across the retries
/// of an empty answer).
pub(super) struct UpstreamCall<'a> {
    snapshot: &'a Arc<Snapshot>,
    upstream_model: &'a str,
    inner: &'a InnerRequest,
    attempts: Attempts,
}

impl<'a> UpstreamCall<'a> {
    pub(super) fn new(
        snapshot: &'a Arc<Snapshot>,
        upstream_model: &'a str,
        session_id: &str,
        inner: &'a InnerRequest,
    ) -> Self {
        UpstreamCall { snapshot, upstream_model, inner, attempts: Attempts::for_session(session_id) }
    }

    /// What the attempts so far did, and whether `pool.max_attempts` allows another (for callers that run
    /// their own loop over [`Gateway::pump`], as the images endpoint does).
    pub(super) fn attempts(&self) -> (&Attempts, bool) {
        (&self.attempts, self.attempts.may_retry(self.snapshot))
    }
}

/// The upstream side of one pump: SSE framing of the chunks read, and how the upstream body ended.
struct UpstreamReader {
    framer: SseFramer,
    /// The upstream body ended (cleanly, cut, or with an in-stream error).
    done: bool,
    /// It ended abnormally: the connection is not reusable and the stream gets no closing event from it.
    cut: bool,
    failure: Option<ClientError>,
}

impl UpstreamReader {
    fn new() -> Self {
        UpstreamReader { framer: SseFramer::new(MAX_UPSTREAM_EVENT), done: false, cut: false, failure: None }
    }

    /// Feeds one read's result through the framer into the stream machine, writing client output to `out`.
    fn take(
        &mut self,
        chunk: Result<Option<Bytes>, UpstreamError>,
        machine: &mut dyn Translator,
        out: &mut Vec<u8>,
    ) {
        match chunk {
            Ok(Some(bytes)) => {
                // The output is about as long as what upstream sent: one allocation instead of doubling.
                out.reserve(bytes.len().min(READ_AHEAD));
                if self.framer.push(&bytes).is_err() {
                    tracing::warn!("upstream event over the size limit; ending the stream");
                    self.end(true);
                    return;
                }
                while let Some(mut event) = self.framer.next_event() {
                    // Google's version notice comes as the answer's only text: not passed on as one.
                    let gate =
                        (!machine.emitted_anything()).then(|| VersionGate::detect(&event.data)).flatten();
                    if let Some(gate) = gate {
                        self.failure = Some(gate.client_error());
                        self.end(true);
                        return;
                    }
                    if let Err(e) = machine.on_event(&mut event.data, out) {
                        tracing::warn!(error = %e, "upstream stream error");
                        self.failure = Some(e.to_client_error());
                        self.end(true);
                        return;
                    }
                }
            }
            Ok(None) => self.end(false),
            Err(e) => {
                tracing::warn!(error = %e, "upstream stream broke");
                // After content, a broken upstream is a failure the client must see as one (an error
                // event), not a finished answer. Before any, it is an empty answer, retried as such.
                if machine.emitted_anything() {
                    self.failure.get_or_insert_with(|| {
                        ClientError::new(
                            502,
                            ErrorKind::Api,
                            "the upstream connection broke before the answer was complete",
                        )
                    });
                }
                self.end(true);
            }
        }
    }

    fn end(&mut self, cut: bool) {
        self.done = true;
        self.cut = cut;
    }
}

/// How the pump left one upstream answer.
pub(super) enum Pumped {
    /// The upstream body ended, cleanly or cut, or with an in-stream error (`failure`). `pending` is output
    /// not written yet.
    Ended { failure: Option<ClientError>, pending: Vec<u8> },
    /// The client left or could not be written to: nothing more is owed to it.
    ClientGone,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_gives_its_output_buffer_back_and_an_event_keeps_a_small_one() {
        let mut out = Vec::new();
        out.extend_from_slice(&[b'x'; 300]);
        let kept = out.capacity();
        assert_eq!(take_output(&mut out).len(), 300);
        assert!(out.is_empty());
        assert_eq!(out.capacity(), kept, "an ordinary event's buffer is reused");

        out.extend_from_slice(&vec![b'y'; 256 * 1024]);
        assert_eq!(take_output(&mut out).len(), 256 * 1024);
        assert!(out.capacity() <= OUT_KEPT, "a burst's buffer is not held for the rest of the stream");
    }
}
