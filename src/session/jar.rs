//! The proxy's own cookie jar for the wiki. One wiki, one host: cookies are
//! kept by name, which is what MediaWiki's session cookies need, and the
//! `Cookie` header is prepared once per change rather than per request.
//! Expiry matters: MediaWiki sets short-lived cookies such as `UseDC=master`
//! (10 s after a write) that must not be sent forever.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cookie::Cookie;
use http::HeaderValue;
use tokio::time::Instant;

use crate::secret::Secret;

/// A cookie as kept in the state file, with its expiry in wall-clock time
/// (an `Instant` means nothing to the next process).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SavedCookie {
    pub name: String,
    pub value: String,
    pub expires_unix: Option<u64>,
}

#[derive(Clone, Default)]
pub struct CookieJar {
    cookies: BTreeMap<String, StoredCookie>,
}

#[derive(Clone, PartialEq, Eq)]
struct StoredCookie {
    value: Secret,
    /// `None`: a session cookie in the browser sense, kept until replaced.
    expires: Option<Instant>,
}

impl fmt::Debug for CookieJar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names only: the values are the session.
        f.debug_set().entries(self.cookies.keys()).finish()
    }
}

/// What one `Set-Cookie` header did to the jar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieChange {
    Unchanged,
    Set,
    Removed,
    /// A session cookie was deleted: the wiki dropped the session.
    SessionEnded,
}

impl CookieJar {
    /// Applies one `Set-Cookie` header value. Headers that do not parse are
    /// ignored, as a browser would.
    pub fn apply(&mut self, set_cookie: &[u8], now: Instant) -> CookieChange {
        let Ok(text) = std::str::from_utf8(set_cookie) else {
            return CookieChange::Unchanged;
        };
        let Ok(cookie) = Cookie::parse(text) else {
            return CookieChange::Unchanged;
        };
        let name = cookie.name();
        // A cookie that cannot be sent back would spoil the whole header.
        if name.is_empty() || HeaderValue::from_str(&format!("{name}={}", cookie.value())).is_err()
        {
            return CookieChange::Unchanged;
        }
        let lifetime = lifetime(&cookie);
        if cookie.value() == "deleted" || lifetime.is_some_and(|left| left.is_zero()) {
            if self.cookies.remove(name).is_none() {
                return CookieChange::Unchanged;
            }
            if is_session_cookie(name) {
                CookieChange::SessionEnded
            } else {
                CookieChange::Removed
            }
        } else {
            let stored = StoredCookie {
                value: Secret::new(cookie.value()),
                // A lifetime past the end of time (an empty or huge
                // Max-Age) is no expiry at all.
                expires: lifetime.and_then(|left| now.checked_add(left)),
            };
            match self.cookies.insert(name.to_owned(), stored.clone()) {
                // MediaWiki re-sends a renewed session cookie unchanged.
                Some(old) if old == stored => CookieChange::Unchanged,
                // A new value, or a new expiry that must be kept.
                _ => CookieChange::Set,
            }
        }
    }

    /// Drops cookies whose time is up.
    pub fn remove_expired(&mut self, now: Instant) {
        self.cookies
            .retain(|_, cookie| cookie.expires.is_none_or(|expires| expires > now));
    }

    /// When the next cookie expires, so a prepared header knows how long it
    /// stays right.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.cookies
            .values()
            .filter_map(|cookie| cookie.expires)
            .min()
    }

    pub fn is_empty(&self) -> bool {
        self.cookies.is_empty()
    }

    /// Whether the jar holds a session cookie by this name ending.
    pub fn has_session_cookie(&self) -> bool {
        self.cookies.keys().any(|name| is_session_cookie(name))
    }

    /// The `Cookie` request header for the current contents.
    pub fn header(&self) -> Option<HeaderValue> {
        if self.cookies.is_empty() {
            return None;
        }
        let joined = self
            .cookies
            .iter()
            .map(|(name, cookie)| format!("{name}={}", cookie.value.expose()))
            .collect::<Vec<_>>()
            .join("; ");
        let mut header = HeaderValue::from_str(&joined).ok()?;
        header.set_sensitive(true);
        Some(header)
    }

    /// The cookies for the state file.
    pub fn to_saved(&self, now: Instant, wall: SystemTime) -> Vec<SavedCookie> {
        self.cookies
            .iter()
            .map(|(name, cookie)| SavedCookie {
                name: name.clone(),
                value: cookie.value.expose().to_owned(),
                expires_unix: cookie.expires.map(|expires| {
                    wall.checked_add(expires.saturating_duration_since(now))
                        .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
                        .map_or(u64::MAX, |since| since.as_secs())
                }),
            })
            .collect()
    }

    /// A jar from the state file, without the cookies that expired since.
    pub fn from_saved(saved: Vec<SavedCookie>, now: Instant, wall: SystemTime) -> Self {
        let wall_secs = wall
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let cookies = saved
            .into_iter()
            .filter(|cookie| cookie.expires_unix.is_none_or(|at| at > wall_secs))
            .map(|cookie| {
                let expires = cookie
                    .expires_unix
                    .and_then(|at| now.checked_add(Duration::from_secs(at - wall_secs)));
                (
                    cookie.name,
                    StoredCookie {
                        value: Secret::new(cookie.value),
                        expires,
                    },
                )
            })
            .collect();
        Self { cookies }
    }

    /// Every cookie value, for tests that must prove no value escaped.
    pub fn values(&self) -> impl Iterator<Item = &Secret> {
        self.cookies.values().map(|cookie| &cookie.value)
    }
}

/// MediaWiki names its session cookies `<prefix>_session` and, for bot
/// passwords, `<prefix>_BPsession`.
fn is_session_cookie(name: &str) -> bool {
    name.ends_with("_session") || name.ends_with("_BPsession")
}

/// How long a cookie lives from now: `Max-Age` wins over `Expires`, as in
/// RFC 6265; zero means it is deleted (MediaWiki deletes with the value
/// `deleted`, an expiry in 1970 and `Max-Age=0`).
fn lifetime(cookie: &Cookie<'_>) -> Option<Duration> {
    if let Some(max_age) = cookie.max_age() {
        return Some(Duration::try_from(max_age).unwrap_or(Duration::ZERO));
    }
    let expires = cookie.expires_datetime()?;
    let left = expires - cookie::time::OffsetDateTime::now_utc();
    Some(Duration::try_from(left).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    impl CookieJar {
        fn apply_now(&mut self, set_cookie: &[u8]) -> CookieChange {
            self.apply(set_cookie, Instant::now())
        }
    }

    #[test]
    fn short_lived_cookies_expire() {
        let mut jar = CookieJar::default();
        let start = Instant::now();
        jar.apply(b"wiki_BPsession=abc; path=/", start);
        jar.apply(b"UseDC=master; Max-Age=10; path=/", start);
        assert_eq!(jar.next_expiry(), Some(start + Duration::from_secs(10)));
        jar.remove_expired(start + Duration::from_secs(9));
        assert!(jar.header().unwrap().to_str().unwrap().contains("UseDC"));
        jar.remove_expired(start + Duration::from_secs(10));
        assert_eq!(
            jar.header().unwrap().to_str().unwrap(),
            "wiki_BPsession=abc"
        );
        assert_eq!(jar.next_expiry(), None);
    }

    #[test]
    fn set_renew_and_delete() {
        let mut jar = CookieJar::default();
        assert_eq!(
            jar.apply_now(b"wiki_session=abc; path=/; HttpOnly"),
            CookieChange::Set
        );
        assert_eq!(
            jar.apply_now(b"wiki_BPsession=def; path=/; HttpOnly"),
            CookieChange::Set
        );
        assert_eq!(
            jar.apply_now(b"wiki_BPsession=def; path=/; HttpOnly"),
            CookieChange::Unchanged
        );
        assert_eq!(
            jar.apply_now(b"UseDC=master; Max-Age=10; path=/"),
            CookieChange::Set
        );
        assert_eq!(
            jar.header().unwrap().to_str().unwrap(),
            "UseDC=master; wiki_BPsession=def; wiki_session=abc"
        );
        assert!(jar.header().unwrap().is_sensitive());
        assert_eq!(
            jar.apply_now(b"wiki_BPsession=deleted; expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0; path=/; HttpOnly"),
            CookieChange::SessionEnded
        );
        assert_eq!(
            jar.apply_now(b"UseDC=deleted; Max-Age=0"),
            CookieChange::Removed
        );
        assert_eq!(jar.header().unwrap().to_str().unwrap(), "wiki_session=abc");
    }

    #[test]
    fn expiry_in_the_past_deletes() {
        let mut jar = CookieJar::default();
        jar.apply_now(b"wiki_session=abc");
        assert_eq!(
            jar.apply_now(b"wiki_session=x; expires=Thu, 01 Jan 1970 00:00:01 GMT"),
            CookieChange::SessionEnded
        );
        assert!(jar.is_empty());
    }

    #[test]
    fn debug_shows_names_only() {
        let mut jar = CookieJar::default();
        jar.apply_now(b"wiki_BPsession=supersecretvalue");
        let shown = format!("{jar:?}");
        assert!(shown.contains("wiki_BPsession"));
        assert!(!shown.contains("supersecretvalue"));
    }
}
