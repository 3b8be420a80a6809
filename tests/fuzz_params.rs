//! Property tests for `mediawiki::params`: request parameters read as PHP
//! and MediaWiki read them.
//!
//! - arbitrary query strings, urlencoded and multipart bodies and content
//!   types never panic, and what `Params` answers is self-consistent;
//! - a multipart body and the urlencoded body with the same fields give the
//!   same parameters;
//! - the last of a repeated (PHP-normalised) name wins, against a small
//!   model of PHP's `php_register_variable_ex` written here;
//! - the body wins over the query string for POST with a form content type
//!   and is ignored otherwise;
//! - `action=logout` hidden among random parameters, however PHP would
//!   still read it, is seen by `Params::every("action")`.
//!
//! Failing inputs are saved under `tests/fuzz-regressions/` and replayed
//! first on every run. `PROPTEST_CASES` overrides the case counts for a
//! longer run.
//!
//! The `php_*` tests at the end are regressions: requests PHP 8 reads in a
//! way `Params` once did not (each input checked against `php -S`), and a
//! differential test against PHP itself (the `php` binary comes from
//! `scripts/wiki install`).

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::future::Future;

use bytes::Bytes;
use http::Method;
use mw_auth_proxy::mediawiki::params::{BodyKind, Params, multi_values};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

const REGRESSIONS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fuzz-regressions/fuzz_params.txt"
);

fn config(cases: u32) -> ProptestConfig {
    support::fuzz::config(cases, REGRESSIONS)
}

thread_local! {
    // The multipart reader is async but never waits on I/O here.
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
}

fn block_on<F: Future>(future: F) -> F::Output {
    RUNTIME.with(|runtime| runtime.block_on(future))
}

/// The parameters of one request, as the proxy reads them.
fn read(
    method: &Method,
    query: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Params, String> {
    let kind = BodyKind::of(method, content_type);
    block_on(Params::from_request(
        query,
        &kind,
        &Bytes::copy_from_slice(body),
    ))
    .map_err(|err| err.to_string())
}

fn post_form(query: Option<&str>, content_type: &str, body: &[u8]) -> Result<Params, String> {
    read(&Method::POST, query, Some(content_type), body)
}

// ---------------------------------------------------------------------------
// The model: PHP 8's reading of parameter names, and MediaWiki's `getVal`.
// ---------------------------------------------------------------------------

/// `php_register_variable_ex` (main/php_variables.c, PHP 8): the name PHP
/// registers for a raw (already decoded) name and whether it is an array;
/// `None` when PHP drops the parameter. Written from the C code, byte by
/// byte.
fn php_register_name(raw: &str) -> Option<(String, bool)> {
    // The name is a C string.
    let bytes = raw.as_bytes();
    let bytes = &bytes[..bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len())];
    // Leading spaces are skipped.
    let start = bytes.iter().position(|&b| b != b' ').unwrap_or(bytes.len());
    let bytes = &bytes[start..];
    let mut var = Vec::new();
    let mut bracket = None;
    for (index, &b) in bytes.iter().enumerate() {
        match b {
            b' ' | b'.' => var.push(b'_'),
            b'[' => {
                bracket = Some(index);
                break;
            }
            _ => var.push(b),
        }
    }
    if var.is_empty() {
        return None;
    }
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    let Some(bracket) = bracket else {
        return Some((text(var), false));
    };
    let index = &bytes[bracket + 1..];
    if index.contains(&b']') {
        return Some((text(var), true));
    }
    // Not an index: the `[` becomes `_`, and so do ` `, `.`, `[` after it.
    var.push(b'_');
    var.extend(index.iter().map(|&b| match b {
        b' ' | b'.' | b'[' => b'_',
        b => b,
    }));
    Some((text(var), false))
}

/// Names where `Params` is known to differ from PHP 8 (see
/// `php_unmatched_bracket_*` below); the generators steer clear of them.
fn known_name_divergence(raw: &str) -> bool {
    let name = raw.split('\0').next().unwrap_or("");
    let name = name.trim_start_matches(' ');
    match name.find('[') {
        Some(at) if !name[at..].contains(']') => {
            at == 0 || name[at + 1..].contains([' ', '.', '['])
        }
        _ => false,
    }
}

/// `raw`, or when it is in a known-divergence class, `raw` with its `[`
/// made `(`.
fn steer_clear(raw: String) -> String {
    if known_name_divergence(&raw) {
        raw.replace('[', "(")
    } else {
        raw
    }
}

/// What MediaWiki's `WebRequest` sees: `$_POST + $_GET`, `getVal` ignoring
/// arrays.
#[derive(Debug, Default, Clone)]
struct Model {
    /// `None`: an array.
    effective: HashMap<String, Option<String>>,
    every: HashMap<String, Vec<String>>,
}

impl Model {
    fn push(&mut self, raw: &str, value: &str) {
        match php_register_name(raw) {
            None => {}
            Some((name, true)) => {
                self.effective.insert(name, None);
            }
            Some((name, false)) => {
                self.every
                    .entry(name.clone())
                    .or_default()
                    .push(value.to_owned());
                self.effective.insert(name, Some(value.to_owned()));
            }
        }
    }

    fn of(pairs: &[(String, String)]) -> Self {
        let mut model = Model::default();
        for (name, value) in pairs {
            model.push(name, value);
        }
        model
    }

    /// `$_POST + $_GET`, keeping the overridden values in `every`.
    fn body_over_query(query: &Model, body: &Model) -> Model {
        let mut merged = query.clone();
        for (name, value) in &body.effective {
            merged.effective.insert(name.clone(), value.clone());
        }
        for (name, values) in &body.every {
            merged
                .every
                .entry(name.clone())
                .or_default()
                .extend(values.iter().cloned());
        }
        merged
    }

    fn check(&self, params: &Params, also_absent: &[&str]) -> Result<(), TestCaseError> {
        for (name, value) in &self.effective {
            prop_assert!(params.contains(name), "`{}` missing", name.escape_debug());
            prop_assert_eq!(params.get(name), value.as_deref(), "get({:?})", name);
            let every: Vec<&str> = params.every(name).collect();
            let expected: Vec<&str> = self
                .every
                .get(name)
                .map(|values| values.iter().map(String::as_str).collect())
                .unwrap_or_default();
            prop_assert_eq!(every, expected, "every({:?})", name);
        }
        for name in also_absent {
            if !self.effective.contains_key(*name) {
                prop_assert!(!params.contains(name), "`{}` present", name.escape_debug());
                prop_assert_eq!(params.every(name).count(), 0);
            }
        }
        prop_assert_eq!(
            params.action(),
            self.effective
                .get("action")
                .and_then(|value| value.as_deref())
                .unwrap_or("help")
        );
        consistent(params, self.effective.keys().map(String::as_str))?;
        Ok(())
    }
}

/// Names worth asking any `Params` about.
const PROBES: &[&str] = &[
    "action",
    "token",
    "meta",
    "type",
    "assert",
    "assertuser",
    "callback",
    "origin",
    "",
    " ",
    "_",
    "a",
    "x",
    "action_",
    "_action",
];

/// What holds of any `Params`, whatever it was read from.
fn consistent<'a>(
    params: &Params,
    names: impl Iterator<Item = &'a str>,
) -> Result<(), TestCaseError> {
    for name in names.chain(PROBES.iter().copied()) {
        let every: Vec<&str> = params.every(name).collect();
        match params.get(name) {
            Some(value) => {
                prop_assert!(params.contains(name));
                prop_assert_eq!(
                    every.last(),
                    Some(&value),
                    "get({:?}) is not the last",
                    name
                );
            }
            None if !every.is_empty() => {
                // Only an array hides scalars given earlier.
                prop_assert!(params.contains(name));
            }
            None => {}
        }
        for value in every {
            let parts: Vec<&str> = multi_values(value).collect();
            prop_assert!(!parts.is_empty());
            match value.strip_prefix('\u{1f}') {
                Some(rest) => prop_assert_eq!(parts.join("\u{1f}"), rest),
                None => prop_assert_eq!(parts.join("|"), value),
            }
        }
    }
    prop_assert_eq!(params.action(), params.get("action").unwrap_or("help"));
    Ok(())
}

// ---------------------------------------------------------------------------
// Strategies.
// ---------------------------------------------------------------------------

/// Characters PHP treats specially in names, and some that it does not.
const NAME_CHARS: &[char] = &[
    'a', 'c', 't', 'i', 'o', 'n', 'x', ' ', '.', '[', ']', '%', '\0', '+', '_', '=', '&', '-', '|',
    'é', '日', '\u{1f}', '\u{a0}', '\t',
];
const GUARDED: &[&str] = &["action", "meta", "type", "token", "assert", "callback"];
const SUFFIXES: &[&str] = &[
    "", ".", " ", "[]", "[x]", "[ ]", "]", "[]x", "[a][", "\0", "\0junk", "\0[]", "_",
];

fn name_from(chars: &'static [char], len: std::ops::Range<usize>) -> BoxedStrategy<String> {
    proptest::collection::vec(proptest::sample::select(chars), len)
        .prop_map(|chars| chars.into_iter().collect())
        .boxed()
}

/// A decoded parameter name, outside the known-divergence classes.
fn raw_name() -> BoxedStrategy<String> {
    prop_oneof![
        4 => name_from(NAME_CHARS, 0..8),
        3 => (" {0,3}", proptest::sample::select(GUARDED), proptest::sample::select(SUFFIXES))
            .prop_map(|(spaces, name, suffix)| format!("{spaces}{name}{suffix}")),
        1 => any::<String>(),
    ]
    .prop_map(steer_clear)
    .boxed()
}

fn value() -> BoxedStrategy<String> {
    prop_oneof![
        2 => proptest::sample::select(&[
            "logout", "query", "login", "tokens", "csrf|login", "\u{1f}a|b\u{1f}c", "", "|",
        ][..])
        .prop_map(str::to_owned),
        2 => "[a-z|\u{1f} =&%+\r\n-]{0,12}",
        1 => any::<String>(),
    ]
    .boxed()
}

fn pairs(
    names: BoxedStrategy<String>,
    len: std::ops::Range<usize>,
) -> BoxedStrategy<Vec<(String, String)>> {
    proptest::collection::vec((names, value()), len).boxed()
}

fn urlencode(pairs: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// Characters for names and values that can go in a multipart body as they
/// are: no quotes, backslashes or control characters in names.
const MULTIPART_NAME_CHARS: &[char] = &[
    'a', 'c', 't', 'i', 'o', 'n', 'x', ' ', '.', '[', ']', '%', '+', '_', '=', '&', '-', '|', ';',
    ',', '\'', 'é', '日', '\u{a0}',
];

fn multipart_name() -> BoxedStrategy<String> {
    prop_oneof![
        3 => name_from(MULTIPART_NAME_CHARS, 0..8),
        2 => (" {0,3}", proptest::sample::select(GUARDED), proptest::sample::select(&[
            "", ".", " ", "[]", "[x]", "]", "[a][", "_",
        ][..]))
            .prop_map(|(spaces, name, suffix)| format!("{spaces}{name}{suffix}")),
        1 => "[^\"\\\\\\p{Cc}]{0,10}",
    ]
    .prop_map(steer_clear)
    .boxed()
}

/// RFC 2046 `bchars`.
fn boundary() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "[0-9A-Za-z_-]{8,40}",
        1 => "[0-9A-Za-z'()+_,./:=?-]{1,70}",
        1 => "[0-9A-Za-z'()+_,./:=? -]{0,69}[0-9A-Za-z'()+_,./:=?-]",
    ]
    .boxed()
}

fn multipart_content_type(boundary: &str) -> String {
    let is_token = !boundary.is_empty()
        && boundary
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "'+_-.".contains(c));
    if is_token {
        format!("multipart/form-data; boundary={boundary}")
    } else {
        format!("multipart/form-data; boundary=\"{boundary}\"")
    }
}

/// How one part's headers are written; every style is read alike by PHP.
#[derive(Debug, Clone)]
struct PartStyle {
    header_name: &'static str,
    separator: &'static str,
    filename_first: bool,
    unquoted: bool,
    content_type: Option<&'static str>,
}

fn part_style() -> impl Strategy<Value = PartStyle> {
    (
        proptest::sample::select(
            &[
                "Content-Disposition",
                "content-disposition",
                "CONTENT-DISPOSITION",
            ][..],
        ),
        proptest::sample::select(&["; ", ";", ";  ", " ; "][..]),
        any::<bool>(),
        any::<bool>(),
        proptest::option::of(proptest::sample::select(
            &["text/plain", "application/octet-stream", "text/x-wiki"][..],
        )),
    )
        .prop_map(
            |(header_name, separator, filename_first, unquoted, content_type)| PartStyle {
                header_name,
                separator,
                filename_first,
                unquoted,
                content_type,
            },
        )
}

#[derive(Debug, Clone)]
struct Part {
    name: String,
    value: String,
    file_name: Option<String>,
    style: PartStyle,
}

fn part(names: BoxedStrategy<String>) -> impl Strategy<Value = Part> {
    (
        names,
        value(),
        proptest::option::weighted(0.2, "[a-z. _-]{0,8}"),
        part_style(),
    )
        .prop_map(|(name, value, file_name, style)| Part {
            name,
            value,
            file_name,
            style,
        })
}

/// Names PHP reads alike quoted and unquoted.
fn unquotable(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('=')
        && !name.contains(|c: char| matches!(c, ';' | '"' | '\'') || c.is_whitespace())
}

fn multipart_body(boundary: &str, parts: &[Part]) -> Vec<u8> {
    let mut body = Vec::new();
    for part in parts {
        let style = &part.style;
        let name = if style.unquoted && unquotable(&part.name) {
            format!("name={}", part.name)
        } else {
            format!("name=\"{}\"", part.name)
        };
        let mut disposition = vec!["form-data".to_owned()];
        match &part.file_name {
            Some(file_name) if style.filename_first => {
                disposition.push(format!("filename=\"{file_name}\""));
                disposition.push(name);
            }
            Some(file_name) => {
                disposition.push(name);
                disposition.push(format!("filename=\"{file_name}\""));
            }
            None => disposition.push(name),
        }
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        body.extend_from_slice(
            format!(
                "{}: {}\r\n",
                style.header_name,
                disposition.join(style.separator)
            )
            .as_bytes(),
        );
        if let Some(content_type) = style.content_type {
            body.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(part.value.as_bytes());
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

/// Whether `boundary` delimits only where the body builder put it.
fn boundary_is_safe(boundary: &str, parts: &[Part]) -> bool {
    let delimiter = format!("--{boundary}");
    parts.iter().all(|part| {
        !part.value.contains(&delimiter)
            && !part.name.contains(&delimiter)
            && !part
                .file_name
                .as_deref()
                .is_some_and(|file_name| file_name.contains(&delimiter))
    })
}

/// `boundary`, lengthened until it delimits only where the body builder
/// puts it.
fn safe_boundary(mut boundary: String, parts: &[Part]) -> String {
    while !boundary_is_safe(&boundary, parts) {
        boundary.push_str("Zq");
    }
    boundary
}

/// Pieces that make almost-multipart bodies.
fn soup(boundary: String) -> impl Strategy<Value = Vec<u8>> {
    let pieces: Vec<Vec<u8>> = [
        "--",
        boundary.as_str(),
        "\r\n",
        "\r\n\r\n",
        "\n",
        " ",
        "Content-Disposition: form-data; ",
        "content-disposition:form-data;",
        "name=\"action\"",
        "name=action",
        "name=\"",
        "NAME='action'",
        "; filename=\"f\"",
        "filename=",
        "\"",
        "\\\"",
        ";",
        "logout",
        "Content-Type: text/plain; charset=utf-16\r\n",
        "Content-Type: text/plain; charset=\r\n",
        "\0",
        "\u{feff}",
    ]
    .iter()
    .map(|piece| piece.as_bytes().to_vec())
    .collect();
    proptest::collection::vec(
        prop_oneof![
            6 => proptest::sample::select(pieces),
            1 => proptest::collection::vec(any::<u8>(), 0..6),
        ],
        0..40,
    )
    .prop_map(|pieces| pieces.concat())
}

fn content_type() -> BoxedStrategy<String> {
    prop_oneof![
        2 => any::<String>(),
        2 => "[a-zA-Z/;=\" ,-]{0,40}",
        2 => (
            proptest::sample::select(&[
                "multipart/form-data", "MULTIPART/FORM-DATA", "application/x-www-form-urlencoded",
                "text/plain", "multipart/mixed",
            ][..]),
            "[;, ]{0,2}[ a-zA-Z]{0,10}=?\"?[ -~]{0,20}\"?",
        )
            .prop_map(|(essence, rest)| format!("{essence}{rest}")),
    ]
    .boxed()
}

fn method() -> impl Strategy<Value = Method> {
    proptest::sample::select(
        &[
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::HEAD,
            Method::DELETE,
            Method::PATCH,
            Method::OPTIONS,
        ][..],
    )
}

// ---------------------------------------------------------------------------
// Never panic, always consistent.
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(4000))]

    #[test]
    fn any_query_string_is_read(query in prop_oneof![
        any::<String>(),
        "[a-z%0-9A-F&=+\\[\\]. ]{0,60}",
    ]) {
        let params = Params::from_query(Some(&query));
        let names: Vec<String> = form_urlencoded::parse(query.as_bytes())
            .filter_map(|(name, _)| php_register_name(&name).map(|(name, _)| name))
            .collect();
        consistent(&params, names.iter().map(String::as_str))?;
    }

    #[test]
    fn any_urlencoded_bytes_are_read(body in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut params = Params::default();
        params.add_urlencoded(&body);
        consistent(&params, std::iter::empty())?;
        let read = post_form(None, "application/x-www-form-urlencoded", &body).unwrap();
        prop_assert_eq!(read.action(), params.action());
    }

    #[test]
    fn any_content_type_and_body_are_read(
        method in method(),
        content_type in proptest::option::of(content_type()),
        body in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let kind = BodyKind::of(&method, content_type.as_deref());
        if method != Method::POST || content_type.is_none() {
            prop_assert_eq!(&kind, &BodyKind::Opaque);
        }
        if let Ok(params) = read(&method, Some("action=query"), content_type.as_deref(), &body) {
            consistent(&params, std::iter::empty())?;
        }
    }
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn almost_multipart_bodies_are_read(
        (boundary, body) in boundary().prop_flat_map(|boundary| (Just(boundary.clone()), soup(boundary))),
        query in proptest::option::of("[a-z=&]{0,20}"),
    ) {
        let content_type = multipart_content_type(&boundary);
        if let Ok(params) = post_form(query.as_deref(), &content_type, &body) {
            consistent(&params, std::iter::empty())?;
        }
    }

    /// Arbitrary bytes inside an otherwise well-formed part.
    #[test]
    fn multipart_parts_with_arbitrary_bytes_are_read(
        boundary in boundary(),
        headers in proptest::collection::vec(any::<u8>(), 0..60),
        content in proptest::collection::vec(any::<u8>(), 0..60),
    ) {
        let mut body = format!("--{boundary}\r\n").into_bytes();
        body.extend_from_slice(&headers);
        body.extend_from_slice(b"\r\n\r\n");
        body.extend_from_slice(&content);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let content_type = multipart_content_type(&boundary);
        if let Ok(params) = post_form(None, &content_type, &body) {
            consistent(&params, std::iter::empty())?;
        }
    }
}

// ---------------------------------------------------------------------------
// Properties against the model.
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(3000))]

    /// (b) The last of a repeated name wins, in PHP's reading of names.
    #[test]
    fn last_repeated_name_wins(pairs in pairs(raw_name(), 0..12)) {
        let model = Model::of(&pairs);
        let encoded = urlencode(&pairs);
        let params = Params::from_query(Some(&encoded));
        model.check(&params, PROBES)?;
        // `push` is the same reading, without the encoding.
        let mut pushed = Params::default();
        for (name, value) in &pairs {
            pushed.push(name, value);
        }
        model.check(&pushed, PROBES)?;
        // And so is an urlencoded body.
        let body = post_form(None, "application/x-www-form-urlencoded", encoded.as_bytes()).unwrap();
        model.check(&body, PROBES)?;
    }

    /// (a) A multipart body reads as the urlencoded body with the same
    /// fields; parts with a file name are not parameters.
    #[test]
    fn multipart_reads_as_urlencoded(
        boundary in boundary(),
        parts in proptest::collection::vec(part(multipart_name()), 0..8),
    ) {
        let boundary = safe_boundary(boundary, &parts);
        let fields: Vec<(String, String)> = parts
            .iter()
            .filter(|part| part.file_name.is_none())
            .map(|part| (part.name.clone(), part.value.clone()))
            .collect();
        let content_type = multipart_content_type(&boundary);
        let kind = BodyKind::of(&Method::POST, Some(&content_type));
        prop_assert_eq!(kind, BodyKind::Multipart { boundary: boundary.clone() });
        let body = multipart_body(&boundary, &parts);
        let multipart = post_form(None, &content_type, &body)
            .map_err(|err| TestCaseError::fail(format!("{err}: {}", String::from_utf8_lossy(&body))))?;
        let urlencoded = post_form(None, "application/x-www-form-urlencoded", urlencode(&fields).as_bytes()).unwrap();
        let model = Model::of(&fields);
        model.check(&multipart, PROBES)?;
        model.check(&urlencoded, PROBES)?;
    }

    /// (c) For POST with a form content type the body wins over the query
    /// string; for any other request the body is not read.
    #[test]
    fn body_wins_over_query_for_form_posts_only(
        query_pairs in pairs(raw_name(), 0..6),
        body_pairs in pairs(multipart_name(), 0..6),
        method in method(),
        form in 0..6_u8,
        boundary in "[0-9A-Za-z]{12,24}",
    ) {
        let query = urlencode(&query_pairs);
        let (content_type, body) = match form {
            0 => ("application/x-www-form-urlencoded".to_owned(), urlencode(&body_pairs).into_bytes()),
            1 => ("Application/X-WWW-Form-Urlencoded; charset=UTF-8".to_owned(), urlencode(&body_pairs).into_bytes()),
            2 | 3 => {
                let parts: Vec<Part> = body_pairs
                    .iter()
                    .map(|(name, value)| Part {
                        name: name.clone(),
                        value: value.clone(),
                        file_name: None,
                        style: PartStyle {
                            header_name: "Content-Disposition",
                            separator: "; ",
                            filename_first: false,
                            unquoted: false,
                            content_type: None,
                        },
                    })
                    .collect();
                let boundary = safe_boundary(boundary.clone(), &parts);
                let content_type = if form == 2 {
                    format!("multipart/form-data; boundary={boundary}")
                } else {
                    format!("Multipart/Form-Data; charset=utf-8; boundary=\"{boundary}\"")
                };
                (content_type, multipart_body(&boundary, &parts))
            }
            4 => ("text/plain".to_owned(), urlencode(&body_pairs).into_bytes()),
            _ => ("application/json".to_owned(), urlencode(&body_pairs).into_bytes()),
        };
        let is_form = method == Method::POST && form < 4;
        let params = read(&method, Some(&query), Some(&content_type), &body).unwrap();
        let query_model = Model::of(&query_pairs);
        let expected = if is_form {
            Model::body_over_query(&query_model, &Model::of(&body_pairs))
        } else {
            query_model
        };
        expected.check(&params, PROBES)?;
        // Without a content type nothing reads the body either.
        let bare = read(&method, Some(&query), None, &body).unwrap();
        Model::of(&query_pairs).check(&bare, PROBES)?;
    }
}

// ---------------------------------------------------------------------------
// (d) `action=logout` hidden anywhere is seen.
// ---------------------------------------------------------------------------

/// Where the hidden parameter goes.
#[derive(Debug, Clone, Copy)]
enum Place {
    Query,
    UrlencodedBody,
    MultipartBody,
}

/// `text` with the characters `encode` picks percent-encoded, in upper or
/// lower case hex.
fn percent_encode_some(text: &str, encode: &[(bool, bool)]) -> String {
    text.chars()
        .zip(encode.iter().chain(std::iter::repeat(&(false, false))))
        .map(|(c, &(encode, upper))| match (encode, upper) {
            (false, _) => c.to_string(),
            (true, true) => format!("%{:02X}", c as u32),
            (true, false) => format!("%{:02x}", c as u32),
        })
        .collect()
}

/// `action=logout` as an urlencoded pair, in one of the spellings PHP reads
/// as such.
fn hidden_urlencoded() -> impl Strategy<Value = String> {
    (
        proptest::sample::select(&["", "+", "%20", "++", "%20+"][..]),
        proptest::collection::vec(any::<(bool, bool)>(), 6),
        proptest::collection::vec(any::<(bool, bool)>(), 6),
        proptest::sample::select(&["", "%00", "%00junk", "%00%5B%5D", "%00%3D"][..]),
    )
        .prop_map(|(spaces, name_encoding, value_encoding, suffix)| {
            format!(
                "{spaces}{}{suffix}={}",
                percent_encode_some("action", &name_encoding),
                percent_encode_some("logout", &value_encoding)
            )
        })
}

/// `action=logout` as a multipart field, as PHP reads it and as the common
/// multipart readers agree on.
fn hidden_part() -> impl Strategy<Value = Part> {
    (
        proptest::sample::select(&["action", " action", "   action"][..]),
        part_style(),
    )
        .prop_map(|(name, style)| Part {
            name: name.to_owned(),
            value: "logout".to_owned(),
            file_name: None,
            style,
        })
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn hidden_logout_is_seen(
        place in proptest::sample::select(&[Place::Query, Place::UrlencodedBody, Place::MultipartBody][..]),
        query_fillers in pairs(raw_name(), 0..8),
        body_fillers in proptest::collection::vec(part(multipart_name()), 0..8),
        hidden_pair in hidden_urlencoded(),
        hidden_part in hidden_part(),
        position in any::<proptest::sample::Index>(),
        boundary in boundary(),
    ) {
        let mut query: Vec<String> = query_fillers
            .iter()
            .map(|pair| urlencode(std::slice::from_ref(pair)))
            .collect();
        let body_pairs: Vec<(String, String)> = body_fillers
            .iter()
            .map(|part| (part.name.clone(), part.value.clone()))
            .collect();
        let mut form: Vec<String> = body_pairs
            .iter()
            .map(|pair| urlencode(std::slice::from_ref(pair)))
            .collect();
        let mut parts = body_fillers.clone();
        let (content_type, body) = match place {
            Place::Query => {
                query.insert(position.index(query.len() + 1), hidden_pair.clone());
                ("application/x-www-form-urlencoded".to_owned(), form.join("&").into_bytes())
            }
            Place::UrlencodedBody => {
                form.insert(position.index(form.len() + 1), hidden_pair.clone());
                ("application/x-www-form-urlencoded".to_owned(), form.join("&").into_bytes())
            }
            Place::MultipartBody => {
                parts.insert(position.index(parts.len() + 1), hidden_part.clone());
                let boundary = safe_boundary(boundary.clone(), &parts);
                (multipart_content_type(&boundary), multipart_body(&boundary, &parts))
            }
        };
        let query = query.join("&");
        let params = post_form(Some(&query), &content_type, &body)
            .map_err(|err| TestCaseError::fail(format!("{err}: {}", String::from_utf8_lossy(&body))))?;
        prop_assert!(
            params.every("action").any(|action| action == "logout"),
            "logout not seen in query {:?}, body {:?}",
            query,
            String::from_utf8_lossy(&body)
        );
        if matches!(place, Place::Query) {
            let params = Params::from_query(Some(&query));
            prop_assert!(params.every("action").any(|action| action == "logout"));
        }
    }
}

// ---------------------------------------------------------------------------
// Fixed inputs that once failed or that document the readings above.
// ---------------------------------------------------------------------------

#[test]
fn model_agrees_with_php_on_recorded_names() {
    // Each checked against PHP 8.2's `$_GET`.
    for (raw, expected) in [
        ("a[b.c", Some(("a_b_c", false))),
        ("a[ b", Some(("a__b", false))),
        ("a[b[c", Some(("a_b_c", false))),
        (" .a", Some(("_a", false))),
        ("  a[]", Some(("a", true))),
        ("[x]", None),
        ("[x", None),
        ("a]b", Some(("a]b", false))),
        ("x\0y", Some(("x", false))),
        ("a.b[c.d]e.f", Some(("a_b", true))),
        ("a[]b[", Some(("a", true))),
        ("a\tb", Some(("a\tb", false))),
    ] {
        let got = php_register_name(raw);
        let expected = expected.map(|(name, array)| (name.to_owned(), array));
        assert_eq!(got, expected, "{raw:?}");
    }
}

// ---------------------------------------------------------------------------
// Known differences from PHP 8, each checked against `php -S` (PHP 8.2).
// ---------------------------------------------------------------------------

/// The multipart body of one field, its Content-Disposition given whole.
fn one_part(disposition: &str, extra_headers: &str, value: &str) -> Vec<u8> {
    format!(
        "--XyZ\r\nContent-Disposition: {disposition}\r\n{extra_headers}\r\n{value}\r\n--XyZ--\r\n"
    )
    .into_bytes()
}

fn sees_logout(result: Result<Params, String>) -> bool {
    match result {
        Ok(params) => params.every("action").any(|action| action == "logout"),
        // A body the proxy cannot read is refused, which is safe too.
        Err(_) => true,
    }
}

#[test]
fn php_unmatched_bracket_is_rewritten_to_the_end() {
    // PHP 8: `a_b_c`; Params: `a_b.c`.
    let params = Params::from_query(Some("a%5Bb.c=1"));
    assert_eq!(params.get("a_b_c"), Some("1"));
    // PHP 8 drops a name that starts with `[`; Params registers `_x`.
    let params = Params::from_query(Some("%5Bx=1"));
    assert!(!params.contains("_x"));
}

#[test]
fn php_content_type_ends_at_comma_or_space() {
    // PHP (SAPI.c) ends the media type at the first `;`, `,` or ` `.
    for content_type in [
        "application/x-www-form-urlencoded,",
        "application/x-www-form-urlencoded x",
    ] {
        let params = post_form(None, content_type, b"action=logout");
        assert!(sees_logout(params), "{content_type}");
    }
    for content_type in [
        "multipart/form-data, boundary=XyZ",
        "multipart/form-data boundary=XyZ",
        "multipart/form-data ; boundary=XyZ",
        // PHP ends an unquoted boundary at `,` or `;`, a quoted one at `"`.
        "multipart/form-data; boundary=XyZ, x",
        "multipart/form-data; boundary=\"XyZ\"x",
    ] {
        let body = one_part("form-data; name=\"action\"", "", "logout");
        assert!(
            sees_logout(post_form(None, content_type, &body)),
            "{content_type}"
        );
    }
}

#[test]
fn php_boundary_is_the_first_boundary_substring() {
    // PHP (rfc1867.c) takes the boundary from `strstr(content_type, "boundary")`:
    // here `AAA`, where Params reads `BBB` and sees one harmless field.
    let body = b"--BBB\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n\
        --AAA\r\nContent-Disposition: form-data; name=\"action\"\r\n\r\nlogout\r\n--AAA--\r\n\
        \r\n--BBB--\r\n";
    let params = post_form(
        None,
        "multipart/form-data; xboundary=AAA; boundary=BBB",
        body,
    );
    assert!(sees_logout(params));
}

#[test]
fn php_content_disposition_reading() {
    // PHP (rfc1867.c): parameters split at `;` outside quotes, names compared
    // case-insensitively, the last `name` wins, values quoted with `"` or `'`.
    for disposition in [
        "form-data; NAME=\"action\"",
        "form-data; Name=action",
        "form-data; name='action'",
        "form-data; name==action",
        "form-data; name==\"action\"",
        "form-data; name=\"x\"; name=\"action\"",
        "form-data; namex=\"y\"; name=\"action\"",
        "form-data; dummy=\" name=foo\"; name=\"action\"",
        // Not a file for PHP: the `filename=` is inside a quoted value.
        "form-data; name=\"action\"; dummy=\" filename=a\"",
        // Nor here: PHP's quote runs from `'` to the end.
        "form-data; name=action; x='; filename=\"f\"",
    ] {
        let body = one_part(disposition, "", "logout");
        let params = post_form(None, "multipart/form-data; boundary=XyZ", &body);
        assert!(sees_logout(params), "{disposition}");
    }
}

#[test]
fn php_part_charset_is_ignored() {
    // Params decodes these as `潬潧瑵` and `\u{fffd}`; PHP keeps `logout`.
    for charset in ["utf-16", "replacement"] {
        let body = one_part(
            "form-data; name=\"action\"",
            &format!("Content-Type: text/plain; charset={charset}\r\n"),
            "logout",
        );
        let params = post_form(None, "multipart/form-data; boundary=XyZ", &body);
        assert!(sees_logout(params), "{charset}");
    }
}

// ---------------------------------------------------------------------------
// Differential: `Params` against PHP itself, where a `php` binary is at hand.
// Compared against PHP itself; `scripts/wiki install` provides `php`.
// ---------------------------------------------------------------------------

/// `php -S` on a free local port, serving a script that lists `$_GET` and
/// `$_POST`; stopped when dropped.
struct PhpServer {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

const DUMP_SCRIPT: &str = r#"<?php
$out = [];
foreach (['get' => $_GET, 'post' => $_POST] as $which => $params) {
    $list = [];
    foreach ($params as $name => $value) {
        $list[] = [(string)$name, is_array($value) ? null : $value];
    }
    $out[$which] = $list;
}
header('Content-Type: application/json');
echo json_encode($out, JSON_INVALID_UTF8_SUBSTITUTE);
"#;

impl PhpServer {
    fn start() -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let script = dir.path().join("dump.php");
        std::fs::write(&script, DUMP_SCRIPT).ok()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = std::process::Command::new("php")
            .args(["-n", "-d", "max_input_vars=10000", "-S"])
            .arg(format!("127.0.0.1:{port}"))
            .arg(&script)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let server = PhpServer {
            child,
            port,
            _dir: dir,
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(server);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        None
    }

    /// `$_POST + $_GET` as MediaWiki's `WebRequest` holds it (`None`: an
    /// array), with the query's and the body's parameters apart.
    #[allow(clippy::type_complexity)]
    fn read(
        &self,
        method: &Method,
        query: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> (Vec<(String, Option<String>)>, Vec<(String, Option<String>)>) {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let mut request = format!(
            "{method} /?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        )
        .into_bytes();
        if let Some(content_type) = content_type {
            request.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
        }
        request.extend_from_slice(b"\r\n");
        request.extend_from_slice(body);
        stream.write_all(&request).unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let start = response
            .windows(4)
            .position(|window| window == b"\r\n\r\n")
            .unwrap()
            + 4;
        let json: serde_json::Value = serde_json::from_slice(&response[start..])
            .unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(&response)));
        let list = |which: &str| -> Vec<(String, Option<String>)> {
            json[which]
                .as_array()
                .unwrap()
                .iter()
                .map(|pair| {
                    (
                        pair[0].as_str().unwrap().to_owned(),
                        pair[1].as_str().map(str::to_owned),
                    )
                })
                .collect()
        };
        (list("get"), list("post"))
    }
}

impl Drop for PhpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

thread_local! {
    static PHP: Option<PhpServer> = PhpServer::start();
}

fn php_differential_config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fuzz-regressions/fuzz_params_php.txt"
        )))),
        ..config(1000)
    }
}

proptest! {
    #![proptest_config(php_differential_config())]

    /// What PHP puts in `$_POST + $_GET` is what `Params` answers, for
    /// query strings, urlencoded and multipart bodies, any method. Inputs
    /// in the known-divergence classes above are left out.
    /// Needs the `php` binary, which `scripts/wiki install` provides.
    #[test]
    fn php_differential(
        method in proptest::sample::select(&[Method::GET, Method::POST, Method::PUT][..]),
        query_pairs in pairs(raw_name(), 0..6),
        raw_tail in "(&[a-z0-9%=+.\\[\\]]{0,16}){0,1}",
        parts in proptest::collection::vec(part(multipart_name()), 0..6),
        form in 0..4_u8,
        boundary in boundary(),
    ) {
        let boundary = safe_boundary(boundary, &parts);
        let diverges = |query: &str| {
            form_urlencoded::parse(query.as_bytes()).any(|(name, _)| known_name_divergence(&name))
        };
        let mut query = format!("{}{raw_tail}", urlencode(&query_pairs));
        if diverges(&query) {
            query = format!("{}{}", urlencode(&query_pairs), raw_tail.replace('[', "("));
        }
        prop_assume!(!diverges(&query));
        let fields: Vec<(String, String)> = parts
            .iter()
            .filter(|part| part.file_name.is_none())
            .map(|part| (part.name.clone(), part.value.clone()))
            .collect();
        let (content_type, body) = match form {
            0 => (Some("application/x-www-form-urlencoded".to_owned()), urlencode(&fields).into_bytes()),
            1 => (Some(multipart_content_type(&boundary)), multipart_body(&boundary, &parts)),
            2 => (Some("text/plain".to_owned()), urlencode(&fields).into_bytes()),
            _ => (None, urlencode(&fields).into_bytes()),
        };
        let php = PHP.with(|php| {
            php.as_ref().map(|php| php.read(&method, &query, content_type.as_deref(), &body))
        });
        let Some((get, post)) = php else {
            return Err(TestCaseError::fail(
                "no `php` binary: run `scripts/wiki install` (the test is never skipped)",
            ));
        };
        // A body the proxy refuses cannot be read differently from PHP.
        let Ok(params) = read(&method, Some(&query), content_type.as_deref(), &body) else {
            return Ok(());
        };
        let mut merged: HashMap<String, Option<String>> = get.into_iter().collect();
        merged.extend(post);
        for (name, value) in &merged {
            prop_assert!(params.contains(name), "PHP has `{}`", name.escape_debug());
            prop_assert_eq!(params.get(name), value.as_deref(), "get({:?})", name);
        }
        // Every name the model knows of, PHP knows of too.
        let mut model = Model::default();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            model.push(&name, &value);
        }
        if method == Method::POST && form < 2 {
            model = Model::body_over_query(&model, &Model::of(&fields));
        }
        for name in model.effective.keys().map(String::as_str).chain(PROBES.iter().copied()) {
            prop_assert_eq!(
                params.contains(name),
                merged.contains_key(name),
                "contains({:?})", name
            );
        }
    }
}
