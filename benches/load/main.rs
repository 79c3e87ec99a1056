//! Load and concurrency benchmark: the gateway against a plain Pingora pass-through and the
//! protocol floor, all in front of the same simulated upstream, in one run, over loopback.
//!
//! `cargo bench --bench load -- [--quick] [--duration SECS] [--concurrency N] [--streams N]`
//!
//! Exits non-zero only if a request failed or a server died; timings never fail the run,
//! because these shared 2-core machines are too noisy for timing assertions.

mod client;
mod phases;
mod procs;
mod refserver;
mod report;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use procs::{free_port, Proc};

/// What the run measures; the defaults are the full run, `--quick` the CI smoke test.
#[derive(Debug, Clone)]
pub struct Opts {
    pub quick: bool,
    /// Seconds of measurement per target and phase, split over `rounds`.
    pub duration: f64,
    pub rounds: usize,
    /// Rounds of the latency phase (each target one slice per round): tail latencies need
    /// more rounds than throughput to be told apart from the machine's noise.
    pub latency_rounds: usize,
    pub concurrency: usize,
    pub streams: usize,
    pub deltas: usize,
    pub latency_delay_ms: u64,
    pub hold_delay_ms: u64,
    pub hold_deltas: usize,
    /// Only the concurrency phase (for investigating memory per stream).
    pub hold_only: bool,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Opts, String> {
        let quick = args.iter().any(|a| a == "--quick");
        let mut o = Opts {
            quick,
            duration: if quick { 0.5 } else { 12.0 },
            rounds: if quick { 1 } else { 5 },
            latency_rounds: if quick { 1 } else { 11 },
            concurrency: if quick { 16 } else { 64 },
            streams: if quick { 200 } else { 8000 },
            deltas: 12,
            latency_delay_ms: 2,
            hold_delay_ms: if quick { 300 } else { 1000 },
            hold_deltas: if quick { 5 } else { 20 },
            hold_only: false,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut val = |name: &str| {
                it.next()
                    .ok_or_else(|| format!("{name} needs a value"))
                    .cloned()
            };
            let num = |name: &str, v: String| -> Result<f64, String> {
                v.parse::<f64>()
                    .ok()
                    .filter(|x| *x >= 0.0)
                    .ok_or_else(|| format!("{name}: {v:?} is not a number"))
            };
            match a.as_str() {
                "--quick" | "--bench" => {}
                "--hold-only" => o.hold_only = true,
                "--duration" => o.duration = num(a, val(a)?)?.max(0.2),
                "--rounds" => o.rounds = (num(a, val(a)?)? as usize).max(1),
                "--latency-rounds" => o.latency_rounds = (num(a, val(a)?)? as usize).max(1),
                "--concurrency" => o.concurrency = (num(a, val(a)?)? as usize).max(1),
                "--streams" => o.streams = num(a, val(a)?)? as usize,
                "--deltas" => o.deltas = (num(a, val(a)?)? as usize).max(1),
                "--latency-delay-ms" => o.latency_delay_ms = num(a, val(a)?)? as u64,
                "--hold-delay-ms" => o.hold_delay_ms = num(a, val(a)?)? as u64,
                "--hold-deltas" => o.hold_deltas = (num(a, val(a)?)? as usize).max(1),
                other if other.starts_with("--") => return Err(format!("unknown flag {other}")),
                // cargo bench may pass a name filter; there is only one benchmark here.
                _ => {}
            }
        }
        Ok(o)
    }
}

/// The simulated upstream, the gateway and the two reference servers.
pub struct Fleet {
    pub sim: Proc,
    pub token: String,
    pub logs: PathBuf,
}

/// The gateway binary cargo built beside this benchmark; `QWEN_LOAD_GATEWAY_BIN` points at
/// another build instead (to compare two builds, or to bench while the tree does not compile).
fn gateway_bin() -> std::ffi::OsString {
    std::env::var_os("QWEN_LOAD_GATEWAY_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_qwen-gateway").into())
}

impl Fleet {
    fn start(o: &Opts, logs: PathBuf) -> Result<Fleet, String> {
        let port = free_port();
        let mut cmd = Command::new(gateway_bin());
        cmd.args(["--sim-only", "--sim-listen", &format!("127.0.0.1:{port}")])
            .args(["--sim-answer-deltas", &o.deltas.to_string()])
            .args(["--sim-delta-delay-ms", "0"])
            .env("LOG_LEVEL", "error");
        let sim = Proc::start("sim", cmd, port, &logs)?;
        Ok(Fleet {
            sim,
            token: String::new(),
            logs,
        })
    }

    fn sim_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.sim.addr())
    }

    /// A gateway in front of the sim; `env` adds or overrides settings.
    pub fn gateway(&self, name: &str, env: &[(&str, &str)]) -> Result<Proc, String> {
        let port = free_port();
        let mut cmd = Command::new(gateway_bin());
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("QWEN_BASE_URL", format!("http://{}", self.sim.addr()))
            .env("QWEN_TOKEN", &self.token)
            .env("SERVER_PORT", port.to_string())
            .env("LISTEN_ADDRESS", "127.0.0.1")
            .env("THREADS", "2")
            .env("LOG_LEVEL", "warn")
            .envs(env.iter().copied());
        Proc::start(name, cmd, port, &self.logs)
    }

    pub fn reference(&self, name: &str, floor: bool) -> Result<Proc, String> {
        let port = free_port();
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(exe);
        cmd.arg(if floor {
            "--serve-floor"
        } else {
            "--serve-passthrough"
        })
        .arg(port.to_string())
        .arg(self.sim.addr().to_string());
        Proc::start(name, cmd, port, &self.logs)
    }

    /// Changes the simulated answer for every later request.
    pub async fn sim_config(&self, delay_ms: u64, deltas: usize) -> Result<(), String> {
        let body = serde_json::json!({"delta_delay_ms": delay_ms, "answer_deltas": deltas});
        post_json(&self.sim_url("/__sim/config"), &body).await?;
        Ok(())
    }
}

pub async fn post_json(url: &str, body: &serde_json::Value) -> Result<serde_json::Value, String> {
    let r = reqwest::Client::new()
        .post(url)
        .json(body)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = r.status();
    let v: serde_json::Value = r.json().await.map_err(|e| format!("{url}: {e}"))?;
    if !status.is_success() {
        return Err(format!("{url}: {status} {v}"));
    }
    Ok(v)
}

async fn run(o: Opts) -> Result<bool, String> {
    let (soft, hard) = procs::nofile();
    eprintln!(
        "load: open-file limit {soft}/{hard}; load average before the run: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let logs = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("load-logs");
    std::fs::create_dir_all(&logs).map_err(|e| e.to_string())?;
    let mut fleet = Fleet::start(&o, logs)?;
    let minted = post_json(
        &fleet.sim_url("/__sim/mint"),
        &serde_json::json!({"email": "demo@example.com", "ttl_secs": 24 * 3600}),
    )
    .await?;
    fleet.token = minted["token"]
        .as_str()
        .ok_or("mint returned no token")?
        .to_string();

    let mut rep = report::Report::new(&o);
    let cap = if o.hold_only {
        let gw = fleet.gateway("gateway-capture", &[])?;
        phases::capture(&fleet, &gw).await?
    } else {
        phases::throughput_and_latency(&o, &fleet, &mut rep).await?
    };
    if o.streams > 0 {
        phases::concurrency(&o, &fleet, &cap, &mut rep).await?;
    }
    fleet.sim.check_alive()?;
    println!("{}", rep.render());
    eprintln!("server logs: {}", fleet.logs.display());
    let ok = rep.failed() == 0;
    Ok(ok)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args
        .iter()
        .position(|a| a == "--serve-passthrough" || a == "--serve-floor")
    {
        let (port, up) = match (args.get(i + 1), args.get(i + 2)) {
            (Some(p), Some(u)) => (p, u),
            _ => {
                eprintln!("{} PORT UPSTREAM", args[i]);
                std::process::exit(2);
            }
        };
        refserver::serve(port, up, args[i] == "--serve-floor");
    }
    let o = match Opts::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("load: {e}");
            std::process::exit(2);
        }
    };
    procs::raise_nofile();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    // One client thread: the client competes for the same 2 cores as the servers, so it must
    // stay small, and it is the same for every target.
    match rt.block_on(run(o)) {
        Ok(true) => {}
        Ok(false) => {
            eprintln!("load: some requests FAILED (see the tables above)");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("load: {e}");
            std::process::exit(1);
        }
    }
}
