//! The OpenAI Images requests (`POST /v1/images/generations` as JSON, `POST /v1/images/edits` as a
//! multipart form) as Levitate reads them, and the inner `v1internal` request an image model gets.
//!
//! Mapping (docs/protocols.md, "Images"): `size` becomes `imageConfig.aspectRatio` (and `imageSize` 1K),
//! `quality` overrides `imageSize` (low/standard → 1K, medium/hd → 2K, high → 4K), `response_format`
//! decides how the answer carries each image (`b64_json`, or `url` as a `data:` URL, since Levitate keeps no
//! files). Input images go upstream as `inlineData` parts, a mask as one more image after a sentence saying
//! what it is, then the prompt. No `thinkingConfig` is ever sent: image models refuse it.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

use super::multipart::{self, FormPart};
use crate::error::ClientError;
use crate::inner::{InnerRequest, RequestType, ToolNameMap};
use crate::stream::json::{write_str, Object};

/// Most images one request may ask for; each is one upstream call (the upstream answers one image a call).
pub const MAX_IMAGES: u32 = 4;
/// Most input images of one edit (Google's image models take up to 14 reference images).
pub const MAX_INPUT_IMAGES: usize = 14;
/// The model used when the request names none, resolved through routes.yaml like any other name.
pub const DEFAULT_MODEL: &str = "gpt-image-1";

/// The `size` values accepted, and the aspect ratio each one maps to.
pub const SIZES: &[(&str, &str)] = &[
    ("256x256", "1:1"),
    ("512x512", "1:1"),
    ("1024x1024", "1:1"),
    ("1536x1024", "3:2"),
    ("1024x1536", "2:3"),
    ("1792x1024", "16:9"),
    ("1024x1792", "9:16"),
];

/// How each image is returned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResponseFormat {
    /// `b64_json`: the image's base64 (the default).
    #[default]
    B64Json,
    /// `url`: a `data:<mime>;base64,…` URL.
    Url,
}

/// Google's `imageConfig`, as mapped from `size` and `quality`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub aspect_ratio: Option<&'static str>,
    pub image_size: Option<&'static str>,
}

/// One uploaded image, borrowed from the request body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputImage<'a> {
    pub mime_type: &'static str,
    pub data: &'a [u8],
}

/// A parsed images request, generation or edit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImagesRequest<'a> {
    pub model: String,
    pub prompt: String,
    pub n: u32,
    pub image_config: ImageConfig,
    pub response_format: ResponseFormat,
    pub images: Vec<InputImage<'a>>,
    pub mask: Option<InputImage<'a>>,
}

/// The JSON body of `/v1/images/generations`. Unknown fields are ignored (OpenAI adds them often); `style`,
/// `user`, `background`, `moderation`, `output_format` and `output_compression` are accepted and have no
/// upstream equivalent.
#[derive(Deserialize)]
struct GenerationsBody {
    model: Option<String>,
    prompt: Option<String>,
    n: Option<Value>,
    size: Option<String>,
    quality: Option<String>,
    response_format: Option<String>,
    stream: Option<bool>,
}

/// Parses the body of `POST /v1/images/generations`.
pub fn parse_generations(body: &[u8]) -> Result<ImagesRequest<'static>, ClientError> {
    let parsed: GenerationsBody = serde_json::from_slice(body).map_err(|e| {
        ClientError::invalid(format!("The request body is not valid JSON for this endpoint: {e}"))
    })?;
    if parsed.stream == Some(true) {
        return Err(ClientError::invalid("Streaming image generation is not supported.").with_param("stream"));
    }
    let n = match parsed.n {
        None | Some(Value::Null) => 1,
        Some(Value::Number(n)) => n.as_u64().map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
        Some(_) => 0,
    };
    Fields {
        model: parsed.model.as_deref(),
        prompt: parsed.prompt.as_deref(),
        n,
        size: parsed.size.as_deref(),
        quality: parsed.quality.as_deref(),
        response_format: parsed.response_format.as_deref(),
    }
    .into_request(Vec::new(), None)
}

/// Parses the multipart form of `POST /v1/images/edits`: `image` (or `image[]`, repeated), an optional
/// `mask`, and the same text fields as a generation.
pub fn parse_edits<'a>(body: &'a [u8], content_type: &str) -> Result<ImagesRequest<'a>, ClientError> {
    let form_error = |e: multipart::MultipartError| ClientError::invalid(e.to_string());
    let boundary = multipart::boundary(content_type).map_err(form_error)?;
    let parts = multipart::parse(body, boundary).map_err(form_error)?;
    let mut fields = Fields::default();
    let mut images = Vec::new();
    let mut mask = None;
    let text = |part: &FormPart<'a>| {
        std::str::from_utf8(part.data).map_err(|_| {
            ClientError::invalid(format!("`{}` must be UTF-8 text", part.name)).with_param(part.name)
        })
    };
    for part in &parts {
        match part.name {
            "image" | "image[]" => {
                if images.len() == MAX_INPUT_IMAGES {
                    return Err(ClientError::invalid(format!(
                        "At most {MAX_INPUT_IMAGES} images can be edited at once."
                    ))
                    .with_param("image"));
                }
                images.push(input_image(part, "image")?);
            }
            "mask" => mask = Some(input_image(part, "mask")?),
            "model" => fields.model = Some(text(part)?),
            "prompt" => fields.prompt = Some(text(part)?),
            "size" => fields.size = Some(text(part)?),
            "quality" => fields.quality = Some(text(part)?),
            "response_format" => fields.response_format = Some(text(part)?),
            "n" => fields.n = text(part)?.trim().parse().unwrap_or(0),
            "stream" if text(part)?.trim() == "true" => {
                return Err(
                    ClientError::invalid("Streaming image edits are not supported.").with_param("stream")
                );
            }
            _ => {}
        }
    }
    if fields.n == u32::MAX {
        fields.n = 1;
    }
    if images.is_empty() {
        return Err(ClientError::invalid("An image to edit is required: send it as the `image` file field.")
            .with_param("image"));
    }
    fields.into_request(images, mask)
}

/// The text fields both endpoints share, before validation. `n` is `u32::MAX` until a form sets it.
struct Fields<'f> {
    model: Option<&'f str>,
    prompt: Option<&'f str>,
    n: u32,
    size: Option<&'f str>,
    quality: Option<&'f str>,
    response_format: Option<&'f str>,
}

impl Default for Fields<'_> {
    fn default() -> Self {
        Fields { model: None, prompt: None, n: u32::MAX, size: None, quality: None, response_format: None }
    }
}

impl Fields<'_> {
    fn into_request<'a>(
        self,
        images: Vec<InputImage<'a>>,
        mask: Option<InputImage<'a>>,
    ) -> Result<ImagesRequest<'a>, ClientError> {
        let prompt = self.prompt.map(str::trim).filter(|p| !p.is_empty()).ok_or_else(|| {
            ClientError::invalid("`prompt` is required and must not be empty.").with_param("prompt")
        })?;
        let model = self.model.filter(|m| !m.is_empty()).unwrap_or(DEFAULT_MODEL);
        crate::limits::check_model_name(model, "model")?;
        if !(1..=MAX_IMAGES).contains(&self.n) {
            return Err(ClientError::invalid(format!(
                "`n` must be an integer from 1 to {MAX_IMAGES} (each image is one upstream call)."
            ))
            .with_param("n"));
        }
        let mut image_config = image_config_for_size(self.size)?;
        if let Some(size) = image_size_for_quality(self.quality)? {
            image_config.image_size = Some(size);
        }
        let response_format = match self.response_format {
            None | Some("b64_json") => ResponseFormat::B64Json,
            Some("url") => ResponseFormat::Url,
            Some(other) => {
                return Err(ClientError::invalid(format!(
                    "Invalid response_format {other:?}; expected \"b64_json\" or \"url\"."
                ))
                .with_param("response_format"))
            }
        };
        Ok(ImagesRequest {
            model: model.to_owned(),
            prompt: prompt.to_owned(),
            n: self.n,
            image_config,
            response_format,
            images,
            mask,
        })
    }
}

/// `size` → `imageConfig`: the listed OpenAI sizes map to an aspect ratio at 1K; `auto` (or none) leaves the
/// choice to the model.
pub fn image_config_for_size(size: Option<&str>) -> Result<ImageConfig, ClientError> {
    match size {
        None | Some("auto") => Ok(ImageConfig::default()),
        Some(size) => match SIZES.iter().find(|(name, _)| *name == size) {
            Some((_, ratio)) => Ok(ImageConfig { aspect_ratio: Some(ratio), image_size: Some("1K") }),
            None => {
                let accepted: Vec<&str> = SIZES.iter().map(|(name, _)| *name).collect();
                Err(ClientError::invalid(format!(
                    "Invalid size {size:?}; accepted sizes are {} and auto.",
                    accepted.join(", ")
                ))
                .with_param("size"))
            }
        },
    }
}

/// `quality` → `imageConfig.imageSize`: low and standard 1K, medium and hd 2K, high 4K; `auto` keeps the size's.
pub fn image_size_for_quality(quality: Option<&str>) -> Result<Option<&'static str>, ClientError> {
    match quality {
        None | Some("auto") => Ok(None),
        Some("low" | "standard") => Ok(Some("1K")),
        Some("medium" | "hd") => Ok(Some("2K")),
        Some("high") => Ok(Some("4K")),
        Some(other) => Err(ClientError::invalid(format!(
            "Invalid quality {other:?}; expected low, medium, high, standard, hd or auto."
        ))
        .with_param("quality")),
    }
}

/// An uploaded image with its MIME type: the part's own `Content-Type` when it is a known image type, else
/// what its first bytes say. Anything else is refused, as OpenAI does.
fn input_image<'a>(part: &FormPart<'a>, param: &str) -> Result<InputImage<'a>, ClientError> {
    let declared = part.content_type.and_then(known_image_type);
    let mime_type = declared.or_else(|| sniff_image_type(part.data)).ok_or_else(|| {
        ClientError::invalid(format!("`{param}` must be a PNG, JPEG, WEBP or GIF image.")).with_param(param)
    })?;
    if part.data.is_empty() {
        return Err(ClientError::invalid(format!("`{param}` is an empty file.")).with_param(param));
    }
    Ok(InputImage { mime_type, data: part.data })
}

fn known_image_type(content_type: &str) -> Option<&'static str> {
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    ["image/png", "image/jpeg", "image/webp", "image/gif"].into_iter().find(|t| *t == essence)
}

fn sniff_image_type(data: &[u8]) -> Option<&'static str> {
    if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if data.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else if data.len() >= 12 && &data[..4] == b"RIFF" && &data[8..12] == b"WEBP" {
        Some("image/webp")
    } else if data.starts_with(b"GIF8") {
        Some("image/gif")
    } else {
        None
    }
}

/// The sentence that tells the model what the mask image is.
const MASK_INSTRUCTION: &str = "The next image is a mask for the image above: edit only the areas where the \
                                mask is transparent and keep everything else unchanged.";

/// The inner `request` for an image model: one user turn (input images, mask, prompt), `responseModalities`
/// TEXT and IMAGE, the `imageConfig`, and no thinking. Images are base64-encoded straight into the request.
pub fn build_inner_request(request: &ImagesRequest<'_>, session_id: &str) -> InnerRequest {
    let image_bytes: usize = request.images.iter().chain(&request.mask).map(|i| i.data.len()).sum();
    let mut out = Vec::with_capacity(image_bytes / 3 * 4 + request.prompt.len() + 512);
    let mut o = Object::open(&mut out);
    {
        let contents = o.key("contents");
        contents.extend_from_slice(b"[{\"role\":\"user\",\"parts\":[");
        for image in &request.images {
            write_inline(contents, image);
            contents.push(b',');
        }
        if let Some(mask) = &request.mask {
            contents.extend_from_slice(b"{\"text\":");
            write_str(contents, MASK_INSTRUCTION);
            contents.extend_from_slice(b"},");
            write_inline(contents, mask);
            contents.push(b',');
        }
        contents.extend_from_slice(b"{\"text\":");
        write_str(contents, &request.prompt);
        contents.extend_from_slice(b"}]}]");
    }
    {
        let config = o.key("generationConfig");
        config.extend_from_slice(b"{\"responseModalities\":[\"TEXT\",\"IMAGE\"]");
        let ImageConfig { aspect_ratio, image_size } = request.image_config;
        if aspect_ratio.is_some() || image_size.is_some() {
            config.extend_from_slice(b",\"imageConfig\":");
            let mut image = Object::open(config);
            if let Some(ratio) = aspect_ratio {
                write_str(image.key("aspectRatio"), ratio);
            }
            if let Some(size) = image_size {
                write_str(image.key("imageSize"), size);
            }
            image.close();
        }
        config.push(b'}');
    }
    write_str(o.key("sessionId"), session_id);
    o.close();
    InnerRequest { json: out, tool_names: ToolNameMap::default(), request_type: RequestType::ImageGen }
}

fn write_inline(out: &mut Vec<u8>, image: &InputImage<'_>) {
    out.extend_from_slice(b"{\"inlineData\":{\"mimeType\":");
    write_str(out, image.mime_type);
    out.extend_from_slice(b",\"data\":\"");
    // Base64 needs no JSON escaping: encoded straight into the request, the only copy of the image.
    let start = out.len();
    out.resize(start + image.data.len().div_ceil(3) * 4, 0);
    let written = STANDARD.encode_slice(image.data, &mut out[start..]).unwrap_or(0);
    out.truncate(start + written);
    out.extend_from_slice(b"\"}}");
}
