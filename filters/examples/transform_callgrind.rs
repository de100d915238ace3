//! Instruction counts of the request transform, for callgrind: wall-clock criterion numbers drift with the
//! machine's load, instruction counts do not, so a change to the transform is compared on these.
//!
//! Runs the 100 KiB bench request ([`agent_request`]) through parse and build 20 times, each in a
//! non-inlined function that callgrind can collect alone:
//!
//! ```text
//! cargo build --release -p levitate-filters --example transform_callgrind
//! valgrind --tool=callgrind --toggle-collect='*parse_once*' target/release/examples/transform_callgrind cold
//! valgrind --tool=callgrind --toggle-collect='*build_once*' target/release/examples/transform_callgrind cold
//! valgrind --tool=callgrind --toggle-collect='*request_once*' target/release/examples/transform_callgrind warm
//! ```
//!
//! then divide the "Collected" total by 20. `cold` builds without a tool cache (the first request of a new
//! tool set), `warm` with one filled by a first request outside the collected functions. `request_once` is
//! the whole request, parse, build and freeing both. It runs on the system allocator, as the earlier counts
//! in docs/benchmarks.md did. It lives here rather than in `benches/` so that it builds without the proxy.

use std::hint::black_box;

// The criterion bench's request generator, the same file, so both measure the same request.
#[path = "../../benches/src/lib.rs"]
mod bench_request;

use bench_request::agent_request;
use levitate_filters::inner::{InnerRequest, Target, ToolCache};
use levitate_filters::protocol::openai_chat::{
    build_inner_request, build_inner_request_cached, parse_chat_request, ChatRequest,
};
use levitate_filters::signature::NoSignatures;

const RUNS: usize = 20;

const TARGET: Target = Target { upstream_model: "gemini-3-pro-high", session_id: "-3750763034362895579" };

#[inline(never)]
fn parse_once(buf: &mut [u8]) -> ChatRequest<'_> {
    parse_chat_request(buf).expect("valid request")
}

#[inline(never)]
fn build_once(req: &ChatRequest<'_>, cache: Option<&ToolCache>) -> InnerRequest {
    match cache {
        Some(cache) => build_inner_request_cached(req, &TARGET, &NoSignatures, cache),
        None => build_inner_request(req, &TARGET, &NoSignatures),
    }
    .expect("buildable request")
}

#[inline(never)]
fn request_once(body: &[u8], buf: &mut [u8], cache: Option<&ToolCache>) -> usize {
    buf.copy_from_slice(body);
    let req = parse_once(buf);
    let inner = build_once(&req, cache);
    inner.json.len()
}

fn main() {
    let warm = match std::env::args().nth(1).as_deref() {
        Some("cold") | None => false,
        Some("warm") => true,
        Some(other) => {
            eprintln!("usage: transform_callgrind [cold|warm] (got {other:?})");
            std::process::exit(2);
        }
    };
    let body = agent_request(100 * 1024);
    let mut buf = body.clone();
    let cache = ToolCache::new(64);
    let cache = warm.then_some(&cache);
    if let Some(cache) = cache {
        // Fills the cache outside the collected functions, so the 20 counted requests are all hits.
        buf.copy_from_slice(&body);
        let req = parse_chat_request(&mut buf).expect("valid request");
        black_box(build_inner_request_cached(&req, &TARGET, &NoSignatures, cache).expect("buildable"));
    }
    let mut bytes = 0;
    for _ in 0..RUNS {
        bytes += black_box(request_once(&body, &mut buf, cache));
    }
    println!("{RUNS} requests of {} bytes, {} bytes out each", body.len(), bytes / RUNS);
}
