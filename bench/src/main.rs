//! mwbench: runs the mw-auth-proxy benchmark end to end and prints the
//! figures. Normally started by `scripts/bench`, which installs wrk and nginx
//! and builds the binaries first.
//!
//! ```text
//! mwbench run --proxy-bin PATH [--fake-wiki-bin PATH] [--quick] [--keep-tmp]
//! ```
//!
//! It starts the fake wiki, mw-auth-proxy (logging in to it), nginx (with a
//! static session cookie) and, in full runs, the lean reference forwarder on
//! free loopback ports, then runs interleaved wrk rounds against every path,
//! the scenarios (big response, big upload, 1,000 connections, re-login
//! storm) and prints a table and one PASS/MISS line per target. Exit status:
//! 0 when everything ran (targets missed or not), 1 when something is
//! broken, 64 for bad arguments, 128+N when stopped by signal N (SIGTERM,
//! SIGINT, SIGHUP: every process it started is stopped first, by pid).

mod http;
mod procs;
mod report;
mod scenarios;
mod wrk;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use procs::Proc;
use report::{Report, RoundResult};

/// The bot the fake wiki knows and the proxy logs in as.
const LGNAME: &str = "Bench@bench";
const PASSWORD: &str = "bench-password-7f3a9c";
const USER: &str = "Bench";
/// The session value nginx and direct clients send (hex).
const STATIC_SESSION: &str = "5eed5eed5eed5eed";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Direct,
    Proxy,
    Nginx,
    /// The reference forwarder (bench/src/bin/lean_forwarder.rs).
    Lean,
}

impl Route {
    pub const ALL: [Route; 4] = [Route::Direct, Route::Proxy, Route::Nginx, Route::Lean];

    pub fn name(self) -> &'static str {
        match self {
            Route::Direct => "direct",
            Route::Proxy => "proxy",
            Route::Nginx => "nginx",
            Route::Lean => "lean",
        }
    }
}

/// What a run does; `--quick` shrinks everything, environment variables
/// override single settings.
#[derive(Debug, Clone)]
pub struct Plan {
    pub quick: bool,
    pub rounds: usize,
    pub round: Duration,
    pub warmup: Duration,
    pub connections: u32,
    pub wrk_threads: u32,
    pub body_bytes: u64,
    pub many_connections: usize,
    pub many_duration: Duration,
    pub big_bytes: u64,
    pub upload_bytes: u64,
    pub storm_requests: usize,
    pub storms: usize,
    pub wiki_threads: usize,
    /// Whether the lean reference forwarder runs in the rounds too.
    pub reference: bool,
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

impl Plan {
    fn new(quick: bool) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
        let (rounds, secs, warmup, many_secs, big, upload, storms) = if quick {
            (3, 1, 1, 2, 64 << 20, 16 << 20, 1)
        } else {
            (5, 10, 3, 5, 1 << 30, 256 << 20, 3)
        };
        Plan {
            quick,
            rounds: env_u64("BENCH_ROUNDS", rounds).max(1) as usize,
            round: Duration::from_secs(env_u64("BENCH_SECS", secs).max(1)),
            warmup: Duration::from_secs(env_u64("BENCH_WARMUP_SECS", warmup).max(1)),
            connections: env_u64("BENCH_CONNECTIONS", 32).max(1) as u32,
            wrk_threads: env_u64("BENCH_WRK_THREADS", cores.min(4)).max(1) as u32,
            body_bytes: env_u64("BENCH_BODY_BYTES", 1024),
            many_connections: env_u64("BENCH_MANY_CONNECTIONS", 1000).max(1) as usize,
            many_duration: Duration::from_secs(env_u64("BENCH_MANY_SECS", many_secs).max(1)),
            big_bytes: env_u64("BENCH_BIG_BYTES", big),
            upload_bytes: env_u64("BENCH_UPLOAD_BYTES", upload),
            storm_requests: env_u64("BENCH_STORM_REQUESTS", 1000).max(1) as usize,
            storms: env_u64("BENCH_STORMS", storms) as usize,
            wiki_threads: env_u64("BENCH_WIKI_THREADS", cores).max(1) as usize,
            reference: env_u64("BENCH_REFERENCE", u64::from(!quick)) != 0,
        }
    }

    /// The routes measured in the rounds.
    pub fn routes(&self) -> Vec<Route> {
        let mut routes = vec![Route::Direct, Route::Proxy, Route::Nginx];
        if self.reference {
            routes.push(Route::Lean);
        }
        routes
    }

    /// A generous bound on the whole run, for the fake wiki's own exit.
    fn budget(&self) -> Duration {
        let rounds =
            (self.round + Duration::from_secs(1)) * (self.routes().len() * self.rounds) as u32;
        let rest = self.warmup * 3 + self.many_duration * 2 + Duration::from_secs(600);
        rounds + rest
    }
}

struct Args {
    proxy_bin: PathBuf,
    fake_wiki_bin: PathBuf,
    lean_bin: PathBuf,
    quick: bool,
    keep_tmp: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("run") => {}
        Some("--help" | "-h") | None => {
            return Err(
                "usage: mwbench run --proxy-bin PATH [--fake-wiki-bin PATH] [--quick] [--keep-tmp]"
                    .into(),
            );
        }
        Some(other) => return Err(format!("unknown command {other}; try `mwbench run`")),
    }
    let mut proxy_bin = None;
    let mut fake_wiki_bin = None;
    let mut quick = false;
    let mut keep_tmp = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--proxy-bin" => proxy_bin = args.next().map(PathBuf::from),
            "--fake-wiki-bin" => fake_wiki_bin = args.next().map(PathBuf::from),
            "--quick" => quick = true,
            "--keep-tmp" => keep_tmp = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let proxy_bin = proxy_bin.ok_or("--proxy-bin PATH is required")?;
    let own = std::env::current_exe().map_err(|e| e.to_string())?;
    let fake_wiki_bin = fake_wiki_bin.unwrap_or_else(|| own.with_file_name("fake-wiki"));
    let lean_bin = fake_wiki_bin.with_file_name("lean-forwarder");
    Ok(Args {
        proxy_bin,
        fake_wiki_bin,
        lean_bin,
        quick,
        keep_tmp,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(err) => {
            eprintln!("mwbench: {err}");
            return ExitCode::from(64);
        }
    };
    let plan = Plan::new(args.quick);
    let tmp = std::env::temp_dir().join(format!(
        "mwbench.{}.{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    ));
    if let Err(err) = fs::create_dir_all(&tmp) {
        eprintln!("mwbench: cannot create {}: {err}", tmp.display());
        return ExitCode::FAILURE;
    }
    procs::handle_interrupts(tmp.clone());
    // nginx workers (user nobody when started as root) must reach their paths.
    let _ = fs::set_permissions(&tmp, fs::Permissions::from_mode(0o711));
    let started = Instant::now();
    let outcome = run(&args, &plan, &tmp);
    procs::yield_if_interrupted();
    let code = match outcome {
        Ok(report) => {
            report.print(&plan, started.elapsed());
            if report.problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(err) => {
            eprintln!("\nBROKEN: {err}");
            for log in ["proxy.log", "fake-wiki.log", "nginx/error.log"] {
                print_tail(&tmp.join(log));
            }
            ExitCode::FAILURE
        }
    };
    if args.keep_tmp {
        eprintln!("mwbench: files kept in {}", tmp.display());
    } else {
        let _ = fs::remove_dir_all(&tmp);
    }
    code
}

fn print_tail(path: &Path) {
    if let Ok(text) = fs::read_to_string(path) {
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(15);
        eprintln!("--- last lines of {} ---", path.display());
        for line in &lines[from..] {
            eprintln!("{line}");
        }
    }
}

fn log_file(tmp: &Path, name: &str) -> Result<Stdio, String> {
    fs::File::create(tmp.join(name))
        .map(Stdio::from)
        .map_err(|e| format!("cannot create {name}: {e}"))
}

fn which(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program} >/dev/null"))
        .status()
        .is_ok_and(|s| s.success())
}

fn progress(message: &str) {
    eprintln!("mwbench: {message}");
}

/// Everything the run started; fields drop (stop) in this order.
struct Running {
    lean: Option<(Proc, u16)>,
    nginx: Proc,
    nginx_port: u16,
    nginx_pids: Vec<u32>,
    proxy: Proc,
    proxy_port: u16,
    wiki: Proc,
    wiki_port: u16,
}

fn start_wiki(args: &Args, plan: &Plan, tmp: &Path) -> Result<(Proc, u16), String> {
    let port = procs::free_port().map_err(|e| e.to_string())?;
    let mut command = Command::new(&args.fake_wiki_bin);
    command
        .args(["--port", &port.to_string()])
        .args(["--threads", &plan.wiki_threads.to_string()])
        .args(["--body-bytes", &plan.body_bytes.to_string()])
        .args(["--static-session", STATIC_SESSION])
        .args(["--lgname", LGNAME, "--password", PASSWORD, "--user", USER])
        .args(["--exit-after", &plan.budget().as_secs().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file(tmp, "fake-wiki.log")?);
    let wiki = Proc::spawn("fake-wiki", command).map_err(|e| e.to_string())?;
    http::wait_ok(port, "/control/stats", Duration::from_secs(10))?;
    Ok((wiki, port))
}

fn start_lean(args: &Args, plan: &Plan, tmp: &Path, wiki_port: u16) -> Result<(Proc, u16), String> {
    let port = procs::free_port().map_err(|e| e.to_string())?;
    let mut command = Command::new(&args.lean_bin);
    command
        .args([
            "--listen",
            &port.to_string(),
            "--upstream",
            &wiki_port.to_string(),
        ])
        .args([
            "--cookie",
            &format!("x_BPsession={STATIC_SESSION}"),
            "--user",
            USER,
        ])
        .args(["--exit-after", &plan.budget().as_secs().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file(tmp, "lean-forwarder.log")?);
    let lean = Proc::spawn("lean-forwarder", command).map_err(|e| e.to_string())?;
    http::wait_ok(port, scenarios::READ_PATH, Duration::from_secs(10))?;
    Ok((lean, port))
}

fn start_proxy(args: &Args, tmp: &Path, wiki_port: u16) -> Result<(Proc, u16), String> {
    let port = procs::free_port().map_err(|e| e.to_string())?;
    let config = tmp.join("mw-auth-proxy.toml");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[wiki]\napi_url = \"http://127.0.0.1:{wiki_port}/api.php\"\n\n[login]\nusername = \"{LGNAME}\"\npassword = \"{PASSWORD}\"\n"
    );
    fs::write(&config, text).map_err(|e| format!("cannot write the proxy config: {e}"))?;
    let _ = fs::set_permissions(&config, fs::Permissions::from_mode(0o600));
    let mut command = Command::new(&args.proxy_bin);
    command
        .arg("--config")
        .arg(&config)
        .env_remove("MW_AUTH_PROXY_PASSWORD")
        .env_remove("MW_AUTH_PROXY_CONFIG")
        .stdin(Stdio::null())
        .stdout(log_file(tmp, "proxy.stdout")?)
        .stderr(log_file(tmp, "proxy.log")?);
    // Extra environment for the proxy alone (allocator experiments):
    // BENCH_PROXY_ENV="NAME=VALUE NAME2=VALUE2".
    if let Ok(extra) = std::env::var("BENCH_PROXY_ENV") {
        for pair in extra.split_whitespace() {
            if let Some((name, value)) = pair.split_once('=') {
                command.env(name, value);
            }
        }
    }
    // The proxy's default log level unless asked otherwise.
    match std::env::var("BENCH_PROXY_RUST_LOG") {
        Ok(level) => command.env("RUST_LOG", level),
        Err(_) => command.env_remove("RUST_LOG"),
    };
    let mut proxy = Proc::spawn("mw-auth-proxy", command).map_err(|e| e.to_string())?;
    if let Err(err) = http::wait_ok(port, "/readyz", Duration::from_secs(30)) {
        let exited = proxy
            .exited()
            .map(|status| format!(" (it exited: {status})"))
            .unwrap_or_default();
        return Err(format!("mw-auth-proxy never got ready{exited}: {err}"));
    }
    Ok((proxy, port))
}

fn start_nginx(tmp: &Path, wiki_port: u16, nofile: u64) -> Result<(Proc, u16, Vec<u32>), String> {
    let port = procs::free_port().map_err(|e| e.to_string())?;
    let dir = tmp.join("nginx");
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o755));
    let d = dir.display();
    // Each client connection may need an upstream one besides.
    let connections = (nofile / 2).clamp(1024, 8192);
    // What a user would write to put a fixed session in front of the wiki,
    // with upstream keep-alive. keepalive_requests is raised on both sides
    // so nginx never pays for reconnecting during a round.
    let config = format!(
        r#"daemon off;
master_process on;
worker_processes auto;
worker_rlimit_nofile {nofile};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{
    worker_connections {connections};
}}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy_temp;
    fastcgi_temp_path {d}/fastcgi_temp;
    uwsgi_temp_path {d}/uwsgi_temp;
    scgi_temp_path {d}/scgi_temp;
    keepalive_requests 1000000;
    client_max_body_size 0;
    upstream wiki {{
        server 127.0.0.1:{wiki_port};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://wiki;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Cookie "x_BPsession={STATIC_SESSION}";
        }}
    }}
}}
"#
    );
    let conf = dir.join("nginx.conf");
    fs::write(&conf, config).map_err(|e| e.to_string())?;
    let mut command = Command::new("nginx");
    command
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdin(Stdio::null())
        .stdout(log_file(tmp, "nginx.stdout")?)
        .stderr(log_file(tmp, "nginx.stderr")?);
    let mut nginx = Proc::spawn("nginx", command).map_err(|e| e.to_string())?;
    let path = scenarios::READ_PATH;
    if let Err(err) = http::wait_ok(port, path, Duration::from_secs(10)) {
        let exited = nginx
            .exited()
            .map(|status| format!(" (it exited: {status})"))
            .unwrap_or_default();
        return Err(format!("nginx never answered{exited}: {err}"));
    }
    let mut pids = vec![nginx.pid()];
    let workers = procs::children_of(nginx.pid());
    nginx.adopt(&workers);
    pids.extend(workers);
    Ok((nginx, port, pids))
}

fn load<'a>(
    running: &Running,
    path: Route,
    plan: &Plan,
    script: &'a Path,
    connections: u32,
    duration: Duration,
) -> wrk::Load<'a> {
    let (port, headers, sample) = match path {
        Route::Direct => (
            running.wiki_port,
            vec![format!("Cookie: x_BPsession={STATIC_SESSION}")],
            vec![running.wiki.pid()],
        ),
        Route::Proxy => (running.proxy_port, vec![], vec![running.proxy.pid()]),
        Route::Nginx => (running.nginx_port, vec![], running.nginx_pids.clone()),
        Route::Lean => running
            .lean
            .as_ref()
            .map_or((0, vec![], vec![]), |(lean, port)| {
                (*port, vec![], vec![lean.pid()])
            }),
    };
    wrk::Load {
        url: format!("http://127.0.0.1:{port}{}", scenarios::READ_PATH),
        connections,
        threads: plan.wrk_threads.min(connections),
        duration,
        headers,
        script,
        sample,
    }
}

/// The CPU ticks of the processes that do the forwarding on `path`.
fn forwarder_pids(running: &Running, path: Route) -> Vec<u32> {
    match path {
        Route::Direct => vec![],
        Route::Proxy => vec![running.proxy.pid()],
        Route::Nginx => running.nginx_pids.clone(),
        Route::Lean => running.lean.iter().map(|(lean, _)| lean.pid()).collect(),
    }
}

impl Running {
    /// Every process the benchmark runs (wrk aside).
    fn all_pids(&self) -> Vec<u32> {
        let mut pids = vec![self.wiki.pid(), self.proxy.pid()];
        pids.extend(&self.nginx_pids);
        pids.extend(self.lean.iter().map(|(lean, _)| lean.pid()));
        pids
    }
}

fn still_running(running: &mut Running) -> Result<(), String> {
    let lean = running.lean.as_mut().map(|(lean, _)| lean);
    for proc in [&mut running.wiki, &mut running.proxy, &mut running.nginx]
        .into_iter()
        .chain(lean)
    {
        if let Some(status) = proc.exited() {
            return Err(format!("{} exited unexpectedly: {status}", proc.name));
        }
    }
    Ok(())
}

fn run(args: &Args, plan: &Plan, tmp: &Path) -> Result<Report, String> {
    for program in ["wrk", "nginx"] {
        if !which(program) {
            return Err(format!(
                "{program} is not installed (scripts/bench installs it)"
            ));
        }
    }
    let mut bins = vec![&args.proxy_bin, &args.fake_wiki_bin];
    if plan.reference {
        bins.push(&args.lean_bin);
    }
    for bin in bins {
        if !bin.is_file() {
            return Err(format!("{} does not exist (build it first)", bin.display()));
        }
    }
    let nofile = procs::raise_nofile();
    if nofile < 4 * plan.many_connections as u64 + 256 {
        progress(&format!(
            "warning: open-files limit is {nofile}; many connections may fail"
        ));
    }
    let ticks = procs::clock_ticks();
    let script = wrk::write_script(tmp).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;

    progress("starting the fake wiki, mw-auth-proxy and nginx");
    let (wiki, wiki_port) = start_wiki(args, plan, tmp)?;
    let (proxy, proxy_port) = start_proxy(args, tmp, wiki_port)?;
    let (nginx, nginx_port, nginx_pids) = start_nginx(tmp, wiki_port, nofile)?;
    let lean = if plan.reference {
        Some(start_lean(args, plan, tmp, wiki_port)?)
    } else {
        None
    };
    let mut running = Running {
        lean,
        wiki,
        wiki_port,
        proxy,
        proxy_port,
        nginx,
        nginx_port,
        nginx_pids,
    };
    let mut report = Report::default();
    std::thread::sleep(Duration::from_millis(500));
    report.proxy_rss_start_kib = procs::rss_kib(running.proxy.pid()).unwrap_or(0);

    progress("warming up every path");
    let routes = plan.routes();
    for &path in &routes {
        let warm = load(&running, path, plan, &script, plan.connections, plan.warmup);
        wrk::run(&warm)?;
    }

    for round in 0..plan.rounds {
        progress(&format!("round {}/{}", round + 1, plan.rounds));
        // Rotate the order so no path always runs first or last.
        for i in 0..routes.len() {
            let path = routes[(round + i) % routes.len()];
            let forwarders = forwarder_pids(&running, path);
            let wiki_pid = [running.wiki.pid()];
            let everything = running.all_pids();
            let machine_before = procs::machine_ticks();
            let ours_before = procs::cpu_split_of(&everything);
            let reaped_before = procs::own_and_reaped_ticks(ticks);
            let (user_before, sys_before) = procs::cpu_split_of(&forwarders);
            let (wiki_user, wiki_sys) = procs::cpu_split_of(&wiki_pid);
            let spec = load(&running, path, plan, &script, plan.connections, plan.round);
            let result = wrk::run(&spec)?;
            let (user_after, sys_after) = procs::cpu_split_of(&forwarders);
            let machine_after = procs::machine_ticks();
            let ours_after = procs::cpu_split_of(&everything);
            let reaped_after = procs::own_and_reaped_ticks(ticks);
            let ours = (ours_after.0 + ours_after.1 + reaped_after)
                .saturating_sub(ours_before.0 + ours_before.1 + reaped_before);
            let busy = machine_after.0.saturating_sub(machine_before.0);
            let total = machine_after.1.saturating_sub(machine_before.1);
            let other_load =
                (total > 0).then(|| busy.saturating_sub(ours) as f64 / total as f64 * 100.0);
            let (wiki_user_after, wiki_sys_after) = procs::cpu_split_of(&wiki_pid);
            let per_request = |ticks_used: u64| {
                (result.requests > 0)
                    .then(|| ticks_used as f64 / ticks * 1e6 / result.requests as f64)
            };
            let forwarder = |ticks_used: u64| {
                if path == Route::Direct {
                    None
                } else {
                    per_request(ticks_used)
                }
            };
            report.rounds.push(RoundResult {
                round,
                path,
                cpu_us_per_request: forwarder(user_after + sys_after - user_before - sys_before),
                sys_us_per_request: forwarder(sys_after - sys_before),
                wiki_cpu_us_per_request: per_request(
                    wiki_user_after + wiki_sys_after - wiki_user - wiki_sys,
                ),
                other_load,
                wrk: result,
            });
            still_running(&mut running)?;
        }
    }
    std::thread::sleep(Duration::from_secs(if plan.quick { 1 } else { 3 }));
    report.proxy_rss_idle_kib = procs::rss_kib(running.proxy.pid()).unwrap_or(0);

    progress(&format!(
        "a {} MiB response and a {} MiB upload",
        plan.big_bytes >> 20,
        plan.upload_bytes >> 20
    ));
    let cookie = format!("x_BPsession={STATIC_SESSION}");
    let direct_headers = [("cookie", cookie.as_str())];
    let within = Duration::from_secs(if plan.quick { 30 } else { 180 });
    for (path, port, headers, sample) in [
        (
            Route::Direct,
            running.wiki_port,
            &direct_headers[..],
            vec![running.wiki.pid()],
        ),
        (
            Route::Proxy,
            running.proxy_port,
            &[][..],
            vec![running.proxy.pid()],
        ),
    ] {
        let down = runtime.block_on(scenarios::download(
            port,
            plan.big_bytes,
            headers,
            sample.clone(),
            within,
        ));
        match down {
            Ok(transfer) if transfer.bytes == transfer.expected => {
                report.downloads.push((path, transfer))
            }
            Ok(transfer) => {
                return Err(format!(
                    "{}: the big response arrived with {} of {} bytes",
                    path.name(),
                    transfer.bytes,
                    transfer.expected
                ));
            }
            Err(err) => return Err(format!("{}: big response: {err}", path.name())),
        }
        let up = runtime.block_on(scenarios::upload(
            port,
            plan.upload_bytes,
            headers,
            sample,
            within,
        ));
        match up {
            Ok(transfer) if transfer.bytes == transfer.expected => {
                report.uploads.push((path, transfer))
            }
            Ok(transfer) => {
                return Err(format!(
                    "{}: the wiki received {} of the {} bytes uploaded",
                    path.name(),
                    transfer.bytes,
                    transfer.expected
                ));
            }
            Err(err) => return Err(format!("{}: big upload: {err}", path.name())),
        }
        still_running(&mut running)?;
    }

    progress(&format!("{} connections", plan.many_connections));
    let many = plan.many_connections as u32;
    for path in [Route::Proxy, Route::Nginx] {
        let spec = load(&running, path, plan, &script, many, plan.many_duration);
        let result = wrk::run(&spec)?;
        report.many.push((path, result));
        still_running(&mut running)?;
    }
    report.idle_many = Some(runtime.block_on(scenarios::idle_connections(
        running.proxy_port,
        plan.many_connections,
        vec![running.proxy.pid()],
        Duration::from_secs(1),
        Duration::from_secs(60),
    )));
    std::thread::sleep(Duration::from_millis(500));

    for storm in 0..plan.storms {
        // The proxy slows logins down when sessions die within a second of
        // logging in; storms are spaced well beyond that.
        std::thread::sleep(Duration::from_millis(1500));
        progress(&format!(
            "re-login storm {}/{} ({} requests in flight)",
            storm + 1,
            plan.storms,
            plan.storm_requests
        ));
        let result = runtime
            .block_on(scenarios::storm(
                running.proxy_port,
                running.wiki_port,
                plan.storm_requests,
                Duration::from_secs(60),
            ))
            .map_err(|e| format!("re-login storm: {e}"))?;
        if result.held == 0 {
            return Err(format!(
                "re-login storm: no request reached the wiki ({})",
                result.first_error.clone().unwrap_or_default()
            ));
        }
        report.storms.push(result);
        still_running(&mut running)?;
    }
    progress("stopping everything");
    report.proxy_log_bytes = fs::metadata(tmp.join("proxy.log")).map_or(0, |m| m.len());
    drop(running);
    drop(runtime);
    report.check_sanity(plan);
    Ok(report)
}
