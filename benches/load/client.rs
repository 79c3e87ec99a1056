//! The loopback load client: raw HTTP/1.1 over tokio TCP with keep-alive, so that every target
//! is driven by exactly the same code and the client's own cost stays small and equal.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use memchr::memmem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// One kind of request against one server, with what a correct answer must contain.
pub struct Target {
    pub label: String,
    pub addr: SocketAddr,
    pub request: Vec<u8>,
    /// The first answer token: its arrival is the time to first token.
    pub first: Vec<u8>,
    /// Both must appear in a complete, correct answer (last token and the end marker).
    pub last: Vec<u8>,
    pub end: Vec<u8>,
}

impl Target {
    pub fn new(label: &str, addr: SocketAddr, head: &str, body: &[u8], deltas: usize) -> Target {
        let mut request = format!(
            "{head}Host: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        Target {
            label: label.to_string(),
            addr,
            request,
            first: b"\"w0 ".to_vec(),
            last: format!("w{} ", deltas.saturating_sub(1)).into_bytes(),
            end: Vec::new(),
        }
    }

    pub fn ending(mut self, end: &str) -> Target {
        self.end = end.as_bytes().to_vec();
        self
    }

    /// The same request, validated against an answer of another length.
    pub fn with_deltas(&self, deltas: usize) -> Target {
        Target {
            label: self.label.clone(),
            addr: self.addr,
            request: self.request.clone(),
            first: self.first.clone(),
            last: format!("w{} ", deltas.saturating_sub(1)).into_bytes(),
            end: self.end.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Timing {
    pub ttfb: Duration,
    pub ttft: Duration,
    pub total: Duration,
}

#[derive(Debug)]
pub enum Fail {
    Io(String),
    Timeout,
    Status(u16),
    /// 200, but the answer lacked its last token or end marker.
    Incomplete,
}

impl Fail {
    pub fn kind(&self) -> String {
        match self {
            Fail::Io(e) => format!("io: {e}"),
            Fail::Timeout => "timeout".into(),
            Fail::Status(s) => format!("status {s}"),
            Fail::Incomplete => "incomplete answer".into(),
        }
    }
}

fn io(e: std::io::Error) -> Fail {
    Fail::Io(e.kind().to_string())
}

pub struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
    body: Vec<u8>,
    /// The server asked to close (or closed) after the last response.
    pub closed: bool,
    /// Set for held streams: the first body byte counts the stream as open.
    held: Option<Arc<Held>>,
}

enum Framing {
    Length(usize),
    Chunked,
    Close,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> Result<Conn, Fail> {
        let s = TcpStream::connect(addr).await.map_err(io)?;
        s.set_nodelay(true).map_err(io)?;
        Ok(Conn {
            s,
            buf: Vec::with_capacity(8 * 1024),
            body: Vec::with_capacity(8 * 1024),
            closed: false,
            held: None,
        })
    }

    /// More bytes into `buf`; EOF is an error because every caller still expects data.
    async fn fill(&mut self) -> Result<(), Fail> {
        let len = self.buf.len();
        self.buf.resize(len + 16 * 1024, 0);
        let r = self.s.read(&mut self.buf[len..]).await;
        let n = *r.as_ref().unwrap_or(&0);
        self.buf.truncate(len + n);
        match r {
            Err(e) => Err(io(e)),
            Ok(0) => {
                self.closed = true;
                Err(Fail::Io("connection closed".into()))
            }
            Ok(_) => Ok(()),
        }
    }

    /// Adds decoded body bytes and stamps the first-byte and first-token times.
    fn body_bytes(&mut self, from: usize, to: usize, t: &Target, start: Instant, tm: &mut Timing) {
        if from == to {
            return;
        }
        let now = start.elapsed();
        if self.body.is_empty() {
            tm.ttfb = now;
            if let Some(h) = &self.held {
                let open = h.open.fetch_add(1, Ordering::Relaxed) + 1;
                h.max_open.fetch_max(open, Ordering::Relaxed);
            }
        }
        let scan_from = self.body.len().saturating_sub(t.first.len());
        self.body.extend_from_slice(&self.buf[from..to]);
        if tm.ttft.is_zero() && memmem::find(&self.body[scan_from..], &t.first).is_some() {
            tm.ttft = now;
        }
    }

    /// Sends the target's request (unless `send` is false because it already went out) and
    /// reads the whole response. Times are from `start`.
    pub async fn exchange(
        &mut self,
        t: &Target,
        start: Instant,
        send: bool,
    ) -> Result<Timing, Fail> {
        if send {
            self.s.write_all(&t.request).await.map_err(io)?;
        }
        self.body.clear();
        let mut tm = Timing::default();
        let head_end = loop {
            if let Some(i) = memmem::find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).unwrap_or("");
        let status: u16 = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        let mut framing = Framing::Close;
        for line in head.split("\r\n").skip(1) {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim());
            if k.eq_ignore_ascii_case("content-length") {
                framing = Framing::Length(v.parse().unwrap_or(0));
            } else if k.eq_ignore_ascii_case("transfer-encoding")
                && v.eq_ignore_ascii_case("chunked")
            {
                framing = Framing::Chunked;
            } else if k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close") {
                self.closed = true;
            }
        }
        // Bodies here are a few KiB, so the whole response stays in `buf` until it ends.
        let mut pos = head_end;
        match framing {
            Framing::Length(n) => {
                let end = pos + n;
                loop {
                    let have = self.buf.len().min(end);
                    self.body_bytes(pos, have, t, start, &mut tm);
                    pos = have;
                    if pos == end {
                        break;
                    }
                    self.fill().await?;
                }
            }
            Framing::Chunked => loop {
                let line_end = loop {
                    if let Some(i) = memmem::find(&self.buf[pos..], b"\r\n") {
                        break pos + i;
                    }
                    self.fill().await?;
                };
                let size_txt = std::str::from_utf8(&self.buf[pos..line_end]).unwrap_or("");
                let size_txt = size_txt.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size_txt, 16)
                    .map_err(|_| Fail::Io("bad chunk size".into()))?;
                pos = line_end + 2;
                if size == 0 {
                    // Trailer lines until the empty one.
                    loop {
                        let Some(i) = memmem::find(&self.buf[pos..], b"\r\n") else {
                            self.fill().await?;
                            continue;
                        };
                        pos += i + 2;
                        if i == 0 {
                            break;
                        }
                    }
                    break;
                }
                while self.buf.len() < pos + size + 2 {
                    self.fill().await?;
                }
                self.body_bytes(pos, pos + size, t, start, &mut tm);
                pos += size + 2;
            },
            Framing::Close => {
                self.closed = true;
                loop {
                    let have = self.buf.len();
                    self.body_bytes(pos, have, t, start, &mut tm);
                    pos = have;
                    if self.fill().await.is_err() {
                        break;
                    }
                }
            }
        }
        self.buf.drain(..pos);
        tm.total = start.elapsed();
        if status != 200 {
            return Err(Fail::Status(status));
        }
        let has = |m: &[u8]| m.is_empty() || memmem::find(&self.body, m).is_some();
        if !has(&t.last) || !has(&t.end) || tm.ttft.is_zero() {
            return Err(Fail::Incomplete);
        }
        Ok(tm)
    }
}

/// Results of one run against one target.
#[derive(Default)]
pub struct Stats {
    pub ok: u64,
    pub failed: u64,
    pub failures: std::collections::BTreeMap<String, u64>,
    /// Microseconds, one entry per successful request.
    pub ttfb: Vec<u32>,
    pub ttft: Vec<u32>,
    pub total: Vec<u32>,
    pub elapsed: Duration,
    /// Open-loop requests that started more than 5 ms after their due time (the timer itself
    /// is 1 ms coarse), which would mean the client could not keep the offered rate.
    pub late: u64,
}

impl Stats {
    fn record(&mut self, r: Result<Timing, Fail>) {
        match r {
            Ok(tm) => {
                self.ok += 1;
                self.ttfb.push(tm.ttfb.as_micros() as u32);
                self.ttft.push(tm.ttft.as_micros() as u32);
                self.total.push(tm.total.as_micros() as u32);
            }
            Err(f) => {
                self.failed += 1;
                *self.failures.entry(f.kind()).or_default() += 1;
            }
        }
    }

    pub fn merge(&mut self, o: Stats) {
        self.ok += o.ok;
        self.failed += o.failed;
        for (k, v) in o.failures {
            *self.failures.entry(k).or_default() += v;
        }
        self.ttfb.extend(o.ttfb);
        self.ttft.extend(o.ttft);
        self.total.extend(o.total);
        self.elapsed += o.elapsed;
        self.late += o.late;
    }

    /// Adds the failures of a discarded run: a failure is never dropped with it.
    pub fn keep_failures(&mut self, o: Stats) {
        self.failed += o.failed;
        for (k, v) in o.failures {
            *self.failures.entry(k).or_default() += v;
        }
    }

    pub fn sort(&mut self) {
        self.ttfb.sort_unstable();
        self.ttft.sort_unstable();
        self.total.sort_unstable();
    }

    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Microseconds at quantile `q` (0..=1) of a sorted sample.
pub fn quantile(v: &[u32], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i] as f64
}

/// One request on a kept-alive connection, reconnecting when the server closed it. A reused
/// connection that dies before any response byte is retried once on a fresh one: the server
/// may close an idle connection at any moment, which is not a failed request.
async fn one(conn: &mut Option<Conn>, t: &Target, limit: Duration) -> Result<Timing, Fail> {
    for attempt in 0..2 {
        let reused = conn.is_some();
        if conn.is_none() {
            *conn = Some(Conn::open(t.addr).await?);
        }
        let c = conn.as_mut().expect("just opened");
        let start = Instant::now();
        let r = match tokio::time::timeout(limit, c.exchange(t, start, true)).await {
            Ok(r) => r,
            Err(_) => Err(Fail::Timeout),
        };
        let untouched = c.body.is_empty() && c.buf.is_empty();
        if r.is_err() || c.closed {
            *conn = None;
        }
        match r {
            Err(Fail::Io(_)) if reused && untouched && attempt == 0 => continue,
            r => return r,
        }
    }
    unreachable!("the second attempt always returns")
}

/// Merges the tasks' results; a task that panicked counts as one failed request, so a bug in
/// the client cannot hide failures.
async fn join(tasks: Vec<tokio::task::JoinHandle<Stats>>) -> Stats {
    let mut all = Stats::default();
    for task in tasks {
        match task.await {
            Ok(st) => all.merge(st),
            Err(_) => all.record(Err(Fail::Io("client task panicked".into()))),
        }
    }
    all
}

/// `conc` connections, each sending its next request as soon as the last one ended.
pub async fn closed_loop(t: Arc<Target>, conc: usize, dur: Duration, limit: Duration) -> Stats {
    let start = Instant::now();
    let end = start + dur;
    let mut tasks = Vec::with_capacity(conc);
    for _ in 0..conc {
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let mut st = Stats::default();
            let mut conn = None;
            while Instant::now() < end {
                st.record(one(&mut conn, &t, limit).await);
            }
            st
        }));
    }
    let mut all = join(tasks).await;
    all.elapsed = start.elapsed();
    all
}

/// A fixed arrival rate, independent of how fast answers come back, so latency is measured at
/// a known load; `workers` bounds the requests in flight.
pub async fn open_loop(
    t: Arc<Target>,
    rate: f64,
    dur: Duration,
    workers: usize,
    limit: Duration,
) -> Stats {
    let start = Instant::now();
    let count = (rate * dur.as_secs_f64()) as u64;
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (t, next) = (t.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut st = Stats::default();
            let mut conn = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let due = start + Duration::from_secs_f64(i as f64 / rate);
                tokio::time::sleep_until(due).await;
                if due.elapsed() > Duration::from_millis(5) {
                    st.late += 1;
                }
                st.record(one(&mut conn, &t, limit).await);
            }
            st
        }));
    }
    let mut all = join(tasks).await;
    all.elapsed = start.elapsed();
    all
}

/// Counters the concurrency phase watches while streams are held open.
#[derive(Default)]
pub struct Held {
    /// Streams that have received their first body byte and not yet ended.
    pub open: AtomicUsize,
    pub max_open: AtomicUsize,
}

/// Opens `n` streams, each on its own connection, at most `opening` connects at a time, and
/// reads each to its end; `held` tracks how many are open at once.
pub async fn hold_streams(
    t: Arc<Target>,
    n: usize,
    opening: usize,
    limit: Duration,
    held: Arc<Held>,
) -> Stats {
    let gate = Arc::new(tokio::sync::Semaphore::new(opening));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let (t, gate, held) = (t.clone(), gate.clone(), held.clone());
        tasks.push(tokio::spawn(async move {
            let mut st = Stats::default();
            let mut conn: Option<Conn> = None;
            let r = tokio::time::timeout(limit, async {
                // Pacing connects keeps the listeners' accept queues from overflowing.
                let permit = gate.acquire_owned().await.expect("never closed");
                let c = conn.insert(Conn::open(t.addr).await?);
                c.held = Some(held.clone());
                let sent = Instant::now();
                c.s.write_all(&t.request).await.map_err(io)?;
                drop(permit);
                c.exchange(&t, sent, false).await
            })
            .await;
            if conn.is_some_and(|c| !c.body.is_empty()) {
                held.open.fetch_sub(1, Ordering::Relaxed);
            }
            st.record(r.unwrap_or(Err(Fail::Timeout)));
            st
        }));
    }
    let mut all = join(tasks).await;
    all.elapsed = start.elapsed();
    all
}
