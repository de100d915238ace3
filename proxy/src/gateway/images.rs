//! `POST /v1/images/generations` and `POST /v1/images/edits` (OpenAI Images) on Google's image models.
//!
//! The upstream answers one image per call, so `n` images are `n` upstream calls, made one after another
//! (at most `openai_images::MAX_IMAGES`): each is a full exchange with its own retries over accounts, pumped through an
//! [`ImageCollector`] that renders its image once. The answer is written when every image is in; a client
//! that leaves meanwhile cancels the call in flight, as on every other endpoint.

use std::sync::Arc;

use levitate_filters::error::ClientError;
use levitate_filters::inner::{InnerRequest, RequestType};
use levitate_filters::protocol::openai_images::{self, ImageCollector, ImagesRequest};
use levitate_filters::stream::{Translator, Usage};
use pingora_proxy::Session;

use super::ctx::RequestCtx;
use super::endpoints::{off_reactor, session_id, ModelNote};
use super::exchange;
use super::pump::{Pumped, UpstreamCall};
use super::{header, Gateway};
use crate::config::Snapshot;

/// An images request parsed and rewritten: the inner request sent `n` times.
struct PreparedImages {
    inner: InnerRequest,
    upstream_model: String,
    session_id: String,
    n: u32,
    format: openai_images::ResponseFormat,
}

/// Parses either endpoint's body, resolves the model (which must be an image model) and builds the inner
/// request.
fn prepare(
    body: &[u8],
    edit: Option<&str>,
    snapshot: &Snapshot,
    note: &mut ModelNote,
) -> Result<PreparedImages, ClientError> {
    let request: ImagesRequest<'_> = match edit {
        Some(content_type) => openai_images::parse_edits(body, content_type)?,
        None => openai_images::parse_generations(body)?,
    };
    let upstream_model = note.resolve(snapshot, &request.model)?;
    if RequestType::of(&upstream_model, false) != RequestType::ImageGen {
        return Err(ClientError::invalid(format!(
            "the model {:?} is served by {upstream_model:?}, which is not an image model; name an image model \
             (routes.yaml maps gpt-image-1 and dall-e-3 to one)",
            request.model
        ))
        .with_param("model"));
    }
    let session_id = session_id(None, Some(&request.prompt));
    let inner = openai_images::build_inner_request(&request, &session_id);
    Ok(PreparedImages { inner, upstream_model, session_id, n: request.n, format: request.response_format })
}

impl Gateway {
    /// `POST /v1/images/generations` (`edit: false`, a JSON body) and `POST /v1/images/edits` (a multipart
    /// form).
    pub(super) async fn images(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        snapshot: &Arc<Snapshot>,
        edit: bool,
    ) -> std::result::Result<(), ClientError> {
        let content_type = header(session, "content-type").unwrap_or_default().to_owned();
        let body = self.read_body(session, snapshot.limits.max_request_body).await?;
        let snap = Arc::clone(snapshot);
        let body_len = body.len();
        let (note, prepared) = off_reactor(body_len, move || {
            let mut note = ModelNote::default();
            let prepared = prepare(&body, edit.then_some(content_type.as_str()), &snap, &mut note);
            (note, prepared)
        })
        .await?;
        note.record(ctx);
        let prepared = prepared?;
        let client_model = ctx.client_model.clone().unwrap_or_default();
        self.admit_key(ctx, snapshot, &client_model, &prepared.upstream_model, body_len)?;
        let PreparedImages { inner, upstream_model, session_id, n, format } = &prepared;
        let mut items = Vec::with_capacity(*n as usize);
        let mut usage = Usage::default();
        for _ in 0..*n {
            let call = UpstreamCall::new(snapshot, upstream_model, session_id, inner);
            let Some(collector) = self.one_image(session, ctx, call, *format).await? else {
                return Ok(());
            };
            let part = collector.usage().unwrap_or_default();
            usage.prompt += part.prompt;
            usage.candidates += part.candidates;
            usage.thoughts += part.thoughts;
            usage.cached += part.cached;
            usage.total += part.total;
            items.push(collector.into_items()?);
        }
        ctx.usage = Some(usage);
        let body = openai_images::images_response(crate::store::unix_now(), &items, usage);
        self.respond_json(session, ctx, 200, body).await
    }

    /// One upstream call for one image, with the retries of the other endpoints: an answer that ends with
    /// nothing, or fails with a retryable status, moves to another account while `pool.max_attempts` allows.
    /// `None` when the client left.
    async fn one_image(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        mut call: UpstreamCall<'_>,
        format: openai_images::ResponseFormat,
    ) -> std::result::Result<Option<ImageCollector>, ClientError> {
        loop {
            let (response, lease) = self.open_upstream(session, ctx, &mut call).await?;
            let account = lease.account.clone();
            let mut collector = ImageCollector::new(format);
            let failure = match self.pump(session, ctx, response, lease, &mut collector).await {
                Pumped::Ended { failure, .. } => failure,
                Pumped::ClientGone => return Ok(None),
            };
            let (attempts, may_retry) = call.attempts();
            match failure {
                None if collector.emitted_anything() || !may_retry => return Ok(Some(collector)),
                None => exchange::on_empty_answer(&self.app, &account, attempts),
                Some(error) if may_retry && (error.status == 429 || error.status >= 500) => {
                    exchange::on_stream_error(&self.app, &account, attempts, error.status)
                }
                Some(error) if collector.emitted_anything() => {
                    tracing::warn!(status = error.status, "image answer failed after its image; keeping it");
                    return Ok(Some(collector));
                }
                Some(error) => return Err(error),
            }
        }
    }
}
