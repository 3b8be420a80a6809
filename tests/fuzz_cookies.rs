//! Property tests for `session::jar::CookieJar`, the proxy's jar for the
//! wiki's cookies:
//!
//! - arbitrary `Set-Cookie` bytes, and attribute soups close to real ones,
//!   never panic, and the jar stays usable;
//! - a random sequence of set, renew, delete and wait operations on a few
//!   names leaves in the `Cookie` header what a small browser-like model
//!   (a map with expiry times) holds, with the change each step reports;
//!   deleting a `*_session`/`*_BPsession` cookie the jar holds reports
//!   `CookieChange::SessionEnded`;
//! - the same sequence through `SessionManager::absorb_cookies` gives the
//!   session's prepared header the same content.
//!
//! Failing inputs are saved under `tests/fuzz-regressions/` and replayed
//! first on every run. `PROPTEST_CASES` overrides the case counts.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use http::HeaderValue;
use mw_auth_proxy::session::jar::{CookieChange, CookieJar, SavedCookie};
use mw_auth_proxy::session::login::{Established, LoginError};
use mw_auth_proxy::session::{Authenticator, SessionManager};
use mw_auth_proxy::telemetry::Metrics;
use proptest::prelude::*;
use tokio::time::Instant;

const REGRESSIONS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fuzz-regressions/fuzz_cookies.txt"
);

fn config(cases: u32) -> ProptestConfig {
    support::fuzz::config(cases, REGRESSIONS)
}

/// `Set-Cookie` values with a `Max-Age` too large to add to an `Instant`:
/// the known panic (see `huge_max_age_does_not_panic`), kept out of the
/// other properties.
fn known_overflow(set_cookie: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(set_cookie) else {
        return false;
    };
    cookie::Cookie::parse(text)
        .ok()
        .and_then(|cookie| cookie.max_age())
        .is_some_and(|max_age| max_age.whole_seconds() > 1 << 60)
}

/// Cookies with control characters in the name or value: the known case
/// where the jar holds cookies but has no header (see
/// `control_characters_do_not_drop_the_header`).
fn known_unsendable(set_cookie: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(set_cookie) else {
        return false;
    };
    cookie::Cookie::parse(text).is_ok_and(|cookie| {
        format!("{}={}", cookie.name(), cookie.value())
            .bytes()
            .any(|b| (b < 0x20 && b != b'\t') || b == 0x7f)
    })
}

/// What holds of a jar whatever it was given.
fn usable(jar: &CookieJar, now: Instant) -> Result<(), TestCaseError> {
    match jar.header() {
        Some(header) => {
            prop_assert!(!jar.is_empty());
            prop_assert!(header.is_sensitive());
            prop_assert!(!header.as_bytes().is_empty());
        }
        None => prop_assert!(jar.is_empty()),
    }
    prop_assert_eq!(jar.values().count() == 0, jar.is_empty());
    if let Some(next) = jar.next_expiry() {
        prop_assert!(next > now, "a cookie expired on arrival");
    }
    let mut later = jar.clone();
    later.remove_expired(now + Duration::from_secs(1 << 61));
    prop_assert!(later.next_expiry().is_none());
    Ok(())
}

// ---------------------------------------------------------------------------
// Arbitrary input.
// ---------------------------------------------------------------------------

const PIECES: &[&str] = &[
    "wiki_session",
    "wiki_BPsession",
    "UseDC",
    "=",
    "==",
    ";",
    "; ",
    " ",
    "\t",
    "\"",
    "deleted",
    "master",
    "Max-Age=",
    "max-age=",
    "MAX-AGE=",
    "0",
    "-1",
    "10",
    "86400",
    "9223372036854775807",
    "99999999999999999999",
    "1e3",
    "Expires=",
    "expires=",
    "Thu, 01 Jan 1970 00:00:01 GMT",
    "Fri, 31 Dec 9999 23:59:59 GMT",
    "Sun, 06 Nov 1994 08:49:37 GMT",
    "Sunday, 06-Nov-94 08:49:37 GMT",
    "Sun Nov  6 08:49:37 1994",
    "Wed, 31 Dec 1969 23:59:59 GMT",
    "Path=/",
    "Domain=.example.org",
    "HttpOnly",
    "Secure",
    "SameSite=None",
    "Partitioned",
    "é",
    "%20",
    ",",
];

fn soup() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            8 => proptest::sample::select(PIECES).prop_map(|piece| piece.as_bytes().to_vec()),
            1 => proptest::collection::vec(any::<u8>(), 0..4),
        ],
        0..16,
    )
    .prop_map(|pieces| pieces.concat())
}

fn set_cookie_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..80),
        1 => any::<String>().prop_map(String::into_bytes),
        3 => soup(),
    ]
}

proptest! {
    #![proptest_config(config(5000))]

    #[test]
    fn any_set_cookie_is_taken_or_ignored(
        headers in proptest::collection::vec(set_cookie_bytes(), 1..6),
        waits in proptest::collection::vec(0..100_000_u64, 1..6),
    ) {
        let start = Instant::now();
        let mut now = start;
        let mut jar = CookieJar::default();
        jar.apply(b"wiki_BPsession=abc; path=/; HttpOnly", now);
        let mut unsendable = false;
        for (header, wait) in headers.iter().zip(waits.iter().cycle()) {
            if known_overflow(header) {
                continue;
            }
            let had_session = jar.has_session_cookie();
            let change = jar.apply(header, now);
            if change == CookieChange::SessionEnded {
                prop_assert!(had_session);
            }
            unsendable |= known_unsendable(header);
            if !unsendable {
                usable(&jar, now)?;
            }
            now += Duration::from_secs(*wait);
            jar.remove_expired(now);
        }
    }
}

// ---------------------------------------------------------------------------
// The jar against a browser-like model.
// ---------------------------------------------------------------------------

const NAMES: &[&str] = &[
    "wiki_session",
    "wiki_BPsession",
    "UseDC",
    "wikiUserName",
    "other_session",
    "cpPosIndex",
];

fn is_session_name(name: &str) -> bool {
    name.ends_with("_session") || name.ends_with("_BPsession")
}

/// How long a set cookie lives.
#[derive(Debug, Clone, Copy)]
enum Life {
    /// No `Max-Age` or `Expires`: kept until replaced.
    Session,
    MaxAge(u64),
    /// `Max-Age` wins over an `Expires` in the past.
    MaxAgeOverPastExpires(u64),
    /// An `Expires` a month or more ahead, by the wall clock.
    FarExpires,
}

/// How a cookie is deleted.
#[derive(Debug, Clone, Copy)]
enum Deletion {
    MaxAgeZero,
    NegativeMaxAge,
    Expires1970,
    ValueDeleted,
    /// What MediaWiki sends: all three.
    MediaWiki,
}

/// Attribute spellings that change nothing.
#[derive(Debug, Clone)]
struct Dress {
    max_age: &'static str,
    expires: &'static str,
    separator: &'static str,
    extras: Vec<&'static str>,
}

#[derive(Debug, Clone)]
enum Op {
    Set {
        name: &'static str,
        value: String,
        life: Life,
        dress: Dress,
    },
    /// `Set` again with the value the model holds (a renewal), if any.
    Renew {
        name: &'static str,
        life: Life,
        dress: Dress,
    },
    Delete {
        name: &'static str,
        how: Deletion,
        dress: Dress,
    },
    Wait(u64),
}

fn dress() -> impl Strategy<Value = Dress> {
    (
        proptest::sample::select(&["Max-Age", "max-age", "MAX-AGE"][..]),
        proptest::sample::select(&["Expires", "expires"][..]),
        proptest::sample::select(&["; ", ";", " ;  "][..]),
        proptest::sample::subsequence(
            &[
                "path=/",
                "HttpOnly",
                "Secure",
                "SameSite=Lax",
                "Domain=.example.org",
            ][..],
            0..=3,
        ),
    )
        .prop_map(|(max_age, expires, separator, extras)| Dress {
            max_age,
            expires,
            separator,
            extras,
        })
}

fn life() -> impl Strategy<Value = Life> {
    prop_oneof![
        2 => Just(Life::Session),
        3 => (1..2_000_u64).prop_map(Life::MaxAge),
        1 => (1..2_000_u64).prop_map(Life::MaxAgeOverPastExpires),
        1 => Just(Life::FarExpires),
    ]
}

fn cookie_value() -> impl Strategy<Value = String> {
    "[A-Za-z0-9%._+-]{0,16}".prop_filter("`deleted` deletes", |value| value != "deleted")
}

fn op() -> impl Strategy<Value = Op> {
    let name = proptest::sample::select(NAMES);
    prop_oneof![
        4 => (name.clone(), cookie_value(), life(), dress())
            .prop_map(|(name, value, life, dress)| Op::Set { name, value, life, dress }),
        2 => (name.clone(), life(), dress()).prop_map(|(name, life, dress)| Op::Renew { name, life, dress }),
        2 => (
            name,
            proptest::sample::select(&[
                Deletion::MaxAgeZero,
                Deletion::NegativeMaxAge,
                Deletion::Expires1970,
                Deletion::ValueDeleted,
                Deletion::MediaWiki,
            ][..]),
            dress(),
        )
            .prop_map(|(name, how, dress)| Op::Delete { name, how, dress }),
        2 => prop_oneof![0..30_u64, 0..3_000_u64].prop_map(Op::Wait),
    ]
}

/// A date as `Set-Cookie` writes it, `days` from now.
fn http_date_in(days: u64) -> String {
    httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(days * 86_400))
}

fn set_cookie(name: &str, value: &str, attributes: &[String], dress: &Dress) -> String {
    let mut parts = vec![format!("{name}={value}")];
    parts.extend(attributes.iter().cloned());
    parts.extend(dress.extras.iter().map(|extra| (*extra).to_owned()));
    parts.join(dress.separator)
}

fn life_attributes(life: Life, dress: &Dress) -> Vec<String> {
    match life {
        Life::Session => vec![],
        Life::MaxAge(seconds) => vec![format!("{}={seconds}", dress.max_age)],
        Life::MaxAgeOverPastExpires(seconds) => vec![
            format!("{}=Thu, 01 Jan 1970 00:00:01 GMT", dress.expires),
            format!("{}={seconds}", dress.max_age),
        ],
        Life::FarExpires => vec![format!("{}={}", dress.expires, http_date_in(40))],
    }
}

/// When a model cookie expires, in milliseconds since the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    Never,
    At(u64),
    /// Beyond anything the sequence reaches.
    Far,
}

/// A browser's view: name → (value, expiry), ordered as the header is.
#[derive(Debug, Default, Clone)]
struct Model {
    cookies: BTreeMap<&'static str, (String, Expiry)>,
}

impl Model {
    /// `now` in milliseconds since the start, as every model time.
    fn expiry(life: Life, now: u64) -> Expiry {
        match life {
            Life::Session => Expiry::Never,
            Life::MaxAge(seconds) | Life::MaxAgeOverPastExpires(seconds) => {
                Expiry::At(now + seconds * 1000)
            }
            Life::FarExpires => Expiry::Far,
        }
    }

    /// Unchanged only when nothing is: the same value and the same expiry
    /// (a far `Expires` date is re-read against the clock, so it counts as
    /// a new expiry every time).
    fn set(&mut self, name: &'static str, value: &str, life: Life, now: u64) -> CookieChange {
        let expiry = Self::expiry(life, now);
        let old = self.cookies.insert(name, (value.to_owned(), expiry));
        match old {
            Some((old, old_expiry))
                if old == value && old_expiry == expiry && expiry != Expiry::Far =>
            {
                CookieChange::Unchanged
            }
            _ => CookieChange::Set,
        }
    }

    fn delete(&mut self, name: &str) -> CookieChange {
        match self.cookies.remove(name) {
            None => CookieChange::Unchanged,
            Some(_) if is_session_name(name) => CookieChange::SessionEnded,
            Some(_) => CookieChange::Removed,
        }
    }

    fn wait_until(&mut self, now: u64) {
        self.cookies.retain(|_, (_, expiry)| match expiry {
            Expiry::At(at) => *at > now,
            Expiry::Never | Expiry::Far => true,
        });
    }

    fn header(&self) -> Option<String> {
        (!self.cookies.is_empty()).then(|| {
            self.cookies
                .iter()
                .map(|(name, (value, _))| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    /// The `Set-Cookie` header for `op` and the change it should report.
    fn step(&mut self, op: &Op, now: u64) -> Option<(String, CookieChange)> {
        match op {
            Op::Set {
                name,
                value,
                life,
                dress,
            } => {
                let header = set_cookie(name, value, &life_attributes(*life, dress), dress);
                Some((header, self.set(name, value, *life, now)))
            }
            Op::Renew { name, life, dress } => {
                let (value, _) = self.cookies.get(name)?.clone();
                let header = set_cookie(name, &value, &life_attributes(*life, dress), dress);
                Some((header, self.set(name, &value, *life, now)))
            }
            Op::Delete { name, how, dress } => {
                let gone = format!("{}=Thu, 01 Jan 1970 00:00:01 GMT", dress.expires);
                let (value, attributes) = match how {
                    Deletion::MaxAgeZero => ("x", vec![format!("{}=0", dress.max_age)]),
                    Deletion::NegativeMaxAge => ("x", vec![format!("{}=-1", dress.max_age)]),
                    Deletion::Expires1970 => ("x", vec![gone]),
                    Deletion::ValueDeleted => ("deleted", vec![]),
                    Deletion::MediaWiki => ("deleted", vec![gone, format!("{}=0", dress.max_age)]),
                };
                let header = set_cookie(name, value, &attributes, dress);
                Some((header, self.delete(name)))
            }
            Op::Wait(_) => None,
        }
    }
}

fn header_text(header: Option<&HeaderValue>) -> Option<String> {
    header.map(|header| header.to_str().unwrap().to_owned())
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn jar_matches_a_browser(ops in proptest::collection::vec(op(), 0..40)) {
        let start = Instant::now();
        // Milliseconds since the start.
        let mut elapsed = 0;
        let mut jar = CookieJar::default();
        let mut model = Model::default();
        for op in &ops {
            let now = start + Duration::from_millis(elapsed);
            if let Op::Wait(seconds) = op {
                elapsed += seconds * 1000;
                let now = start + Duration::from_millis(elapsed);
                jar.remove_expired(now);
                model.wait_until(elapsed);
            } else if let Some((header, expected)) = model.step(op, elapsed) {
                let change = jar.apply(header.as_bytes(), now);
                prop_assert_eq!(change, expected, "{}", header);
            }
            prop_assert_eq!(header_text(jar.header().as_ref()), model.header(), "after {:?}", op);
            prop_assert_eq!(
                jar.has_session_cookie(),
                model.cookies.keys().any(|name| is_session_name(name))
            );
            prop_assert_eq!(jar.is_empty(), model.cookies.is_empty());
            let exact = model
                .cookies
                .values()
                .filter_map(|(_, expiry)| match expiry {
                    Expiry::At(at) => Some(*at),
                    _ => None,
                })
                .min();
            let has_far = model.cookies.values().any(|(_, expiry)| *expiry == Expiry::Far);
            match (jar.next_expiry(), exact) {
                (Some(next), Some(at)) => {
                    prop_assert_eq!(next, start + Duration::from_millis(at));
                }
                (Some(next), None) => {
                    prop_assert!(has_far);
                    prop_assert!(next > start + Duration::from_millis(elapsed) + Duration::from_secs(30 * 86_400));
                }
                (None, _) => prop_assert!(exact.is_none() && !has_far),
            }
            usable(&jar, start + Duration::from_millis(elapsed))?;
        }
    }
}

// ---------------------------------------------------------------------------
// The jar saved to the state file and read back.
// ---------------------------------------------------------------------------

/// The jar and model after `ops`, and the milliseconds they took.
fn run(ops: &[Op], start: Instant) -> (CookieJar, Model, u64) {
    let mut elapsed = 0;
    let mut jar = CookieJar::default();
    let mut model = Model::default();
    for op in ops {
        if let Op::Wait(seconds) = op {
            elapsed += seconds * 1000;
            jar.remove_expired(start + Duration::from_millis(elapsed));
            model.wait_until(elapsed);
        } else if let Some((header, _)) = model.step(op, elapsed) {
            jar.apply(header.as_bytes(), start + Duration::from_millis(elapsed));
        }
    }
    (jar, model, elapsed)
}

fn saved_cookie() -> impl Strategy<Value = SavedCookie> {
    (
        prop_oneof![
            proptest::sample::select(NAMES).prop_map(str::to_owned),
            any::<String>()
        ],
        prop_oneof![cookie_value(), any::<String>()],
        // Far expiries overflow (see `far_saved_expiry_does_not_panic`).
        proptest::option::of(prop_oneof![
            0..1_u64 << 59,
            1_000_000_000..3_000_000_000_u64,
        ]),
    )
        .prop_map(|(name, value, expires_unix)| SavedCookie {
            name,
            value,
            expires_unix,
        })
}

proptest! {
    #![proptest_config(config(2000))]

    /// What is saved and read back later is the jar, less what expired
    /// meanwhile, with the same expiry times.
    #[test]
    fn saved_jar_round_trips(
        ops in proptest::collection::vec(op(), 0..30),
        wall_secs in 1_000_000_000..4_000_000_000_u64,
        later_secs in prop_oneof![Just(0_u64), 0..5_000_u64],
    ) {
        let start = Instant::now();
        let (jar, mut model, elapsed) = run(&ops, start);
        let now = start + Duration::from_millis(elapsed);
        let wall = std::time::UNIX_EPOCH + Duration::from_secs(wall_secs);
        let saved = jar.to_saved(now, wall);
        prop_assert_eq!(saved.len(), model.cookies.len());
        let later = Duration::from_secs(later_secs);
        let restored = CookieJar::from_saved(saved, now + later, wall + later);
        model.wait_until(elapsed + later_secs * 1000);
        prop_assert_eq!(header_text(restored.header().as_ref()), model.header());
        let exact = model
            .cookies
            .values()
            .filter_map(|(_, expiry)| match expiry {
                Expiry::At(at) => Some(start + Duration::from_millis(*at)),
                _ => None,
            })
            .min();
        if let Some(exact) = exact {
            prop_assert_eq!(restored.next_expiry(), Some(exact));
        }
        usable(&restored, now + later)?;
    }

    /// A state file's cookies, whatever they hold, are read without
    /// panicking; those that expired are left out.
    #[test]
    fn any_saved_cookies_are_read(
        saved in proptest::collection::vec(saved_cookie(), 0..6),
        wall_secs in prop_oneof![1_000_000_000..4_000_000_000_u64, any::<u32>().prop_map(u64::from)],
    ) {
        let wall = std::time::UNIX_EPOCH + Duration::from_secs(wall_secs);
        let now = Instant::now();
        let jar = CookieJar::from_saved(saved.clone(), now, wall);
        let unsendable = saved.iter().any(|cookie| {
            format!("{}={}", cookie.name, cookie.value)
                .bytes()
                .any(|b| (b < 0x20 && b != b'\t') || b == 0x7f)
        });
        if !unsendable {
            usable(&jar, now)?;
        }
        let alive = saved
            .iter()
            .filter(|cookie| cookie.expires_unix.is_none_or(|at| at > wall_secs))
            .map(|cookie| cookie.name.as_str())
            .collect::<std::collections::BTreeSet<_>>();
        let resaved = jar.to_saved(now, wall);
        let names = resaved
            .iter()
            .map(|cookie| cookie.name.as_str())
            .collect::<std::collections::BTreeSet<_>>();
        prop_assert_eq!(names, alive);
    }
}

// ---------------------------------------------------------------------------
// The same through the session manager, on paused time.
// ---------------------------------------------------------------------------

/// A cookie session, as the wiki confirmed it.
fn established(user: String, jar: CookieJar) -> Established {
    Established {
        user,
        jar,
        wiki_time: None,
        authorization: None,
    }
}

/// Logs in at once with a jar holding `wiki_BPsession=login<n>`.
#[derive(Debug, Default)]
struct InstantLogin {
    logins: std::sync::atomic::AtomicU64,
}

impl Authenticator for InstantLogin {
    fn log_in(&self) -> BoxFuture<'_, Result<Established, LoginError>> {
        Box::pin(async move {
            let n = self
                .logins
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut jar = CookieJar::default();
            jar.apply(
                format!("wiki_BPsession=login{n}; path=/").as_bytes(),
                Instant::now(),
            );
            Ok(established("Bot".into(), jar))
        })
    }

    fn resume(
        &self,
        jar: CookieJar,
        user: String,
    ) -> BoxFuture<'_, Result<Established, LoginError>> {
        Box::pin(async move { Ok(established(user, jar)) })
    }
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

/// Whether `op` renews a cookie the model holds with its value, the known
/// bug that `renewal_through_the_session_keeps_the_new_expiry` records.
fn is_renewal(model: &Model, op: &Op) -> bool {
    match op {
        Op::Renew { name, .. } => model.cookies.contains_key(name),
        Op::Set { name, value, .. } => model
            .cookies
            .get(name)
            .is_some_and(|(held, _)| held == value),
        _ => false,
    }
}

proptest! {
    #![proptest_config(config(800))]

    #[test]
    fn session_header_matches_a_browser(ops in proptest::collection::vec(op(), 0..30)) {
        paused_runtime().block_on(async {
            let sessions = SessionManager::start(
                Arc::new(InstantLogin::default()),
                Arc::new(Metrics::new()),
            );
            let mut session = sessions.current().await.unwrap();
            let start = Instant::now();
            let millis_since_start = || u64::try_from((Instant::now() - start).as_millis()).unwrap();
            let mut model = Model::default();
            let mut logins = 0;
            model.set("wiki_BPsession", "login0", Life::Session, 0);
            for op in &ops {
                if is_renewal(&model, op) {
                    continue;
                }
                let mut ended = false;
                if let Op::Wait(seconds) = op {
                    tokio::time::advance(Duration::from_secs(*seconds)).await;
                    model.wait_until(millis_since_start());
                } else if let Some((header, expected)) = model.step(op, millis_since_start()) {
                    let value = HeaderValue::from_str(&header).unwrap();
                    ended = sessions.absorb_cookies(session.generation, std::iter::once(&value));
                    prop_assert_eq!(ended, expected == CookieChange::SessionEnded, "{}", header);
                    if ended {
                        // A new login, with a fresh jar; the driver may
                        // pause first when sessions end this fast.
                        logins += 1;
                        model = Model::default();
                        model.set("wiki_BPsession", &format!("login{logins}"), Life::Session, 0);
                    }
                }
                let before = Instant::now();
                session = loop {
                    match sessions.current().await {
                        Ok(session) => break session,
                        Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
                    }
                };
                prop_assert!(ended || Instant::now() == before, "time passed without a login");
                prop_assert_eq!(
                    header_text(session.cookie_header()),
                    model.header(),
                    "after {:?} at {}ms", op, millis_since_start()
                );
            }
            Ok::<(), TestCaseError>(())
        })?;
    }
}

// ---------------------------------------------------------------------------
// Fixed inputs.
// ---------------------------------------------------------------------------

#[test]
fn deleting_a_session_cookie_ends_the_session() {
    for name in ["wiki_session", "wiki_BPsession", "x_session", "_session"] {
        for deletion in [
            "=deleted",
            "=x; Max-Age=0",
            "=x; max-age=-5",
            "=x; expires=Thu, 01 Jan 1970 00:00:01 GMT",
            "=deleted; expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0; path=/; HttpOnly",
        ] {
            let mut jar = CookieJar::default();
            let now = Instant::now();
            assert_eq!(
                jar.apply(format!("{name}=abc").as_bytes(), now),
                CookieChange::Set
            );
            assert_eq!(
                jar.apply(format!("{name}{deletion}").as_bytes(), now),
                CookieChange::SessionEnded,
                "{name}{deletion}"
            );
            assert!(jar.is_empty());
            // Deleting what is not there changes nothing.
            assert_eq!(
                jar.apply(format!("{name}{deletion}").as_bytes(), now),
                CookieChange::Unchanged
            );
        }
    }
}

// Regressions: inputs that once panicked or lost cookies.

#[test]

fn huge_max_age_does_not_panic() {
    // The cookie crate reads an empty or too long `Max-Age` as i64::MAX
    // seconds; `now + that` overflows `Instant`.
    for set_cookie in [
        "a=b; Max-Age=",
        "a=b; Max-Age=99999999999999999999",
        "a=b; Max-Age=9223372036854775807",
    ] {
        let mut jar = CookieJar::default();
        jar.apply(set_cookie.as_bytes(), Instant::now());
        assert!(jar.header().is_some(), "{set_cookie}");
    }
}

#[test]

fn far_saved_expiry_does_not_panic() {
    // A state file with a far expiry: `from_saved` adds it to an `Instant`.
    let saved = vec![SavedCookie {
        name: "wiki_BPsession".into(),
        value: "abc".into(),
        expires_unix: Some(u64::MAX),
    }];
    let jar = CookieJar::from_saved(saved, Instant::now(), std::time::SystemTime::now());
    assert!(jar.has_session_cookie());
}

#[test]

fn saving_a_far_expiry_does_not_panic() {
    // Accepted by `apply` (just under the overflow there), then `to_saved`
    // adds it to the wall clock.
    let mut jar = CookieJar::default();
    let now = Instant::now();
    jar.apply(b"a=b; Max-Age=9223372036000000000", now);
    let saved = jar.to_saved(now, std::time::SystemTime::now());
    assert_eq!(saved.len(), 1);
}

#[test]

fn control_characters_do_not_drop_the_header() {
    let mut jar = CookieJar::default();
    let now = Instant::now();
    jar.apply(b"wiki_BPsession=abc", now);
    jar.apply(b"a=b\x01c", now);
    assert_eq!(
        header_text(jar.header().as_ref()).as_deref(),
        Some("wiki_BPsession=abc")
    );
}

#[test]

fn renewal_through_the_session_keeps_the_new_expiry() {
    paused_runtime().block_on(async {
        let sessions =
            SessionManager::start(Arc::new(InstantLogin::default()), Arc::new(Metrics::new()));
        let use_dc = HeaderValue::from_static("UseDC=master; Max-Age=10; path=/");
        let session = sessions.current().await.unwrap();
        sessions.absorb_cookies(session.generation, std::iter::once(&use_dc));
        tokio::time::advance(Duration::from_secs(8)).await;
        // Renewed at 8 s: good until 18 s.
        sessions.absorb_cookies(session.generation, std::iter::once(&use_dc));
        tokio::time::advance(Duration::from_secs(3)).await;
        let session = sessions.current().await.unwrap();
        assert_eq!(
            header_text(session.cookie_header()).as_deref(),
            Some("UseDC=master; wiki_BPsession=login0")
        );
    });
}
