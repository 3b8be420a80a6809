//! Running wrk and reading its results. A `done` hook in Lua prints the
//! exact counts and latency percentiles (microseconds) on one line, so no
//! unit-suffixed text has to be parsed. While wrk runs, the harness samples
//! the resident memory of the processes under test.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::procs::{self, Proc};

const DONE_SCRIPT: &str = r#"-- mwbench: print one machine-readable line at the end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "MWBENCH requests=%d duration_us=%d bytes=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration, summary.bytes,
    math.floor(latency:percentile(50)), math.floor(latency:percentile(90)),
    math.floor(latency:percentile(99)), math.floor(latency.max),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"#;

pub fn write_script(dir: &Path) -> std::io::Result<PathBuf> {
    let path = dir.join("mwbench-done.lua");
    std::fs::write(&path, DONE_SCRIPT)?;
    Ok(path)
}

#[derive(Debug, Clone, Default)]
pub struct WrkResult {
    pub requests: u64,
    pub seconds: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub errors_socket: u64,
    pub errors_timeout: u64,
    pub errors_status: u64,
    /// Peak summed VmRSS (KiB) of the sampled processes during the run.
    pub rss_peak_kib: u64,
}

impl WrkResult {
    pub fn rps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.requests as f64 / self.seconds
        } else {
            0.0
        }
    }

    pub fn errors(&self) -> u64 {
        self.errors_socket + self.errors_timeout + self.errors_status
    }
}

pub struct Load<'a> {
    pub url: String,
    pub connections: u32,
    pub threads: u32,
    pub duration: Duration,
    pub headers: Vec<String>,
    pub script: &'a Path,
    /// Processes whose summed RSS is sampled while wrk runs.
    pub sample: Vec<u32>,
}

pub fn run(load: &Load<'_>) -> Result<WrkResult, String> {
    let mut command = Command::new("wrk");
    command
        .arg("-t")
        .arg(load.threads.to_string())
        .arg("-c")
        .arg(load.connections.to_string())
        .arg("-d")
        .arg(format!("{}s", load.duration.as_secs().max(1)))
        .arg("--timeout")
        .arg("5s")
        .arg("--latency")
        .arg("-s")
        .arg(load.script);
    for header in &load.headers {
        command.arg("-H").arg(header);
    }
    command
        .arg(&load.url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut wrk = Proc::spawn("wrk", command).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + load.duration + Duration::from_secs(20);
    let mut rss_peak = 0;
    let status = loop {
        if let Some(status) = wrk.exited() {
            break status;
        }
        if Instant::now() > deadline {
            wrk.stop(Duration::from_secs(1));
            return Err(format!("wrk on {} ran past its time bound", load.url));
        }
        if !load.sample.is_empty() {
            rss_peak = rss_peak.max(procs::rss_kib_of(&load.sample));
        }
        sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    let mut err = String::new();
    if let Some(stdout) = wrk.child_mut().stdout.as_mut() {
        let _ = stdout.read_to_string(&mut out);
    }
    if let Some(stderr) = wrk.child_mut().stderr.as_mut() {
        let _ = stderr.read_to_string(&mut err);
    }
    if !status.success() {
        return Err(format!(
            "wrk failed ({status}): {}{}",
            out.trim(),
            err.trim()
        ));
    }
    let line = out
        .lines()
        .find(|line| line.starts_with("MWBENCH "))
        .ok_or_else(|| format!("wrk printed no result line:\n{out}{err}"))?;
    let value = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(WrkResult {
        requests: value("requests"),
        seconds: value("duration_us") as f64 / 1e6,
        p50_us: value("p50_us"),
        p99_us: value("p99_us"),
        errors_socket: value("connect") + value("read") + value("write"),
        errors_timeout: value("timeout"),
        errors_status: value("status"),
        rss_peak_kib: rss_peak,
    })
}
