//! Child processes and what the kernel reports about them (/proc), without extra dependencies.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A server process owned by the benchmark; killed (by its own pid only) when dropped, so an
/// early return or a panic never leaves a server behind.
pub struct Proc {
    pub name: String,
    pub port: u16,
    child: std::process::Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Starts `cmd` with its output in `logs/<name>.log` and waits until `port` accepts.
    pub fn start(name: &str, mut cmd: Command, port: u16, logs: &Path) -> Result<Proc, String> {
        let log = logs.join(format!("{name}.log"));
        let out = File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        let mut p = Proc {
            name: name.to_string(),
            port,
            child,
            log,
        };
        p.wait_ready(Duration::from_secs(30))?;
        eprintln!("load: {name} is pid {} on 127.0.0.1:{port}", p.pid());
        Ok(p)
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Err(format!(
                    "{} exited at start ({st}); see {}",
                    self.name,
                    self.log.display()
                ));
            }
            if std::net::TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200))
                .is_ok()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("{} did not listen on {}", self.name, self.port))
    }

    /// Fails if the process died (a crash under load is a failure, not a slow result).
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(st)) => Err(format!(
                "{} died ({st}); see {}",
                self.name,
                self.log.display()
            )),
            Err(e) => Err(format!("{}: {e}", self.name)),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port. Another process could take it before the child binds; the child then
/// fails to start, which is reported rather than hidden.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("loopback has free ports")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// User plus system CPU time of a process (all threads), in seconds.
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = read(&format!("/proc/{pid}/stat"));
    // The command name may contain spaces; the fixed fields start after its closing paren.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| f.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    ticks as f64 / clock_ticks()
}

fn clock_ticks() -> f64 {
    static TCK: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

fn status_kib(pid: u32, key: &str) -> u64 {
    read(&format!("/proc/{pid}/status"))
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// Machine-wide CPU time from /proc/stat, in seconds summed over all cores.
#[derive(Debug, Clone, Copy, Default)]
pub struct Machine {
    /// Everything but idle and iowait.
    pub busy: f64,
    pub total: f64,
    /// User, nice and system time: what processes ran. Interrupt time is left out because
    /// loopback TCP does most of its receive work in softirq, which no process is billed for.
    pub tasks: f64,
}

pub fn machine() -> Machine {
    let s = read("/proc/stat");
    let v: Vec<f64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let at = |i: usize| v.get(i).copied().unwrap_or(0.0) / clock_ticks();
    let total: f64 = (0..8).map(at).sum();
    Machine {
        busy: total - at(3) - at(4),
        total,
        tasks: at(0) + at(1) + at(2),
    }
}

/// (soft, hard) open-file limits of this process.
pub fn nofile() -> (u64, u64) {
    let l = read("/proc/self/limits");
    let line = l.lines().find(|l| l.starts_with("Max open files"));
    let nums: Vec<u64> = line
        .map(|l| {
            l.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    (
        nums.first().copied().unwrap_or(1024),
        nums.get(1).copied().unwrap_or(1024),
    )
}

/// Raises the soft open-file limit to the hard one by re-executing this program through
/// `sh -c 'ulimit -n'`: std has no setrlimit and libc is not a direct dependency. The servers
/// started afterwards inherit the raised limit. Returns only if nothing needed to change.
pub fn raise_nofile() {
    const MARK: &str = "QWEN_LOAD_NOFILE_RAISED";
    let (soft, hard) = nofile();
    if soft >= hard || std::env::var_os(MARK).is_some() {
        return;
    }
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().expect("own path");
    let err = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n \"$1\" || exit 97; shift; exec \"$@\"")
        .arg("sh")
        .arg(hard.to_string())
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(MARK, "1")
        .exec();
    eprintln!("load: could not raise the open-file limit ({err}); continuing with {soft}");
}
