//! The command line: read the configuration, then either check it with one
//! real login (`--check`), ask a running proxy whether it is ready
//! (`healthcheck`, for container health checks), or serve until
//! SIGTERM/SIGINT.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use std::sync::Arc;

use mw_auth_proxy::config::{ProcessEnvironment, Settings};
use mw_auth_proxy::reload;
use mw_auth_proxy::server::App;
use mw_auth_proxy::session::login::WikiLogin;
use mw_auth_proxy::{telemetry, upstream};

/// sysexits.h: the configuration is wrong.
const EXIT_CONFIG: u8 = 64;

/// An authenticating reverse proxy for the MediaWiki Action API: it logs in
/// with a bot password and sends every api.php request on as the bot.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// The configuration file (TOML).
    #[arg(
        long,
        value_name = "FILE",
        env = "MW_AUTH_PROXY_CONFIG",
        default_value = "config/mw-auth-proxy.toml"
    )]
    config: PathBuf,

    /// Check the configuration and log in once, print the user, and exit:
    /// 0 when logged in, 1 when the login failed, 64 for a bad file.
    #[arg(long)]
    check: bool,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Ask a running proxy whether it is ready (GET /readyz) and exit 0 if
    /// it is, 1 if not: a health check for images without curl.
    Healthcheck {
        /// The readiness URL; default: /readyz at the configured
        /// server.listen (on loopback when it listens on every address).
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Healthcheck { url }) = &cli.command {
        return healthcheck(&cli, url.clone());
    }
    let settings = match Settings::load(&cli.config, &ProcessEnvironment) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("mw-auth-proxy: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("mw-auth-proxy: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    if cli.check {
        return runtime.block_on(check(settings));
    }
    let _log_flusher = telemetry::init_logging(settings.log.format);
    for warning in &settings.warnings {
        tracing::warn!("{warning}");
    }
    match runtime.block_on(serve(settings, cli.config.clone())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("mw-auth-proxy: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn healthcheck(cli: &Cli, url: Option<String>) -> ExitCode {
    let url = match url {
        Some(url) => url,
        None => match Settings::load(&cli.config, &ProcessEnvironment) {
            Ok(settings) => readiness_url(settings.server.listen),
            Err(err) => {
                // Health checks expect 0 or 1; the reason goes to the log.
                eprintln!("mw-auth-proxy: {err}");
                return ExitCode::FAILURE;
            }
        },
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("mw-auth-proxy: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let answer = async {
            let client = reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(5))
                .build()?;
            let response = client.get(&url).send().await?;
            let status = response.status();
            Ok::<_, reqwest::Error>((status, response.text().await.unwrap_or_default()))
        };
        match answer.await {
            Ok((status, body)) if status.is_success() => {
                println!("ready: {}", body.trim_end());
                ExitCode::SUCCESS
            }
            Ok((status, body)) => {
                println!("not ready ({status}): {}", body.trim_end());
                ExitCode::FAILURE
            }
            Err(err) => {
                println!(
                    "not ready: cannot reach {url}: {}",
                    mw_auth_proxy::error::chain(&err.without_url())
                );
                ExitCode::FAILURE
            }
        }
    })
}

/// `/readyz` at the listen address, reached over loopback when the proxy
/// listens on every address.
fn readiness_url(listen: SocketAddr) -> String {
    let host = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}/readyz", SocketAddr::new(host, listen.port()))
}

/// Logs in to every wiki once; 0 only when every login worked.
async fn check(settings: Settings) -> ExitCode {
    let mut all_logged_in = true;
    for site in &settings.sites {
        let api_url = &site.wiki.api_url;
        let http = match upstream::client(&site.wiki, &site.etiquette) {
            Ok(http) => http,
            Err(err) => {
                eprintln!("mw-auth-proxy: {err}");
                return ExitCode::FAILURE;
            }
        };
        let login = WikiLogin::new(http, api_url.clone(), site.login.clone());
        match login.log_in().await {
            Ok(established) => println!(
                "configuration OK: logged in to {api_url} as {} (login name {})",
                established.user, site.login.username
            ),
            Err(err) => {
                all_logged_in = false;
                eprintln!(
                    "login to {api_url} as {} failed: {err}\nhint: {}",
                    site.login.username,
                    err.hint()
                );
            }
        }
    }
    if all_logged_in {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn serve(settings: Settings, config_path: PathBuf) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let listen = settings.server.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (server.listen)"))?;
    // Wikis with an address of their own; bound before any login starts,
    // so that a taken port stops the proxy at once.
    let mut own_listeners = Vec::new();
    for address in settings.listen_addresses().into_iter().skip(1) {
        let own = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address} (wikis.listen)"))?;
        own_listeners.push((address, own));
    }
    for site in &settings.sites {
        let at = site.listen.unwrap_or(listen);
        tracing::info!(
            wiki = %site.wiki.api_url,
            user = %site.login.username,
            "serving the wiki's API at http://{at}{}/api.php",
            site.path_prefix
        );
    }
    let app = mw_auth_proxy::build(&settings)?;
    tokio::spawn(reload_on_hangup(app.clone(), config_path));
    // One signal stops every listener.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stopped_signal = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let mut servers = tokio::task::JoinSet::new();
    for (address, own) in own_listeners {
        let (app, limits, shutdown) = (
            app.clone(),
            settings.server.clone(),
            stopped_signal(stopped.clone()),
        );
        servers.spawn(async move {
            mw_auth_proxy::server::serve_address(own, Some(address), app, shutdown, &limits).await;
        });
    }
    let (main_app, limits, shutdown) = (
        app.clone(),
        settings.server.clone(),
        stopped_signal(stopped.clone()),
    );
    servers.spawn(async move {
        mw_auth_proxy::server::serve(listener, main_app, shutdown, &limits).await;
    });
    shutdown_signal().await;
    let _ = stop.send(true);
    while servers.join_next().await.is_some() {}
    Ok(())
}

/// Reloads the configuration file (and the password file it names) on
/// SIGHUP. A file that does not load is refused with its problems logged,
/// and the running configuration is kept.
async fn reload_on_hangup(app: Arc<App>, config_path: PathBuf) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(err) => {
            tracing::error!(error = %err, "cannot watch SIGHUP; reloading is off");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        match Settings::load(&config_path, &ProcessEnvironment) {
            Ok(settings) => {
                for warning in &settings.warnings {
                    tracing::warn!("{warning}");
                }
                reload::apply(&app, settings);
            }
            Err(err) => {
                tracing::error!("reload refused, the running configuration is kept: {err}");
            }
        }
    }
}

/// Resolves on SIGTERM (container stop) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(terminate) => terminate,
        Err(err) => {
            tracing::error!(error = %err, "cannot watch SIGTERM; only Ctrl-C stops the proxy");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
