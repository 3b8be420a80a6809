//! The command line: configuration errors exit 64 naming every bad key;
//! `--help` and `--version` work without a configuration.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

fn run(args: &[&str], config: Option<&str>) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    if let Some(text) = config {
        std::fs::write(&path, text).unwrap();
    }
    Command::new(env!("CARGO_BIN_EXE_mw-auth-proxy"))
        .args(args)
        .arg("--config")
        .arg(&path)
        .env_remove("MW_AUTH_PROXY_PASSWORD")
        .env_remove("MW_AUTH_PROXY_CONFIG")
        .output()
        .unwrap()
}

fn assert_config_error(config: &str, keys: &[&str]) {
    for args in [&[][..], &["--check"][..]] {
        let output = run(args, Some(config));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{args:?}: {stderr}");
        for key in keys {
            assert!(
                stderr.contains(&format!("`{key}`")),
                "{key} not named in:\n{stderr}"
            );
        }
    }
}

const VALID: &str = r#"
[wiki]
api_url = "http://127.0.0.1:9/api.php"
[login]
username = "Admin@proxybot"
password = "pw"
"#;

#[test]
fn an_unknown_key_is_named() {
    let config = VALID.replace("[login]", "[login]\npasword = \"typo\"");
    assert_config_error(&config, &["login.pasword"]);
}

#[test]
fn a_missing_key_is_named() {
    let config = VALID.replace("username = \"Admin@proxybot\"", "");
    assert_config_error(&config, &["login.username"]);
}

#[test]
fn a_bad_url_is_named() {
    let config = VALID.replace("http://127.0.0.1:9/api.php", "wiki.example.org/w/api.php");
    assert_config_error(&config, &["wiki.api_url"]);
}

#[test]
fn an_unreadable_password_file_is_named() {
    let config = VALID.replace(
        "password = \"pw\"",
        "password_file = \"/nonexistent/mw-password\"",
    );
    assert_config_error(&config, &["login.password_file"]);
}

#[test]
fn password_and_password_file_together_are_refused() {
    let config = VALID.replace(
        "password = \"pw\"",
        "password = \"pw\"\npassword_file = \"/etc/hostname\"",
    );
    assert_config_error(&config, &["login.password_file"]);
}

#[test]
fn every_problem_is_listed_at_once() {
    let config = "[wiki]\napi_url = \"nope\"\ncolour = 1\n[login]\nusername = \"NoBot\"\n";
    assert_config_error(
        config,
        &[
            "wiki.api_url",
            "wiki.colour",
            "login.username",
            "login.password",
        ],
    );
}

#[test]
fn a_missing_file_is_a_config_error() {
    let output = run(&[], None);
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read"));
}

#[test]
fn help_and_version_need_no_config() {
    let help = Command::new(env!("CARGO_BIN_EXE_mw-auth-proxy"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("--config") && text.contains("--check"),
        "{text}"
    );
    let version = Command::new(env!("CARGO_BIN_EXE_mw-auth-proxy"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn check_reports_an_unreachable_wiki_and_exits_1() {
    // Port 9 (discard) on loopback: nothing listens there.
    let output = run(&["--check"], Some(VALID));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("unreachable"), "{stderr}");
    assert!(!stderr.contains("pw\""), "{stderr}");
}

#[test]
fn check_says_what_to_try() {
    let output = run(&["--check"], Some(VALID));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("hint: check wiki.api_url"), "{stderr}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config =
        format!("[server]\nlisten = \"127.0.0.1:{port}\"\n{VALID}\n[log]\nformat = \"json\"\n");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mw-auth-proxy"))
        .arg("--config")
        .arg(&path)
        .env_remove("MW_AUTH_PROXY_PASSWORD")
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    // The first lines: a warning (the file holds the password and is
    // world-readable), the start line, then the failing login (nothing
    // listens on port 9).
    let lines: Vec<String> = BufReader::new(stderr)
        .lines()
        .take(3)
        .map(Result::unwrap)
        .collect();
    child.kill().unwrap();
    child.wait().unwrap();
    for line in &lines {
        let json: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("{line}"));
        assert!(json["level"].is_string(), "{line}");
    }
    assert!(lines[0].contains("plain text"), "{lines:?}");
    assert!(lines[2].contains("login failed"), "{lines:?}");
    assert!(!lines.concat().contains("\"pw\""), "{lines:?}");
}
