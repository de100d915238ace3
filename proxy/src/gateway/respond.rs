//! The client side of the wire outside the stream: reading the bounded request body, and writing complete
//! answers and errors in the client's protocol.

use bytes::Bytes;
use levitate_filters::error::{ClientError, ErrorKind};
use pingora_core::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use super::ctx::RequestCtx;
use super::exchange;
use super::Gateway;

/// Refuses an encoded body: inflating a client's gzip or brotli would make the body limit meaningless (a
/// small compressed body can expand without bound), and no client of these APIs needs it.
fn encoding_problem(session: &Session) -> Option<ClientError> {
    let encoding = session.req_header().headers.get(http::header::CONTENT_ENCODING)?;
    let identity = encoding.to_str().is_ok_and(|e| e.trim().eq_ignore_ascii_case("identity"));
    (!identity).then(|| {
        ClientError::new(
            415,
            ErrorKind::InvalidRequest,
            format!(
                "Content-Encoding {:?} is not accepted: send the request body uncompressed",
                String::from_utf8_lossy(encoding.as_bytes())
            ),
        )
    })
}

impl Gateway {
    /// Reads the whole request body, bounded by `limits.max_request_body` (413 beyond); an encoded body is
    /// refused with 415 before it is read.
    pub(super) async fn read_body(
        &self,
        session: &mut Session,
        limit: usize,
    ) -> std::result::Result<Vec<u8>, ClientError> {
        let too_large = || {
            ClientError::new(
                413,
                ErrorKind::PayloadTooLarge,
                format!("request body larger than the {limit}-byte limit (limits.max_request_body)"),
            )
        };
        if let Some(error) = encoding_problem(session) {
            session.set_keepalive(None);
            return Err(error);
        }
        let declared = session
            .req_header()
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > limit) {
            session.set_keepalive(None);
            return Err(too_large());
        }
        let expects_continue = session
            .req_header()
            .headers
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if expects_continue {
            // Without this, clients sending large prompts wait a second before sending the body.
            session.as_downstream_mut().set_close_on_response_before_downstream_finish(false);
            session.as_downstream_mut().write_continue_response().await.map_err(|e| {
                ClientError::new(400, ErrorKind::InvalidRequest, format!("cannot answer 100-continue: {e}"))
            })?;
        }
        let mut body = Vec::with_capacity(declared.unwrap_or(16 * 1024).min(limit));
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > limit {
                        session.set_keepalive(None);
                        return Err(too_large());
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(body),
                Err(e) if e.etype == pingora_core::ErrorType::ReadTimedout => {
                    // A stalled upload (slow-body attack or a dead client) must not hold the socket.
                    session.set_keepalive(None);
                    return Err(ClientError::new(
                        408,
                        ErrorKind::Timeout,
                        "the request body made no progress within limits.body_read_timeout",
                    ));
                }
                Err(e) => {
                    return Err(ClientError::new(
                        400,
                        ErrorKind::InvalidRequest,
                        format!("could not read the request body: {e}"),
                    ))
                }
            }
        }
    }

    pub(super) async fn respond_json(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        status: u16,
        body: Vec<u8>,
    ) -> std::result::Result<(), ClientError> {
        respond(session, ctx, status, &[("Content-Type", "application/json")], body).await;
        Ok(())
    }

    pub(super) async fn respond_error(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        error: &ClientError,
    ) -> Result<()> {
        if error.status == 499 {
            // The client is gone; there is no one to answer.
            ctx.status = 499;
            return Ok(());
        }
        if ctx.status != 0 {
            // Headers already went out; the stream was ended in its own protocol.
            return Ok(());
        }
        if !session.as_downstream_mut().is_body_done() {
            // Refused before its body was read (a bad key, an oversize body): the connection cannot be reused.
            session.set_keepalive(None);
        }
        let body = error.render(ctx.protocol);
        let retry_after =
            (error.status == 429).then(|| ctx.retry_after.map_or(5, exchange::ceil_secs).to_string());
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(r) = retry_after.as_deref() {
            headers.push(("Retry-After", r));
        }
        respond(session, ctx, error.status, &headers, body).await;
        Ok(())
    }
}

/// Writes a complete, non-streaming response.
pub(super) async fn respond(
    session: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    headers: &[(&'static str, &str)],
    body: Vec<u8>,
) {
    ctx.status = status;
    let Ok(mut header) = ResponseHeader::build(status, Some(headers.len() + 1)) else { return };
    for (name, value) in headers {
        let _ = header.insert_header(*name, *value);
    }
    let _ = header.insert_header("Content-Length", body.len().to_string());
    if session.write_response_header(Box::new(header), false).await.is_ok() {
        let _ = session.write_response_body(Some(Bytes::from(body)), true).await;
    }
    ctx.first_byte.get_or_insert_with(|| ctx.started.elapsed());
}
