//! Image models (PROTOCOL §2, §6): the rules an image request must follow and the answer it gets.
//!
//! An image model (`gemini-3-pro-image`, `gemini-3.1-flash-image`, any id with `-image`) is called with the
//! envelope's `requestType: "image_gen"` and without a `thinkingConfig`; the sim refuses both mistakes with
//! Google's 400 so a gateway that makes them fails its tests. The answer is one text part and one real PNG
//! as `inlineData`, whose pixel size echoes `imageConfig` (aspect ratio × a factor for `imageSize`), so a test
//! can decode the PNG and check how the gateway mapped the client's size. `[sim:image_scale=K]` in the
//! prompt multiplies both sides by K (at most [`MAX_SCALE`]), for multi-megabyte images.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use crate::answer::{Chunk, Usage};
use crate::error::ApiError;
use crate::prompt::{field, Prompt};

/// Whether `model` is an image model.
pub fn is_image_model(model: &str) -> bool {
    model.contains("-image")
}

/// Largest `[sim:image_scale=K]`: a 1:1 image at K = 1200 is about 4 MiB of PNG, 5.5 MiB of base64.
pub const MAX_SCALE: u32 = 1200;
/// Most pixels of one answer image (6 MiB of RGB).
const MAX_PIXELS: u64 = 2_000_000;

/// Aspect ratios Google's `imageConfig.aspectRatio` accepts.
const ASPECT_RATIOS: &[&str] = &["1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"];
/// `imageConfig.imageSize` values and the PNG scale factor the sim uses for each.
const IMAGE_SIZES: &[(&str, u32)] = &[("1K", 1), ("2K", 2), ("4K", 4)];

/// Checks an image model's request: `requestType` `image_gen`, no `thinkingConfig`, a valid `imageConfig`.
pub fn validate(envelope: &Value, request: Option<&Value>, model: &str) -> Result<(), ApiError> {
    if !is_image_model(model) {
        return Ok(());
    }
    let request_type = envelope.get("requestType").and_then(Value::as_str).unwrap_or("");
    if request_type != "image_gen" {
        return Err(ApiError::InvalidArgument(format!(
            "Request type \"{request_type}\" is not supported for model {model}; image models take \"image_gen\"."
        )));
    }
    let config = request.and_then(|r| field(r, "generationConfig", "generation_config"));
    if config.and_then(|g| field(g, "thinkingConfig", "thinking_config")).is_some() {
        return Err(ApiError::InvalidArgument(
            "Invalid JSON payload received. Unknown name \"thinkingConfig\" at 'request.generation_config': \
             thinking is not supported for this model."
                .into(),
        ));
    }
    let image_config = config.and_then(|g| field(g, "imageConfig", "image_config"));
    if let Some(ratio) = image_config.and_then(|c| field(c, "aspectRatio", "aspect_ratio")) {
        if !ratio.as_str().is_some_and(|r| ASPECT_RATIOS.contains(&r)) {
            return Err(ApiError::InvalidArgument(format!(
                "* GenerateContentRequest.generation_config.image_config.aspect_ratio: unsupported aspect ratio {ratio}\n"
            )));
        }
    }
    if let Some(size) = image_config.and_then(|c| field(c, "imageSize", "image_size")) {
        if !size.as_str().is_some_and(|s| IMAGE_SIZES.iter().any(|(name, _)| *name == s)) {
            return Err(ApiError::InvalidArgument(format!(
                "* GenerateContentRequest.generation_config.image_config.image_size: unsupported image size {size}\n"
            )));
        }
    }
    Ok(())
}

/// The answer of an image model: a short text naming the prompt and the number of input images, then the PNG.
pub fn generate(p: &Prompt, request: &Value) -> Vec<Chunk> {
    let config = field(request, "generationConfig", "generation_config")
        .and_then(|g| field(g, "imageConfig", "image_config"));
    let text_of = |camel, snake| config.and_then(|c| field(c, camel, snake)).and_then(Value::as_str);
    let ratio = text_of("aspectRatio", "aspect_ratio").unwrap_or("1:1");
    let scale = text_of("imageSize", "image_size")
        .and_then(|s| IMAGE_SIZES.iter().find(|(name, _)| *name == s))
        .map_or(1, |(_, k)| *k);
    let (w, h) =
        ratio.split_once(':').map_or((1, 1), |(w, h)| (w.parse().unwrap_or(1), h.parse().unwrap_or(1)));
    let inputs = input_images(request);
    // Bounded to MAX_PIXELS whatever the ratio: the image is built in memory.
    let (w, h) = (w.clamp(1, 64), h.clamp(1, 64));
    let fit = ((MAX_PIXELS / u64::from(w * h)) as f64).sqrt() as u32;
    let scale = (scale * requested_scale(request)).min(fit.max(1));
    let png = png(w * scale, h * scale, p.seed);
    let text = format!("Image for: {} (input images: {inputs})", p.last_text);
    let usage = Usage { prompt: p.prompt_tokens, candidates: 1290, ..Usage::default() };
    vec![
        Chunk { parts: vec![json!({ "text": text })], finish_reason: None, usage },
        Chunk {
            parts: vec![json!({"inlineData": {"mimeType": "image/png", "data": STANDARD.encode(png)}})],
            finish_reason: Some("STOP"),
            usage,
        },
    ]
}

/// The `[sim:image_scale=K]` marker of the request's texts, 1 without one.
fn requested_scale(request: &Value) -> u32 {
    let text = request.get("contents").map(Value::to_string).unwrap_or_default();
    let Some((_, rest)) = text.split_once("[sim:image_scale=") else { return 1 };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or(1).clamp(1, MAX_SCALE)
}

/// How many `inlineData` parts the request's turns carry.
fn input_images(request: &Value) -> usize {
    let contents = request.get("contents").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    contents
        .iter()
        .filter_map(|c| c.get("parts").and_then(Value::as_array))
        .flatten()
        .filter(|p| field(p, "inlineData", "inline_data").is_some())
        .count()
}

/// A `width`×`height` RGB PNG of one colour picked from `seed`: signature, IHDR, one IDAT holding a zlib
/// stream of stored (uncompressed) deflate blocks, IEND.
pub fn png(width: u32, height: u32, seed: u64) -> Vec<u8> {
    let [r, g, b, ..] = seed.to_le_bytes();
    // Each row: filter type 0 (none), then the pixels.
    let mut row = vec![0u8];
    for _ in 0..width {
        row.extend_from_slice(&[r, g, b]);
    }
    let raw = row.repeat(height as usize);
    let mut zlib = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(0xffff).collect();
    for (i, block) in blocks.iter().enumerate() {
        zlib.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        zlib.extend_from_slice(&len.to_le_bytes());
        zlib.extend_from_slice(&(!len).to_le_bytes());
        zlib.extend_from_slice(block);
    }
    zlib.extend_from_slice(&adler32(&raw).to_be_bytes());
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter, no interlace
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(b"IHDR", ihdr.as_slice()), (b"IDAT", &zlib), (b"IEND", &[])] {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    out
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(request_type: &str) -> Value {
        json!({"model": "gemini-3-pro-image", "requestType": request_type})
    }

    #[test]
    fn image_models_need_image_gen_and_no_thinking() {
        let plain = json!({"contents": [{"role": "user", "parts": [{"text": "a cat"}]}]});
        assert!(validate(&envelope("image_gen"), Some(&plain), "gemini-3-pro-image").is_ok());
        assert!(validate(&envelope("agent"), Some(&plain), "gemini-3-pro-image").is_err());
        assert!(validate(&envelope("agent"), Some(&plain), "gemini-3-flash").is_ok(), "only image models");
        let thinking =
            json!({"contents": [], "generationConfig": {"thinkingConfig": {"thinkingBudget": 1024}}});
        let e = validate(&envelope("image_gen"), Some(&thinking), "gemini-3.1-flash-image");
        assert!(matches!(e, Err(ApiError::InvalidArgument(m)) if m.contains("thinkingConfig")));
        let bad_ratio = json!({"generationConfig": {"imageConfig": {"aspectRatio": "7:5"}}});
        assert!(validate(&envelope("image_gen"), Some(&bad_ratio), "gemini-3-pro-image").is_err());
        let bad_size = json!({"generationConfig": {"imageConfig": {"imageSize": "8K"}}});
        assert!(validate(&envelope("image_gen"), Some(&bad_size), "gemini-3-pro-image").is_err());
    }

    #[test]
    fn the_png_is_well_formed_and_sized() {
        let png = png(16, 9, 7);
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 16);
        assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 9);
        // The IHDR chunk's CRC covers its type and data.
        assert_eq!(u32::from_be_bytes(png[29..33].try_into().unwrap()), crc32(&png[12..29]));
        assert!(png.ends_with(&[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82]));
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
    }

    #[test]
    fn the_answer_echoes_the_image_config() {
        let request = json!({"contents": [{"role": "user", "parts": [{"text": "x"},
            {"inlineData": {"mimeType": "image/png", "data": "AA=="}}]}],
            "generationConfig": {"imageConfig": {"aspectRatio": "16:9", "imageSize": "2K"}}});
        let prompt = Prompt::read("gemini-3-pro-image", &request);
        let chunks = generate(&prompt, &request);
        assert!(chunks[0].parts[0]["text"].as_str().unwrap().contains("input images: 1"));
        let data = chunks[1].parts[0]["inlineData"]["data"].as_str().unwrap();
        let png = STANDARD.decode(data).unwrap();
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 32);
        assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 18);
        assert_eq!(chunks[1].finish_reason, Some("STOP"));
    }

    #[test]
    fn the_scale_marker_grows_the_image_within_bounds() {
        let request = |text: &str| json!({"contents": [{"role": "user", "parts": [{"text": text}]}]});
        let size = |text: &str| {
            let r = request(text);
            let chunks = generate(&Prompt::read("gemini-3-pro-image", &r), &r);
            let png = STANDARD.decode(chunks[1].parts[0]["inlineData"]["data"].as_str().unwrap()).unwrap();
            (
                u32::from_be_bytes(png[16..20].try_into().unwrap()),
                u32::from_be_bytes(png[20..24].try_into().unwrap()),
            )
        };
        assert_eq!(size("a cat [sim:image_scale=300]"), (300, 300));
        assert_eq!(size("a cat [sim:image_scale=999999]"), (1200, 1200));
        assert_eq!(size("a cat"), (1, 1));
    }
}
