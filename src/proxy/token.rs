//! Healing stale tokens. Tokens are bound to the session: after a re-login,
//! a write with a token the client fetched from the old session fails with
//! `badtoken`, though the client did nothing wrong (the proxy replaced the
//! session under it). Such a token is recognised by its issue time, which
//! MediaWiki writes into it: at or before the current session's login, by
//! the wiki's clock. The proxy then fetches a token of the same type for the
//! new session, puts it in place of the old one, and replays once. A token
//! that is simply wrong goes back to the client as the wiki answered.

use bytes::Bytes;

/// The token type a module checks (`ApiBase::needsToken`); `csrf` for all
/// but these.
pub(super) fn token_type(action: &str) -> &'static str {
    match action {
        "watch" => "watch",
        "rollback" => "rollback",
        "patrol" => "patrol",
        "userrights" => "userrights",
        _ => "csrf",
    }
}

/// The issue time (Unix seconds) of a MediaWiki token: 32 hex digits of
/// HMAC, the time in hex, then `+\`. `None` for anything else, such as the
/// anonymous token `+\`.
pub(super) fn issue_time(token: &str) -> Option<u64> {
    let hex = token.strip_suffix("+\\")?;
    if hex.len() <= 32 || hex.len() > 48 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(&hex[32..], 16).ok()
}

/// Rewrites `a=1&token=old&b=2` with the new token. Returns `None` when no
/// `token` parameter is there.
pub(super) fn replace_in_urlencoded(encoded: &str, new_token: &str) -> Option<String> {
    let mut found = false;
    let mut rewritten = form_urlencoded::Serializer::new(String::with_capacity(encoded.len()));
    for (name, value) in form_urlencoded::parse(encoded.as_bytes()) {
        if name == "token" {
            found = true;
            rewritten.append_pair(&name, new_token);
        } else {
            rewritten.append_pair(&name, &value);
        }
    }
    found.then(|| rewritten.finish())
}

/// Replaces the content of every `token` field of a multipart body.
pub(super) fn replace_in_multipart(body: &[u8], boundary: &str, new_token: &str) -> Option<Bytes> {
    let delimiter = format!("--{boundary}").into_bytes();
    let part_end = [b"\r\n".as_slice(), &delimiter].concat();
    let mut position = find(body, &delimiter, 0)?;
    let mut out = Vec::with_capacity(body.len() + new_token.len());
    out.extend_from_slice(&body[..position + delimiter.len()]);
    let mut found = false;
    loop {
        let start = position + delimiter.len();
        if body[start..].starts_with(b"--") {
            out.extend_from_slice(&body[start..]);
            break;
        }
        let end = find(body, &part_end, start)?;
        let part = &body[start..end];
        let header_end = find(part, b"\r\n\r\n", 0)?;
        if is_token_field(&part[..header_end]) {
            found = true;
            out.extend_from_slice(&part[..header_end + 4]);
            out.extend_from_slice(new_token.as_bytes());
        } else {
            out.extend_from_slice(part);
        }
        out.extend_from_slice(&part_end);
        position = end + 2;
    }
    found.then(|| out.into())
}

fn is_token_field(headers: &[u8]) -> bool {
    let Ok(headers) = std::str::from_utf8(headers) else {
        return false;
    };
    headers.lines().any(|line| {
        let Some((name, value)) = line.split_once(':') else {
            return false;
        };
        if !name.trim().eq_ignore_ascii_case("content-disposition") {
            return false;
        }
        let params: Vec<&str> = value.split(';').map(str::trim).collect();
        let named_token = params
            .iter()
            .any(|param| *param == "name=\"token\"" || *param == "name=token");
        let is_file = params.iter().any(|param| param.starts_with("filename"));
        named_token && !is_file
    })
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|window| window == needle)
        .map(|offset| from + offset)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const OLD: &str = "0123456789abcdef0123456789abcdef6543a1b2+\\";

    #[test]
    fn reads_the_issue_time_of_session_tokens_only() {
        assert_eq!(issue_time(OLD), Some(0x6543a1b2));
        assert_eq!(issue_time("+\\"), None);
        assert_eq!(issue_time("not-a-token+\\"), None);
        assert_eq!(issue_time("0123456789abcdef0123456789abcdef"), None);
        assert_eq!(issue_time("0123456789abcdef0123456789abcdefzz+\\"), None);
    }

    #[test]
    fn replaces_the_token_in_a_form() {
        let encoded = format!(
            "action=edit&title=A+b&token={}&text=x%26y",
            OLD.replace('+', "%2B").replace('\\', "%5C")
        );
        let rewritten = replace_in_urlencoded(&encoded, "new+\\").unwrap();
        let pairs: Vec<(String, String)> = form_urlencoded::parse(rewritten.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(
            pairs,
            [
                ("action".into(), "edit".into()),
                ("title".into(), "A b".into()),
                ("token".into(), "new+\\".into()),
                ("text".into(), "x&y".into()),
            ]
        );
        assert_eq!(replace_in_urlencoded("action=query", "new"), None);
    }

    #[test]
    fn replaces_the_token_in_a_multipart_body() {
        let body = format!(
            "--XyZ\r\nContent-Disposition: form-data; name=\"action\"\r\n\r\nedit\r\n\
             --XyZ\r\nContent-Disposition: form-data; name=\"token\"\r\n\r\n{OLD}\r\n\
             --XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"token\"\r\n\r\nbytes\r\n\
             --XyZ--\r\n"
        );
        let rewritten = replace_in_multipart(body.as_bytes(), "XyZ", "fresh+\\").unwrap();
        let expected = body.replace(OLD, "fresh+\\");
        assert_eq!(std::str::from_utf8(&rewritten).unwrap(), expected);
        let without = "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--XyZ--\r\n";
        assert_eq!(replace_in_multipart(without.as_bytes(), "XyZ", "x"), None);
    }

    #[test]
    fn token_types_follow_the_module() {
        assert_eq!(token_type("edit"), "csrf");
        assert_eq!(token_type("watch"), "watch");
        assert_eq!(token_type("rollback"), "rollback");
    }
}
