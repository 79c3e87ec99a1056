//! The measured phases: saturation throughput, latency at half of saturation, held streams.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::client::{closed_loop, hold_streams, open_loop, Held, Stats, Target};
use crate::procs::{self, Proc};
use crate::report::{HoldRow, Report, Row, Usage};
use crate::{post_json, Fleet, Opts};

/// Per-request limit in the short phases; far above any healthy answer.
const LIMIT: Duration = Duration::from_secs(30);

pub const SIM: &str = "simulation direct";
pub const PT: &str = "pass-through";
pub const FLOOR: &str = "protocol floor";
pub const GW_S: &str = "gateway stream";
pub const GW_NS: &str = "gateway non-stream";
pub const GW_DEFAULT: &str = "gateway stream, default CHAT_CLEANUP=after_use";
pub const GW_ACCEPTED: &str = "gateway stream, STREAM_COMMIT=accepted";
pub const FLOOR_AT_S: &str = "protocol floor @stream rate";
pub const FLOOR_AT_NS: &str = "protocol floor @non-stream rate";

/// The upstream completion request, as the gateway itself sends it, on a chat of our own.
pub struct Captured {
    chat_id: String,
    body: Vec<u8>,
}

fn openai_body(stream: bool) -> Vec<u8> {
    json!({"model": "qwen3-max", "stream": stream,
           "messages": [{"role": "user", "content": "hi"}]})
    .to_string()
    .into_bytes()
}

/// Asks the gateway once and takes the completion body it sent upstream from the sim, so the
/// reference servers forward exactly what the gateway would. The gateway may delete its chat
/// after use, so the body is pointed at a chat created here, which lives for the whole run.
pub async fn capture(fleet: &Fleet, gw: &Proc) -> Result<Captured, String> {
    let url = format!("http://{}/v1/chat/completions", gw.addr());
    let reply = post_json(&url, &serde_json::from_slice(&openai_body(false)).unwrap()).await?;
    let content = reply["choices"][0]["message"]["content"].as_str();
    if !content.is_some_and(|c| c.starts_with("w0 ")) {
        return Err(format!("unexpected gateway answer: {reply}"));
    }
    let sim = fleet.sim.addr();
    let state: serde_json::Value = reqwest::get(format!("http://{sim}/__sim/state"))
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let mut body = state["last_completion"]["body"].clone();
    let new: serde_json::Value = reqwest::Client::new()
        .post(format!("http://{sim}/api/v2/chats/new"))
        .bearer_auth(&fleet.token)
        .json(
            &json!({"title": "New Chat", "models": ["qwen3-max"], "chat_mode": "normal",
                      "chat_type": "t2t", "timestamp": 0}),
        )
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let chat_id = new["data"]["id"]
        .as_str()
        .ok_or_else(|| format!("chats/new: {new}"))?
        .to_string();
    if !body.is_object() {
        return Err(format!("no completion body captured: {state}"));
    }
    body["chat_id"] = json!(chat_id);
    Ok(Captured {
        chat_id,
        body: serde_json::to_vec(&body).map_err(|e| e.to_string())?,
    })
}

fn upstream_target(label: &str, p: &Proc, c: &Captured, token: &str, deltas: usize) -> Target {
    let head = format!(
        "POST /api/v2/chat/completions?chat_id={} HTTP/1.1\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n",
        c.chat_id
    );
    Target::new(label, p.addr(), &head, &c.body, deltas).ending("\"status\":\"finished\"")
}

fn gateway_target(label: &str, p: &Proc, stream: bool, deltas: usize) -> Target {
    let head = "POST /v1/chat/completions HTTP/1.1\r\n";
    let end = if stream {
        "data: [DONE]"
    } else {
        "\"finish_reason\":\"stop\""
    };
    Target::new(label, p.addr(), head, &openai_body(stream), deltas).ending(end)
}

/// Runs `fut` while recording the CPU time of the server, the sim and this client, the
/// machine's load, and the server's peak RSS (sampled, so each phase gets its own peak).
async fn measured<F: Future<Output = Stats>>(server: u32, sim: u32, fut: F) -> (Stats, Usage) {
    let me = std::process::id();
    let ours = || {
        let sim_cpu = if sim == server {
            0.0
        } else {
            procs::cpu_secs(sim)
        };
        procs::cpu_secs(server) + sim_cpu + procs::cpu_secs(me)
    };
    let (s0, m0, c0, o0, j0) = (
        procs::cpu_secs(server),
        procs::cpu_secs(sim),
        procs::cpu_secs(me),
        ours(),
        procs::machine(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut peak = procs::rss_kib(server);
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(20)).await;
                peak = peak.max(procs::rss_kib(server));
            }
            peak
        })
    };
    let stats = fut.await;
    let (o1, j1) = (ours(), procs::machine());
    // Work a server defers (deleting chats) is part of what the requests cost.
    settle(server).await;
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.await.unwrap_or(0);
    let usage = Usage {
        server_cpu: procs::cpu_secs(server) - s0,
        sim_cpu: procs::cpu_secs(sim) - m0,
        client_cpu: procs::cpu_secs(me) - c0,
        busy: j1.busy - j0.busy,
        total: j1.total - j0.total,
        other_cpu: (j1.tasks - j0.tasks) - (o1 - o0),
        peak_rss_kib: peak,
    };
    (stats, usage)
}

fn row(label: &str, offered: Option<f64>) -> Row {
    Row {
        label: label.to_string(),
        offered,
        stats: Stats::default(),
        usage: Usage::default(),
        round_p99: Vec::new(),
    }
}

/// Waits (bounded) until a server stops using CPU, so background work it queued, such as
/// deleting chats, is not billed to the next target measured.
async fn settle(pid: u32) {
    let start = tokio::time::Instant::now();
    loop {
        let c0 = procs::cpu_secs(pid);
        tokio::time::sleep(Duration::from_millis(100)).await;
        // One clock tick (10 ms) of CPU in 100 ms is idle enough.
        let idle = procs::cpu_secs(pid) - c0 < 0.015;
        if idle || start.elapsed() > Duration::from_secs(30) {
            if start.elapsed() > Duration::from_secs(1) {
                eprintln!(
                    "load: pid {pid} kept working {:.1} s after its requests",
                    start.elapsed().as_secs_f64()
                );
            }
            return;
        }
    }
}

/// How the slices of one phase are run.
struct Slices {
    rounds: usize,
    slice: Duration,
    /// Connections for closed-loop targets.
    conc: usize,
    /// Attempts per slice: one run disturbed by other work on the machine is run again.
    tries: usize,
}

/// Another process using more than this share of the machine during a slice disturbs it.
const QUIET_PCT: f64 = 5.0;

async fn slice_once(
    t: &Arc<Target>,
    pid: u32,
    sim: u32,
    rate: Option<f64>,
    s: &Slices,
) -> (Stats, Usage) {
    match rate {
        None => measured(pid, sim, closed_loop(t.clone(), s.conc, s.slice, LIMIT)).await,
        Some(rate) => {
            // Enough connections for 150 ms of arrivals, far above the answer time.
            let workers = ((rate * 0.15) as usize).clamp(16, 2048);
            let run = open_loop(t.clone(), rate.max(1.0), s.slice, workers, LIMIT);
            measured(pid, sim, run).await
        }
    }
}

/// Runs each `(target index, label, rate)` of `plan` for one slice per round, rotating the
/// order each round; a rate of `None` is a closed loop. Returns the rows and how many slices
/// were run again because other processes disturbed them (the least disturbed attempt is kept;
/// failures of every attempt are kept).
async fn interleaved(
    plan: &[(usize, &str, Option<f64>)],
    targets: &[(Arc<Target>, u32)],
    sim: u32,
    s: &Slices,
) -> (Vec<Row>, usize) {
    let mut rows: Vec<Row> = plan.iter().map(|(_, l, r)| row(l, *r)).collect();
    let mut repeated = 0;
    for round in 0..s.rounds {
        for k in 0..plan.len() {
            let i = (k + round) % plan.len();
            let (ti, _, rate) = plan[i];
            let (t, pid) = &targets[ti];
            let (mut st, mut us) = slice_once(t, *pid, sim, rate, s).await;
            for _ in 1..s.tries {
                if us.other_pct() <= QUIET_PCT {
                    break;
                }
                repeated += 1;
                let (st2, us2) = slice_once(t, *pid, sim, rate, s).await;
                let (keep, drop) = if us2.other_pct() < us.other_pct() {
                    us = us2;
                    (st2, st)
                } else {
                    (st, st2)
                };
                st = keep;
                st.keep_failures(drop);
            }
            st.sort();
            rows[i].round_p99.push(
                [&st.ttfb, &st.ttft, &st.total].map(|v| crate::client::quantile(v, 0.99) / 1000.0),
            );
            rows[i].stats.merge(st);
            rows[i].usage.add(us);
        }
    }
    (rows, repeated)
}

fn rate_of(rows: &[Row], label: &str) -> f64 {
    rows.iter()
        .find(|r| r.label == label)
        .map_or(0.0, |r| r.stats.rate())
}

/// Phases 1 and 2 on one set of servers. Targets are interleaved in rounds (rotating the
/// order) so that drift on a shared machine spreads over all of them.
pub async fn throughput_and_latency(
    o: &Opts,
    fleet: &Fleet,
    rep: &mut Report,
) -> Result<Captured, String> {
    // Like for like with the floor, which creates chats and never deletes them; the default
    // (delete after use) runs as its own gateway so its extra cost is visible separately.
    let mut gw = fleet.gateway("gateway", &[("CHAT_CLEANUP", "off")])?;
    let mut gd = fleet.gateway("gateway-default", &[])?;
    // The 200 and a comment go out when the upstream accepts, as the floor forwards its header.
    let mut ga = fleet.gateway(
        "gateway-accepted",
        &[("CHAT_CLEANUP", "off"), ("STREAM_COMMIT", "accepted")],
    )?;
    let mut pt = fleet.reference("pass-through", false)?;
    let mut fl = fleet.reference("floor", true)?;
    let cap = capture(fleet, &gw).await?;
    let d = o.deltas;
    let targets: Vec<(Arc<Target>, u32)> = vec![
        (
            upstream_target(SIM, &fleet.sim, &cap, &fleet.token, d),
            fleet.sim.pid(),
        ),
        (upstream_target(PT, &pt, &cap, &fleet.token, d), pt.pid()),
        (upstream_target(FLOOR, &fl, &cap, &fleet.token, d), fl.pid()),
        (gateway_target(GW_S, &gw, true, d), gw.pid()),
        (gateway_target(GW_NS, &gw, false, d), gw.pid()),
        (gateway_target(GW_DEFAULT, &gd, true, d), gd.pid()),
        (gateway_target(GW_ACCEPTED, &ga, true, d), ga.pid()),
    ]
    .into_iter()
    .map(|(t, pid)| (Arc::new(t), pid))
    .collect();

    let warm = Duration::from_secs_f64(if o.quick { 0.3 } else { 1.5 });
    for (t, pid) in &targets {
        let st = closed_loop(t.clone(), o.concurrency, warm, LIMIT).await;
        if st.failed > 0 || st.ok == 0 {
            rep.warmup_failures
                .push(format!("{}: {} failed", t.label, st.failed.max(1)));
        }
        settle(*pid).await;
    }

    let slice = Duration::from_secs_f64(o.duration / o.rounds as f64);
    let sim = fleet.sim.pid();
    eprintln!(
        "load: throughput, {} targets x {} rounds",
        targets.len(),
        o.rounds
    );
    let plan: Vec<(usize, &str, Option<f64>)> = targets
        .iter()
        .enumerate()
        .map(|(i, (t, _))| (i, t.label.as_str(), None))
        .collect();
    let tries = if o.quick { 1 } else { 3 };
    let phase = Slices {
        rounds: o.rounds,
        slice,
        conc: o.concurrency,
        tries,
    };
    let (rows, n) = interleaved(&plan, &targets, sim, &phase).await;
    rep.throughput = rows;
    rep.repeated += n;

    // Phase 2. Per-delta pauses make every event a separate write and read, which costs CPU,
    // so saturation is measured again with them before loading to half of it.
    fleet.sim_config(o.latency_delay_ms, d).await?;
    eprintln!(
        "load: saturation and latency with {} ms per delta",
        o.latency_delay_ms
    );
    let plan = [(2, FLOOR, None), (3, GW_S, None), (4, GW_NS, None)];
    let one = Duration::from_secs_f64((o.duration / o.rounds as f64).min(4.0));
    // Three slices: half of a one-slice saturation swung from 50% to 85% of the machine.
    let sat = Slices {
        rounds: if o.quick { 1 } else { 3 },
        slice: one,
        conc: o.concurrency * 4,
        tries,
    };
    let (rows, n) = interleaved(&plan, &targets, sim, &sat).await;
    rep.saturation = rows;
    rep.repeated += n;
    let rate_s = rate_of(&rep.saturation, GW_S) * 0.5;
    let rate_ns = rate_of(&rep.saturation, GW_NS) * 0.5;
    let plan = [
        (0, SIM, Some(rate_s)),
        (1, PT, Some(rate_s)),
        (2, FLOOR_AT_S, Some(rate_s)),
        (3, GW_S, Some(rate_s)),
        (6, GW_ACCEPTED, Some(rate_s)),
        (2, FLOOR_AT_NS, Some(rate_ns)),
        (4, GW_NS, Some(rate_ns)),
    ];
    let lat = Slices {
        rounds: o.latency_rounds,
        conc: 0,
        ..phase
    };
    let (rows, n) = interleaved(&plan, &targets, sim, &lat).await;
    rep.latency = rows;
    rep.repeated += n;
    fleet.sim_config(0, d).await?;
    for p in [&mut gw, &mut gd, &mut ga, &mut pt, &mut fl] {
        p.check_alive()?;
    }
    Ok(cap)
}

/// Phase 3: fresh servers, many slow streams held open at once, RSS per open stream.
pub async fn concurrency(
    o: &Opts,
    fleet: &Fleet,
    cap: &Captured,
    rep: &mut Report,
) -> Result<(), String> {
    fleet.sim_config(0, o.deltas).await?;
    // Default settings: what a deployment holding many streams would run.
    let mut gw = fleet.gateway("gateway-hold", &[])?;
    let mut pt = fleet.reference("pass-through-hold", false)?;
    let k = o.hold_deltas;
    let servers = [
        (
            Arc::new(gateway_target("gateway", &gw, true, o.deltas)),
            gw.pid(),
        ),
        (
            Arc::new(upstream_target(
                "pass-through",
                &pt,
                cap,
                &fleet.token,
                o.deltas,
            )),
            pt.pid(),
        ),
    ];
    // A few ordinary requests first, so the idle baseline includes what any server allocates
    // on first use (runtime, pools, buffers) and the difference is what the streams hold.
    let mut idle = Vec::new();
    for (t, pid) in &servers {
        let st = closed_loop(t.clone(), 8, Duration::from_millis(300), LIMIT).await;
        if st.failed > 0 || st.ok == 0 {
            rep.warmup_failures.push(format!(
                "{} (hold warm-up): {} failed",
                t.label,
                st.failed.max(1)
            ));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        idle.push(procs::rss_kib(*pid));
    }
    fleet.sim_config(o.hold_delay_ms, k).await?;
    let stream_time = Duration::from_millis(o.hold_delay_ms * (k as u64 + 1));
    for ((t, pid), idle) in servers.iter().zip(idle) {
        eprintln!("load: holding {} streams through {}", o.streams, t.label);
        let held = Arc::new(Held::default());
        let t = Arc::new(t.with_deltas(k));
        let task = tokio::spawn(hold_streams(
            t.clone(),
            o.streams,
            256,
            stream_time + Duration::from_secs(120),
            held.clone(),
        ));
        let (mut peak_all, mut peak) = (0u64, 0u64);
        while !task.is_finished() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let rss = procs::rss_kib(*pid);
            peak = peak.max(rss);
            if held.open.load(Ordering::Relaxed) == o.streams {
                peak_all = peak_all.max(rss);
            }
        }
        let stats = task.await.map_err(|e| e.to_string())?;
        let max_open = held.max_open.load(Ordering::Relaxed);
        rep.hold.push(HoldRow {
            label: t.label.clone(),
            streams: o.streams,
            max_open,
            idle_kib: idle,
            // Without a moment with all open, the overall peak over the most open at once.
            peak_kib: if peak_all > 0 { peak_all } else { peak },
            stats,
        });
    }
    fleet.sim_config(0, o.deltas).await?;
    gw.check_alive()?;
    pt.check_alive()?;
    Ok(())
}
