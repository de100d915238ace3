//! Client-protocol error bodies.
//!
//! Every failure, whether the client's, ours or Google's, reaches the client as one [`ClientError`] rendered
//! in the client's own protocol, with the HTTP status its SDK expects. Upstream error bodies are never passed
//! through raw: [`ClientError::from_upstream`] keeps Google's message (which is useful) and drops the rest.

use crate::Protocol;

/// What went wrong, in protocol-neutral terms; decides the error `type`/`status` strings per protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidRequest,
    Authentication,
    Permission,
    NotFound,
    PayloadTooLarge,
    RateLimit,
    Overloaded,
    Timeout,
    /// Our own or the upstream's fault (5xx).
    Api,
}

/// An error ready to be sent to a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientError {
    pub status: u16,
    pub kind: ErrorKind,
    pub message: String,
    /// The request field at fault, when known (OpenAI's `param`).
    pub param: Option<String>,
}

impl ClientError {
    pub fn new(status: u16, kind: ErrorKind, message: impl Into<String>) -> Self {
        ClientError { status, kind, message: message.into(), param: None }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, ErrorKind::InvalidRequest, message)
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }
}
