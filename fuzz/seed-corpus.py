#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (fuzz/corpus/<target>/) from the fixtures of the unit tests.

The filters' unit tests write their requests, upstream stream events, schemas and error bodies as `json!(...)`
macros and raw strings; this lifts every one that is plain JSON out of the `#[cfg(test)]` part of each file and
files it under the target that parses that kind of bytes, framed as the target reads its input (see
fuzz/src/lib.rs: two control bytes first; NUL-separated fields for retry_hint, auth_header, config_load).
The configuration seeds are the example files in conf/. Seeds are named by content hash, so rerunning it
only adds what is new.

    python3 fuzz/seed-corpus.py
"""
import hashlib
import json
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
SRC = ROOT / "filters" / "src"
OUT = ROOT / "fuzz" / "corpus"
MAX_SEED = 4096  # bytes; keeps the committed corpus small

# Which target reads the fixtures of which test file.
REQUESTS = {
    "protocol/openai_chat/request.rs": "request_openai",
    "protocol/openai_chat/transform.rs": "request_openai",
    "protocol/openai_chat/tools.rs": "request_openai",
    "protocol/anthropic/request.rs": "request_anthropic",
    "protocol/anthropic/transform.rs": "request_anthropic",
    "protocol/anthropic/count_tokens.rs": "request_anthropic",
    "protocol/gemini/transform.rs": "request_gemini",
    "protocol/openai_responses/tests.rs": "request_responses",
    "protocol/openai_responses/request.rs": "request_responses",
    "protocol/openai_responses/tools.rs": "request_responses",
    "protocol/openai_completions/request.rs": "request_completions",
    "protocol/openai_completions/transform.rs": "request_completions",
}
STREAMS = ["protocol/openai_chat/stream.rs", "protocol/anthropic/stream.rs", "protocol/gemini/stream.rs",
           "stream/chunk.rs", "stream/mod.rs", "protocol/openai_responses/stream.rs",
           "protocol/openai_completions/stream.rs"]
SCHEMAS = ["schema/mod.rs", "schema/cleaned.rs", "schema/hints.rs"]
REFUSALS = ["retry_hint.rs", "error.rs"]


def test_part(path):
    text = path.read_text()
    if path.name == "tests.rs":  # a module that is all tests
        return text
    cut = text.find("#[cfg(test)]")
    return text[cut:] if cut >= 0 else ""


def balanced(text, start):
    """The text between the parenthesis at `start` and its match, skipping string literals."""
    depth, i, in_str = 0, start, False
    while i < len(text):
        c = text[i]
        if in_str:
            if c == "\\":
                i += 1
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                return text[start + 1:i]
        i += 1
    return None


def fixtures(rel):
    """Every JSON value written in the tests of `rel`: json! macros that are plain JSON, and raw strings."""
    text = test_part(SRC / rel)
    found = []
    for m in re.finditer(r"json!\(", text):
        body = balanced(text, m.end() - 1)
        if body is None:
            continue
        body = re.sub(r",(\s*[}\]])", r"\1", body)  # json! allows trailing commas
        try:
            found.append(json.loads(body))
        except ValueError:
            pass  # built from Rust expressions; not a literal fixture
    for m in re.finditer(r'b?r#"(.*?)"#', text, re.S):
        try:
            found.append(json.loads(m.group(1)))
        except ValueError:
            pass
    return found


def compact(value):
    # ensure_ascii keeps lone surrogates (a fixture tests them) as escapes rather than failing to encode.
    return json.dumps(value, separators=(",", ":")).encode()


def write(target, data):
    if len(data) > MAX_SEED:
        return
    folder = OUT / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)


def main():
    for rel, target in REQUESTS.items():
        for value in fixtures(rel):
            if isinstance(value, dict):
                body = compact(value)
                write(target, b"\x00\x00" + body)  # Gemini model
                write(target, b"\x05\x00" + body)  # Claude thinking model, and through the tool cache
    events = [compact(v) for rel in STREAMS for v in fixtures(rel) if isinstance(v, dict)]
    events = [e for e in events if b"candidates" in e or b"response" in e or b"error" in e]
    for target in ("sse_openai", "sse_anthropic", "sse_gemini", "sse_responses"):
        for i, event in enumerate(events):
            # One event, whole, in one read; streamed with keep-alives, or folded.
            write(target, bytes([i % 16, 0]) + b"data: " + event + b"\r\n\r\n")
        # A whole turn of events, in reads of every seed's sizes.
        for flags, split in ((0, 7), (1, 13), (2, 29), (12, 255)):
            write(target, bytes([flags, split]) + b"".join(b"data: " + e + b"\n\n" for e in events[:12]))
    # A web search's turn (flags bit 4): a thought, text, then groundingMetadata with the finish reason.
    metadata = {"webSearchQueries": ["levitate"], "groundingChunks": [
        {"web": {"uri": "https://vertexaisearch.cloud.google.com/grounding-api-redirect/A", "title": "levitate.dev"}},
        {"web": {"uri": "https://b.org/x", "title": "B"}}],
        "groundingSupports": [{"segment": {"endIndex": 8, "text": "Levitate"}, "groundingChunkIndices": [0, 1]}]}
    grounded = [{"candidates": [{"content": {"parts": [{"text": "**T**", "thought": True}]}}]},
                {"candidates": [{"content": {"parts": [{"text": "Levitate serves clients."}]}}]},
                {"candidates": [{"content": {"parts": [{"text": "", "thoughtSignature": "Esig"}]},
                                 "finishReason": "STOP", "groundingMetadata": metadata}]}]
    turn = b"".join(b"data: " + compact({"response": e}) + b"\n\n" for e in grounded)
    for target in ("sse_openai", "sse_anthropic", "sse_gemini", "sse_responses"):
        for flags in (16, 17):
            write(target, bytes([flags, 11]) + turn)
    for rel in SCHEMAS + ["protocol/openai_chat/tools.rs"]:
        for value in fixtures(rel):
            if isinstance(value, dict) and ("type" in value or "properties" in value or "$ref" in value):
                write("schema_clean", b"\x00\x00" + compact(value))
    for rel in REFUSALS:
        for value in fixtures(rel):
            if isinstance(value, dict) and "error" in value:
                for status, header in ((429, b"30"), (403, b""), (503, b"Wed, 02 Dec 2026 10:00:00 GMT")):
                    write("retry_hint", status.to_bytes(2, "big") + compact(value) + b"\x00" + header)
    for fields in (
        [b"Bearer sk-levitate-fuzz", b"", b"", b""],
        [b"", b"sk-levitate-fuzz", b"", b""],
        [b"", b"", b"sk-levitate-fuzz", b""],
        [b"", b"", b"", b"alt=sse&key=sk-levitate-fuzz"],
        [b"", b"", b"", b"key=a%20b%2520c"],
        [b"bearer   x ", b" ", b"", b"key=%zz%41"],
    ):
        write("auth_header", b"\x00".join(fields))
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
    for fields in (
        [(b"image", b"a.png", png), (b"prompt", None, b"add a hat")],
        [(b"image[]", b"a.png", png), (b"image[]", b"b.png", png), (b"mask", b"m.png", png),
         (b"prompt", None, b"merge"), (b"size", None, b"1024x1024"), (b"n", None, b"2")],
    ):
        body = b"preamble\r\n"
        for name, filename, data in fields:
            body += b'--x\r\nContent-Disposition: form-data; name="' + name + b'"'
            if filename:
                body += b'; filename="' + filename + b'"\r\nContent-Type: image/png'
            body += b"\r\n\r\n" + data + b"\r\n"
        write("images_edit", b"multipart/form-data; boundary=x\x00" + body + b"--x--\r\n")
    conf = ROOT / "conf"
    for main, accounts, routes in (
        ("levitate.yaml", "accounts.example.yaml", "routes.yaml"),
        ("demo.yaml", "demo-accounts.yaml", "routes.yaml"),
    ):
        write("config_load", b"\x00".join((conf / n).read_bytes() for n in (main, accounts, routes)))
    for target in sorted(p.name for p in OUT.iterdir()):
        files = list((OUT / target).iterdir())
        print(f"{target}: {len(files)} seeds, {sum(f.stat().st_size for f in files)} bytes")


if __name__ == "__main__":
    main()
