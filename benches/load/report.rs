//! The Markdown the run prints: tables, ratios and each target's verdict.

use std::fmt::Write;

use crate::client::{quantile, Stats};
use crate::phases::{FLOOR, FLOOR_AT_NS, FLOOR_AT_S, GW_ACCEPTED, GW_DEFAULT, GW_NS, GW_S, PT};
use crate::Opts;

/// Resources a server used during one measurement (summed over rounds).
#[derive(Debug, Default, Clone, Copy)]
pub struct Usage {
    pub server_cpu: f64,
    pub sim_cpu: f64,
    pub client_cpu: f64,
    /// Machine-wide busy and total CPU seconds (all cores) while the requests ran.
    pub busy: f64,
    pub total: f64,
    /// CPU seconds processes outside the benchmark used meanwhile: interference from other
    /// work on a shared machine, which explains outliers.
    pub other_cpu: f64,
    pub peak_rss_kib: u64,
}

impl Usage {
    pub fn add(&mut self, o: Usage) {
        self.server_cpu += o.server_cpu;
        self.sim_cpu += o.sim_cpu;
        self.client_cpu += o.client_cpu;
        self.busy += o.busy;
        self.total += o.total;
        self.other_cpu += o.other_cpu;
        self.peak_rss_kib = self.peak_rss_kib.max(o.peak_rss_kib);
    }

    pub fn busy_pct(&self) -> f64 {
        self.busy / self.total.max(1e-9) * 100.0
    }

    pub fn other_pct(&self) -> f64 {
        self.other_cpu.max(0.0) / self.total.max(1e-9) * 100.0
    }
}

pub struct Row {
    pub label: String,
    pub offered: Option<f64>,
    pub stats: Stats,
    pub usage: Usage,
    /// Each round's p99 (TTFB, TTFT, total), in milliseconds.
    pub round_p99: Vec<[f64; 3]>,
}

impl Row {
    /// Milliseconds; the samples were sorted before rendering.
    fn q(&self, which: &str, q: f64) -> f64 {
        let v = match which {
            "ttfb" => &self.stats.ttfb,
            "ttft" => &self.stats.ttft,
            _ => &self.stats.total,
        };
        quantile(v, q) / 1000.0
    }

    /// The median of the rounds' p99s: other work on a shared machine comes in bursts that
    /// hit one round, and a pooled p99 would report the burst rather than the server.
    fn p99(&self, which: &str) -> f64 {
        if self.round_p99.len() < 3 {
            return self.q(which, 0.99);
        }
        let i = ["ttfb", "ttft", "total"]
            .iter()
            .position(|w| *w == which)
            .unwrap_or(2);
        let mut v: Vec<f64> = self.round_p99.iter().map(|r| r[i]).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }

    /// This row's p99 minus `base`'s, round by round (the two ran minutes apart at most, in
    /// the same round): the median over the rounds and the rounds' range.
    fn paired_p99(&self, base: &Row, which: &str) -> Option<Paired> {
        let i = ["ttfb", "ttft", "total"].iter().position(|w| *w == which)?;
        let mut d: Vec<f64> = self
            .round_p99
            .iter()
            .zip(&base.round_p99)
            .map(|(a, b)| a[i] - b[i])
            .collect();
        if d.len() < 3 {
            return None;
        }
        d.sort_by(f64::total_cmp);
        let (lo, hi, coverage) = median_interval(&d);
        Some(Paired {
            median: d[d.len() / 2],
            min: d[0],
            max: d[d.len() - 1],
            lo,
            hi,
            coverage,
        })
    }

    fn per_1k(&self, cpu: f64) -> f64 {
        cpu * 1000.0 / (self.stats.ok.max(1) as f64)
    }
}

pub struct HoldRow {
    pub label: String,
    pub streams: usize,
    pub max_open: usize,
    pub idle_kib: u64,
    pub peak_kib: u64,
    pub stats: Stats,
}

impl HoldRow {
    pub fn per_stream_kib(&self) -> f64 {
        self.peak_kib.saturating_sub(self.idle_kib) as f64 / self.max_open.max(1) as f64
    }
}

pub struct Report {
    opts: Opts,
    pub throughput: Vec<Row>,
    /// Closed-loop saturation with the latency phase's per-delta pause.
    pub saturation: Vec<Row>,
    pub latency: Vec<Row>,
    pub hold: Vec<HoldRow>,
    pub warmup_failures: Vec<String>,
    /// Slices run again because other processes disturbed them.
    pub repeated: usize,
}

/// A paired difference over the rounds, with an interval for its median.
struct Paired {
    median: f64,
    min: f64,
    max: f64,
    lo: f64,
    hi: f64,
    coverage: f64,
}

impl Paired {
    fn render(&self) -> String {
        format!(
            "{:+.2} ms (rounds {:+.2} to {:+.2}; {:.0}% interval {:+.2} to {:+.2})",
            self.median,
            self.min,
            self.max,
            self.coverage * 100.0,
            self.lo,
            self.hi
        )
    }

    /// Against a limit: met only when the whole interval is below it, missed only when the
    /// whole interval is above it; in between, the run cannot tell.
    fn verdict(&self, limit: f64) -> &'static str {
        if self.hi < limit {
            "met"
        } else if self.lo >= limit {
            "**not met**"
        } else {
            "within this run's noise"
        }
    }
}

/// The distribution-free interval for a median: order statistics k and n+1-k of the sorted
/// values, with k the largest index that keeps the coverage at 90% or more (for 11 rounds:
/// the 3rd and 9th values, 93.5%). Nothing is assumed about how the rounds' p99s spread.
fn median_interval(sorted: &[f64]) -> (f64, f64, f64) {
    let n = sorted.len();
    // P(Binomial(n, 1/2) <= j), summed term by term.
    let tail = |j: usize| -> f64 {
        let mut c = 1.0f64;
        let mut sum = 0.0;
        for i in 0..=j {
            if i > 0 {
                c = c * (n + 1 - i) as f64 / i as f64;
            }
            sum += c;
        }
        sum / 2f64.powi(n as i32)
    };
    let mut k = 1;
    while k < n.div_ceil(2) && 1.0 - 2.0 * tail(k) >= 0.90 {
        k += 1;
    }
    let coverage = 1.0 - 2.0 * tail(k - 1);
    (sorted[k - 1], sorted[n - k], coverage)
}

fn ms(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else {
        format!("{x:.2}")
    }
}

fn failures(s: &Stats) -> String {
    if s.failed == 0 {
        return "0".into();
    }
    let kinds: Vec<String> = s.failures.iter().map(|(k, v)| format!("{v} {k}")).collect();
    format!("**{}** ({})", s.failed, kinds.join(", "))
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**not met**"
    }
}

impl Report {
    pub fn new(o: &Opts) -> Report {
        Report {
            opts: o.clone(),
            throughput: Vec::new(),
            saturation: Vec::new(),
            latency: Vec::new(),
            hold: Vec::new(),
            warmup_failures: Vec::new(),
            repeated: 0,
        }
    }

    pub fn failed(&self) -> u64 {
        let rows = self.throughput.iter().chain(&self.saturation);
        let rows = rows.chain(&self.latency);
        rows.map(|r| r.stats.failed).sum::<u64>()
            + self.hold.iter().map(|h| h.stats.failed).sum::<u64>()
            + self.warmup_failures.len() as u64
    }

    fn find<'a>(rows: &'a [Row], label: &str) -> Option<&'a Row> {
        rows.iter().find(|r| r.label == label)
    }

    pub fn render(&mut self) -> String {
        let rows = self.throughput.iter_mut().chain(&mut self.saturation);
        for r in rows.chain(&mut self.latency) {
            r.stats.sort();
        }
        let o = &self.opts;
        let mut s = String::new();
        if self.throughput.is_empty() {
            self.hold_table(&mut s);
            let _ = writeln!(s, "\nFailed requests: {}", self.failed());
            return s;
        }
        let _ = writeln!(
            s,
            "\n### Throughput (closed loop, {} connections, {} answer deltas, 0 ms per delta, {} s per target in {} rounds)\n",
            o.concurrency, o.deltas, o.duration, o.rounds
        );
        s.push_str("| target | req/s | TTFB p50 ms | TTFB p99 ms | total p50 ms | total p99 ms | server CPU s/1k req | sim CPU s/1k req | client CPU s/1k req | peak RSS MiB | other load | ok | failed |\n");
        s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
        for r in &self.throughput {
            let _ = writeln!(
                s,
                "| {} | {:.0} | {} | {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.1} | {:.0}% | {} | {} |",
                r.label,
                r.stats.rate(),
                ms(r.q("ttfb", 0.5)),
                ms(r.p99("ttfb")),
                ms(r.q("total", 0.5)),
                ms(r.p99("total")),
                r.per_1k(r.usage.server_cpu),
                r.per_1k(r.usage.sim_cpu),
                r.per_1k(r.usage.client_cpu),
                r.usage.peak_rss_kib as f64 / 1024.0,
                r.usage.other_pct(),
                r.stats.ok,
                failures(&r.stats)
            );
        }
        s.push_str("\np99: the median of the rounds' p99s (with 3 or more rounds). Other load: CPU time that processes outside the benchmark used meanwhile, as a share of the machine; a slice with more than 5% is run again (up to 3 times, the least disturbed kept).\n");
        self.ratios(&mut s);
        self.saturation_table(&mut s);
        self.latency_table(&mut s);
        self.hold_table(&mut s);
        if !self.warmup_failures.is_empty() {
            let _ = writeln!(s, "\nWarm-up failures: {}", self.warmup_failures.join("; "));
        }
        let _ = writeln!(
            s,
            "\nSlices run again because of other load: {}. Failed requests in the whole run: {}",
            self.repeated,
            self.failed()
        );
        s
    }

    fn ratios(&self, s: &mut String) {
        let get = |l: &str| {
            Self::find(&self.throughput, l).map(|r| (r.stats.rate(), r.per_1k(r.usage.server_cpu)))
        };
        let (Some(pt), Some(fl), Some(gs), Some(gn)) = (get(PT), get(FLOOR), get(GW_S), get(GW_NS))
        else {
            return;
        };
        let gd = get(GW_DEFAULT).unwrap_or((f64::NAN, f64::NAN));
        let ga = get(GW_ACCEPTED).unwrap_or((f64::NAN, f64::NAN));
        s.push_str("\n| ratio | throughput | server CPU per request |\n|---|---:|---:|\n");
        for (name, a, b) in [
            ("gateway stream / protocol floor", gs, fl),
            ("gateway non-stream / protocol floor", gn, fl),
            ("gateway stream / pass-through", gs, pt),
            ("gateway non-stream / pass-through", gn, pt),
            ("protocol floor / pass-through", fl, pt),
            ("gateway stream with chat deletion / protocol floor", gd, fl),
            (
                "gateway stream, STREAM_COMMIT=accepted / protocol floor",
                ga,
                fl,
            ),
        ] {
            let _ = writeln!(s, "| {name} | {:.2}x | {:.2}x |", a.0 / b.0, a.1 / b.1);
        }
        let _ = writeln!(
            s,
            "\nTarget: gateway throughput >= 0.85x the protocol floor: stream {:.2}x {}, non-stream {:.2}x {}.",
            gs.0 / fl.0,
            verdict(gs.0 / fl.0 >= 0.85),
            gn.0 / fl.0,
            verdict(gn.0 / fl.0 >= 0.85)
        );
    }

    fn latency_table(&self, s: &mut String) {
        if self.latency.is_empty() {
            return;
        }
        let _ = writeln!(
            s,
            "\n### Latency at 50% of the gateway's saturation (open loop, {} ms per delta)\n",
            self.opts.latency_delay_ms
        );
        s.push_str("| target | offered req/s | achieved req/s | machine busy | other load | TTFB p50 ms | TTFB p99 ms | TTFT p50 ms | TTFT p99 ms | total p50 ms | total p99 ms | late starts | failed |\n");
        s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
        for r in &self.latency {
            let _ = writeln!(
                s,
                "| {} | {:.0} | {:.0} | {:.0}% | {:.0}% | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.label,
                r.offered.unwrap_or(0.0),
                r.stats.rate(),
                r.usage.busy_pct(),
                r.usage.other_pct(),
                ms(r.q("ttfb", 0.5)),
                ms(r.p99("ttfb")),
                ms(r.q("ttft", 0.5)),
                ms(r.p99("ttft")),
                ms(r.q("total", 0.5)),
                ms(r.p99("total")),
                r.stats.late,
                failures(&r.stats)
            );
        }
        let p99 = |l: &str, w: &str| Self::find(&self.latency, l).map_or(f64::NAN, |r| r.p99(w));
        let ttfb = p99(GW_S, "ttfb") - p99(FLOOR_AT_S, "ttfb");
        let ttft = p99(GW_S, "ttft") - p99(FLOOR_AT_S, "ttft");
        let total = p99(GW_NS, "total") - p99(FLOOR_AT_NS, "total");
        let acc_ttfb = p99(GW_ACCEPTED, "ttfb") - p99(FLOOR_AT_S, "ttfb");
        let acc_ttft = p99(GW_ACCEPTED, "ttft") - p99(FLOOR_AT_S, "ttft");
        let _ = writeln!(
            s,
            "\nTarget: p99 added over the floor at the same rate < 1 ms. Stream, default mode: time to first byte {ttfb:+.2} ms {} (by design: its first byte is its first token; the first-byte target is judged with STREAM_COMMIT=accepted, below), time to first token {ttft:+.2} ms {}. Non-stream (its first byte is the whole answer, so total time): {total:+.2} ms {}.",
            verdict(ttfb < 1.0),
            verdict(ttft < 1.0),
            verdict(total < 1.0)
        );
        let paired = |l: &str, base: &str, w: &str| {
            let (Some(a), Some(b)) = (
                Self::find(&self.latency, l),
                Self::find(&self.latency, base),
            ) else {
                return None;
            };
            a.paired_p99(b, w)
        };
        let rounds = Self::find(&self.latency, GW_S).map_or(0, |r| r.round_p99.len());
        if rounds >= 3 {
            let show = |p: &Option<Paired>| p.as_ref().map_or(String::new(), Paired::render);
            let judge = |p: &Option<Paired>| p.as_ref().map_or("", |p| p.verdict(1.0));
            let (d_ttft, d_ttfb) = (
                paired(GW_S, FLOOR_AT_S, "ttft"),
                paired(GW_S, FLOOR_AT_S, "ttfb"),
            );
            let (a_ttft, a_ttfb) = (
                paired(GW_ACCEPTED, FLOOR_AT_S, "ttft"),
                paired(GW_ACCEPTED, FLOOR_AT_S, "ttfb"),
            );
            let ns = paired(GW_NS, FLOOR_AT_NS, "total");
            let _ = writeln!(
                s,
                "Paired by round (median over {rounds} rounds of this round's p99 minus the floor's in the same round): first token {}, first byte {}; STREAM_COMMIT=accepted: first token {}, first byte {}; non-stream total {}.",
                show(&d_ttft),
                show(&d_ttfb),
                show(&a_ttft),
                show(&a_ttfb),
                show(&ns),
            );
            let _ = writeln!(
                s,
                "Paired verdicts (< 1 ms, judged on the interval): default first token {}, first byte {} (by design); STREAM_COMMIT=accepted first token {}, first byte {}; non-stream total {}.",
                judge(&d_ttft),
                judge(&d_ttfb),
                judge(&a_ttft),
                judge(&a_ttfb),
                judge(&ns),
            );
            let unsettled = [&d_ttft, &a_ttft, &a_ttfb, &ns]
                .iter()
                .any(|p| p.as_ref().is_some_and(|p| p.lo < 1.0 && p.hi >= 1.0));
            if unsettled {
                let _ = writeln!(
                    s,
                    "Some intervals straddle 1 ms: the verdict run (`-- --streams 0 --duration 18 --latency-rounds 31`) narrows them."
                );
            }
        }
        if !acc_ttfb.is_nan() {
            let _ = writeln!(
                s,
                "With STREAM_COMMIT=accepted (the 200 and a comment when the upstream accepts, like the floor's forwarded header): time to first byte {acc_ttfb:+.2} ms {}, time to first token {acc_ttft:+.2} ms {}.",
                verdict(acc_ttfb < 1.0),
                verdict(acc_ttft < 1.0)
            );
        }
    }

    fn saturation_table(&self, s: &mut String) {
        if self.saturation.is_empty() {
            return;
        }
        let _ = writeln!(
            s,
            "\n### Saturation with {} ms per delta (closed loop, {} connections)\n",
            self.opts.latency_delay_ms,
            self.opts.concurrency * 4
        );
        s.push_str("| target | req/s | server CPU s/1k req | sim CPU s/1k req | failed |\n|---|---:|---:|---:|---|\n");
        for r in &self.saturation {
            let _ = writeln!(
                s,
                "| {} | {:.0} | {:.3} | {:.3} | {} |",
                r.label,
                r.stats.rate(),
                r.per_1k(r.usage.server_cpu),
                r.per_1k(r.usage.sim_cpu),
                failures(&r.stats)
            );
        }
    }

    fn hold_table(&self, s: &mut String) {
        if self.hold.is_empty() {
            return;
        }
        let _ = writeln!(
            s,
            "\n### Concurrency ({} answer deltas, {} ms per delta, fresh servers)\n",
            self.opts.hold_deltas, self.opts.hold_delay_ms
        );
        s.push_str("| server | streams | max open at once | idle RSS MiB | RSS with all open MiB | KiB per open stream | ok | failed | seconds |\n");
        s.push_str("|---|---:|---:|---:|---:|---:|---:|---|---:|\n");
        for h in &self.hold {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {} | {} | {:.1} |",
                h.label,
                h.streams,
                h.max_open,
                h.idle_kib as f64 / 1024.0,
                h.peak_kib as f64 / 1024.0,
                h.per_stream_kib(),
                h.stats.ok,
                failures(&h.stats),
                h.stats.elapsed.as_secs_f64()
            );
        }
        let gw = self.hold.iter().find(|h| h.label == "gateway");
        let pt = self.hold.iter().find(|h| h.label == "pass-through");
        if let (Some(g), Some(p)) = (gw, pt) {
            let all = g.max_open == g.streams && p.max_open == p.streams;
            let _ = writeln!(
                s,
                "\nTarget: {} streams open at once with no failures: {}. Memory per open stream no worse than the pass-through's: {:.1} vs {:.1} KiB {}.",
                g.streams,
                verdict(all && g.stats.failed == 0 && p.stats.failed == 0),
                g.per_stream_kib(),
                p.per_stream_kib(),
                verdict(g.per_stream_kib() <= p.per_stream_kib())
            );
        }
    }
}
