//! `qwen-sim`: run the simulated Qwen upstream as a standalone Pingora server.

use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use clap::Parser;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use qwen_sim::{Sim, SimConfig};

#[derive(Parser, Debug)]
#[command(name = "qwen-sim", about = "Simulated Qwen web-chat upstream")]
struct Args {
    /// Address to listen on, e.g. 127.0.0.1:18090.
    #[arg(long, default_value = "127.0.0.1:18090")]
    listen: String,
    /// Account as email:password (repeatable). Default: the demo account.
    #[arg(long = "account", value_name = "EMAIL:PASSWORD")]
    accounts: Vec<String>,
    #[arg(long)]
    token_ttl_secs: Option<i64>,
    #[arg(long)]
    delta_delay_ms: Option<u64>,
    #[arg(long)]
    answer_deltas: Option<usize>,
    /// Worker threads for the service (1 or 2 is plenty).
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

fn config(args: &Args) -> Result<SimConfig, String> {
    let mut cfg = SimConfig::default();
    if !args.accounts.is_empty() {
        cfg.accounts = args
            .accounts
            .iter()
            .map(|a| {
                a.split_once(':')
                    .map(|(e, p)| (e.to_string(), p.to_string()))
                    .ok_or_else(|| format!("--account expects email:password, got {a:?}"))
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(v) = args.token_ttl_secs {
        cfg.token_ttl_secs = v;
    }
    if let Some(v) = args.delta_delay_ms {
        cfg.delta_delay_ms = v;
    }
    cfg.answer_deltas = args.answer_deltas;
    Ok(cfg)
}

/// Pingora binds inside `run_forever`, which never returns; readiness is therefore
/// announced from a side thread once the port accepts connections.
fn announce_when_ready(addr: String) {
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        let targets: Vec<_> = addr
            .to_socket_addrs()
            .map(|a| a.collect())
            .unwrap_or_default();
        while Instant::now() < deadline {
            if targets
                .iter()
                .any(|t| TcpStream::connect_timeout(t, Duration::from_millis(200)).is_ok())
            {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "qwen-sim listening on {addr}");
                let _ = out.flush();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("qwen-sim: {addr} did not become ready");
    });
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Args::parse();
    let cfg = match config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("qwen-sim: {e}");
            std::process::exit(2);
        }
    };
    let sim = Sim::new(cfg);
    let conf = ServerConf {
        threads: args.threads.clamp(1, 8),
        // Tests kill the process; nothing to wait for on shutdown.
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    server.add_service(sim.service(&args.listen));
    announce_when_ready(args.listen.clone());
    server.run_forever();
}
