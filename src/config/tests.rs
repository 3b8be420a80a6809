//! The configuration checks, one problem at a time and all at once.

#![allow(clippy::unwrap_used)]

use super::*;
use std::collections::HashMap;

#[derive(Default)]
struct FakeEnv(HashMap<String, String>);

impl Environment for FakeEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

const MINIMAL: &str = r#"
    [wiki]
    api_url = "https://wiki.example.org/w/api.php"
    [login]
    username = "Example@mybot"
    password = "pw-from-file"
"#;

fn parse(text: &str) -> Result<Settings, Vec<ConfigProblem>> {
    Settings::from_toml(text, Path::new("."), &FakeEnv::default())
}

fn keys(problems: &[ConfigProblem]) -> Vec<&str> {
    problems.iter().map(|p| p.key.as_str()).collect()
}

#[test]
fn minimal_file_gets_defaults() {
    let settings = parse(MINIMAL).unwrap();
    assert_eq!(settings.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(settings.server.max_replay_body_bytes, 8 * 1024 * 1024);
    assert_eq!(settings.sites[0].wiki.api_url.path(), "/w/api.php");
    assert!(
        settings.sites[0]
            .wiki
            .user_agent
            .starts_with("mw-auth-proxy/")
    );
    assert_eq!(settings.sites[0].login.password.expose(), "pw-from-file");
    assert_eq!(settings.sites[0].login.account(), "Example");
}

#[test]
fn every_unknown_key_is_reported_at_once() {
    let text = format!("{MINIMAL}\n[extra]\nfoo = 1\n")
        .replace("[wiki]", "[wiki]\napi_ur = \"x\"\nlisten = \"y\"");
    let problems = parse(&text).unwrap_err();
    let keys = keys(&problems);
    assert!(keys.contains(&"wiki.api_ur"), "{keys:?}");
    assert!(keys.contains(&"wiki.listen"), "{keys:?}");
    assert!(keys.contains(&"extra"), "{keys:?}");
}

#[test]
fn missing_keys_are_all_named() {
    let problems = parse("").unwrap_err();
    assert_eq!(
        keys(&problems),
        ["wiki.api_url", "login.username", "login.password"]
    );
}

#[test]
fn bad_urls_are_refused() {
    for bad in [
        "not a url",
        "ftp://wiki.example.org/api.php",
        "https://wiki.example.org/w/",
        "https://wiki.example.org/w/api.php?action=query",
        "https://user:pw@wiki.example.org/w/api.php",
    ] {
        let text = MINIMAL.replace("https://wiki.example.org/w/api.php", bad);
        let problems = parse(&text).unwrap_err();
        assert_eq!(keys(&problems), ["wiki.api_url"], "{bad}: {problems:?}");
    }
}

#[test]
fn password_and_password_file_together_are_refused() {
    let text = MINIMAL.replace(
        "password = \"pw-from-file\"",
        "password = \"a\"\npassword_file = \"/dev/null\"",
    );
    let problems = parse(&text).unwrap_err();
    assert_eq!(keys(&problems), ["login.password_file"]);
}

#[test]
fn unreadable_password_file_names_the_key_and_path() {
    let text = MINIMAL.replace(
        "password = \"pw-from-file\"",
        "password_file = \"/nonexistent/secret\"",
    );
    let problems = parse(&text).unwrap_err();
    assert_eq!(keys(&problems), ["login.password_file"]);
    assert!(problems[0].message.contains("/nonexistent/secret"));
}

#[test]
fn password_file_is_one_line_relative_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("pw"), "from-file-secret\n").unwrap();
    let text = MINIMAL.replace("password = \"pw-from-file\"", "password_file = \"pw\"");
    let settings = Settings::from_toml(&text, dir.path(), &FakeEnv::default()).unwrap();
    assert_eq!(
        settings.sites[0].login.password.expose(),
        "from-file-secret"
    );
}

#[test]
fn environment_overrides_the_password() {
    let mut env = FakeEnv::default();
    env.0.insert(PASSWORD_ENV.into(), "from-env".into());
    let settings = Settings::from_toml(MINIMAL, Path::new("."), &env).unwrap();
    assert_eq!(settings.sites[0].login.password.expose(), "from-env");
    let no_password = MINIMAL.replace("password = \"pw-from-file\"", "");
    let settings = Settings::from_toml(&no_password, Path::new("."), &env).unwrap();
    assert_eq!(settings.sites[0].login.password.expose(), "from-env");
}

#[test]
fn username_must_be_a_bot_password_name() {
    let text = MINIMAL.replace("Example@mybot", "Example");
    assert_eq!(keys(&parse(&text).unwrap_err()), ["login.username"]);
}

#[test]
fn wrong_types_and_bad_listen_are_reported() {
    let text = format!("{MINIMAL}\n[server]\nlisten = \"localhost\"\n");
    assert_eq!(keys(&parse(&text).unwrap_err()), ["server.listen"]);
    let text = format!("{MINIMAL}\n[server]\nlisten = 8080\n");
    let problems = parse(&text).unwrap_err();
    assert!(problems[0].message.contains("listen"), "{problems:?}");
}

#[test]
fn shipped_example_config_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let text = fs::read_to_string(dir.join("mw-auth-proxy.example.toml")).unwrap();
    let settings = Settings::from_toml(&text, &dir, &FakeEnv::default()).unwrap();
    assert_eq!(settings.sites[0].login.username, "Example@mybot");
    // The commented-out alternative must be valid too.
    let secret = tempfile::NamedTempFile::new().unwrap();
    fs::write(secret.path(), "from-file\n").unwrap();
    let text = text.replace("password = \"change-me\"", "").replace(
        "# password_file = \"/run/secrets/mw_bot_password\"",
        &format!("password_file = {:?}", secret.path()),
    );
    let settings = Settings::from_toml(&text, &dir, &FakeEnv::default()).unwrap();
    assert_eq!(settings.sites[0].login.password.expose(), "from-file");
}

#[test]
fn log_format_is_text_or_json() {
    assert_eq!(parse(MINIMAL).unwrap().log.format, LogFormat::Text);
    let json = format!("{MINIMAL}\n[log]\nformat = \"json\"\n");
    assert_eq!(parse(&json).unwrap().log.format, LogFormat::Json);
    let xml = format!("{MINIMAL}\n[log]\nformat = \"xml\"\n");
    assert_eq!(keys(&parse(&xml).unwrap_err()), ["log.format"]);
}

#[test]
fn a_plaintext_password_readable_by_others_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    fs::write(&path, MINIMAL).unwrap();
    let env = FakeEnv::default();

    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let settings = Settings::load(&path, &env).unwrap();
    assert_eq!(settings.warnings.len(), 1, "{:?}", settings.warnings);
    assert!(settings.warnings[0].contains("password_file"));
    assert!(!settings.warnings[0].contains("pw-from-file"));

    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    assert!(Settings::load(&path, &env).unwrap().warnings.is_empty());

    fs::write(dir.path().join("pw"), "secret").unwrap();
    fs::write(
        &path,
        MINIMAL.replace("password = \"pw-from-file\"", "password_file = \"pw\""),
    )
    .unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let settings = Settings::load(&path, &env).unwrap();
    assert!(settings.warnings.is_empty());
    assert_eq!(
        settings.sites[0].login.password_source,
        PasswordSource::File(dir.path().join("pw"))
    );
}

#[test]
fn a_remote_listen_address_needs_inbound_authentication() {
    let remote = format!("{MINIMAL}\n[server]\nlisten = \"0.0.0.0:8080\"\n");
    assert_eq!(keys(&parse(&remote).unwrap_err()), ["server.listen"]);
    for access in [
        "[access]\nbearer_tokens = [\"0123456789abcdef0123\"]",
        "[access]\nallow_cidrs = [\"10.0.0.0/8\", \"::1\"]",
    ] {
        let text = format!("{remote}\n{access}\n");
        let settings = parse(&text).unwrap();
        assert!(settings.warnings.is_empty());
    }
    let explicit = format!("{remote}\n[access]\nallow_unauthenticated_remote = true\n");
    let settings = parse(&explicit).unwrap();
    assert_eq!(settings.warnings.len(), 1, "{:?}", settings.warnings);
}

#[test]
fn access_values_are_checked() {
    let short = format!("{MINIMAL}\n[access]\nbearer_tokens = [\"short\"]\n");
    assert_eq!(keys(&parse(&short).unwrap_err()), ["access.bearer_tokens"]);
    let cidr = format!("{MINIMAL}\n[access]\nallow_cidrs = [\"10.0.0.0/33\"]\n");
    assert_eq!(keys(&parse(&cidr).unwrap_err()), ["access.allow_cidrs"]);
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("tokens"),
        "# one per line\n0123456789abcdef0123\n\nfedcba9876543210fedc\n",
    )
    .unwrap();
    let file = format!("{MINIMAL}\n[access]\nbearer_tokens_file = \"tokens\"\n");
    let settings = Settings::from_toml(&file, dir.path(), &FakeEnv::default()).unwrap();
    assert_eq!(settings.access.bearer_tokens.len(), 2);
    let missing = format!("{MINIMAL}\n[access]\nbearer_tokens_file = \"/nonexistent\"\n");
    assert_eq!(
        keys(&parse(&missing).unwrap_err()),
        ["access.bearer_tokens_file"]
    );
}

#[test]
fn plain_http_beyond_loopback_needs_consent() {
    let remote = MINIMAL.replace("https://wiki.example.org", "http://wiki.example.org");
    assert_eq!(keys(&parse(&remote).unwrap_err()), ["wiki.api_url"]);
    let consent = remote.replace("[wiki]", "[wiki]\nallow_insecure_http = true");
    assert!(parse(&consent).is_ok());
    for local in [
        "http://127.0.0.1:8180",
        "http://localhost",
        "http://[::1]:80",
    ] {
        let text = MINIMAL.replace("https://wiki.example.org", local);
        assert!(parse(&text).is_ok(), "{local}");
    }
}

#[test]
fn a_ca_file_must_hold_certificates() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("not-pem"), "hello").unwrap();
    let text = MINIMAL.replace("[wiki]", "[wiki]\nca_file = \"not-pem\"");
    let problems = Settings::from_toml(&text, dir.path(), &FakeEnv::default()).unwrap_err();
    assert_eq!(keys(&problems), ["wiki.ca_file"]);
    let text = MINIMAL.replace("[wiki]", "[wiki]\nca_file = \"/nonexistent.pem\"");
    assert_eq!(keys(&parse(&text).unwrap_err()), ["wiki.ca_file"]);
}

#[test]
fn policy_lists_hold_module_names() {
    let text = format!(
        "{MINIMAL}\n[policy]\nread_only = true\nallow_actions = [\"query\"]\ndeny_actions = [\"edit\"]\n"
    );
    let settings = parse(&text).unwrap();
    assert!(settings.sites[0].policy.read_only);
    assert_eq!(settings.sites[0].policy.allow_actions, ["query"]);
    let bad = format!("{MINIMAL}\n[policy]\ndeny_actions = [\"\"]\n");
    assert_eq!(keys(&parse(&bad).unwrap_err()), ["policy.deny_actions"]);
}

#[test]
fn wikimedia_wikis_want_a_user_agent() {
    let wikipedia = MINIMAL.replace("wiki.example.org", "en.wikipedia.org");
    let settings = parse(&wikipedia).unwrap();
    assert_eq!(settings.warnings.len(), 1);
    assert!(settings.warnings[0].contains("wiki.user_agent"));
    let identified = wikipedia.replace(
        "[wiki]",
        "[wiki]\nuser_agent = \"MyBot/1.0 (me@example.org)\"",
    );
    assert!(parse(&identified).unwrap().warnings.is_empty());
    assert!(parse(MINIMAL).unwrap().warnings.is_empty());
}

#[test]
fn session_and_etiquette_defaults() {
    let settings = parse(MINIMAL).unwrap();
    assert_eq!(
        settings.sites[0].session.keepalive,
        Some(Duration::from_secs(900))
    );
    assert!(settings.sites[0].session.heal_stale_csrf);
    assert_eq!(settings.sites[0].etiquette.maxlag, Some(5));
    assert_eq!(
        settings.sites[0].etiquette.max_concurrent_upstream,
        Some(64)
    );
    let off = format!(
        "{MINIMAL}\n[session]\nkeepalive_secs = 0\n[etiquette]\nmaxlag = 0\nmax_concurrent_upstream = 0\n"
    );
    let settings = parse(&off).unwrap();
    assert_eq!(settings.sites[0].session.keepalive, None);
    assert_eq!(settings.sites[0].etiquette.maxlag, None);
    assert_eq!(settings.sites[0].etiquette.max_concurrent_upstream, None);
    let missing_dir =
        format!("{MINIMAL}\n[session]\nstate_file = \"/nonexistent/dir/session.json\"\n");
    assert_eq!(
        keys(&parse(&missing_dir).unwrap_err()),
        ["session.state_file"]
    );
}

#[test]
fn login_methods_take_their_own_keys() {
    let client = MINIMAL.replace("Example@mybot", "Example").replace(
        "[login]",
        "[login]\nmethod = \"clientlogin\"\ntotp_secret = \"JBSWY3DPEHPK3PXP\"",
    );
    let settings = parse(&client).unwrap();
    assert_eq!(settings.sites[0].login.method, LoginMethod::ClientLogin);
    assert!(settings.sites[0].login.totp_secret.is_some());
    let bad_totp = client.replace("JBSWY3DPEHPK3PXP", "not base32!");
    assert_eq!(keys(&parse(&bad_totp).unwrap_err()), ["login.totp_secret"]);
    let bot_name = client.replace("\"Example\"", "\"Example@mybot\"");
    assert_eq!(keys(&parse(&bot_name).unwrap_err()), ["login.username"]);

    let totp_for_bot = MINIMAL.replace("[login]", "[login]\ntotp_secret = \"JBSWY3DPEHPK3PXP\"");
    assert_eq!(
        keys(&parse(&totp_for_bot).unwrap_err()),
        ["login.totp_secret"]
    );

    let oauth = "[wiki]\napi_url = \"https://wiki.example.org/w/api.php\"\n\
                 [login]\nmethod = \"oauth2\"\naccess_token = \"abc\"\n";
    let settings = parse(oauth).unwrap();
    assert_eq!(settings.sites[0].login.method, LoginMethod::OAuth2);
    assert_eq!(settings.sites[0].login.password.expose(), "abc");
    let with_password = format!("{oauth}password = \"x\"\n");
    assert_eq!(
        keys(&parse(&with_password).unwrap_err()),
        ["login.password"]
    );
    let no_token = oauth.replace("access_token = \"abc\"\n", "");
    assert_eq!(keys(&parse(&no_token).unwrap_err()), ["login.access_token"]);
    let unknown = oauth.replace("oauth2", "kerberos");
    assert_eq!(keys(&parse(&unknown).unwrap_err()), ["login.method"]);
}

#[test]
fn the_readme_several_wikis_example_is_valid() {
    let readme =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = &readme[readme.find("## Several wikis").unwrap()..];
    let start = section.find("```toml\n").unwrap() + "```toml\n".len();
    let example = &section[start..start + section[start..].find("```").unwrap()];
    let secrets = tempfile::tempdir().unwrap();
    for name in ["commons_bot_password", "wikidata_token"] {
        fs::write(secrets.path().join(name), "secret-value\n").unwrap();
    }
    let text = example.replace("/run/secrets", &secrets.path().display().to_string());
    let settings = parse(&text).unwrap();
    let names: Vec<&str> = settings
        .sites
        .iter()
        .map(|site| site.name.as_str())
        .collect();
    assert_eq!(names, ["commons", "wikidata"]);
    let (commons, wikidata) = (&settings.sites[0], &settings.sites[1]);
    assert_eq!(commons.path_prefix, "/commons");
    assert_eq!(wikidata.listen, Some("127.0.0.1:8081".parse().unwrap()));
    assert_eq!(wikidata.login.method, LoginMethod::OAuth2);
    assert_eq!(wikidata.etiquette.maxlag, Some(5));
    assert_eq!(
        wikidata.etiquette.min_write_interval,
        Duration::from_millis(1000)
    );
    assert_eq!(commons.etiquette.min_write_interval, Duration::ZERO);
}
