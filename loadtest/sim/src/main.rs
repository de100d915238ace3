//! `levitate-sim` binary: runs the simulator on a socket for k6, the demo and manual poking. Prints one
//! `levitate-sim listening on http://ADDR` line once bound (tests wait for it) and exits on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use levitate_sim::{FaultRule, SimConfig};
use serde_json::{Map, Value};

#[derive(Debug, Parser)]
#[command(name = "levitate-sim", about = "Stand-in for Google's Cloud Code v1internal API")]
struct Cli {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8788")]
    listen: SocketAddr,
    /// Scenario YAML (see loadtest/sim/README.md).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Extra fault rule, repeatable: KIND[:key=value,...], e.g. `rate_limit:probability=0.3,delay_ms=500`.
    #[arg(long = "fault", value_name = "SPEC")]
    faults: Vec<String>,
    /// Latency before every content response head, ms.
    #[arg(long)]
    first_byte_ms: Option<u64>,
    /// Latency between stream chunks, ms.
    #[arg(long)]
    inter_chunk_ms: Option<u64>,
    /// Lifetime of issued access tokens, seconds.
    #[arg(long)]
    token_expires_in: Option<u64>,
}

/// Parses `KIND[:key=value,...]` into a rule via the same serde schema the YAML uses.
fn parse_fault(spec: &str) -> Result<FaultRule, String> {
    let (kind, params) = spec.split_once(':').unwrap_or((spec, ""));
    let mut obj = Map::new();
    obj.insert("kind".into(), Value::String(kind.trim().into()));
    for kv in params.split(',').filter(|s| !s.trim().is_empty()) {
        let (k, v) =
            kv.split_once('=').ok_or_else(|| format!("fault {spec:?}: expected key=value, got {kv:?}"))?;
        let value =
            serde_json::from_str::<Value>(v.trim()).unwrap_or_else(|_| Value::String(v.trim().into()));
        obj.insert(k.trim().into(), value);
    }
    let rule: FaultRule =
        serde_json::from_value(Value::Object(obj)).map_err(|e| format!("fault {spec:?}: {e}"))?;
    rule.validate()?;
    Ok(rule)
}

fn config(cli: &Cli) -> Result<SimConfig, String> {
    let mut config = match &cli.config {
        Some(path) => SimConfig::from_file(path).map_err(|e| e.to_string())?,
        None => SimConfig::default(),
    };
    for spec in &cli.faults {
        config.faults.push(parse_fault(spec)?);
    }
    if let Some(ms) = cli.first_byte_ms {
        config.latency.first_byte_ms = ms;
    }
    if let Some(ms) = cli.inter_chunk_ms {
        config.latency.inter_chunk_ms = ms;
    }
    if let Some(s) = cli.token_expires_in {
        config.token_expires_in = s;
    }
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = match config(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("levitate-sim: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let sim = match levitate_sim::start(config, cli.listen).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("levitate-sim: cannot listen on {}: {e}", cli.listen);
            return std::process::ExitCode::from(1);
        }
    };
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "levitate-sim listening on http://{}", sim.addr);
        let _ = out.flush();
    }
    terminated().await;
    sim.shutdown();
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use levitate_sim::FaultKind;

    #[test]
    fn fault_specs() {
        let r =
            parse_fault("rate_limit:probability=0.3,delay_ms=500,account=a@x,model=gemini-3*").expect("ok");
        assert_eq!(r.kind, FaultKind::RateLimit);
        assert_eq!(r.probability, 0.3);
        assert_eq!(r.account.as_deref(), Some("a@x"));
        assert_eq!(r.model.as_deref(), Some("gemini-3*"));
        assert_eq!(parse_fault("stream_cut:after_chunks=2,abort=true").map(|r| r.abort), Ok(true));
        assert!(parse_fault("nope").is_err());
        assert!(parse_fault("capacity:probability=3").is_err());
    }
}
