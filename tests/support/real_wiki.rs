//! End-to-end harness: a real MediaWiki 1.39 run by `scripts/wiki` and the
//! real proxy binary, each a child process of the test.
//!
//! ```ignore
//! let wiki = RealWiki::start(WikiOptions::default());   // own dir, own port
//! let proxy = ProxyProcess::start_for(&wiki).await;     // /readyz is 200
//! let client = proxy.client();                          // never sends Cookie
//! let reply = client.get(&[("action", "query"), ("meta", "userinfo")]).await;
//! assert_eq!(reply.json["query"]["userinfo"]["name"], "Admin");
//! assert!(wiki.kill_sessions() > 0);                    // rows deleted
//! let logins = proxy.metric("mw_auth_proxy_logins_total{result=\"success\"}").await;
//! ```
//!
//! # Decisions
//! - Only processes this harness started are ever signalled: the wiki through
//!   `scripts/wiki stop DIR` (which ends the pid recorded in DIR), the proxy
//!   through its own `Child`.
//! - Ports are picked by binding 127.0.0.1:0 and releasing it. Another
//!   process may take the port in between, so both the wiki and the proxy are
//!   retried on a fresh port when theirs turns out to be busy.
//! - The proxy runs with `RUST_LOG=debug` and writes stdout and stderr to one
//!   log file, so a test can check that no secret reaches even debug logs.
//!   [`ProxyProcess::log`] strips ANSI colour codes, which would otherwise
//!   split `name=value` pairs and hide a leak from a substring search.
//! - The test clients keep no cookie jar at all: the proxy alone holds the
//!   session, and a test that passed because the client kept a cookie would
//!   prove nothing.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use http::{HeaderMap, StatusCode};
use serde_json::Value;
use tempfile::TempDir;

/// How long the proxy may take to log in and become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a SIGTERMed proxy or a `--check` run may take to exit.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Interval between two looks at something the test waits for.
const POLL_INTERVAL: Duration = Duration::from_millis(25);
/// Fresh ports tried before giving up when the chosen one is taken.
const PORT_ATTEMPTS: usize = 5;
/// `scripts/wiki` exits 2 for a refusal, e.g. a busy port.
const WIKI_REFUSED: i32 = 2;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/wiki")
}

fn run_script<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>) -> Output {
    Command::new(script())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", script().display()))
}

fn describe(output: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A port nobody listens on right now (it may be taken again before use).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// Runs `scripts/wiki install` once per test process. It is quiet and quick
/// when everything is present, and it also makes sure no apache2 was left
/// running, so it is never skipped; a failure fails every test that needs
/// the wiki, with the script's output.
fn ensure_installed() {
    static INSTALL: OnceLock<Result<(), String>> = OnceLock::new();
    let outcome = INSTALL.get_or_init(|| {
        let output = run_script(["install"]);
        if output.status.success() {
            Ok(())
        } else {
            Err(describe(&output))
        }
    });
    if let Err(output) = outcome {
        panic!("`scripts/wiki install` failed: {output}");
    }
}

/// Options of `scripts/wiki create`.
#[derive(Debug, Clone, Default)]
pub struct WikiOptions {
    /// `$wgObjectCacheSessionExpiry` in seconds; the wiki's default (3600)
    /// when `None`.
    pub session_expiry: Option<u64>,
    /// Anonymous users may not read (`readapidenied`).
    pub private: bool,
    /// PHP built-in server workers; the script's default (4) when `None`.
    pub workers: Option<u32>,
    /// Load the OATHAuth extension (two-factor login).
    pub oathauth: bool,
}

/// A throwaway wiki in its own temporary directory, stopped on drop.
#[derive(Debug)]
pub struct RealWiki {
    dir: PathBuf,
    env: BTreeMap<String, String>,
    running: bool,
    /// Kept for its lifetime only: the directory goes when the wiki does.
    _tmp: TempDir,
}

impl RealWiki {
    /// Creates and starts a wiki on a free port, retrying on a fresh port
    /// when the script says the chosen one is busy.
    pub fn start(options: WikiOptions) -> Self {
        ensure_installed();
        let tmp = tempfile::Builder::new()
            .prefix("mw-auth-proxy-wiki-")
            .tempdir()
            .expect("temporary directory");
        let mut refusals = Vec::new();
        for attempt in 1..=PORT_ATTEMPTS {
            // `create` wants an empty directory; a refused attempt may have
            // left files behind, so every attempt gets its own.
            let dir = tmp.path().join(format!("wiki-{attempt}"));
            let port = free_port().to_string();
            let mut create: Vec<OsString> = vec![
                "create".into(),
                dir.clone().into(),
                "--port".into(),
                port.into(),
            ];
            if let Some(expiry) = options.session_expiry {
                create.extend(["--session-expiry".into(), expiry.to_string().into()]);
            }
            if options.private {
                create.push("--private".into());
            }
            if let Some(workers) = options.workers {
                create.extend(["--workers".into(), workers.to_string().into()]);
            }
            if options.oathauth {
                create.push("--oathauth".into());
            }
            let output = run_script(&create);
            if is_busy_port(&output) {
                refusals.push(describe(&output));
                continue;
            }
            assert!(
                output.status.success(),
                "`scripts/wiki create` failed: {}",
                describe(&output)
            );
            let output = run_script([OsStr::new("start"), dir.as_os_str()]);
            if is_busy_port(&output) {
                refusals.push(describe(&output));
                continue;
            }
            let env = read_env_file(&dir.join("wiki.env"));
            let mut wiki = Self {
                dir,
                env,
                running: true,
                _tmp: tmp,
            };
            if !output.status.success() {
                // `start` cleans up after itself, but make sure.
                wiki.stop();
                panic!("`scripts/wiki start` failed: {}", describe(&output));
            }
            return wiki;
        }
        panic!(
            "no free port for the wiki after {PORT_ATTEMPTS} attempts:\n{}",
            refusals.join("\n")
        );
    }

    /// `http://127.0.0.1:PORT/api.php`.
    pub fn api_url(&self) -> &str {
        self.var("WIKI_API_URL")
    }

    pub fn port(&self) -> u16 {
        self.var("WIKI_PORT").parse().expect("WIKI_PORT is a port")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The bot-password login name, `Admin@proxybot`.
    pub fn bot_user(&self) -> &str {
        self.var("WIKI_BOT_USER")
    }

    /// The file holding the bot password on one line (mode 0600).
    pub fn bot_password_path(&self) -> PathBuf {
        self.dir.join("bot-password")
    }

    pub fn bot_password(&self) -> &str {
        self.var("WIKI_BOT_PASSWORD")
    }

    pub fn admin_user(&self) -> &str {
        self.var("WIKI_ADMIN_USER")
    }

    /// Enrols the admin for TOTP two-factor login; returns the secret's
    /// file.
    pub fn enrol_totp(&mut self, secret: &str) -> PathBuf {
        let output = run_script([
            OsStr::new("enrol-totp"),
            self.dir.as_os_str(),
            OsStr::new("--secret"),
            OsStr::new(secret),
        ]);
        assert!(
            output.status.success(),
            "`scripts/wiki enrol-totp` failed: {}",
            describe(&output)
        );
        self.dir.join("totp-secret")
    }

    pub fn admin_password(&self) -> &str {
        self.var("WIKI_ADMIN_PASSWORD")
    }

    /// One value of `DIR/wiki.env`; panics when the script wrote no such key.
    pub fn var(&self, key: &str) -> &str {
        self.env
            .get(key)
            .unwrap_or_else(|| panic!("{key} missing from {}/wiki.env", self.dir.display()))
    }

    /// Deletes every session of the wiki at once; returns how many session
    /// rows were deleted.
    pub fn kill_sessions(&self) -> u64 {
        let output = run_script([OsStr::new("kill-sessions"), self.dir.as_os_str()]);
        assert!(
            output.status.success(),
            "`scripts/wiki kill-sessions` failed: {}",
            describe(&output)
        );
        let text = String::from_utf8_lossy(&output.stdout);
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("kill-sessions printed no count: {}", describe(&output)))
    }

    /// The ids of every live session. A session id is the value of the
    /// `<prefix>_session` / `<prefix>_BPsession` cookie, so these are the
    /// strings that must never appear in the proxy's log.
    pub fn session_ids(&self) -> Vec<String> {
        // Keys are "<dbname>:MWSession:<id>" in table objectcache.
        let code = r#"
            $db = new PDO("sqlite:" . $argv[1]);
            $db->setAttribute(PDO::ATTR_ERRMODE, PDO::ERRMODE_EXCEPTION);
            $db->setAttribute(PDO::ATTR_TIMEOUT, 30);
            $t = $db->query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'objectcache'");
            if (!$t->fetchColumn()) { exit(0); }
            foreach ($db->query("SELECT keyname FROM objectcache WHERE keyname LIKE '%:MWSession:%'") as $row) {
                echo substr(strrchr($row[0], ":"), 1), "\n";
            }
        "#;
        let output = Command::new("php")
            .args(["-d", "display_errors=stderr", "-r", code])
            .arg(self.var("WIKI_CACHE_DB"))
            .stdin(Stdio::null())
            .output()
            .expect("run php");
        assert!(
            output.status.success(),
            "listing sessions failed: {}",
            describe(&output)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The standard proxy configuration for this wiki, listening on `listen`.
    pub fn proxy_config(&self, listen: SocketAddr) -> ProxyConfig {
        ProxyConfig {
            listen,
            api_url: Some(self.api_url().to_owned()),
            username: self.bot_user().to_owned(),
            password_file: self.bot_password_path(),
        }
    }

    /// Stops the server (only the one started from this wiki's directory).
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        self.running = false;
        let output = run_script([OsStr::new("stop"), self.dir.as_os_str()]);
        if !output.status.success() {
            eprintln!("`scripts/wiki stop` failed: {}", describe(&output));
        }
    }
}

impl Drop for RealWiki {
    fn drop(&mut self) {
        self.stop();
    }
}

fn is_busy_port(output: &Output) -> bool {
    output.status.code() == Some(WIKI_REFUSED)
        && String::from_utf8_lossy(&output.stderr).contains("is busy")
}

/// Reads `KEY=VALUE` lines as written by `printf 'KEY=%q\n'`.
fn read_env_file(path: &Path) -> BTreeMap<String, String> {
    let text = fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.to_owned(), shell_unquote(value)))
        .collect()
}

/// Undoes bash's `%q` for the values `scripts/wiki` writes: backslash
/// escapes and `''` for the empty string. `$'...'` only appears for control
/// characters, which none of those values hold.
pub fn shell_unquote(value: &str) -> String {
    if value == "''" {
        return String::new();
    }
    assert!(
        !value.starts_with("$'"),
        "unexpected $'...' quoting in wiki.env: {value}"
    );
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// The keys of a proxy configuration file that the tests vary.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    /// `None` leaves `wiki.api_url` out of the file.
    pub api_url: Option<String>,
    pub username: String,
    pub password_file: PathBuf,
}

impl ProxyConfig {
    pub fn to_toml(&self) -> String {
        let mut server = toml::Table::new();
        server.insert("listen".into(), self.listen.to_string().into());
        let mut wiki = toml::Table::new();
        if let Some(api_url) = &self.api_url {
            wiki.insert("api_url".into(), api_url.clone().into());
        }
        let mut login = toml::Table::new();
        login.insert("username".into(), self.username.clone().into());
        login.insert(
            "password_file".into(),
            self.password_file.display().to_string().into(),
        );
        let mut file = toml::Table::new();
        file.insert("server".into(), server.into());
        file.insert("wiki".into(), wiki.into());
        file.insert("login".into(), login.into());
        toml::to_string(&file).expect("a TOML table serializes")
    }
}

/// `127.0.0.1:<free port>`.
pub fn free_listen_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// What `ProxyProcess` waits for before handing the process to the test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WaitFor {
    /// `/healthz` answers: the proxy listens, logged in or not.
    Listening,
    /// `/readyz` is 200: logged in.
    Ready,
}

/// Why a launch did not give a proxy to test.
enum LaunchError {
    /// Another process took the port between picking and binding it.
    PortTaken(String),
}

/// The real `mw-auth-proxy` binary, killed on drop if still running.
#[derive(Debug)]
pub struct ProxyProcess {
    child: Child,
    base_url: String,
    log_path: PathBuf,
    config_path: PathBuf,
    http: reqwest::Client,
    /// When `/readyz` was first seen 200 (only for [`ProxyProcess::start`]).
    ready_at: Option<Instant>,
    _tmp: TempDir,
}

impl ProxyProcess {
    /// Starts the proxy with the standard configuration for `wiki` on a free
    /// port and waits until it is logged in.
    pub async fn start_for(wiki: &RealWiki) -> Self {
        Self::start_with(|listen| wiki.proxy_config(listen).to_toml()).await
    }

    /// Starts the proxy with `config_toml` and waits until `/readyz` is 200.
    /// The caller chose the port in `server.listen`.
    pub async fn start(config_toml: &str) -> Self {
        match Self::launch(config_toml, WaitFor::Ready).await {
            Ok(proxy) => proxy,
            Err(LaunchError::PortTaken(log)) => panic!("the proxy could not listen:\n{log}"),
        }
    }

    /// Starts the proxy with `config_toml` and waits only until it listens:
    /// for configurations that cannot log in.
    pub async fn spawn(config_toml: &str) -> Self {
        match Self::launch(config_toml, WaitFor::Listening).await {
            Ok(proxy) => proxy,
            Err(LaunchError::PortTaken(log)) => panic!("the proxy could not listen:\n{log}"),
        }
    }

    /// [`ProxyProcess::start`] with the configuration made for a free
    /// address, retried on a fresh one if the port was taken meanwhile.
    pub async fn start_with(make_config: impl Fn(SocketAddr) -> String) -> Self {
        Self::launch_with(make_config, WaitFor::Ready).await
    }

    /// [`ProxyProcess::spawn`] with a free address, retried likewise.
    pub async fn spawn_with(make_config: impl Fn(SocketAddr) -> String) -> Self {
        Self::launch_with(make_config, WaitFor::Listening).await
    }

    async fn launch_with(make_config: impl Fn(SocketAddr) -> String, wait_for: WaitFor) -> Self {
        let mut logs = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            match Self::launch(&make_config(free_listen_addr()), wait_for).await {
                Ok(proxy) => return proxy,
                Err(LaunchError::PortTaken(log)) => logs.push(log),
            }
        }
        panic!(
            "the proxy found no free port in {PORT_ATTEMPTS} attempts:\n{}",
            logs.join("\n")
        );
    }

    async fn launch(config_toml: &str, wait_for: WaitFor) -> Result<Self, LaunchError> {
        let listen = listen_of(config_toml);
        let tmp = tempfile::Builder::new()
            .prefix("mw-auth-proxy-run-")
            .tempdir()
            .expect("temporary directory");
        let config_path = tmp.path().join("proxy.toml");
        fs::write(&config_path, config_toml).expect("write the proxy config");
        let log_path = tmp.path().join("proxy.log");
        let log = File::create(&log_path).expect("create the proxy log");
        let child = proxy_command()
            .arg("--config")
            .arg(&config_path)
            .env("RUST_LOG", "debug")
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn mw-auth-proxy");
        let mut proxy = Self {
            child,
            base_url: format!("http://{listen}"),
            log_path,
            config_path,
            http: http_client(),
            ready_at: None,
            _tmp: tmp,
        };
        proxy.wait_for(wait_for).await?;
        Ok(proxy)
    }

    async fn wait_for(&mut self, wait_for: WaitFor) -> Result<(), LaunchError> {
        let path = match wait_for {
            WaitFor::Listening => "/healthz",
            WaitFor::Ready => "/readyz",
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the proxy") {
                let log = self.log();
                if log.contains("cannot listen on") {
                    return Err(LaunchError::PortTaken(log));
                }
                panic!("the proxy exited ({status}) before {path} was 200:\n{log}");
            }
            let last = match self
                .http
                .get(format!("{}{path}", self.base_url))
                .send()
                .await
            {
                Ok(response) if response.status() == StatusCode::OK => {
                    if wait_for == WaitFor::Ready {
                        self.ready_at = Some(Instant::now());
                    }
                    return Ok(());
                }
                Ok(response) => format!(
                    "{}: {}",
                    response.status(),
                    response.text().await.unwrap_or_default()
                ),
                Err(err) => err.to_string(),
            };
            assert!(
                Instant::now() < deadline,
                "{path} not 200 within {READY_TIMEOUT:?} (last: {last}); log:\n{}",
                self.log()
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The proxied API: `http://127.0.0.1:PORT/api.php`.
    pub fn api_url(&self) -> String {
        format!("{}/api.php", self.base_url)
    }

    /// A cookie-less client for the proxied API that fails the test on any
    /// `Set-Cookie` the proxy lets through.
    pub fn client(&self) -> ApiClient {
        ApiClient::through_proxy(&self.api_url())
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// When `/readyz` was first seen 200, if the test waited for it.
    pub fn ready_at(&self) -> Option<Instant> {
        self.ready_at
    }

    /// `/readyz`: its status and JSON body.
    pub async fn readyz(&self) -> (StatusCode, Value) {
        let response = self
            .http
            .get(format!("{}/readyz", self.base_url))
            .send()
            .await
            .expect("GET /readyz");
        let status = response.status();
        let text = response.text().await.expect("read /readyz");
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|err| panic!("/readyz is not JSON ({err}): {text}"));
        (status, json)
    }

    /// The whole `/metrics` text.
    pub async fn metrics_text(&self) -> String {
        let response = self
            .http
            .get(format!("{}/metrics", self.base_url))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(response.status(), StatusCode::OK, "/metrics");
        response.text().await.expect("read /metrics")
    }

    /// One sample from `/metrics`, named exactly as it is rendered, labels
    /// included: `mw_auth_proxy_logins_total{result="success"}`.
    pub async fn metric(&self, name_with_labels: &str) -> f64 {
        let text = self.metrics_text().await;
        metric_value(&text, name_with_labels).unwrap_or_else(|| {
            panic!("no sample `{name_with_labels}` in /metrics:\n{text}");
        })
    }

    /// Everything the proxy wrote to stdout and stderr so far, ANSI colour
    /// codes removed.
    pub fn log(&self) -> String {
        let raw = fs::read(&self.log_path).expect("read the proxy log");
        strip_ansi(&String::from_utf8_lossy(&raw))
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("poll the proxy").is_none()
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub async fn terminate(&mut self) -> ExitStatus {
        if let Some(status) = self.child.try_wait().expect("poll the proxy") {
            panic!("the proxy had already exited ({status}):\n{}", self.log());
        }
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {} failed", self.child.id());
        self.wait_exit(EXIT_TIMEOUT).await
    }

    /// Waits up to `limit` for the process to exit.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the proxy") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the proxy did not exit within {limit:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The proxy binary with a clean environment for its own settings, so the
/// test's configuration file is all that counts.
fn proxy_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mw-auth-proxy"));
    command
        .env_remove("MW_AUTH_PROXY_PASSWORD")
        .env_remove("MW_AUTH_PROXY_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    command
}

fn listen_of(config_toml: &str) -> SocketAddr {
    let table: toml::Table = toml::from_str(config_toml)
        .unwrap_or_else(|err| panic!("the test's proxy config is not TOML: {err}"));
    table
        .get("server")
        .and_then(|server| server.get("listen"))
        .and_then(toml::Value::as_str)
        .expect("the config sets server.listen (ports are chosen by the test)")
        .parse()
        .expect("server.listen is an address")
}

/// The value of the sample named exactly `name_with_labels`.
pub fn metric_value(text: &str, name_with_labels: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == name_with_labels).then(|| value.parse().ok())?
        })
}

/// Removes ANSI escape sequences (`ESC [ ... letter`).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The outcome of one `mw-auth-proxy --check` run.
#[derive(Debug)]
pub struct CheckRun {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `mw-auth-proxy --check --config FILE` with `config_toml`, bounded by
/// [`EXIT_TIMEOUT`].
pub async fn run_check(config_toml: &str) -> CheckRun {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let config_path = tmp.path().join("proxy.toml");
    fs::write(&config_path, config_toml).expect("write the config");
    // Files rather than pipes: nobody reads a pipe while the test polls.
    let stdout_path = tmp.path().join("stdout");
    let stderr_path = tmp.path().join("stderr");
    let mut child = proxy_command()
        .arg("--check")
        .arg("--config")
        .arg(&config_path)
        .stdout(File::create(&stdout_path).expect("create stdout file"))
        .stderr(File::create(&stderr_path).expect("create stderr file"))
        .spawn()
        .expect("spawn mw-auth-proxy --check");
    let deadline = Instant::now() + EXIT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll --check") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "--check did not exit within {EXIT_TIMEOUT:?}; stderr:\n{}",
                fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    };
    CheckRun {
        status,
        stdout: fs::read_to_string(&stdout_path).expect("read stdout"),
        stderr: fs::read_to_string(&stderr_path).expect("read stderr"),
    }
}

/// Polls `probe` until it gives a value, failing the test after `limit`.
pub async fn poll_until<T>(
    what: &str,
    limit: Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?}: {what}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

pub fn http_client() -> reqwest::Client {
    // reqwest is built without a default crypto back end; a second install
    // in the same process only reports that one is there.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        // No cookie store (none is compiled in, and none is asked for): the
        // tests must pass without the client ever holding a session.
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("build the HTTP client")
}

/// One API answer.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
    /// `Value::Null` when the body is not JSON.
    pub json: Value,
}

impl Reply {
    /// The codes of the `MediaWiki-API-Error` header, if any.
    pub fn error_header(&self) -> Option<&str> {
        self.headers
            .get("mediawiki-api-error")
            .and_then(|value| value.to_str().ok())
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(http::header::SET_COOKIE)
            .iter()
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .collect()
    }
}

/// A bare Action API client without any cookie jar: it never sends
/// `Cookie`. Adds `format=json` unless the caller chose a format.
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    api_url: String,
    /// Fail the test on any `Set-Cookie` in an answer (set for the proxy).
    forbid_set_cookie: bool,
}

impl ApiClient {
    /// A client for the wiki itself: anonymous, since it keeps no cookies.
    pub fn direct(api_url: &str) -> Self {
        Self {
            http: http_client(),
            api_url: api_url.to_owned(),
            forbid_set_cookie: false,
        }
    }

    /// A client for the proxy: every answer is checked for `Set-Cookie`.
    pub fn through_proxy(api_url: &str) -> Self {
        Self {
            forbid_set_cookie: true,
            ..Self::direct(api_url)
        }
    }

    fn with_format<'a>(params: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut params = params.to_vec();
        if !params.iter().any(|(name, _)| *name == "format") {
            params.push(("format", "json"));
        }
        params
    }

    /// `GET api.php?params`.
    pub async fn get(&self, params: &[(&str, &str)]) -> Reply {
        let mut url = url::Url::parse(&self.api_url).expect("API URL");
        url.query_pairs_mut()
            .extend_pairs(Self::with_format(params));
        self.send(self.http.get(url)).await
    }

    /// `POST api.php` with `params` as an urlencoded body.
    pub async fn post_form(&self, params: &[(&str, &str)]) -> Reply {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(Self::with_format(params))
            .finish();
        let request = self
            .http
            .post(&self.api_url)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body);
        self.send(request).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("send the API request");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().await.expect("read the API answer");
        let json = serde_json::from_str(&body).unwrap_or(Value::Null);
        let reply = Reply {
            status,
            headers,
            body,
            json,
        };
        if self.forbid_set_cookie {
            assert!(
                reply.set_cookies().is_empty(),
                "the proxy let Set-Cookie through: {:?}",
                reply.set_cookies()
            );
        }
        reply
    }

    /// A token of `kind` (`csrf`, `watch`...) from `meta=tokens`.
    pub async fn token(&self, kind: &str) -> String {
        let reply = self
            .get(&[("action", "query"), ("meta", "tokens"), ("type", kind)])
            .await;
        let key = format!("{kind}token");
        reply.json["query"]["tokens"][&key]
            .as_str()
            .unwrap_or_else(|| panic!("no {key} in {} {}", reply.status, reply.body))
            .to_owned()
    }

    /// The user name `meta=userinfo` reports, and whether it is anonymous.
    pub async fn user_info(&self) -> (String, bool) {
        let reply = self.get(&[("action", "query"), ("meta", "userinfo")]).await;
        let info = &reply.json["query"]["userinfo"];
        let name = info["name"]
            .as_str()
            .unwrap_or_else(|| panic!("no userinfo in {} {}", reply.status, reply.body));
        (name.to_owned(), info.get("anon").is_some())
    }
}
