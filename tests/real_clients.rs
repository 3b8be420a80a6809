//! Real client libraries, given no credentials at all, act as the bot
//! through the proxy on a real MediaWiki: each reads, edits, sees every
//! server-side session killed, and edits again without noticing. The
//! scripts live in `tests/clients/` (see its README); each test gives one
//! library its own wiki and proxy, and prints the library's version.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use support::real_wiki::{ProxyProcess, RealWiki, WikiOptions};

fn project_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Installs the pinned client libraries once per test process; quick and
/// silent when they are already there. A failure fails the tests: they are
/// never skipped.
fn clients_dir() -> &'static Path {
    static INSTALLED: OnceLock<PathBuf> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let dir = project_dir().join("target/clients");
        let output = Command::new(project_dir().join("scripts/install-clients"))
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "scripts/install-clients failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        dir
    })
}

async fn run_client(name: &str) {
    let clients = clients_dir();
    let wiki = RealWiki::start(WikiOptions::default());
    let proxy = ProxyProcess::start_for(&wiki).await;
    let run = {
        let mut command = tokio::process::Command::new(project_dir().join("tests/clients/run-one"));
        command
            .arg(name)
            .arg(clients)
            .env("PROXY_API_URL", proxy.api_url())
            .env("WIKI_DIR", wiki.dir())
            .env("SCRIPTS_DIR", project_dir().join("scripts"))
            .env("BOT_USER_NAME", "Admin")
            .env("PAGE_PREFIX", format!("Client {name}/"));
        command.output()
    };
    let output = tokio::time::timeout(std::time::Duration::from_secs(120), run)
        .await
        .expect("the client run took over 2 minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "{name} failed:\n{stdout}\n{stderr}\nproxy log:\n{}",
        proxy.log()
    );
    let first = stdout.lines().next().unwrap_or_default();
    assert!(first.starts_with(&format!("client {name} ")), "{stdout}");
    assert_eq!(stdout.lines().last(), Some(format!("ok {name}").as_str()));
    // The kill made the proxy log in again, once.
    let logins = proxy
        .metric("mw_auth_proxy_logins_total{result=\"success\"}")
        .await;
    assert_eq!(logins, 2.0, "{name}: logins");
}

#[tokio::test]
async fn client_mwclient_edits_as_the_bot_across_a_session_kill() {
    run_client("mwclient").await;
}

#[tokio::test]
async fn client_pywikibot_edits_as_the_bot_across_a_session_kill() {
    run_client("pywikibot").await;
}

#[tokio::test]
async fn client_mwn_edits_as_the_bot_across_a_session_kill() {
    run_client("mwn").await;
}

#[tokio::test]
async fn client_nodemw_edits_as_the_bot_across_a_session_kill() {
    run_client("nodemw").await;
}
