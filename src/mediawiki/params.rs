//! Request parameters read exactly as MediaWiki (that is, PHP) reads them, so
//! a guard deciding on `action` sees what the wiki will act on.
//!
//! PHP builds `$_GET` from the query string and, for POST requests only,
//! `$_POST` from an urlencoded or multipart body; MediaWiki's `WebRequest`
//! then takes `$_POST + $_GET`, so the body wins. Within one source the last
//! of a repeated name wins. PHP also rewrites names: leading spaces are
//! dropped, ` ` and `.` become `_`, and `name[...]` makes an array, which
//! MediaWiki's `getVal` treats as absent. Multipart parts with a file name go
//! to `$_FILES` and are not parameters at all.

use std::ops::Range;

use bytes::Bytes;
use http::Method;

/// Parameters of one request, in MediaWiki's reading.
///
/// Every parameter is kept in arrival order, overridden ones included:
/// guards refuse on any of them, since PHP drops parameters past
/// `max_input_vars` and "the last one" is not always the one it keeps. The
/// value `WebRequest::getVal` returns is the last one given for a name.
/// Names and values live back to back in one string, and lookups scan the
/// list: a request has a dozen parameters, which this reads with two
/// allocations where a map of owned strings took several per parameter.
#[derive(Debug, Default, Clone)]
pub struct Params {
    /// Every name and value, decoded, back to back.
    text: String,
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    /// Where the name (as PHP rewrites it) is in `text`.
    name: Range<usize>,
    /// Where the value is; `None` for `name[...]=`: present, but `getVal`
    /// does not return it.
    value: Option<Range<usize>>,
}

/// How a request body carries parameters, if it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyKind {
    /// No parameters in the body (not POST, or another content type).
    Opaque,
    UrlEncoded,
    Multipart {
        boundary: String,
    },
}

impl BodyKind {
    /// PHP parses a body into parameters only for POST requests with one of
    /// the two form content types.
    pub fn of(method: &Method, content_type: Option<&str>) -> Self {
        if method != Method::POST {
            return BodyKind::Opaque;
        }
        let Some(content_type) = content_type else {
            return BodyKind::Opaque;
        };
        // PHP (SAPI.c) ends the media type at the first `;`, `,` or space.
        let end = content_type
            .find([';', ',', ' '])
            .unwrap_or(content_type.len());
        match content_type[..end].to_ascii_lowercase().as_str() {
            "application/x-www-form-urlencoded" => BodyKind::UrlEncoded,
            "multipart/form-data" => match php_boundary(content_type) {
                Some(boundary) => BodyKind::Multipart { boundary },
                // PHP then reads no parameters at all.
                None => BodyKind::Opaque,
            },
            _ => BodyKind::Opaque,
        }
    }
}

/// The boundary as PHP's rfc1867.c finds it: after the first `=` that
/// follows the first `boundary` in the header (case-sensitive, else not),
/// up to a closing quote, or to `,` or `;`.
fn php_boundary(content_type: &str) -> Option<String> {
    let start = content_type
        .find("boundary")
        .or_else(|| content_type.to_ascii_lowercase().find("boundary"))?;
    let after = &content_type[start..];
    let value = &after[after.find('=')? + 1..];
    let boundary = match value.strip_prefix('"') {
        Some(quoted) => &quoted[..quoted.find('"')?],
        None => &value[..value.find([',', ';']).unwrap_or(value.len())],
    };
    (!boundary.is_empty()).then(|| boundary.to_owned())
}

/// The field name in a part's `Content-Disposition`, or `None` for a file
/// part (PHP puts those in `$_FILES`). PHP's own reading of this header is
/// quirky (case-insensitive parameter names, single quotes, later
/// duplicates winning...), so only forms that PHP and this reading cannot
/// disagree on are accepted: `form-data` with a lowercase `name` and at
/// most one lowercase `filename`, in either order, each a plain token or
/// double-quoted without quotes or backslashes inside. Anything else is
/// refused rather than read differently from PHP.
pub fn part_name(headers: &http::HeaderMap) -> Result<Option<String>, MalformedBody> {
    let unusual = || MalformedBody("unusual Content-Disposition in a part".into());
    let value = headers
        .get(http::header::CONTENT_DISPOSITION)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .ok_or_else(unusual)?;
    let mut params = split_outside_quotes(&value).into_iter().map(str::trim);
    if params.next() != Some("form-data") {
        return Err(unusual());
    }
    let (mut name, mut filename) = (None, None);
    for param in params {
        let (key, raw) = param.split_once('=').ok_or_else(unusual)?;
        let value = plain_value(raw).ok_or_else(unusual)?;
        let slot = match key {
            "name" => &mut name,
            "filename" => &mut filename,
            _ => return Err(unusual()),
        };
        if slot.replace(value).is_some() {
            return Err(unusual());
        }
    }
    match (name, filename) {
        (Some(name), None) => Ok(Some(name)),
        (Some(_), Some(_)) => Ok(None),
        (None, _) => Err(unusual()),
    }
}

/// Splits at `;` outside double quotes.
fn split_outside_quotes(value: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (index, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => {
                pieces.push(&value[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    pieces.push(&value[start..]);
    pieces
}

/// `"quoted"` without quotes or backslashes inside, or a bare token.
fn plain_value(raw: &str) -> Option<String> {
    let forbidden = |c: char| matches!(c, '"' | '\\' | '\'') || c.is_whitespace();
    match raw.strip_prefix('"') {
        Some(quoted) => {
            let inner = quoted.strip_suffix('"')?;
            (!inner.contains(['"', '\\'])).then(|| inner.to_owned())
        }
        // PHP skips a leading `=` (`name==x` is `x` to it): refused.
        None => (!raw.is_empty() && !raw.starts_with('=') && !raw.contains(forbidden))
            .then(|| raw.to_owned()),
    }
}

/// A body that says it is multipart but cannot be read as such.
#[derive(Debug, thiserror::Error)]
#[error("malformed multipart/form-data body: {0}")]
pub struct MalformedBody(String);

impl Params {
    /// The parameters of a request whose body carries none.
    pub fn from_query(query: Option<&str>) -> Self {
        let mut params = Params::default();
        if let Some(query) = query {
            params.add_urlencoded(query.as_bytes());
        }
        params
    }

    /// The parameters of a request with its whole body at hand.
    pub async fn from_request(
        query: Option<&str>,
        kind: &BodyKind,
        body: &Bytes,
    ) -> Result<Self, MalformedBody> {
        let mut params = Self::from_query(query);
        match kind {
            BodyKind::Opaque => {}
            BodyKind::UrlEncoded => params.add_urlencoded(body),
            BodyKind::Multipart { boundary } => {
                params.add_multipart(body.clone(), boundary).await?
            }
        }
        Ok(params)
    }

    /// Adds `a=1&b=2` pairs, later ones overriding earlier ones.
    pub fn add_urlencoded(&mut self, encoded: &[u8]) {
        if self.text.capacity() == 0 {
            // Decoding never lengthens: one allocation for the common case.
            self.text.reserve(encoded.len());
        }
        for (name, value) in form_urlencoded::parse(encoded) {
            self.push(&name, &value);
        }
    }

    async fn add_multipart(&mut self, body: Bytes, boundary: &str) -> Result<(), MalformedBody> {
        let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) });
        let mut multipart = multer::Multipart::new(stream, boundary);
        loop {
            let field = multipart
                .next_field()
                .await
                .map_err(|err| MalformedBody(err.to_string()))?;
            let Some(field) = field else { break };
            let name = part_name(field.headers())?;
            // PHP ignores a part's charset: bytes, read as UTF-8.
            let value = field
                .bytes()
                .await
                .map_err(|err| MalformedBody(err.to_string()))?;
            if let Some(name) = name {
                self.push(&name, &String::from_utf8_lossy(&value));
            }
        }
        Ok(())
    }

    /// Records one `name=value` as PHP would.
    pub fn push(&mut self, raw_name: &str, value: &str) {
        let start = self.text.len();
        let Some(is_array) = push_php_name(raw_name, &mut self.text) else {
            self.text.truncate(start);
            return;
        };
        let name = start..self.text.len();
        let value = (!is_array).then(|| {
            let start = self.text.len();
            self.text.push_str(value);
            start..self.text.len()
        });
        self.entries.push(Entry { name, value });
    }

    /// Every entry under `name`, in arrival order.
    fn named<'a>(&'a self, name: &'a str) -> impl DoubleEndedIterator<Item = &'a Entry> + 'a {
        self.entries
            .iter()
            .filter(move |entry| &self.text[entry.name.clone()] == name)
    }

    /// The value MediaWiki acts on, if the name is present as a scalar.
    pub fn get(&self, name: &str) -> Option<&str> {
        let last = self.named(name).next_back()?;
        last.value.clone().map(|value| &self.text[value])
    }

    /// Whether the name was given at all, in any form.
    pub fn contains(&self, name: &str) -> bool {
        self.named(name).next().is_some()
    }

    /// Every scalar value given for `name`, overridden ones included.
    pub fn every<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.named(name)
            .filter_map(|entry| entry.value.clone().map(|value| &self.text[value]))
    }

    /// The module MediaWiki will run: `action`, `help` when absent.
    pub fn action(&self) -> &str {
        self.get("action").unwrap_or("help")
    }
}

/// Splits a multi-value parameter (`a|b`, or `\x1fa\x1fb` when the value
/// starts with U+001F) into its values.
pub fn multi_values(value: &str) -> impl Iterator<Item = &str> {
    let (separator, rest) = match value.strip_prefix('\u{1f}') {
        Some(rest) => ('\u{1f}', rest),
        None => ('|', value),
    };
    rest.split(separator)
}

/// PHP 8's rewriting of a parameter name (`php_register_variable_ex`):
/// appends the name it registers to `out` and returns whether the value
/// becomes an array, or `None` when PHP ignores the parameter (what was
/// appended is then the caller's to remove).
fn push_php_name(raw: &str, out: &mut String) -> Option<bool> {
    // A NUL ends the name in C; leading spaces are dropped.
    let raw = raw.split('\0').next().unwrap_or("");
    let raw = raw.trim_start_matches(' ');
    let start = out.len();
    let name = out;
    for (index, c) in raw.char_indices() {
        match c {
            ' ' | '.' => name.push('_'),
            '[' => {
                if name.len() == start {
                    return None;
                }
                let rest = &raw[index + 1..];
                if rest.contains(']') {
                    // `name[...]`: an array under `name`.
                    return Some(true);
                }
                // An unmatched `[` becomes `_`, and so do ` `, `.` and `[`
                // after it.
                name.push('_');
                name.extend(rest.chars().map(|c| match c {
                    ' ' | '.' | '[' => '_',
                    c => c,
                }));
                return Some(false);
            }
            _ => name.push(c),
        }
    }
    (name.len() > start).then_some(false)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn post(query: &str, content_type: &str, body: &str) -> Params {
        let kind = BodyKind::of(&Method::POST, Some(content_type));
        let body = Bytes::from(body.to_owned());
        futures_executor_block_on(Params::from_request(Some(query), &kind, &body)).unwrap()
    }

    // The multipart reader is async but never waits on I/O here.
    fn futures_executor_block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn last_repeated_name_wins() {
        let params = Params::from_query(Some("action=query&action=logout"));
        assert_eq!(params.action(), "logout");
        assert_eq!(
            params.every("action").collect::<Vec<_>>(),
            ["query", "logout"]
        );
    }

    #[test]
    fn absent_action_means_help() {
        assert_eq!(Params::from_query(None).action(), "help");
        assert_eq!(Params::from_query(Some("format=json")).action(), "help");
    }

    #[test]
    fn body_wins_over_query_string() {
        let params = post(
            "action=logout",
            "application/x-www-form-urlencoded",
            "action=query",
        );
        assert_eq!(params.action(), "query");
        let params = post(
            "action=query",
            "application/x-www-form-urlencoded; charset=UTF-8",
            "action=logout",
        );
        assert_eq!(params.action(), "logout");
    }

    #[test]
    fn body_of_a_get_request_is_not_read() {
        let kind = BodyKind::of(&Method::GET, Some("application/x-www-form-urlencoded"));
        assert_eq!(kind, BodyKind::Opaque);
    }

    #[test]
    fn names_are_decoded_and_rewritten_like_php() {
        let params = Params::from_query(Some("%61ction=logout"));
        assert_eq!(params.action(), "logout");
        let params = Params::from_query(Some("+action=logout"));
        assert_eq!(params.action(), "logout", "leading spaces are dropped");
        let params = Params::from_query(Some("assert.user=x&a%20b=y"));
        assert_eq!(params.get("assert_user"), Some("x"));
        assert_eq!(params.get("a_b"), Some("y"));
        let params = Params::from_query(Some("Action=logout"));
        assert_eq!(params.action(), "help", "names are case-sensitive");
    }

    #[test]
    fn array_syntax_hides_a_scalar() {
        let params = Params::from_query(Some("action=logout&action[]=x"));
        assert_eq!(params.get("action"), None);
        assert!(params.contains("action"));
        assert_eq!(params.every("action").collect::<Vec<_>>(), ["logout"]);
        let params = Params::from_query(Some("action[=logout"));
        assert_eq!(params.get("action_"), Some("logout"));
        let params = Params::from_query(Some("a%5Bb.c=1&%5Bx=2"));
        assert_eq!(params.get("a_b_c"), Some("1"), "PHP 8 rewrites after `[`");
        assert_eq!(
            params.get("_x"),
            None,
            "a name starting with `[` is dropped"
        );
    }

    #[test]
    fn multipart_fields_count_but_files_do_not() {
        let body = "--XyZ\r\n\
            Content-Disposition: form-data; name=\"action\"\r\n\r\n\
            query\r\n\
            --XyZ\r\n\
            Content-Disposition: form-data; name=\"action\"; filename=\"a.txt\"\r\n\r\n\
            edit\r\n\
            --XyZ\r\n\
            Content-Disposition: form-data; name=\"action\"\r\n\r\n\
            logout\r\n\
            --XyZ--\r\n";
        let params = post("", "multipart/form-data; boundary=XyZ", body);
        assert_eq!(params.action(), "logout");
        assert_eq!(
            params.every("action").collect::<Vec<_>>(),
            ["query", "logout"]
        );
    }

    #[test]
    fn content_types_and_boundaries_are_read_like_php() {
        for content_type in [
            "application/x-www-form-urlencoded,",
            "application/x-www-form-urlencoded x",
            "APPLICATION/X-WWW-FORM-URLENCODED;charset=utf-8",
        ] {
            assert_eq!(
                BodyKind::of(&Method::POST, Some(content_type)),
                BodyKind::UrlEncoded,
                "{content_type}"
            );
        }
        let boundary = |content_type: &str| match BodyKind::of(&Method::POST, Some(content_type)) {
            BodyKind::Multipart { boundary } => Some(boundary),
            _ => None,
        };
        assert_eq!(
            boundary("multipart/form-data, boundary=XyZ").as_deref(),
            Some("XyZ")
        );
        assert_eq!(
            boundary("multipart/form-data; boundary=\"Xy;Z\"x").as_deref(),
            Some("Xy;Z")
        );
        assert_eq!(
            boundary("multipart/form-data; xboundary=AAA; boundary=BBB").as_deref(),
            Some("AAA"),
            "the first `boundary` substring"
        );
        assert_eq!(
            boundary("multipart/form-data; BOUNDARY=up").as_deref(),
            Some("up")
        );
        assert_eq!(boundary("multipart/form-data"), None);
    }

    #[test]
    fn only_plain_content_dispositions_are_read() {
        let disposition = |value: &'static str| {
            let mut headers = http::HeaderMap::new();
            headers.insert("content-disposition", http::HeaderValue::from_static(value));
            part_name(&headers)
        };
        assert_eq!(
            disposition("form-data; name=\"action\"").unwrap(),
            Some("action".into())
        );
        assert_eq!(
            disposition("form-data;name=\"a b\"").unwrap(),
            Some("a b".into())
        );
        assert_eq!(
            disposition("form-data; name=\"f\"; filename=\"a.txt\"").unwrap(),
            None
        );
        for odd in [
            "form-data; NAME=\"action\"",
            "form-data; name='action'",
            "form-data; name==action",
            "form-data; name=\"x\"; name=\"action\"",
            "form-data; namex=\"y\"; name=\"action\"",
            "form-data; name=\"action\"; dummy=\" filename=a\"",
            "attachment; name=\"action\"",
        ] {
            assert!(disposition(odd).is_err(), "{odd}");
        }
    }

    #[test]
    fn a_parts_charset_is_ignored() {
        let body = "--B\r\nContent-Disposition: form-data; name=\"action\"\r\n\
            Content-Type: text/plain; charset=utf-16\r\n\r\nlogout\r\n--B--\r\n";
        let params = post("", "multipart/form-data; boundary=B", body);
        assert_eq!(params.action(), "logout");
    }

    #[test]
    fn malformed_multipart_is_an_error() {
        let kind = BodyKind::of(&Method::POST, Some("multipart/form-data; boundary=XyZ"));
        let body = Bytes::from_static(
            b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nunterminated",
        );
        let result = futures_executor_block_on(Params::from_request(None, &kind, &body));
        assert!(result.is_err());
    }

    #[test]
    fn multi_values_split_on_pipe_or_unit_separator() {
        assert_eq!(
            multi_values("csrf|login").collect::<Vec<_>>(),
            ["csrf", "login"]
        );
        assert_eq!(
            multi_values("\u{1f}a|b\u{1f}login").collect::<Vec<_>>(),
            ["a|b", "login"]
        );
    }
}
