//! OpenAI chat.completions -> v1internal request transform: parse + build of a realistic ~100 KiB
//! multi-turn agent request with tools (the budget is 200 µs per request).
//!
//! `cold` builds everything (the first request of an agent, or `build_inner_request`); `warm` finds the
//! encoded tools in a [`ToolCache`], as every later request of the same agent does in the proxy. The bench
//! runs on mimalloc, the `levitate` binary's allocator; `--no-default-features` measures the system one.

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use levitate_benches::agent_request;
use levitate_filters::inner::{wrap_envelope, Target, ToolCache};
use levitate_filters::protocol::openai_chat::{
    build_inner_request, build_inner_request_cached, parse_chat_request,
};
use levitate_filters::signature::NoSignatures;

fn transform(c: &mut Criterion) {
    let body = agent_request(100 * 1024);
    let target = Target { upstream_model: "gemini-3-pro-high", session_id: "-3750763034362895579" };
    let mut group = c.benchmark_group("transform_openai");
    group.throughput(Throughput::Bytes(body.len() as u64));
    // simd-json parses in place, so each iteration first restores the body into a reused buffer, as the
    // gateway's body buffer would be (a 100 KiB memcpy, a few µs, is included in the time).
    let mut buf = body.clone();
    group.bench_function("parse_and_build_100KiB/cold", |b| {
        b.iter(|| {
            buf.copy_from_slice(&body);
            let req = parse_chat_request(&mut buf).expect("valid request");
            build_inner_request(&req, &target, &NoSignatures).expect("buildable request")
        })
    });
    let cache = ToolCache::new(64);
    group.bench_function("parse_and_build_100KiB/warm", |b| {
        b.iter(|| {
            buf.copy_from_slice(&body);
            let req = parse_chat_request(&mut buf).expect("valid request");
            build_inner_request_cached(&req, &target, &NoSignatures, &cache).expect("buildable request")
        })
    });
    group.bench_function("parse_100KiB", |b| {
        b.iter(|| {
            buf.copy_from_slice(&body);
            // The request borrows from `buf`, so it is dropped here, inside the timed loop, as before.
            black_box(parse_chat_request(&mut buf).expect("valid request"));
        })
    });
    let mut parsed = body.clone();
    let req = parse_chat_request(&mut parsed).expect("valid request");
    group.bench_function("build_100KiB/cold", |b| {
        b.iter(|| build_inner_request(&req, &target, &NoSignatures).expect("buildable request"))
    });
    group.bench_function("build_100KiB/warm", |b| {
        b.iter(|| {
            build_inner_request_cached(&req, &target, &NoSignatures, &cache).expect("buildable request")
        })
    });
    let inner = build_inner_request(&req, &target, &NoSignatures).expect("buildable request");
    group.bench_function("wrap_envelope_100KiB", |b| {
        let mut out = Vec::with_capacity(inner.json.len() + 256);
        b.iter(|| {
            out.clear();
            wrap_envelope(&inner, "rising-fact-p41fc", "gemini-3-pro-high", "agent-0000", &mut out);
            out.len()
        })
    });
    group.finish();
}

criterion_group!(benches, transform);
criterion_main!(benches);
