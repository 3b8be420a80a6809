//! Which headers cross the proxy. Hop-by-hop headers (RFC 9110 §7.6.1)
//! belong to one connection; the client's own credentials must never reach
//! the wiki (the proxy supplies the session), and the wiki's cookies must
//! never reach a client.

use http::HeaderMap;
use http::header::{
    AUTHORIZATION, CONNECTION, CONTENT_LENGTH, COOKIE, HOST, HeaderName, PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION, SET_COOKIE, TE, TRAILER, TRANSFER_ENCODING, UPGRADE, USER_AGENT,
};

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

fn is_hop_by_hop(name: &HeaderName) -> bool {
    [
        &CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &PROXY_AUTHENTICATE,
        &PROXY_AUTHORIZATION,
        &TE,
        &TRAILER,
        &TRANSFER_ENCODING,
        &UPGRADE,
    ]
    .contains(&name)
}

/// Headers a `Connection` header names are hop-by-hop too.
fn named_by_connection(headers: &HeaderMap, name: &HeaderName) -> bool {
    headers.get_all(CONNECTION).iter().any(|value| {
        value.to_str().is_ok_and(|list| {
            list.split(',')
                .any(|token| token.trim().eq_ignore_ascii_case(name.as_str()))
        })
    })
}

/// The client's headers that go on to the wiki. `Host` and `Content-Length`
/// are set by the upstream client for the new connection and body;
/// `User-Agent` is composed separately.
pub(super) fn upstream_request_headers(client: &HeaderMap) -> HeaderMap {
    let mut forwarded = HeaderMap::with_capacity(client.len());
    for (name, value) in client {
        let dropped = is_hop_by_hop(name)
            || [&HOST, &CONTENT_LENGTH, &COOKIE, &AUTHORIZATION, &USER_AGENT].contains(&name)
            || named_by_connection(client, name);
        if !dropped {
            forwarded.append(name.clone(), value.clone());
        }
    }
    forwarded
}

/// Removes what must not reach the client from the wiki's response headers.
pub(super) fn strip_response_headers(headers: &mut HeaderMap) {
    let connection_named: Vec<HeaderName> = headers
        .keys()
        .filter(|name| named_by_connection(headers, name))
        .cloned()
        .collect();
    for name in connection_named {
        headers.remove(name);
    }
    for name in [
        &CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &PROXY_AUTHENTICATE,
        &PROXY_AUTHORIZATION,
        &TE,
        &TRAILER,
        &TRANSFER_ENCODING,
        &UPGRADE,
        &SET_COOKIE,
    ] {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http::HeaderValue;

    #[test]
    fn credentials_and_hop_by_hop_headers_stay_behind() {
        let mut client = HeaderMap::new();
        for (name, value) in [
            ("cookie", "theirs=1"),
            ("authorization", "Bearer x"),
            ("connection", "keep-alive, x-private"),
            ("x-private", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("host", "localhost:8080"),
            ("content-length", "12"),
            ("accept-encoding", "gzip"),
            ("content-type", "application/x-www-form-urlencoded"),
        ] {
            client.append(name, HeaderValue::from_static(value));
        }
        let forwarded = upstream_request_headers(&client);
        let names: Vec<_> = forwarded.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["accept-encoding", "content-type"]);
    }

    #[test]
    fn set_cookie_never_reaches_the_client() {
        let mut headers = HeaderMap::new();
        headers.append("set-cookie", HeaderValue::from_static("a=1"));
        headers.append("set-cookie", HeaderValue::from_static("b=2"));
        headers.append("connection", HeaderValue::from_static("close"));
        headers.append("mediawiki-api-error", HeaderValue::from_static("badtoken"));
        strip_response_headers(&mut headers);
        let names: Vec<_> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["mediawiki-api-error"]);
    }
}
