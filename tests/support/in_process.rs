//! The proxy started inside the test process on `127.0.0.1:0`, in front of
//! a wiki at a given `api.php` URL, with a client that never keeps cookies.

use std::sync::Arc;
use std::time::Duration;

use mw_auth_proxy::config::{Environment, Settings};
use mw_auth_proxy::server::App;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// No environment: tests must not depend on the process's variables.
struct NoEnvironment;

impl Environment for NoEnvironment {
    fn var(&self, _name: &str) -> Option<String> {
        None
    }
}

/// Settings for a proxy in front of `api_url`, plus extra TOML lines.
pub fn settings(api_url: &str, username: &str, password: &str, extra: &str) -> Settings {
    settings_from(&format!(
        "[wiki]\napi_url = {api_url:?}\ntimeout_secs = 5\n\
         [login]\nusername = {username:?}\npassword = {password:?}\n{extra}"
    ))
}

/// Settings from a whole configuration file's text.
pub fn settings_from(text: &str) -> Settings {
    Settings::from_toml(text, std::path::Path::new("."), &NoEnvironment)
        .unwrap_or_else(|problems| panic!("test settings rejected: {problems:?}"))
}

#[derive(Debug)]
pub struct TestProxy {
    pub base_url: String,
    pub app: Arc<App>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestProxy {
    pub async fn start(settings: Settings) -> Self {
        install_crypto();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base_url = format!("http://{}", listener.local_addr().expect("addr"));
        let app = mw_auth_proxy::build(&settings).expect("build proxy");
        let (shutdown, stopped) = oneshot::channel::<()>();
        let mut limits = settings.server.clone();
        limits.shutdown_grace = Duration::from_secs(5);
        let server_app = app.clone();
        let task = tokio::spawn(async move {
            mw_auth_proxy::server::serve(
                listener,
                server_app,
                async {
                    let _ = stopped.await;
                },
                &limits,
            )
            .await;
        });
        Self {
            base_url,
            app,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    pub fn api_url(&self) -> String {
        format!("{}/api.php", self.base_url)
    }

    /// Stops accepting and waits for in-flight requests.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task");
        }
    }

    /// One series from `/metrics`, e.g. `mw_auth_proxy_logins_total{result="success"}`.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = client()
            .get(format!("{}/metrics", self.base_url))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body");
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
            .trim()
            .parse()
            .expect("metric value")
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let status = client()
                .get(format!("{}/readyz", self.base_url))
                .send()
                .await
                .map(|response| response.status().as_u16());
            if status.is_ok_and(|status| status == 200) {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "never ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client like the tools the proxy serves: no cookie store, no login.
pub fn client() -> reqwest::Client {
    install_crypto();
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// A mock wiki and a ready proxy in front of it, with `extra` TOML lines.
pub async fn start_with_mock(extra: &str) -> (super::mock_wiki::MockWiki, TestProxy) {
    let wiki = super::mock_wiki::MockWiki::builder().start().await;
    let proxy = TestProxy::start(settings(
        &wiki.api_url(),
        wiki.lgname(),
        wiki.password(),
        extra,
    ))
    .await;
    proxy.wait_ready().await;
    (wiki, proxy)
}

/// `meta=userinfo` through the proxy.
pub fn userinfo_url(proxy: &TestProxy) -> String {
    format!("{}?action=query&meta=userinfo&format=json", proxy.api_url())
}
