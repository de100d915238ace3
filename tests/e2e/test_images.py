"""Image generation through Levitate, as each official SDK asks for it.

The OpenAI Images API (`images.generate`, `images.edit`) and image models called through chat completions,
Anthropic Messages and the Gemini API all reach Google's image model as an `image_gen` request without a
thinkingConfig (the simulator refuses both mistakes, as Google does), and the PNG the simulator draws comes
back whole in each protocol's own shape. The simulator sizes its PNG from `imageConfig` (aspect ratio × 1, 2
or 4 for imageSize 1K, 2K, 4K), so decoding it checks how the gateway mapped the client's size.
"""

from __future__ import annotations

import base64
import io
import re
import struct
import zlib

import anthropic
import openai
import pytest
from google import genai
from google.genai import types

from conftest import API_KEY, Gateway, assert_openai_error


def png_size(data: bytes) -> tuple[int, int]:
    """Decodes a PNG with the standard library: signature, every chunk's CRC, IHDR, the zlib image data."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:16]
    at, chunks, idat = 8, [], b""
    while at < len(data):
        (length,) = struct.unpack(">I", data[at:at + 4])
        kind, body = data[at + 4:at + 8], data[at + 8:at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length:at + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC on {kind!r}"
        chunks.append(kind)
        if kind == b"IDAT":
            idat += body
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
        at += 12 + length
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND", chunks
    assert (depth, color) == (8, 2)
    assert len(zlib.decompress(idat)) == height * (1 + 3 * width)
    return width, height


def image_requests(gateway: Gateway) -> list[dict]:
    """What the upstream was sent for image models (envelope metadata)."""
    return [r for r in gateway.stats()["recent"] if "-image" in (r.get("model") or "")]


def assert_upstream_image_gen(gateway: Gateway, count: int) -> None:
    sent = image_requests(gateway)
    assert len(sent) == count, sent
    assert all(r["requestType"] == "image_gen" for r in sent), sent
    assert all("thinkingConfig" not in (r["generationConfigKeys"] or []) for r in sent), sent
    # Every protocol asks an image model for text and image (the Gemini tests send it themselves).
    assert all("responseModalities" in (r["generationConfigKeys"] or []) for r in sent), sent
    # The simulator refuses a thinkingConfig on image models with a 400, so every one of them passed.
    assert gateway.stats()["totals"]["image_generations"] == count


@pytest.mark.parametrize(
    "size,quality,expected",
    [("1024x1024", None, (1, 1)), ("1792x1024", None, (16, 9)), ("1024x1792", "hd", (18, 32)),
     ("1536x1024", "high", (12, 8)), ("1024x1536", "medium", (4, 6))],
)
def test_generate_maps_size_and_quality_to_the_image_config(gateway: Gateway, size, quality, expected):
    client = gateway.openai()
    extra = {"quality": quality} if quality else {}
    result = client.images.generate(model="gpt-image-1", prompt="a red square", size=size, **extra)
    assert len(result.data) == 1
    image = result.data[0]
    assert png_size(base64.b64decode(image.b64_json)) == expected
    assert "a red square" in image.revised_prompt
    assert result.usage.output_tokens > 0 and result.created > 0
    assert_upstream_image_gen(gateway, 1)
    assert image_requests(gateway)[0]["model"] == "gemini-3-pro-image"
    assert {"responseModalities", "imageConfig"} <= set(image_requests(gateway)[0]["generationConfigKeys"])


def test_generate_n_images_and_url_answers_are_data_urls(gateway: Gateway):
    client = gateway.openai()
    result = client.images.generate(model="dall-e-3", prompt="two cats", n=2, response_format="url")
    assert len(result.data) == 2
    for image in result.data:
        match = re.fullmatch(r"data:image/png;base64,([A-Za-z0-9+/=]+)", image.url)
        assert match, image.url[:60]
        assert png_size(base64.b64decode(match.group(1))) == (1, 1)
    assert_upstream_image_gen(gateway, 2)


def test_bad_size_and_too_many_images_are_openai_400s(gateway: Gateway):
    client = gateway.openai()
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(model="gpt-image-1", prompt="x", size="800x600")
    error = caught.value.body
    assert error["param"] == "size" and "1024x1024" in error["message"] and "1792x1024" in error["message"]
    r = gateway.http.post("/v1/images/generations", json={"prompt": "x", "n": 9})
    assert assert_openai_error(r, 400)["param"] == "n"
    r = gateway.http.post("/v1/images/generations", json={"prompt": "x", "model": "gpt-4o"})
    assert "not an image model" in assert_openai_error(r, 400)["message"]
    assert image_requests(gateway) == []
    gateway.assert_serves()


def tiny_png() -> bytes:
    raw = b"\x00\xff\x00\x00"  # one red pixel, filter byte first
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def test_edit_sends_the_image_and_the_mask_upstream(gateway: Gateway):
    client = gateway.openai()
    image = ("photo.png", io.BytesIO(tiny_png()), "image/png")
    mask = ("mask.png", io.BytesIO(tiny_png()), "image/png")
    result = client.images.edit(model="gpt-image-1", image=image, mask=mask, prompt="add a hat",
                                size="1536x1024")
    assert png_size(base64.b64decode(result.data[0].b64_json)) == (3, 2)
    # The simulator names how many images it was given: the photo and the mask.
    assert "input images: 2" in result.data[0].revised_prompt
    several = [("a.png", tiny_png(), "image/png"), ("b.png", tiny_png(), "image/png")]
    result = client.images.edit(model="gpt-image-1", image=several, prompt="merge them")
    assert "input images: 2" in result.data[0].revised_prompt
    assert_upstream_image_gen(gateway, 2)


def test_edit_of_a_broken_or_hostile_form_is_a_400(gateway: Gateway):
    r = gateway.http.post("/v1/images/edits", content=b"--x\r\nContent-Disposition: form-data; name=\"prompt\"",
                          headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert "closing boundary" in assert_openai_error(r, 400)["message"]
    r = gateway.http.post("/v1/images/edits", json={"prompt": "x"})
    assert "multipart/form-data" in assert_openai_error(r, 400)["message"]
    many = b"".join(b'--x\r\nContent-Disposition: form-data; name="n"\r\n\r\n1\r\n' for _ in range(65)) + b"--x--"
    r = gateway.http.post("/v1/images/edits", content=many,
                          headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert "more than 64 parts" in assert_openai_error(r, 400)["message"]
    pad = b'--x\r\nContent-Disposition: form-data; name="p"\r\nX-Pad: ' + b"a" * 9000 + b"\r\n\r\nv\r\n--x--"
    r = gateway.http.post("/v1/images/edits", content=pad, headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert "bytes of headers" in assert_openai_error(r, 400)["message"]
    assert image_requests(gateway) == []
    gateway.assert_serves()


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_chat_completions_with_an_image_model_answers_a_markdown_image(gateway: Gateway, stream: bool):
    client = gateway.openai()
    request = dict(model="gpt-image-1", messages=[{"role": "user", "content": "draw a cat"}],
                   reasoning_effort="high")
    if stream:
        content = "".join(chunk.choices[0].delta.content or "" for chunk in
                          client.chat.completions.create(stream=True, **request) if chunk.choices)
    else:
        content = client.chat.completions.create(**request).choices[0].message.content
    match = re.search(r"!\[image\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", content)
    assert match, content[:200]
    assert png_size(base64.b64decode(match.group(1))) == (1, 1)
    assert_upstream_image_gen(gateway, 1)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_anthropic_messages_with_an_image_model_answers_an_image_block(gateway: Gateway, stream: bool):
    sdk = anthropic.Anthropic(base_url=gateway.base_url, api_key=API_KEY, max_retries=0, timeout=60.0)
    request = dict(model="gpt-image-1", max_tokens=4096, messages=[{"role": "user", "content": "draw a cat"}],
                   thinking={"type": "enabled", "budget_tokens": 1024})
    if stream:
        with sdk.messages.stream(**request) as s:
            message = s.get_final_message()
    else:
        message = sdk.messages.create(**request)
    images = [b for b in message.content if b.type == "image"]
    assert len(images) == 1, message.content
    source = images[0].source if hasattr(images[0], "source") else images[0]["source"]
    source = source if isinstance(source, dict) else source.model_dump()
    assert (source["type"], source["media_type"]) == ("base64", "image/png")
    assert png_size(base64.b64decode(source["data"])) == (1, 1)
    assert any(b.type == "text" for b in message.content)
    assert message.stop_reason == "end_turn"
    assert_upstream_image_gen(gateway, 1)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_gemini_api_with_an_image_model_passes_inline_data_through(gateway: Gateway, stream: bool):
    client = genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=gateway.base_url,
                                                                           api_version="v1beta"))
    config = types.GenerateContentConfig(
        response_modalities=["TEXT", "IMAGE"],
        image_config=types.ImageConfig(aspect_ratio="16:9"),
        thinking_config=types.ThinkingConfig(thinking_budget=1024),
    )
    if stream:
        chunks = list(client.models.generate_content_stream(model="gemini-3-pro-image", contents="draw a cat",
                                                            config=config))
        parts = [p for c in chunks for p in (c.candidates[0].content.parts or [])]
    else:
        response = client.models.generate_content(model="gemini-3-pro-image", contents="draw a cat", config=config)
        parts = response.candidates[0].content.parts
    images = [p.inline_data for p in parts if p.inline_data is not None]
    assert len(images) == 1 and images[0].mime_type == "image/png"
    assert png_size(images[0].data) == (16, 9)
    assert_upstream_image_gen(gateway, 1)


def test_a_multi_megabyte_image_arrives_whole_through_every_protocol(gateway: Gateway):
    """A 1000×1000 PNG (about 3 MiB, 4 MiB of base64) through each protocol's stream and the Images API."""
    prompt = "a big cat [sim:image_scale=1000]"
    client = gateway.openai()
    result = client.images.generate(model="gpt-image-1", prompt=prompt)
    assert png_size(base64.b64decode(result.data[0].b64_json)) == (1000, 1000)

    content = "".join(chunk.choices[0].delta.content or "" for chunk in client.chat.completions.create(
        model="gpt-image-1", stream=True, messages=[{"role": "user", "content": prompt}]) if chunk.choices)
    match = re.search(r"!\[image\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", content)
    assert match and png_size(base64.b64decode(match.group(1))) == (1000, 1000)

    sdk = anthropic.Anthropic(base_url=gateway.base_url, api_key=API_KEY, max_retries=0, timeout=60.0)
    with sdk.messages.stream(model="gpt-image-1", max_tokens=1024,
                             messages=[{"role": "user", "content": prompt}]) as s:
        message = s.get_final_message()
    block = next(b for b in message.content if b.type == "image")
    source = block.source if isinstance(block.source, dict) else block.source.model_dump()
    assert png_size(base64.b64decode(source["data"])) == (1000, 1000)

    genai_client = genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=gateway.base_url,
                                                                                 api_version="v1beta"))
    chunks = list(genai_client.models.generate_content_stream(model="gemini-3-pro-image", contents=prompt))
    data = [p.inline_data.data for c in chunks for p in (c.candidates[0].content.parts or []) if p.inline_data]
    assert len(data) == 1 and png_size(data[0]) == (1000, 1000)
    assert_upstream_image_gen(gateway, 4)
