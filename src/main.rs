//! `qwen-gateway`: runs the gateway. Pingora's own flags (`-c`, `-d`, `-u`, `-t`) keep working.

use std::collections::HashMap;

use clap::Parser;
use pingora::server::configuration::Opt;
use qwen_gateway::config::{parse_file, Settings};

#[derive(Parser, Debug)]
#[command(
    name = "qwen-gateway",
    version,
    about = "OpenAI-compatible gateway for the Qwen web chat, on Pingora"
)]
struct Cli {
    /// Serve from the built-in simulated upstream (no Qwen account needed).
    #[arg(long)]
    demo: bool,
    /// A settings file: KEY=VALUE lines, or a JSON object (config.json). Environment wins.
    #[arg(long, value_name = "PATH", env = "QWEN_GATEWAY_CONFIG")]
    env_file: Option<String>,
    /// Probe each configured identity against the upstream, step by step, and exit
    /// (status 1 when any step fails).
    #[arg(long)]
    probe: bool,
    /// Run only the simulated upstream (for tests and benchmarks), on --sim-listen.
    #[arg(long)]
    sim_only: bool,
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8001")]
    sim_listen: String,
    /// A simulated account, EMAIL:PASSWORD (repeatable; default: one demo account).
    #[arg(long, value_name = "EMAIL:PASSWORD")]
    sim_account: Vec<String>,
    #[arg(long, value_name = "MS", default_value_t = 0)]
    sim_delta_delay_ms: u64,
    #[arg(long, value_name = "N")]
    sim_answer_deltas: Option<usize>,
    #[command(flatten)]
    pingora: Opt,
}

fn main() {
    let cli = Cli::parse();
    if cli.sim_only {
        run_sim(cli);
    }
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
    let mut settings = match Settings::load(&file, &|k| std::env::var(k).ok()) {
        Ok(s) => s,
        Err(e) => fail(&format!("invalid configuration: {e}")),
    };
    // A token that came from the settings file is written back there when refreshed.
    if file.contains_key("QWEN_TOKEN") && std::env::var_os("QWEN_TOKEN").is_none() {
        settings.token_file = cli.env_file.as_ref().map(std::path::PathBuf::from);
    }
    if let Err(e) = qwen_gateway::logging::init(&settings) {
        fail(&format!("cannot open the log file: {e}"));
    }
    if cli.probe {
        run_probe(settings);
    }
    let listen = settings.listen.clone();
    let (server, gw) = match qwen_gateway::server::build(cli.pingora, settings, cli.demo) {
        Ok(s) => s,
        Err(e) => fail(&e),
    };
    log::info!(
        "qwen-gateway {} listening on {listen}",
        env!("CARGO_PKG_VERSION")
    );
    server.run(pingora::server::RunArgs::default());
    qwen_gateway::store::save_at_exit(&gw);
    std::process::exit(0);
}

fn run_probe(settings: qwen_gateway::config::Settings) -> ! {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("cannot start a runtime: {e}")));
    let gw = qwen_gateway::gateway::Gateway::new(settings).unwrap_or_else(|e| fail(&e));
    let (ok, steps) = rt.block_on(qwen_gateway::probe::run(&gw));
    for s in &steps {
        match &s.result {
            Ok(note) => println!("{:<28} {:<18} ok      {note}", s.identity, s.step),
            Err(why) => println!("{:<28} {:<18} FAILED  {why}", s.identity, s.step),
        }
    }
    println!(
        "{}",
        if ok {
            "probe: all steps passed"
        } else {
            "probe: some steps FAILED"
        }
    );
    std::process::exit(if ok { 0 } else { 1 });
}

#[cfg(feature = "demo")]
fn run_sim(cli: Cli) -> ! {
    env_logger::Builder::new()
        .parse_filters(&std::env::var("LOG_LEVEL").unwrap_or_else(|_| "warn".into()))
        .init();
    let mut cfg = qwen_sim::SimConfig {
        delta_delay_ms: cli.sim_delta_delay_ms,
        answer_deltas: cli.sim_answer_deltas,
        ..Default::default()
    };
    if !cli.sim_account.is_empty() {
        cfg.accounts = cli
            .sim_account
            .iter()
            .map(|a| match a.split_once(':') {
                Some((e, p)) => (e.to_string(), p.to_string()),
                None => fail(&format!("--sim-account {a:?} must be EMAIL:PASSWORD")),
            })
            .collect();
    }
    let sim = qwen_sim::Sim::new(cfg);
    // A test double: it should stop at once on SIGTERM, not wait out a grace period.
    let conf = pingora::server::configuration::ServerConf {
        threads: 2,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..Default::default()
    };
    let mut server = pingora::server::Server::new_with_opt_and_conf(Some(cli.pingora), conf);
    server.bootstrap();
    server.add_service(sim.service(&cli.sim_listen));
    println!("qwen-sim listening on {}", cli.sim_listen);
    use std::io::Write;
    let _ = std::io::stdout().flush();
    server.run_forever();
}

#[cfg(not(feature = "demo"))]
fn run_sim(_: Cli) -> ! {
    fail("this build has no simulated upstream (built without the `demo` feature)")
}

fn fail(msg: &str) -> ! {
    eprintln!("qwen-gateway: {msg}");
    std::process::exit(2);
}
