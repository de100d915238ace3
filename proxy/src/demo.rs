//! `levitate demo`: the gateway in front of the built-in upstream simulator, on loopback, with four
//! simulated accounts of mixed tiers. Nothing leaves the machine and no Google account is needed.
//!
//! The simulator runs in-process on its own thread and runtime; the gateway then starts from a generated
//! configuration folder exactly as `levitate serve` would, so the demo exercises the real code paths
//! (OAuth refresh, project discovery, streaming) against a faithful stand-in.

use std::net::SocketAddr;
use std::path::PathBuf;

const DEMO_MAIN: &str = include_str!("../../conf/demo.yaml");
const DEMO_ACCOUNTS: &str = include_str!("../../conf/demo-accounts.yaml");
const ROUTES: &str = include_str!("../../conf/routes.yaml");

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot start the simulator: {0}")]
    Simulator(std::io::Error),
    #[error("cannot write the demo configuration in {path}: {source}")]
    Write { path: String, source: std::io::Error },
}

/// Starts the simulator and writes the demo configuration; returns the path of its levitate.yaml.
pub fn prepare(listen: SocketAddr, admin: SocketAddr) -> Result<PathBuf, DemoError> {
    let sim_listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
    let sim = levitate_sim::spawn_in_thread(levitate_sim::SimConfig::default(), sim_listen)
        .map_err(DemoError::Simulator)?;
    let sim_addr = sim.addr;
    // The simulator lives as long as the process.
    std::mem::forget(sim);

    let folder = std::env::temp_dir().join(format!("levitate-demo-{}", std::process::id()));
    let write = |name: &str, text: &str| {
        std::fs::create_dir_all(&folder)
            .and_then(|_| std::fs::write(folder.join(name), text))
            .map_err(|source| DemoError::Write { path: folder.display().to_string(), source })
    };
    let main = DEMO_MAIN
        .replace("{SIM}", &sim_addr.to_string())
        .replace("{LISTEN}", &listen.to_string())
        .replace("{ADMIN}", &admin.to_string());
    write("levitate.yaml", &main)?;
    write("accounts.yaml", DEMO_ACCOUNTS)?;
    write("routes.yaml", ROUTES)?;

    println!("Levitate demo: gateway on http://{listen} in front of the simulator on http://{sim_addr}");
    println!("Configuration: {}", folder.display());
    println!();
    println!("Try it with curl:");
    println!(
        "  curl -s http://{listen}/v1/chat/completions -H 'Authorization: Bearer demo-key' -H 'Content-Type: application/json' \\\n    -d '{{\"model\":\"gpt-4o\",\"messages\":[{{\"role\":\"user\",\"content\":\"Hello, Levitate\"}}]}}'"
    );
    println!();
    println!("Or with the OpenAI SDK (pip install openai):");
    println!("  python3 - <<'PY'");
    println!("from openai import OpenAI");
    println!("client = OpenAI(base_url=\"http://{listen}/v1\", api_key=\"demo-key\")");
    println!("reply = client.chat.completions.create(model=\"gpt-4o\", messages=[{{\"role\": \"user\", \"content\": \"Hello, Levitate\"}}])");
    println!("print(reply.choices[0].message.content)");
    println!("PY");
    println!();
    println!("Metrics: curl -s http://{admin}/metrics    Stop: Ctrl-C");
    println!();
    Ok(folder.join("levitate.yaml"))
}
