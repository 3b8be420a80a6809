//! Who may use the proxy. Whoever passes acts with the bot's rights, so a
//! request must come from an allowed address, carry a valid bearer token
//! when tokens are configured, name this proxy in `Host` (a web page cannot
//! reach it through DNS rebinding) and carry no foreign `Origin` (a web page
//! open in the operator's browser cannot drive the bot through localhost).

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use http::header::{AUTHORIZATION, HOST, ORIGIN};
use subtle::ConstantTimeEq;

use crate::config::AccessSettings;
use crate::secret::Secret;

/// Why a request was turned away.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("this client address may not use the proxy (access.allow_cidrs)")]
    Address,
    #[error("a valid `Authorization: Bearer` token is required")]
    Token,
    #[error("the Host header `{0}` does not name this proxy (access.allowed_hosts)")]
    Host(String),
    #[error(
        "requests from the web origin `{0}` are refused (access.allowed_origins): a web page may not drive the bot"
    )]
    Origin(String),
}

#[derive(Debug)]
pub struct Access {
    settings: AccessSettings,
    /// Every address the proxy listens on; a `Host` naming one is fine.
    listen: Vec<SocketAddr>,
}

impl Access {
    pub fn new(settings: AccessSettings, listen: Vec<SocketAddr>) -> Self {
        Self { settings, listen }
    }

    /// Whether `/metrics` is open to all who reach the port.
    pub fn metrics_are_public(&self) -> bool {
        self.settings.public_metrics
    }

    /// Checks a request to the API (or to `/metrics`).
    pub fn check(&self, peer: IpAddr, headers: &HeaderMap) -> Result<(), Denied> {
        if !self.settings.allow_cidrs.is_empty()
            && !self
                .settings
                .allow_cidrs
                .iter()
                .any(|net| net.contains(&canonical(peer)))
        {
            return Err(Denied::Address);
        }
        self.check_host(headers)?;
        if let Some(origin) = headers.get(ORIGIN) {
            let origin = String::from_utf8_lossy(origin.as_bytes()).to_ascii_lowercase();
            let origin = origin.trim_end_matches('/');
            if !self
                .settings
                .allowed_origins
                .iter()
                .any(|allowed| allowed == origin)
            {
                return Err(Denied::Origin(origin.to_owned()));
            }
        }
        if !self.settings.bearer_tokens.is_empty() {
            let presented = headers
                .get(AUTHORIZATION)
                .and_then(|value| value.to_str().ok())
                .and_then(bearer_token);
            match presented {
                Some(token) if matches_any(token, &self.settings.bearer_tokens) => {}
                _ => return Err(Denied::Token),
            }
        }
        Ok(())
    }

    /// The listen address, `localhost` names, loopback addresses and the
    /// configured names are accepted, with any port. No `Host` at all
    /// (HTTP/1.0) is accepted: browsers always send one.
    fn check_host(&self, headers: &HeaderMap) -> Result<(), Denied> {
        let Some(host) = headers.get(HOST) else {
            return Ok(());
        };
        let host = String::from_utf8_lossy(host.as_bytes()).to_ascii_lowercase();
        let name = host_name(&host);
        let is_listen_ip =
            |ip: IpAddr| !ip.is_unspecified() && self.listen.iter().any(|listen| listen.ip() == ip);
        let accepted = name == "localhost"
            || name.ends_with(".localhost")
            || name
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback() || is_listen_ip(ip))
            || self
                .settings
                .allowed_hosts
                .iter()
                .any(|allowed| allowed == name);
        if accepted {
            Ok(())
        } else {
            Err(Denied::Host(host))
        }
    }
}

/// The name or address in a `Host` value, without port or IPv6 brackets.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
    .trim_end_matches('.')
}

/// IPv4 clients on a dual-stack socket appear as `::ffff:a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Compares against every token in constant time, so the time taken says
/// nothing about how much of a token was right.
fn matches_any(presented: &str, tokens: &[Secret]) -> bool {
    tokens.iter().fold(false, |found, token| {
        found | bool::from(presented.as_bytes().ct_eq(token.expose().as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http::HeaderValue;

    fn settings() -> AccessSettings {
        AccessSettings {
            allow_unauthenticated_remote: false,
            bearer_tokens: Vec::new(),
            bearer_tokens_file: None,
            allow_cidrs: Vec::new(),
            allowed_hosts: vec!["bot-proxy.internal".into()],
            allowed_origins: vec!["https://tools.example.org".into()],
            public_metrics: false,
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_static(value));
        }
        headers
    }

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn host_must_name_this_proxy() {
        let access = Access::new(settings(), vec!["127.0.0.1:8080".parse().unwrap()]);
        for good in [
            "localhost:8080",
            "127.0.0.1:8080",
            "[::1]:8080",
            "LOCALHOST",
            "bot-proxy.internal:8080",
            "app.localhost",
        ] {
            let request = headers(&[("host", good)]);
            assert_eq!(access.check(LOCAL, &request), Ok(()), "{good}");
        }
        for bad in [
            "evil.example:8080",
            "127.0.0.1.evil.example",
            "localhost.evil",
        ] {
            let request = headers(&[("host", bad)]);
            assert!(
                matches!(access.check(LOCAL, &request), Err(Denied::Host(_))),
                "{bad}"
            );
        }
        assert_eq!(access.check(LOCAL, &HeaderMap::new()), Ok(()));
    }

    #[test]
    fn foreign_origins_are_refused() {
        let access = Access::new(settings(), vec!["127.0.0.1:8080".parse().unwrap()]);
        let request = headers(&[("origin", "https://evil.example")]);
        assert!(matches!(
            access.check(LOCAL, &request),
            Err(Denied::Origin(_))
        ));
        let request = headers(&[("origin", "null")]);
        assert!(matches!(
            access.check(LOCAL, &request),
            Err(Denied::Origin(_))
        ));
        let request = headers(&[("origin", "https://tools.example.org")]);
        assert_eq!(access.check(LOCAL, &request), Ok(()));
    }

    #[test]
    fn bearer_tokens_and_addresses() {
        let mut settings = settings();
        settings.bearer_tokens = vec![
            Secret::new("a-long-enough-token-1"),
            Secret::new("another-token-22222"),
        ];
        settings.allow_cidrs = vec![
            "127.0.0.0/8".parse().unwrap(),
            "10.1.0.0/16".parse().unwrap(),
        ];
        let access = Access::new(settings, vec!["0.0.0.0:8080".parse().unwrap()]);
        let good = headers(&[("authorization", "Bearer another-token-22222")]);
        assert_eq!(access.check(LOCAL, &good), Ok(()));
        assert_eq!(access.check("10.1.2.3".parse().unwrap(), &good), Ok(()));
        assert_eq!(
            access.check("::ffff:10.1.2.3".parse().unwrap(), &good),
            Ok(()),
            "IPv4-mapped addresses count as IPv4"
        );
        assert_eq!(
            access.check("10.2.0.1".parse().unwrap(), &good),
            Err(Denied::Address)
        );
        for bad in [
            "Bearer another-token-2222",
            "Bearer ",
            "Basic another-token-22222",
            "another-token-22222",
        ] {
            let request = headers(&[("authorization", bad)]);
            assert_eq!(access.check(LOCAL, &request), Err(Denied::Token), "{bad}");
        }
        assert_eq!(access.check(LOCAL, &HeaderMap::new()), Err(Denied::Token));
    }
}
