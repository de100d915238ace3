"""Request material shared by the SDK and real-client suites: a real PNG, signature tampering, error-shape checks.

Importable from the tests because pytest puts tests/e2e (the conftest folder) on sys.path:
`from clients.payloads import tiny_png`.
"""

from __future__ import annotations

import base64
import binascii
import struct
import zlib


def tiny_png(width: int = 16, height: int = 16, rgb: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A valid PNG of one colour, built by hand so no imaging library is needed."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", binascii.crc32(kind + data))

    row = b"\x00" + bytes(rgb) * width  # filter byte 0, then RGB pixels
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row * height))
            + chunk(b"IEND", b""))


def tiny_png_base64(**kwargs) -> str:
    return base64.b64encode(tiny_png(**kwargs)).decode()


def _decode_any(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.b64decode(padded, validate=True)
    except binascii.Error:
        return base64.urlsafe_b64decode(padded)


def tamper_signature(signature: str) -> str:
    """The same signature with one byte of its MAC flipped, keeping its shape.

    Gemini signatures are base64 of a protobuf-like blob; Antigravity's Claude signatures are base64 of that base64
    text ("R-form", PROTOCOL.md §9 rule 6). The result still looks genuine to anything that reads the shape (so a
    gateway forwards it as the client's own), but Google, and the simulator, reject it."""
    outer = _decode_any(signature)
    if outer[:1] == b"E":  # R-form: the decoded bytes are themselves base64 text
        inner = bytearray(_decode_any(outer.decode()))
        inner[-1] ^= 0x55
        return base64.b64encode(base64.b64encode(bytes(inner))).decode()
    raw = bytearray(outer)
    raw[-1] ^= 0x55
    return base64.b64encode(bytes(raw)).decode()


def forged_gemini_signature() -> str:
    """A Gemini-shaped signature (`E…`, ≥ 50 chars) that no server issued."""
    raw = bytes([0x12, 48, 1]) + bytes(range(7, 7 + 47))
    return base64.b64encode(raw).decode()
