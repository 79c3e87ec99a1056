//! `qwen-gateway`: runs the gateway. Pingora's own flags (`-c`, `-d`, `-u`, `-t`) keep working.

use std::collections::HashMap;

use clap::Parser;
use pingora::server::configuration::Opt;
use qwen_gateway::config::{parse_file, Settings};

#[derive(Parser, Debug)]
#[command(name = "qwen-gateway", version, about = "OpenAI-compatible gateway for the Qwen web chat, on Pingora")]
struct Cli {
    /// Serve from the built-in simulated upstream (no Qwen account needed).
    #[arg(long)]
    demo: bool,
    /// A settings file: KEY=VALUE lines, or a JSON object (config.json). Environment wins.
    #[arg(long, value_name = "PATH", env = "QWEN_GATEWAY_CONFIG")]
    env_file: Option<String>,
    #[command(flatten)]
    pingora: Opt,
}

fn main() {
    let cli = Cli::parse();
    let file = match &cli.env_file {
        None => HashMap::new(),
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => match parse_file(&text, path.ends_with(".json")) {
                Ok(m) => m,
                Err(e) => fail(&format!("{path}: {e}")),
            },
            Err(e) => fail(&format!("cannot read {path}: {e}")),
        },
    };
    let settings = match Settings::load(&file, &|k| std::env::var(k).ok()) {
        Ok(s) => s,
        Err(e) => fail(&format!("invalid configuration: {e}")),
    };
    let level = if settings.debug_mode {
        "debug".to_string()
    } else {
        settings.log_level.clone()
    };
    env_logger::Builder::new()
        .parse_filters(&level)
        .format_timestamp_millis()
        .init();
    let listen = settings.listen.clone();
    let (server, _gw) = match qwen_gateway::server::build(cli.pingora, settings, cli.demo) {
        Ok(s) => s,
        Err(e) => fail(&e),
    };
    log::info!("qwen-gateway {} listening on {listen}", env!("CARGO_PKG_VERSION"));
    server.run_forever();
}

fn fail(msg: &str) -> ! {
    eprintln!("qwen-gateway: {msg}");
    std::process::exit(2);
}
