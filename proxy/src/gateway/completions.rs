//! `POST /v1/completions` (legacy OpenAI completions): one upstream call per choice.
//!
//! A single prompt with `n = 1`, what nearly every client sends, is answered like the other endpoints
//! (`Gateway::answer`: retries of empty answers and early stream errors included). Several prompts or `n > 1`
//! need one upstream call per choice, made one after another through one stream machine, which numbers the
//! choices and sums the usage; a call that fails before the first byte of the whole answer fails the
//! request, a later one ends the stream with OpenAI's error event.

use std::sync::Arc;

use levitate_filters::error::ClientError;
use levitate_filters::inner::{InnerRequest, Target};
use levitate_filters::protocol::openai_completions::{
    build_inner_request, parse_completion_request, CompletionFold, CompletionOptions, CompletionStream,
};
use levitate_filters::stream::{Folded, Translator};
use pingora_proxy::Session;

use super::ctx::RequestCtx;
use super::endpoints::{session_id, ModelNote, SessionHeaders};
use super::pump::{Pumped, UpstreamCall};
use super::Gateway;
use crate::config::Snapshot;

/// A completions request parsed, resolved and rewritten: one inner request per prompt.
pub(super) struct Prepared {
    inners: Vec<InnerRequest>,
    /// Choices per prompt.
    n: usize,
    upstream_model: String,
    session_id: String,
    client_model: String,
    stream: bool,
    include_usage: bool,
}

fn prepare(
    body: &mut [u8],
    snapshot: &Snapshot,
    headers: &SessionHeaders,
    note: &mut ModelNote,
) -> Result<Prepared, ClientError> {
    let request = parse_completion_request(body)?;
    let upstream_model = note.resolve(snapshot, request.model())?;
    let client_key = headers.session_id.as_deref().or(request.session_hint());
    let session_id = session_id(client_key, request.prompts().first().map(String::as_str));
    let target = Target { upstream_model: &upstream_model, session_id: &session_id };
    let inners = request.prompts().iter().map(|p| build_inner_request(&request, p, &target)).collect();
    Ok(Prepared {
        inners,
        n: request.n(),
        client_model: request.model().to_string(),
        stream: request.stream(),
        include_usage: request.include_usage(),
        upstream_model,
        session_id,
    })
}

impl super::endpoints::Admissible for Prepared {
    fn models(&self) -> (&str, &str) {
        (&self.client_model, &self.upstream_model)
    }
}

impl Gateway {
    /// `POST /v1/completions` and `/completions`.
    pub(super) async fn completions(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        snapshot: &Arc<Snapshot>,
    ) -> std::result::Result<(), ClientError> {
        let body = self.read_body(session, snapshot.limits.max_request_body).await?;
        let prepared = self
            .prepare(session, ctx, snapshot, body, |mut body, _, snapshot, headers, note| {
                prepare(&mut body, snapshot, headers, note)
            })
            .await?;
        let request_uuid = uuid::Uuid::new_v4().simple().to_string();
        let options = CompletionOptions {
            id: format!("cmpl-{request_uuid}"),
            model: prepared.client_model.clone(),
            created: crate::store::unix_now(),
            include_usage: prepared.include_usage,
        };
        if let ([inner], 1) = (prepared.inners.as_slice(), prepared.n) {
            let call = UpstreamCall::new(snapshot, &prepared.upstream_model, &prepared.session_id, inner);
            let stream = prepared.stream;
            return self
                .answer(session, ctx, call, stream, options, CompletionStream::new, CompletionFold::new)
                .await;
        }
        if prepared.stream {
            let mut machine = CompletionStream::new(options);
            let begin = |m: &mut CompletionStream, index, out: &mut Vec<u8>| m.begin_choice(index, out);
            self.answer_choices(session, ctx, snapshot, &prepared, &mut machine, begin).await
        } else {
            let mut machine = Folded::new(CompletionFold::new(options));
            let begin = |m: &mut Folded<CompletionFold>, index, _: &mut Vec<u8>| {
                if let Some(fold) = m.get_mut() {
                    fold.begin_choice(index);
                }
            };
            self.answer_choices(session, ctx, snapshot, &prepared, &mut machine, begin).await
        }
    }

    /// Answers every choice (prompt-major, as OpenAI numbers them) through `machine`, one upstream call
    /// after another; `begin` moves the machine to the next choice.
    async fn answer_choices<M: Translator>(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        snapshot: &Arc<Snapshot>,
        prepared: &Prepared,
        machine: &mut M,
        begin: impl Fn(&mut M, u32, &mut Vec<u8>),
    ) -> std::result::Result<(), ClientError> {
        let mut pending = Vec::new();
        let choices = prepared.inners.len() * prepared.n;
        for index in 0..choices {
            if index > 0 {
                begin(machine, index as u32, &mut pending);
                if machine.streams() && !self.flush(session, ctx, machine.content_type(), &mut pending).await
                {
                    return Ok(());
                }
            }
            let inner = &prepared.inners[index / prepared.n];
            let mut call = UpstreamCall::new(snapshot, &prepared.upstream_model, &prepared.session_id, inner);
            let (response, lease) = match self.open_upstream(session, ctx, &mut call).await {
                Ok(opened) => opened,
                Err(error) => return self.close(session, ctx, machine, Some(error), pending).await,
            };
            match self.pump(session, ctx, response, lease, machine).await {
                Pumped::ClientGone => return Ok(()),
                Pumped::Ended { failure: Some(error), pending: mut out } => {
                    pending.append(&mut out);
                    return self.close(session, ctx, machine, Some(error), pending).await;
                }
                Pumped::Ended { failure: None, pending: mut out } => pending.append(&mut out),
            }
        }
        self.close(session, ctx, machine, None, pending).await
    }
}
