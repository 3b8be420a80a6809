//! The one HTTP client that talks to the wiki, shared by the login flow and
//! by forwarding so both reuse the same keep-alive connections.

use std::time::Duration;

use crate::config::{EtiquetteSettings, WikiSettings};

/// Idle connections kept when requests to the wiki are not limited: like
/// nginx's `keepalive 64`, a burst's connections beyond this are closed
/// rather than kept idle for a minute.
const MAX_IDLE_UNLIMITED: usize = 64;
/// Connection attempts that take longer than this mean the wiki is down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
#[error("cannot set up the HTTP client for the wiki: {0}")]
pub struct ClientError(#[source] reqwest::Error);

pub fn client(
    wiki: &WikiSettings,
    etiquette: &EtiquetteSettings,
) -> Result<reqwest::Client, ClientError> {
    // reqwest is built without a default crypto back end; install ring's
    // once per process (a second call only reports it is already there).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder();
    // A private CA (`wiki.ca_file`) is trusted besides the system's roots.
    for certificate in &wiki.ca_certificates {
        builder = builder.add_root_certificate(certificate.clone());
    }
    builder
        // A proxy passes redirects on; following them would hide them from
        // the client and could carry the session cookies elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(wiki.timeout)
        .pool_idle_timeout(Duration::from_secs(60))
        // With requests to the wiki limited, every connection a burst opens
        // stays for the next one: a storm of replays reuses them all.
        .pool_max_idle_per_host(
            etiquette
                .max_concurrent_upstream
                .unwrap_or(MAX_IDLE_UNLIMITED),
        )
        .user_agent(wiki.user_agent.clone())
        // Proxy settings from the environment would send the session through
        // a third party the operator did not name in this config.
        .no_proxy()
        .build()
        .map_err(ClientError)
}
