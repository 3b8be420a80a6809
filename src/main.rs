//! The command line: read the configuration, then either check it with one
//! real login (`--check`) or serve until SIGTERM/SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mw_auth_proxy::config::{ProcessEnvironment, Settings};
use mw_auth_proxy::session::login::BotPasswordLogin;
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
    telemetry::init_logging();
    match runtime.block_on(serve(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("mw-auth-proxy: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn check(settings: Settings) -> ExitCode {
    let api_url = settings.wiki.api_url.clone();
    let http = match upstream::client(&settings.wiki) {
        Ok(http) => http,
        Err(err) => {
            eprintln!("mw-auth-proxy: {err}");
            return ExitCode::FAILURE;
        }
    };
    let login = BotPasswordLogin::new(http, api_url.clone(), settings.login.clone());
    match login.log_in().await {
        Ok(established) => {
            println!(
                "configuration OK: logged in to {api_url} as {} (login name {})",
                established.user, settings.login.username
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!(
                "login to {api_url} as {} failed: {err}",
                settings.login.username
            );
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let listen = settings.server.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (server.listen)"))?;
    tracing::info!(
        %listen,
        wiki = %settings.wiki.api_url,
        user = %settings.login.username,
        "serving the wiki's API at http://{listen}/api.php"
    );
    mw_auth_proxy::run(settings, listener, shutdown_signal()).await?;
    Ok(())
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
