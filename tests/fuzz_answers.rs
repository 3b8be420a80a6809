//! Property tests for `mediawiki::answers`: the `MediaWiki-API-Error`
//! header and the login flow's JSON answers.
//!
//! - arbitrary header values never panic, and `session_loss_code` only
//!   names a code that is in the header;
//! - for generated headers of known codes, in random order and spacing,
//!   `session_loss_code` finds the first loss code iff one is there;
//! - arbitrary bytes, mangled JSON and arbitrary JSON values (from a
//!   generated `serde_json::Value`) to `login_token`, `login_answer`,
//!   `client_login_answer`, `user_info` and `throttle_wait` never panic,
//!   and the answers follow what the JSON says, for generated answers
//!   shaped like MediaWiki's.
//!
//! Failing inputs are saved under `tests/fuzz-regressions/` and replayed
//! first on every run. `PROPTEST_CASES` overrides the case counts.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use mw_auth_proxy::mediawiki::answers::{
    API_ERROR_HEADER, AnswerError, ClientLoginAnswer, LoginAnswer, client_login_answer,
    error_codes, login_answer, login_token, session_loss_code, throttle_wait, user_info,
};
use proptest::prelude::*;
use serde_json::{Value, json};

const REGRESSIONS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fuzz-regressions/fuzz_answers.txt"
);

fn config(cases: u32) -> ProptestConfig {
    support::fuzz::config(cases, REGRESSIONS)
}

// ---------------------------------------------------------------------------
// The MediaWiki-API-Error header.
// ---------------------------------------------------------------------------

const LOSS_CODES: &[&str] = &[
    "assertuserfailed",
    "assertnameduserfailed",
    "notloggedin",
    "readapidenied",
];

/// Codes that do not mean a lost session, some of them near misses.
const OTHER_CODES: &[&str] = &[
    "badtoken",
    "ratelimited",
    "readonly",
    "permissiondenied",
    "mustpostparams",
    "assertbotfailed",
    "internal_api_error_DBQueryError",
    "maxlag",
    "notloggedin-x",
    "xnotloggedin",
    "Assertuserfailed",
    "NOTLOGGEDIN",
    "readapidenied2",
    "assertuser failed",
    "assertuserfailed.",
    "\"notloggedin\"",
];

fn header_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        proptest::sample::select(LOSS_CODES),
        proptest::sample::select(OTHER_CODES),
        proptest::sample::select(&[",", " ", "\t", ", ", ",,", "\u{a0}", "\r\n"][..]),
    ];
    prop_oneof![
        1 => any::<String>(),
        2 => proptest::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat()),
    ]
}

/// Whitespace as it may surround a code in a comma list.
fn spacing() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(&["", "", " ", "  ", "\t", " \t "][..])
}

proptest! {
    #![proptest_config(config(5000))]

    #[test]
    fn any_error_header_is_read(header in header_text(), believed in any::<bool>()) {
        let codes: Vec<&str> = error_codes(&header).collect();
        for code in &codes {
            prop_assert!(!code.is_empty());
            prop_assert!(!code.contains(','));
            prop_assert_eq!(code.trim(), *code);
        }
        prop_assert!(codes.len() <= header.matches(',').count() + 1);
        match session_loss_code(&header, believed) {
            Some(code) => {
                prop_assert!(LOSS_CODES.contains(&code));
                prop_assert!(codes.contains(&code));
                prop_assert!(believed || code != "readapidenied");
            }
            None => {
                let missed = codes.iter().find(|code| {
                    LOSS_CODES.contains(code) && (believed || **code != "readapidenied")
                });
                prop_assert!(missed.is_none(), "missed {:?}", missed);
            }
        }
    }

    /// A header listing known codes in any order, however spaced.
    #[test]
    fn loss_codes_are_found_iff_present(
        codes in proptest::collection::vec(
            prop_oneof![proptest::sample::select(LOSS_CODES), proptest::sample::select(OTHER_CODES)],
            0..8,
        ),
        spacings in proptest::collection::vec((spacing(), spacing()), 8),
        empty_elements in proptest::collection::vec(any::<bool>(), 9),
        believed in any::<bool>(),
    ) {
        let mut elements = Vec::new();
        for (index, code) in codes.iter().enumerate() {
            if empty_elements[index] {
                elements.push(spacings[index].1.to_owned());
            }
            let (before, after) = spacings[index];
            elements.push(format!("{before}{code}{after}"));
        }
        if empty_elements[8] {
            elements.push(String::new());
        }
        let header = elements.join(",");
        let expected_codes: Vec<&str> = codes.iter().map(|code| code.trim()).collect();
        prop_assert_eq!(error_codes(&header).collect::<Vec<_>>(), expected_codes);
        let counts = |code: &str| code != "readapidenied" || believed;
        let expected = codes
            .iter()
            .copied()
            .find(|code| LOSS_CODES.contains(code) && counts(code));
        prop_assert_eq!(session_loss_code(&header, believed), expected, "{:?}", header);
    }
}

#[test]
fn header_name_is_a_lowercase_header_name() {
    let name = http::HeaderName::from_static(API_ERROR_HEADER);
    assert_eq!(name.as_str(), "mediawiki-api-error");
}

// ---------------------------------------------------------------------------
// JSON answers.
// ---------------------------------------------------------------------------

/// Keys the readers look for, so generated objects hit them often.
const KEYS: &[&str] = &[
    "error",
    "errors",
    "code",
    "info",
    "text",
    "query",
    "tokens",
    "logintoken",
    "userinfo",
    "id",
    "name",
    "login",
    "result",
    "reason",
    "lgusername",
    "lguserid",
    "warnings",
    "batchcomplete",
    "clientlogin",
    "status",
    "messagecode",
    "message",
    "username",
    "requests",
    "fields",
    "OATHToken",
    "*",
];

const STRINGS: &[&str] = &[
    "Success",
    "NeedToken",
    "WrongToken",
    "Failed",
    "Aborted",
    "",
    "login-throttled",
    "throttled",
    "sessionfailure",
    "botpasswords-locked",
    "botpasswords-needs-reset",
    "wrongpassword",
    "You have made too many recent login attempts. Please wait 5 minutes before trying again.",
    "Please wait 1 hour",
    "Please wait 18446744073709551615 days.",
    "Please wait 99999999999999999999 seconds",
    "Unable to continue login. Your session most likely timed out.",
    "+\\",
    "0123456789abcdef0123456789abcdef6543a1b2+\\",
    "PASS",
    "FAIL",
    "UI",
    "REDIRECT",
    "RESTART",
    "pass",
];

fn json_string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(STRINGS).prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(KEYS).prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop_oneof![Just(0_u64), Just(1), Just(u64::MAX)].prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        json_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::vec((json_key(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

/// `reason` as MediaWiki writes it: a string, or `{code, text}` with
/// `errorformat` set.
fn reason() -> impl Strategy<Value = Option<Value>> {
    proptest::option::of(prop_oneof![
        json_string().prop_map(Value::String),
        (json_string(), json_string()).prop_map(|(code, text)| json!({"code": code, "text": text})),
        json_value(),
    ])
}

/// An answer shaped like `action=login`'s, with an error now and then.
fn login_shaped() -> impl Strategy<Value = Value> {
    (
        proptest::option::of(json_string()),
        reason(),
        proptest::option::of(json_string()),
        proptest::option::weighted(0.15, json_value()),
        proptest::option::weighted(0.1, (json_string(), json_string())),
        proptest::option::weighted(0.1, json_value()),
    )
        .prop_map(|(result, reason, user, extra, error, garbage_login)| {
            let mut login = serde_json::Map::new();
            if let Some(result) = result {
                login.insert("result".into(), Value::String(result));
            }
            if let Some(reason) = reason {
                login.insert("reason".into(), reason);
            }
            if let Some(user) = user {
                login.insert("lgusername".into(), Value::String(user));
            }
            let mut answer = json!({ "login": garbage_login.unwrap_or(Value::Object(login)) });
            if let Some(extra) = extra {
                answer["warnings"] = extra;
            }
            if let Some((code, info)) = error {
                answer["error"] = json!({"code": code, "info": info});
            }
            answer
        })
}

/// Another answer's shape: tokens or userinfo.
fn query_shaped() -> impl Strategy<Value = Value> {
    (
        proptest::option::of(json_value()),
        proptest::option::of(json_value()),
        proptest::option::weighted(0.1, (json_string(), json_string())),
    )
        .prop_map(|(token, userinfo, errors)| {
            let mut query = serde_json::Map::new();
            if let Some(token) = token {
                query.insert("tokens".into(), json!({ "logintoken": token }));
            }
            if let Some(userinfo) = userinfo {
                query.insert("userinfo".into(), userinfo);
            }
            let mut answer = json!({ "batchcomplete": "", "query": query });
            if let Some((code, text)) = errors {
                answer["errors"] = json!([{ "code": code, "text": text }]);
            }
            answer
        })
}

/// An answer shaped like `action=clientlogin`'s.
fn client_login_shaped() -> impl Strategy<Value = Value> {
    (
        proptest::option::of(json_string()),
        proptest::option::of(json_string()),
        proptest::option::of(prop_oneof![
            json_value(),
            proptest::collection::vec(
                proptest::option::of(json_value()).prop_map(|token| match token {
                    Some(token) => json!({ "fields": { "OATHToken": token } }),
                    None => json!({ "fields": {} }),
                }),
                0..3,
            )
            .prop_map(Value::Array),
        ]),
        proptest::option::weighted(0.1, json_value()),
    )
        .prop_map(|(status, message, requests, garbage)| {
            let mut answer = serde_json::Map::new();
            if let Some(status) = status {
                answer.insert("status".into(), Value::String(status));
            }
            if let Some(message) = message {
                answer.insert("message".into(), Value::String(message.clone()));
                answer.insert("messagecode".into(), Value::String(message));
            }
            if let Some(requests) = requests {
                answer.insert("requests".into(), requests);
            }
            json!({ "clientlogin": garbage.unwrap_or(Value::Object(answer)) })
        })
}

fn answer_json() -> impl Strategy<Value = Value> {
    prop_oneof![
        json_value(),
        login_shaped(),
        query_shaped(),
        client_login_shaped()
    ]
}

/// Serialised JSON with a few bytes changed, removed or cut off.
fn mangled() -> impl Strategy<Value = Vec<u8>> {
    (
        answer_json(),
        proptest::collection::vec(
            (any::<proptest::sample::Index>(), any::<u8>(), 0..3_u8),
            0..4,
        ),
        proptest::option::of(any::<proptest::sample::Index>()),
    )
        .prop_map(|(value, edits, cut)| {
            let mut bytes = serde_json::to_vec(&value).unwrap();
            for (at, byte, kind) in edits {
                if bytes.is_empty() {
                    break;
                }
                let at = at.index(bytes.len());
                match kind {
                    0 => bytes[at] = byte,
                    1 => {
                        bytes.remove(at);
                    }
                    _ => bytes.insert(at, byte),
                }
            }
            if let Some(cut) = cut {
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            bytes
        })
}

fn body_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..100),
        1 => any::<String>().prop_map(String::into_bytes),
        3 => mangled(),
        3 => answer_json().prop_map(|value| serde_json::to_vec(&value).unwrap()),
    ]
}

/// The API error an answer carries, as the readers should report it.
fn carried_error(value: &Value) -> Option<AnswerError> {
    let error = value
        .get("error")
        .or_else(|| value.get("errors").and_then(|errors| errors.get(0)))?;
    let text = |key: &str| {
        error
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let info = match text("info") {
        info if info.is_empty() => text("text"),
        info => info,
    };
    Some(AnswerError::Api {
        code: text("code"),
        info,
    })
}

fn reason_text(reason: Option<&Value>) -> (String, String) {
    match reason {
        Some(Value::String(text)) => (String::new(), text.clone()),
        Some(Value::Object(object)) => {
            let field = |key: &str| {
                object
                    .get(key)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned()
            };
            (field("code"), field("text"))
        }
        _ => (String::new(), String::new()),
    }
}

proptest! {
    #![proptest_config(config(5000))]

    #[test]
    fn any_body_is_read(body in body_bytes()) {
        let parsed: Option<Value> = serde_json::from_slice(&body).ok();
        let error = parsed.as_ref().and_then(carried_error);
        let token = login_token(&body);
        let login = login_answer(&body);
        let info = user_info(&body);
        let client = client_login_answer(&body);
        match &parsed {
            None => {
                prop_assert!(matches!(token, Err(AnswerError::Unexpected(_))));
                prop_assert!(matches!(login, Err(AnswerError::Unexpected(_))));
                prop_assert!(matches!(info, Err(AnswerError::Unexpected(_))));
                prop_assert!(matches!(client, Err(AnswerError::Unexpected(_))));
            }
            Some(_) if error.is_some() => {
                prop_assert_eq!(token.as_ref().err(), error.as_ref());
                prop_assert_eq!(login.as_ref().err(), error.as_ref());
                prop_assert_eq!(info.as_ref().err(), error.as_ref());
                prop_assert_eq!(client.as_ref().err(), error.as_ref());
            }
            Some(value) => {
                let answer = value.get("clientlogin");
                let text = |key: &str| {
                    answer
                        .and_then(|answer| answer.get(key))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned()
                };
                let totp = answer
                    .and_then(|answer| answer.get("requests"))
                    .and_then(Value::as_array)
                    .is_some_and(|requests| {
                        requests.iter().any(|request| request.pointer("/fields/OATHToken").is_some())
                    });
                let expected = match (answer, text("status").as_str()) {
                    (None, _) => None,
                    (Some(_), "PASS") => Some(ClientLoginAnswer::Pass { user: text("username") }),
                    (Some(_), "FAIL") => Some(ClientLoginAnswer::Fail {
                        code: text("messagecode"),
                        message: text("message"),
                    }),
                    (Some(_), "UI") => Some(ClientLoginAnswer::Ui {
                        code: text("messagecode"),
                        message: text("message"),
                        totp,
                    }),
                    (Some(_), "REDIRECT") => Some(ClientLoginAnswer::Redirect),
                    (Some(_), "RESTART") => Some(ClientLoginAnswer::Restart { message: text("message") }),
                    (Some(_), _) => None,
                };
                prop_assert_eq!(client.as_ref().ok(), expected.as_ref());
                let expected_token = value.pointer("/query/tokens/logintoken").and_then(Value::as_str);
                prop_assert_eq!(token.as_deref().ok(), expected_token);
                prop_assert_eq!(login.is_ok(), value.get("login").is_some());
                match value.pointer("/query/userinfo") {
                    None => prop_assert!(matches!(info, Err(AnswerError::Unexpected(_)))),
                    Some(userinfo) => {
                        let info = info.as_ref().unwrap();
                        prop_assert_eq!(info.id, userinfo.get("id").and_then(Value::as_u64).unwrap_or(0));
                        prop_assert_eq!(info.is_anonymous(), info.id == 0);
                        prop_assert_eq!(
                            info.name.as_str(),
                            userinfo.get("name").and_then(Value::as_str).unwrap_or("")
                        );
                    }
                }
            }
        }
        // Errors explain themselves.
        for err in [token.err(), login.err(), info.err(), client.err()]
            .into_iter()
            .flatten()
        {
            prop_assert!(!err.to_string().is_empty());
        }
    }

    /// The login outcome follows `result` and `reason`.
    #[test]
    fn login_answers_follow_result_and_reason(answer in login_shaped()) {
        let body = serde_json::to_vec(&answer).unwrap();
        let outcome = login_answer(&body);
        if let Some(error) = carried_error(&answer) {
            prop_assert_eq!(outcome, Err(error));
            return Ok(());
        }
        let login = &answer["login"];
        let result = login.get("result").and_then(Value::as_str).unwrap_or("");
        let (code, text) = reason_text(login.get("reason"));
        let outcome = outcome.unwrap();
        match result {
            "Success" => prop_assert_eq!(
                outcome,
                LoginAnswer::Success {
                    user: login.get("lgusername").and_then(Value::as_str).unwrap_or("").to_owned()
                }
            ),
            "NeedToken" | "WrongToken" => {
                let fresh = matches!(outcome, LoginAnswer::FreshTokenNeeded { .. });
                prop_assert!(fresh, "{:?}", outcome);
            }
            _ => match outcome {
                LoginAnswer::Throttled { wait, reason } => {
                    prop_assert_eq!(result, "Failed");
                    prop_assert!(code.contains("throttled") || text.contains("too many recent login attempts"));
                    prop_assert_eq!(wait, throttle_wait(&text).unwrap_or(Duration::from_secs(300)));
                    prop_assert!(!reason.is_empty());
                }
                LoginAnswer::FreshTokenNeeded { reason } => {
                    prop_assert_eq!(result, "Failed");
                    prop_assert!(code == "sessionfailure" || text.contains("session most likely timed out"));
                    prop_assert!(!reason.is_empty());
                }
                LoginAnswer::Rejected { reason } => {
                    prop_assert!(!reason.is_empty());
                    if !text.is_empty() {
                        prop_assert!(reason.starts_with(&text));
                    }
                    if code.starts_with("botpasswords-") {
                        prop_assert!(reason.contains(&code));
                    }
                }
                LoginAnswer::Success { .. } => prop_assert!(false, "success from {:?}", result),
            },
        }
    }

    #[test]
    fn any_throttle_text_is_read(text in prop_oneof![
        any::<String>(),
        "[a-zA-Z ,.]{0,10}wait [0-9+-]{0,22} ?[a-z.,]{0,9}[ -~]{0,10}",
    ]) {
        if throttle_wait(&text).is_some() {
            prop_assert!(text.contains("wait "));
        }
    }

    /// "Please wait <n> <unit>." reads as n units, saturating.
    #[test]
    fn throttle_wait_reads_amount_and_unit(
        prefix in "[A-Za-z ,.]{0,30}",
        amount in prop_oneof![0..1_000_u64, any::<u64>()],
        unit in proptest::sample::select(&[
            ("second", 1_u64), ("seconds", 1), ("minute", 60), ("minutes", 60),
            ("hour", 3_600), ("hours", 3_600), ("day", 86_400), ("days", 86_400),
        ][..]),
        end in proptest::sample::select(&["", ".", ",", " before trying again.", ". Then retry."][..]),
        spaces in proptest::sample::select(&[" ", "  ", "\t", " \n "][..]),
    ) {
        prop_assume!(!prefix.contains("wait "));
        let text = format!("{prefix} Please wait {amount}{spaces}{}{end}", unit.0);
        prop_assert_eq!(
            throttle_wait(&text),
            Some(Duration::from_secs(amount.saturating_mul(unit.1))),
            "{:?}", text
        );
    }
}

#[test]
fn deeply_nested_json_is_refused_not_overflowed() {
    for depth in [200, 10_000, 100_000] {
        let body = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(matches!(
            login_answer(body.as_bytes()),
            Err(AnswerError::Unexpected(_))
        ));
        let body = format!("{}1{}", "{\"login\":".repeat(depth), "}".repeat(depth));
        assert!(login_token(body.as_bytes()).is_err());
        assert!(user_info(body.as_bytes()).is_err());
    }
}
