//! A tiny blocking HTTP/1.1 client for control calls and readiness probes
//! (one request per connection, bounded by timeouts).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// GET `path` on 127.0.0.1:`port` with `Connection: close`.
pub fn get(port: u16, path: &str, timeout: Duration) -> io::Result<Answer> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nUser-Agent: mwbench\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| io::Error::other("no HTTP status line"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok(Answer { status, body })
}

/// GET and parse a JSON body (the fake wiki's control answers).
pub fn get_json(port: u16, path: &str) -> io::Result<serde_json::Value> {
    let answer = get(port, path, Duration::from_secs(5))?;
    if answer.status != 200 {
        return Err(io::Error::other(format!("{path}: HTTP {}", answer.status)));
    }
    serde_json::from_str(&answer.body).map_err(|err| io::Error::other(format!("{path}: {err}")))
}

/// Polls `path` until it answers 200 or `within` runs out.
pub fn wait_ok(port: u16, path: &str, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        match get(port, path, Duration::from_secs(2)) {
            Ok(answer) if answer.status == 200 => return Ok(()),
            Ok(answer) => last = format!("HTTP {}: {}", answer.status, answer.body.trim()),
            Err(err) => last = err.to_string(),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "127.0.0.1:{port}{path} not ready within {}s ({last})",
        within.as_secs()
    ))
}

/// A u64 field of a JSON object, 0 when absent.
pub fn field(value: &serde_json::Value, name: &str) -> u64 {
    value
        .get(name)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
}

/// A gauge or counter from a Prometheus text page (the proxy's `/metrics`),
/// unlabelled; `None` when absent.
pub fn metric(port: u16, name: &str) -> io::Result<Option<f64>> {
    let answer = get(port, "/metrics", Duration::from_secs(5))?;
    Ok(answer.body.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok()).flatten()
    }))
}
