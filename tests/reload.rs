//! SIGHUP reloads the configuration and the password file of the running
//! binary: new credentials log in at once; a broken file is refused and the
//! running configuration kept.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use support::in_process::client;
use support::mock_wiki::MockWiki;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn readyz(base: &str) -> Option<u16> {
    let response = client().get(format!("{base}/readyz")).send().await.ok()?;
    Some(response.status().as_u16())
}

async fn wait_for_readyz(base: &str, wanted: u16, limit: Duration) -> Duration {
    let started = Instant::now();
    while readyz(base).await != Some(wanted) {
        assert!(started.elapsed() < limit, "/readyz never answered {wanted}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

fn hang_up(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn sighup_applies_new_credentials_and_refuses_a_broken_file() {
    let wiki = MockWiki::builder().start().await;
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, "not-the-password\n").unwrap();
    let port = free_port();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n[wiki]\napi_url = {:?}\n\
         [login]\nusername = {:?}\npassword_file = \"password\"\n",
        wiki.api_url(),
        wiki.lgname()
    );
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, &config).unwrap();
    let log_path = dir.path().join("proxy.log");
    let mut proxy = tokio::process::Command::new(env!("CARGO_BIN_EXE_mw-auth-proxy"))
        .arg("--config")
        .arg(&config_path)
        .env_remove("MW_AUTH_PROXY_PASSWORD")
        .env("RUST_LOG", "info")
        .stderr(std::fs::File::create(&log_path).unwrap())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = proxy.id().unwrap();
    let base = format!("http://127.0.0.1:{port}");

    // Wrong password: not ready, and backing off (1 s, 2 s, then 4 s).
    wait_for_readyz(&base, 503, Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while wiki.login_attempts() < 3 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The right password in the file and a SIGHUP: logged in at once, well
    // before the 4 s pause would have ended.
    std::fs::write(&password_file, format!("{}\n", wiki.password())).unwrap();
    hang_up(pid);
    let waited = wait_for_readyz(&base, 200, Duration::from_secs(10)).await;
    assert!(waited < Duration::from_secs(2), "ready after {waited:?}");
    assert_eq!(wiki.successful_logins(), 1);

    // A broken file is refused; the proxy keeps serving as before.
    std::fs::write(&config_path, "[wiki]\napi_url = 5\n").unwrap();
    hang_up(pid);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&log_path)
        .unwrap()
        .contains("reload refused")
    {
        assert!(Instant::now() < deadline, "no refusal logged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(readyz(&base).await, Some(200));
    assert_eq!(wiki.successful_logins(), 1);

    // Changed credentials make a fresh login even from a working session.
    std::fs::write(&config_path, &config).unwrap();
    std::fs::write(&password_file, "another-wrong-one").unwrap();
    hang_up(pid);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let body = client()
            .get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if body.contains("Incorrect username or password") {
            break;
        }
        assert!(Instant::now() < deadline, "still {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(wiki.login_attempts(), 5);

    proxy.start_kill().unwrap();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(!log.contains(wiki.password()), "{log}");
}
