//! The response body type: either one buffer or a channel of SSE events fed by a producer task. It owns the
//! request's in-flight slot, so concurrency counters fall exactly when hyper finishes or drops the body (the
//! client read everything or went away). A producer can also fail the body to abort the connection mid-stream,
//! which is how the `stream_cut` fault with `abort: true` looks on the wire.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

use crate::config::LineEnding;
use crate::stats::InFlight;

/// What a producer sends: an event, or an error that aborts the connection.
pub type Event = Result<Bytes, std::io::Error>;

/// A response body that keeps its request in flight until it is done.
#[derive(Debug)]
pub struct SimBody {
    source: Source,
    _in_flight: Option<InFlight>,
}

#[derive(Debug)]
enum Source {
    Full(Option<Bytes>),
    Channel(mpsc::Receiver<Event>),
}

impl SimBody {
    pub fn full(bytes: impl Into<Bytes>) -> SimBody {
        SimBody { source: Source::Full(Some(bytes.into())), _in_flight: None }
    }

    /// Ties an in-flight slot to this body.
    pub fn holding(mut self, slot: Option<InFlight>) -> SimBody {
        self._in_flight = slot;
        self
    }

    /// A stream of SSE events, `delay` apart; with `cut = Some((n, abort))` only the first `n` are sent, then the
    /// stream ends (or aborts).
    pub fn sse(events: Vec<Bytes>, delay: Duration, cut: Option<(usize, bool)>) -> SimBody {
        let (tx, rx) = mpsc::channel(2);
        tokio::spawn(async move {
            let limit = cut.map_or(events.len(), |(n, _)| n.min(events.len()));
            for (i, event) in events.into_iter().take(limit).enumerate() {
                if i > 0 && !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                if tx.send(Ok(event)).await.is_err() {
                    return; // client left
                }
            }
            if let Some((_, true)) = cut {
                let _ = tx
                    .send(Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "sim: stream_cut abort",
                    )))
                    .await;
            }
        });
        SimBody { source: Source::Channel(rx), _in_flight: None }
    }
}

/// Frames one single-line JSON document as an SSE event.
pub fn sse_event(json: &str, ending: LineEnding) -> Bytes {
    let end = match ending {
        LineEnding::Lf => "\n\n",
        LineEnding::Crlf => "\r\n\r\n",
    };
    Bytes::from(format!("data: {json}{end}"))
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match &mut self.source {
            Source::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Source::Channel(rx) => match rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.source, Source::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Source::Full(None) => SizeHint::with_exact(0),
            Source::Channel(_) => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn sse_framing() {
        let v = serde_json::json!({"a": 1}).to_string();
        assert_eq!(sse_event(&v, LineEnding::Lf), Bytes::from("data: {\"a\":1}\n\n"));
        assert_eq!(sse_event(&v, LineEnding::Crlf), Bytes::from("data: {\"a\":1}\r\n\r\n"));
    }

    #[tokio::test]
    async fn stream_cut_sends_only_the_first_events() {
        let events = vec![Bytes::from("a"), Bytes::from("b"), Bytes::from("c")];
        let body = SimBody::sse(events.clone(), Duration::ZERO, Some((2, false)));
        let all = body.collect().await.map(|c| c.to_bytes()).ok();
        assert_eq!(all, Some(Bytes::from("ab")));
        let body = SimBody::sse(events, Duration::ZERO, Some((1, true)));
        assert!(body.collect().await.is_err());
    }
}
