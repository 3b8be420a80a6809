//! Requests the proxy must not pass on as they are. The session is shared
//! by every client, so nobody may end it or replace it, and requests that
//! make MediaWiki ignore the cookies would silently run as anonymous.

use http::HeaderMap;

use crate::mediawiki::params::{Params, multi_values};

/// What to do instead of forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    /// `action=logout`: answered `{}` as MediaWiki would, never forwarded.
    Logout,
    /// A login or account module: the proxy owns the login.
    LoginManaged(String),
    /// A parameter or header that makes MediaWiki ignore the cookies.
    CookiesIgnored(String),
}

const LOGIN_MODULES: [&str; 3] = ["login", "clientlogin", "createaccount"];
const LOGIN_TOKEN_TYPES: [&str; 2] = ["login", "createaccount"];
/// JSONP and CORS parameters: MediaWiki drops the session for these.
const COOKIE_SUPPRESSING_PARAMS: [&str; 3] = ["callback", "origin", "crossorigin"];
const UNTRUSTED_HEADER: &str = "treat-as-untrusted";

/// Checks every value a name was given, not only the one MediaWiki keeps:
/// PHP drops parameters past `max_input_vars`, so which one it keeps is not
/// certain, and refusing a request that merely mentions `logout` is safe.
pub(super) fn check(params: &Params, headers: &HeaderMap) -> Option<Refusal> {
    let actions = || params.every("action");
    if actions().any(|action| action == "logout") {
        return Some(Refusal::Logout);
    }
    if let Some(module) = actions().find(|action| LOGIN_MODULES.contains(action)) {
        return Some(Refusal::LoginManaged(format!("action={module}")));
    }
    // A request for login tokens alone is a client trying to log in. Many
    // clients (pywikibot, mwn) ask for every token type at once to get a
    // csrf token; a login token in such an answer is harmless, since it is
    // bound to the proxy's session and `action=login` is refused anyway.
    let wants_tokens = params
        .every("meta")
        .any(|meta| multi_values(meta).any(|module| module == "tokens"));
    let only_login_tokens = params.every("type").find_map(|types| {
        let mut kinds = multi_values(types);
        let first = kinds
            .next()
            .filter(|kind| LOGIN_TOKEN_TYPES.contains(kind))?;
        kinds
            .all(|kind| LOGIN_TOKEN_TYPES.contains(&kind))
            .then_some(first)
    });
    if let (true, Some(kind)) = (wants_tokens, only_login_tokens) {
        return Some(Refusal::LoginManaged(format!("meta=tokens&type={kind}")));
    }
    if let Some(name) = COOKIE_SUPPRESSING_PARAMS
        .into_iter()
        .find(|name| params.contains(name))
    {
        return Some(Refusal::CookiesIgnored(name.to_owned()));
    }
    if headers.contains_key(UNTRUSTED_HEADER) {
        return Some(Refusal::CookiesIgnored("Treat-as-Untrusted".to_owned()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_query(query: &str) -> Option<Refusal> {
        check(&Params::from_query(Some(query)), &HeaderMap::new())
    }

    #[test]
    fn ordinary_requests_pass() {
        assert_eq!(check_query("action=query&meta=userinfo"), None);
        assert_eq!(check_query("action=query&meta=tokens"), None);
        assert_eq!(
            check_query("action=query&meta=tokens&type=csrf|watch"),
            None
        );
        assert_eq!(check_query("action=edit&title=Logout&text=login"), None);
    }

    #[test]
    fn logout_is_caught_however_it_is_written() {
        for query in [
            "action=logout",
            "action=query&action=logout",
            "action=logout&action=query",
            "%61ction=logout",
            "+action=logout",
        ] {
            assert_eq!(check_query(query), Some(Refusal::Logout), "{query}");
        }
    }

    #[test]
    fn login_modules_and_login_tokens_are_refused() {
        assert_eq!(
            check_query("action=login"),
            Some(Refusal::LoginManaged("action=login".into()))
        );
        assert_eq!(
            check_query("action=clientlogin"),
            Some(Refusal::LoginManaged("action=clientlogin".into()))
        );
        assert_eq!(
            check_query("action=createaccount"),
            Some(Refusal::LoginManaged("action=createaccount".into()))
        );
        assert_eq!(
            check_query("action=query&meta=siteinfo|tokens&type=login"),
            Some(Refusal::LoginManaged("meta=tokens&type=login".into()))
        );
        assert_eq!(
            check_query("action=query&meta=tokens&type=createaccount|login"),
            Some(Refusal::LoginManaged(
                "meta=tokens&type=createaccount".into()
            ))
        );
        // Every token type at once, as pywikibot and mwn ask: a csrf token
        // is what they are after.
        assert_eq!(
            check_query("action=query&meta=tokens&type=createaccount|csrf|login|watch"),
            None
        );
    }

    #[test]
    fn cookie_suppressing_requests_are_refused() {
        for (query, name) in [
            ("action=query&callback=f", "callback"),
            ("action=query&origin=*", "origin"),
            ("action=query&crossorigin=", "crossorigin"),
            ("action=query&callback[]=f", "callback"),
        ] {
            assert_eq!(
                check_query(query),
                Some(Refusal::CookiesIgnored(name.into())),
                "{query}"
            );
        }
        let mut headers = HeaderMap::new();
        headers.insert("Treat-as-Untrusted", http::HeaderValue::from_static("1"));
        assert!(matches!(
            check(&Params::from_query(Some("action=query")), &headers),
            Some(Refusal::CookiesIgnored(_))
        ));
    }
}
