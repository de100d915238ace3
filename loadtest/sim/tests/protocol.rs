//! End-to-end: the sim on port 0, spoken to in raw HTTP/1.1 (and h2c once), the way the gateway will.
//! Each test reads like the story it checks.

use std::collections::HashMap;
use std::time::Duration;

use levitate_sim::{AccountConfig, FaultKind, FaultRule, SimConfig, SimHandle};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One HTTP response, body de-chunked.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// SSE `data:` payloads.
    fn events(&self) -> Vec<Value> {
        self.body
            .split("\n\n")
            .filter_map(|e| e.trim().strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).expect("event JSON"))
            .collect()
    }
}

async fn http(sim: &SimHandle, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let mut stream = TcpStream::connect(sim.addr).await.expect("connect");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: sim\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    parse(&raw)
}

fn parse(raw: &[u8]) -> Resp {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").expect("head");
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("status");
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = if headers.get("transfer-encoding").map(String::as_str) == Some("chunked") {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Resp { status, headers, body }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

async fn token(sim: &SimHandle, refresh: &str) -> String {
    let r = http(
        sim,
        "POST",
        "/token",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &format!("grant_type=refresh_token&refresh_token={refresh}&client_id=cid&client_secret=sec"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["access_token"].as_str().expect("token").to_string()
}

async fn call(sim: &SimHandle, access: &str, method: &str, body: &Value) -> Resp {
    let auth = format!("Bearer {access}");
    let path = if method == "streamGenerateContent" {
        "/v1internal:streamGenerateContent?alt=sse".to_string()
    } else {
        format!("/v1internal:{method}")
    };
    http(
        sim,
        "POST",
        &path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
            ("User-Agent", "antigravity/1.16.0 linux/amd64"),
        ],
        &body.to_string(),
    )
    .await
}

async fn project(sim: &SimHandle, access: &str) -> String {
    let r = call(sim, access, "loadCodeAssist", &json!({"metadata":{"ideType":"ANTIGRAVITY"}})).await;
    r.json()["cloudaicompanionProject"].as_str().expect("project").to_string()
}

fn envelope(project: &str, model: &str, request: Value) -> Value {
    json!({"project": project, "model": model, "userAgent": "antigravity", "requestType": "agent",
           "requestId": "agent-1234", "request": request})
}

fn user(text: &str) -> Value {
    json!({"role": "user", "parts": [{"text": text}]})
}

async fn demo_sim() -> SimHandle {
    levitate_sim::start(SimConfig::default(), "127.0.0.1:0".parse().expect("addr")).await.expect("start")
}

#[tokio::test]
async fn token_refresh_and_bearer_checks() {
    let config = SimConfig {
        accounts: vec![AccountConfig {
            email: "alice@example.com".into(),
            refresh_token: "1//alice".into(),
            project_id: Some("rising-fact-p41fc".into()),
            tier: Some("g1-pro-tier".into()),
            onboarded: true,
            quota_denied: false,
            models: None,
        }],
        ..SimConfig::default()
    };
    let sim = levitate_sim::start(config, "127.0.0.1:0".parse().expect("addr")).await.expect("start");
    let access = token(&sim, "1//alice").await;
    assert!(access.starts_with("ya29."));

    let bad = http(
        &sim,
        "POST",
        "/oauth2/token",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "grant_type=refresh_token&refresh_token=stranger&client_id=c",
    )
    .await;
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.json(),
        json!({"error":"invalid_grant","error_description":"Token has been expired or revoked."})
    );

    let none = call(&sim, "ya29.forged", "loadCodeAssist", &json!({})).await;
    assert_eq!(none.status, 401);
    assert_eq!(none.json()["error"]["status"], "UNAUTHENTICATED");

    let lca = call(&sim, &access, "loadCodeAssist", &json!({})).await.json();
    assert_eq!(lca["cloudaicompanionProject"], "rising-fact-p41fc");
    assert_eq!(lca["paidTier"]["id"], "g1-pro-tier");
    assert_eq!(sim.stats()["accounts"]["alice@example.com"]["token_refreshes"], 1);
}

#[tokio::test]
async fn onboarding_flow_reveals_the_project() {
    let config = SimConfig {
        accounts: vec![AccountConfig {
            email: "new@example.com".into(),
            refresh_token: "1//new".into(),
            project_id: None,
            tier: None,
            onboarded: false,
            quota_denied: false,
            models: None,
        }],
        ..SimConfig::default()
    };
    let sim = levitate_sim::start(config, "127.0.0.1:0".parse().expect("addr")).await.expect("start");
    let access = token(&sim, "1//new").await;
    let lca = call(&sim, &access, "loadCodeAssist", &json!({})).await.json();
    assert!(lca.get("cloudaicompanionProject").is_none());
    let tier = lca["allowedTiers"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["isDefault"] == true))
        .expect("default tier");
    let body = json!({"tierId": tier["id"], "metadata": {"ideType": "ANTIGRAVITY"}});
    let first = call(&sim, &access, "onboardUser", &body).await.json();
    assert_eq!(first["done"], false);
    assert!(first["name"].as_str().unwrap_or("").starts_with("operations/"));
    let second = call(&sim, &access, "onboardUser", &body).await.json();
    assert_eq!(second["done"], true);
    let pid = second["response"]["cloudaicompanionProject"]["id"].as_str().expect("id").to_string();
    assert_eq!(project(&sim, &access).await, pid);
    let models = call(&sim, &access, "fetchAvailableModels", &json!({"project": pid})).await.json();
    assert_eq!(models["models"]["gemini-3-flash"]["quotaInfo"]["remainingFraction"], 1.0);
    assert!(models["tabModelIds"].as_array().is_some_and(|t| !t.is_empty()));
}

#[tokio::test]
async fn streamed_answer_has_thoughts_text_signature_and_consistent_usage() {
    let sim = demo_sim().await;
    let access = token(&sim, "1//demo").await;
    let pid = project(&sim, &access).await;
    let body = envelope(
        &pid,
        "gemini-3-flash",
        json!({
        "contents": [user("Tell me about levitation")],
        "generationConfig": {"thinkingConfig": {"includeThoughts": true, "thinkingBudget": 1024}}}),
    );
    let r = call(&sim, &access, "streamGenerateContent", &body).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "text/event-stream");
    assert_eq!(r.headers["server"], "ESF");
    let events = r.events();
    assert!(events.len() >= 4, "{}", r.body);
    let trace = r.headers["x-cloudaicompanion-trace-id"].clone();
    assert_eq!(trace.len(), 16);
    let parts = |e: &Value| {
        e["response"]["candidates"][0]["content"]["parts"].as_array().cloned().unwrap_or_default()
    };
    assert_eq!(parts(&events[0])[0]["thought"], true);
    let text: String = events
        .iter()
        .flat_map(parts)
        .filter(|p| p.get("thought").is_none())
        .filter_map(|p| p["text"].as_str().map(String::from))
        .collect();
    assert!(text.starts_with("Echo: Tell me about levitation"), "{text}");
    let last = events.last().expect("last");
    assert_eq!(last["traceId"], trace.as_str());
    assert_eq!(last["response"]["candidates"][0]["finishReason"], "STOP");
    assert!(parts(last)[0]["thoughtSignature"].as_str().unwrap_or("").starts_with('E'));
    let rid = last["response"]["responseId"].as_str().expect("id");
    assert_eq!(rid.len(), 22);
    let u = &last["response"]["usageMetadata"];
    let n = |k: &str| u[k].as_u64().unwrap_or(0);
    assert!(n("thoughtsTokenCount") > 0 && n("candidatesTokenCount") > 0);
    assert_eq!(
        n("totalTokenCount"),
        n("promptTokenCount") + n("candidatesTokenCount") + n("thoughtsTokenCount")
    );

    // Same prompt through generateContent: same text, folded.
    let one = call(&sim, &access, "generateContent", &body).await.json();
    let folded: String = one["response"]["candidates"][0]["content"]["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .filter(|p| p.get("thought").is_none())
        .filter_map(|p| p["text"].as_str())
        .collect();
    assert_eq!(folded, text);
}

#[tokio::test]
async fn tool_call_signature_must_be_replayed() {
    let sim = demo_sim().await;
    let access = token(&sim, "1//tools").await;
    let pid = project(&sim, &access).await;
    let tools = json!([{"functionDeclarations": [{"name": "read_file", "description": "Read a file",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}]}]);
    let first = call(
        &sim,
        &access,
        "streamGenerateContent",
        &envelope(&pid, "gemini-3-flash", json!({"contents": [user("open main.rs")], "tools": tools})),
    )
    .await;
    let events = first.events();
    let last = events.last().expect("event");
    let part = &last["response"]["candidates"][0]["content"]["parts"][0];
    assert_eq!(part["functionCall"], json!({"name": "read_file", "args": {"path": "sim"}}));
    let sig = part["thoughtSignature"].as_str().expect("signature").to_string();

    let history = |call_part: Value| {
        json!({"tools": tools, "contents": [
        user("open main.rs"),
        {"role": "model", "parts": [call_part]},
        {"role": "user", "parts": [{"functionResponse": {"name": "read_file", "response": {"result": "fn main() {}"}}}]}]})
    };

    let missing = call(
        &sim,
        &access,
        "streamGenerateContent",
        &envelope(
            &pid,
            "gemini-3-flash",
            history(json!({"functionCall": {"name": "read_file", "args": {"path": "sim"}}})),
        ),
    )
    .await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.headers["content-type"], "text/event-stream");
    assert_eq!(missing.json()["error"]["message"], levitate_sim::missing_signature_message("read_file", 1));
    assert_eq!(missing.json()["error"]["status"], "INVALID_ARGUMENT");

    for good in [sig.clone(), "skip_thought_signature_validator".to_string()] {
        let ok = call(&sim, &access, "generateContent", &envelope(&pid, "gemini-3-flash",
            history(json!({"functionCall": {"name": "read_file", "args": {"path": "sim"}}, "thought_signature": good})))).await;
        assert_eq!(ok.status, 200, "{}", ok.body);
        let text = ok.json()["response"]["candidates"][0]["content"]["parts"][0]["text"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(text.contains("fn main() {}"), "{text}");
    }

    let forged = call(&sim, &access, "generateContent", &envelope(&pid, "gemini-3-flash",
        history(json!({"functionCall": {"name": "read_file", "args": {}}, "thoughtSignature": "EforgedSignature"})))).await;
    assert_eq!(forged.status, 400);
}

#[tokio::test]
async fn faults_from_the_control_endpoint_and_from_markers() {
    let sim = demo_sim().await;
    let access = token(&sim, "1//faults").await;
    let pid = project(&sim, &access).await;
    let set = http(
        &sim,
        "POST",
        "/_sim/faults",
        &[("Content-Type", "application/json")],
        &json!({"faults": [{"kind": "rate_limit", "model": "gemini-3-flash", "times": 1}]}).to_string(),
    )
    .await;
    assert_eq!(set.status, 200, "{}", set.body);
    let body = envelope(&pid, "gemini-3-flash", json!({"contents": [user("hi")]}));
    let limited = call(&sim, &access, "streamGenerateContent", &body).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.headers["content-type"], "text/event-stream");
    let e = limited.json();
    assert_eq!(e["error"]["code"], 429);
    assert_eq!(e["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(e["error"]["details"][0]["@type"], "type.googleapis.com/google.rpc.ErrorInfo");
    assert_eq!(e["error"]["details"][0]["reason"], "RATE_LIMIT_EXCEEDED");
    assert_eq!(e["error"]["details"][0]["metadata"]["quotaResetDelay"], "479.417207ms");
    assert_eq!(e["error"]["details"][1]["retryDelay"], "0.479417207s");
    assert_eq!(call(&sim, &access, "streamGenerateContent", &body).await.status, 200, "times: 1 is used up");

    let marked = envelope(&pid, "gemini-3-flash", json!({"contents": [user("hi [sim:fault=capacity]")]}));
    let cap = call(&sim, &access, "generateContent", &marked).await;
    assert_eq!(cap.status, 503);
    assert_eq!(cap.json()["error"]["details"][0]["reason"], "MODEL_CAPACITY_EXHAUSTED");

    sim.set_faults(vec![FaultRule { after_chunks: Some(1), ..FaultRule::always(FaultKind::StreamCut) }])
        .expect("faults");
    let cut = call(&sim, &access, "streamGenerateContent", &body).await;
    assert_eq!(cut.status, 200);
    assert_eq!(cut.events().len(), 1);
    assert!(cut.events()[0]["response"]["candidates"][0].get("finishReason").is_none());

    let cleared = http(&sim, "DELETE", "/_sim/faults", &[], "").await;
    assert_eq!(cleared.status, 200);
    let stats = http(&sim, "GET", "/_sim/stats", &[], "").await.json();
    let account = stats["recent"][0]["account"].as_str().expect("account").to_string();
    assert_eq!(stats["accounts"][&account]["by_status"]["429"], 1);
    assert_eq!(stats["recent"][0]["requestId"], "agent-1234");
    assert_eq!(stats["recent"][0]["user_agent"], "antigravity/1.16.0 linux/amd64");
}

#[tokio::test]
async fn peak_concurrency_is_exact_and_in_flight_returns_to_zero() {
    let sim = demo_sim().await;
    let access = token(&sim, "1//busy").await;
    let pid = project(&sim, &access).await;
    sim.set_faults(vec![FaultRule { delay_ms: Some(300.0), ..FaultRule::always(FaultKind::SlowFirstByte) }])
        .expect("faults");
    let body = envelope(&pid, "gemini-3-flash", json!({"contents": [user("hi")]}));
    let one = || call(&sim, &access, "streamGenerateContent", &body);
    let (a, b, c, d, e) = tokio::join!(one(), one(), one(), one(), one());
    assert!([a, b, c, d, e].iter().all(|r| r.status == 200));
    let totals = sim.stats()["totals"].clone();
    assert_eq!(totals["peak_concurrency"], 5);
    assert_eq!(totals["in_flight"], 0);
    assert_eq!(totals["requests"], 5);

    // A client that leaves mid-stream releases its slot.
    sim.set_faults(vec![FaultRule {
        delay_ms: Some(500.0),
        ..FaultRule::always(FaultKind::InterChunkDelay)
    }])
    .expect("faults");
    let mut stream = TcpStream::connect(sim.addr).await.expect("connect");
    let b = body.to_string();
    let req = format!("POST /v1internal:streamGenerateContent?alt=sse HTTP/1.1\r\nHost: sim\r\nAuthorization: Bearer {access}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}", b.len());
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut buf = [0u8; 256];
    let _ = stream.read(&mut buf).await.expect("first bytes");
    assert_eq!(sim.stats()["totals"]["in_flight"], 1);
    drop(stream);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(sim.stats()["totals"]["in_flight"], 0);

    let reset = http(&sim, "POST", "/_sim/stats/reset", &[], "").await;
    assert_eq!(reset.status, 200);
    assert_eq!(sim.stats()["totals"]["requests"], 0);
}

#[tokio::test]
async fn h2c_is_served() {
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let sim = demo_sim().await;
    let access = token(&sim, "1//h2").await;
    let pid = project(&sim, &access).await;
    let stream = TcpStream::connect(sim.addr).await.expect("connect");
    let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .expect("h2 handshake");
    tokio::spawn(conn);
    let body = envelope(&pid, "claude-sonnet-4-6", json!({"contents": [user("hi over h2")]}));
    let req = hyper::Request::post(format!("http://{}/v1internal:generateContent", sim.addr))
        .header("authorization", format!("Bearer {access}"))
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from(body.to_string())))
        .expect("request");
    let resp = send.send_request(req).await.expect("response");
    assert_eq!(resp.status(), 200);
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let v: Value = serde_json::from_slice(&bytes).expect("json");
    assert!(v["response"]["responseId"].as_str().unwrap_or("").starts_with("msg_vrtx_"));
}

#[test]
fn binary_prints_its_address_and_spawn_in_thread_works() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_levitate-sim"))
        .args(["--listen", "127.0.0.1:0", "--fault", "rate_limit:probability=0.5"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout");
    std::io::BufReader::new(stdout).read_line(&mut line).expect("line");
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.starts_with("levitate-sim listening on http://127.0.0.1:"), "{line}");

    let sim = levitate_sim::spawn_in_thread(SimConfig::default(), "127.0.0.1:0".parse().expect("addr"))
        .expect("spawn");
    assert_ne!(sim.addr.port(), 0);
    let mut s = std::net::TcpStream::connect(sim.addr).expect("connect");
    use std::io::{Read, Write};
    s.write_all(b"GET /_sim/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    sim.shutdown();
}
