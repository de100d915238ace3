#!/usr/bin/env python3
"""Writes the two slow units found while fuzzing (docs/reliability.md, "Findings") into fuzz/.work/slow/, so
each can be replayed against a fuzz build:

    python3 fuzz/slow-inputs.py
    fuzz/target/x86_64-unknown-linux-gnu/release/schema_clean fuzz/.work/slow/schema_enum
    fuzz/target/x86_64-unknown-linux-gnu/release/request_openai fuzz/.work/slow/tool_name_clash

Both fit libFuzzer's -max_len=65536. They are not in the committed seed corpus: until the quadratic steps
are gone, each would hold the CI smoke for seconds.
"""
import itertools
import json
import pathlib

OUT = pathlib.Path(__file__).resolve().parent / ".work" / "slow"
OUT.mkdir(parents=True, exist_ok=True)


def compact(value):
    return json.dumps(value, separators=(",", ":")).encode()


# A parameter whose enum has 9,000 distinct values: de-duplicated with Vec::contains, 40 M comparisons.
enum = [str(i) for i in range(9000)]
schema = {"type": "object", "properties": {"x": {"type": "string", "enum": enum}}}
(OUT / "schema_enum").write_bytes(b"\x00\x00" + compact(schema))

# 1,300 tool names that all sanitise to `x___`: each rename tries `_2`, `_3`, … in turn, 845 k attempts.
punct = ".:/ +*!@#$%^&()=[]{};,<>?~"
names = ["x" + "".join(p) for p in itertools.product(punct, repeat=3)][:1300]
body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": n}} for n in names]}
(OUT / "tool_name_clash").write_bytes(b"\x00\x00" + compact(body))

for f in sorted(OUT.iterdir()):
    print(f"{f}: {f.stat().st_size} bytes")
