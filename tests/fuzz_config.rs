//! Property tests for `config::Settings::from_toml`:
//!
//! - arbitrary text never panics, and every `Err` lists at least one
//!   problem, each with a key and a message;
//! - TOML documents built from random tables, keys and values (known keys
//!   with values of the right type or not, unknown keys anywhere) never
//!   panic either, and every unknown key is reported by its dotted path;
//! - a valid file with unknown keys added fails with exactly those keys.
//!
//! Paths in generated files only ever name files in a temporary directory.
//! Failing inputs are saved under `tests/fuzz-regressions/` and replayed
//! first on every run. `PROPTEST_CASES` overrides the case counts.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::OnceLock;

use mw_auth_proxy::config::{ConfigProblem, Environment, PASSWORD_ENV, Settings};
use proptest::prelude::*;
use toml::{Table, Value};

const REGRESSIONS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fuzz-regressions/fuzz_config.txt"
);

fn config(cases: u32) -> ProptestConfig {
    support::fuzz::config(cases, REGRESSIONS)
}

#[derive(Debug, Default)]
struct FakeEnv(HashMap<String, String>);

impl Environment for FakeEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

fn env(password: Option<&str>) -> FakeEnv {
    FakeEnv(
        password
            .map(|password| (PASSWORD_ENV.to_owned(), password.to_owned()))
            .into_iter()
            .collect(),
    )
}

/// A directory with the only files generated paths name.
fn base_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write("pw.txt", "secret-password\n");
        write("empty.txt", "");
        write("two-lines.txt", "a\nb\n");
        write("tokens.txt", "# tokens\n0123456789abcdef0123\n\nshort\n");
        write(
            "ca.pem",
            "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
        );
        std::fs::create_dir(dir.path().join("subdir")).unwrap();
        dir
    })
    .path()
}

/// Paths for keys that name files: all inside `base_dir`.
const PATHS: &[&str] = &[
    "pw.txt",
    "empty.txt",
    "two-lines.txt",
    "tokens.txt",
    "ca.pem",
    "missing.txt",
    "subdir",
    "subdir/state.json",
    "missing-dir/state.json",
    "",
    ".",
];

/// What `from_toml` says, after checking what holds of every answer.
fn check(
    text: &str,
    password_env: Option<&str>,
) -> Result<Result<Settings, Vec<ConfigProblem>>, TestCaseError> {
    let outcome = Settings::from_toml(text, base_dir(), &env(password_env));
    if let Err(problems) = &outcome {
        prop_assert!(
            !problems.is_empty(),
            "an error without problems for {:?}",
            text
        );
        for problem in problems {
            prop_assert!(!problem.key.trim().is_empty(), "{:?}", problem);
            prop_assert!(!problem.message.trim().is_empty(), "{:?}", problem);
            prop_assert!(!problem.to_string().is_empty());
        }
    }
    Ok(outcome)
}

// ---------------------------------------------------------------------------
// Arbitrary text.
// ---------------------------------------------------------------------------

const TEXT_PIECES: &[&str] = &[
    "[server]\n",
    "[wiki]\n",
    "[login]\n",
    "[log]\n",
    "[access]\n",
    "[policy]\n",
    "[session]\n",
    "[[server]]\n",
    "[zz]\n",
    "listen = ",
    "api_url = ",
    "username = ",
    "password = ",
    "format = ",
    "timeout_secs = ",
    "max_replay_body_bytes = ",
    "\"https://wiki.example.org/w/api.php\"",
    "\"Example@bot\"",
    "\"pw\"",
    "\"127.0.0.1:8080\"",
    "\"json\"",
    "18446744073709551615",
    "-1",
    "0",
    "1e400",
    "nan",
    "true",
    "[\"a\", 1]",
    "{ a = 1 }",
    "1979-05-27T07:32:00Z",
    "\n",
    " ",
    "=",
    ".",
    "\"",
    "'''",
    "#",
    "\\u0000",
    "é",
];

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn any_text_is_checked(
        text in prop_oneof![
            any::<String>(),
            proptest::collection::vec(proptest::sample::select(TEXT_PIECES), 0..30)
                .prop_map(|pieces| pieces.concat()),
        ],
        password_env in proptest::option::of("[a-z]{0,8}"),
    ) {
        let _outcome = check(&text, password_env.as_deref())?;
    }
}

// ---------------------------------------------------------------------------
// Generated TOML documents.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    UInt,
    Bool,
    StrList,
    Path,
}

/// Keys the configuration knows, by section, with their types.
const KNOWN: &[(&str, &[(&str, Kind)])] = &[
    (
        "server",
        &[
            ("listen", Kind::Str),
            ("max_replay_body_bytes", Kind::UInt),
            ("shutdown_grace_secs", Kind::UInt),
        ],
    ),
    (
        "wiki",
        &[
            ("api_url", Kind::Str),
            ("user_agent", Kind::Str),
            ("timeout_secs", Kind::UInt),
        ],
    ),
    (
        "login",
        &[
            ("username", Kind::Str),
            ("password", Kind::Str),
            ("password_file", Kind::Path),
        ],
    ),
    ("log", &[("format", Kind::Str)]),
    (
        "access",
        &[
            ("allow_unauthenticated_remote", Kind::Bool),
            ("bearer_tokens", Kind::StrList),
            ("bearer_tokens_file", Kind::Path),
            ("allow_cidrs", Kind::StrList),
        ],
    ),
    (
        "policy",
        &[
            ("read_only", Kind::Bool),
            ("allow_actions", Kind::StrList),
            ("deny_actions", Kind::StrList),
        ],
    ),
];

fn any_toml_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<String>().prop_map(Value::String),
        "[ -~]{0,12}".prop_map(Value::String),
        any::<i64>().prop_map(Value::Integer),
        any::<f64>().prop_map(Value::Float),
        any::<bool>().prop_map(Value::Boolean),
        Just(Value::Datetime("1979-05-27T07:32:00Z".parse().unwrap())),
        Just(Value::Datetime("07:32:00".parse().unwrap())),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec(("[a-z_]{1,6}", inner), 0..4)
                .prop_map(|entries| Value::Table(entries.into_iter().collect())),
        ]
    })
}

fn value_of(kind: Kind) -> BoxedStrategy<Value> {
    match kind {
        Kind::Str => prop_oneof![
            proptest::sample::select(
                &[
                    "https://wiki.example.org/w/api.php",
                    "http://127.0.0.1/api.php",
                    "127.0.0.1:8080",
                    "[::1]:0",
                    "0.0.0.0:80",
                    "Example@bot",
                    "@",
                    "json",
                    "text",
                    "",
                    " ",
                ][..]
            )
            .prop_map(|text| Value::String(text.to_owned())),
            any::<String>().prop_map(Value::String),
        ]
        .boxed(),
        Kind::UInt => prop_oneof![
            (0..100_000_i64).prop_map(Value::Integer),
            Just(Value::Integer(i64::MAX)),
        ]
        .boxed(),
        Kind::Bool => any::<bool>().prop_map(Value::Boolean).boxed(),
        Kind::StrList => proptest::collection::vec(
            prop_oneof![
                proptest::sample::select(
                    &[
                        "edit",
                        "10.0.0.0/8",
                        "::1",
                        "0123456789abcdef0123",
                        "short",
                        "",
                        "a b"
                    ][..]
                )
                .prop_map(str::to_owned),
                any::<String>(),
            ],
            0..4,
        )
        .prop_map(|items| Value::Array(items.into_iter().map(Value::String).collect()))
        .boxed(),
        Kind::Path => proptest::sample::select(PATHS)
            .prop_map(|path| Value::String(path.to_owned()))
            .boxed(),
    }
}

/// A value not of `kind`, that TOML cannot read as one.
fn wrong_value_of(kind: Kind) -> BoxedStrategy<Value> {
    let wrong = prop_oneof![
        any::<i64>().prop_map(Value::Integer),
        any::<f64>().prop_map(Value::Float),
        any::<bool>().prop_map(Value::Boolean),
        "[a-z]{0,6}".prop_map(Value::String),
        Just(Value::Array(vec![Value::Integer(1)])),
        Just(Value::Table(Table::new())),
        Just(Value::Datetime("1979-05-27T07:32:00Z".parse().unwrap())),
    ];
    wrong
        .prop_filter("of the right type", move |value| match (kind, value) {
            (Kind::Str | Kind::Path, Value::String(_)) => false,
            (Kind::UInt, Value::Integer(n)) => *n < 0,
            (Kind::Bool, Value::Boolean(_)) => false,
            // An empty array is a list of strings.
            (Kind::StrList, Value::Array(items)) => !items.is_empty(),
            _ => true,
        })
        .boxed()
}

/// Names no version of the configuration knows.
fn unknown_key() -> impl Strategy<Value = String> {
    prop_oneof![
        "zz_[a-z0-9_]{0,8}",
        "zz[ -~]{0,8}",
        any::<String>().prop_map(|key| format!("zz{key}")),
    ]
}

/// One known key, with a value of its type or not.
#[derive(Debug, Clone)]
struct KnownEntry {
    section: &'static str,
    key: &'static str,
    value: Value,
    wrong_type: bool,
}

fn known_entry() -> impl Strategy<Value = KnownEntry> {
    proptest::sample::select(KNOWN)
        .prop_flat_map(|(section, keys)| (Just(section), proptest::sample::select(keys)))
        .prop_flat_map(|(section, (key, kind))| {
            prop_oneof![
                4 => value_of(kind).prop_map(|value| (value, false)),
                1 => wrong_value_of(kind).prop_map(|value| (value, true)),
            ]
            .prop_map(move |(value, wrong_type)| KnownEntry {
                section,
                key,
                value,
                wrong_type,
            })
        })
}

/// An unknown key, at the top or in a known section.
#[derive(Debug, Clone)]
struct UnknownEntry {
    section: Option<&'static str>,
    key: String,
    value: Value,
}

impl UnknownEntry {
    fn path(&self) -> String {
        match self.section {
            Some(section) => format!("{section}.{}", self.key),
            None => self.key.clone(),
        }
    }
}

fn unknown_entry() -> impl Strategy<Value = UnknownEntry> {
    (
        proptest::option::of(proptest::sample::select(KNOWN).prop_map(|(section, _)| section)),
        unknown_key(),
        any_toml_value(),
    )
        .prop_map(|(section, key, value)| UnknownEntry {
            section,
            key,
            value,
        })
}

#[derive(Debug, Clone)]
struct Document {
    known: Vec<KnownEntry>,
    unknown: Vec<UnknownEntry>,
    /// A known section given as something other than a table.
    broken_section: Option<(&'static str, Value)>,
    password_env: Option<String>,
}

impl Document {
    fn table(&self) -> Table {
        let mut root = Table::new();
        let section = |root: &Table, name: &str| -> Option<Table> {
            match root.get(name) {
                Some(Value::Table(table)) => Some(table.clone()),
                Some(_) => None,
                None => Some(Table::new()),
            }
        };
        for entry in &self.known {
            if let Some(mut table) = section(&root, entry.section) {
                table.insert(entry.key.to_owned(), entry.value.clone());
                root.insert(entry.section.to_owned(), Value::Table(table));
            }
        }
        for entry in &self.unknown {
            match entry.section {
                Some(name) => {
                    if let Some(mut table) = section(&root, name) {
                        table.insert(entry.key.clone(), entry.value.clone());
                        root.insert(name.to_owned(), Value::Table(table));
                    }
                }
                None => {
                    root.insert(entry.key.clone(), entry.value.clone());
                }
            }
        }
        if let Some((name, value)) = &self.broken_section {
            root.insert((*name).to_owned(), value.clone());
        }
        root
    }

    /// Whether a value of the wrong type is in the file.
    fn has_type_error(&self) -> bool {
        let table = self.table();
        self.broken_section.is_some()
            || self.known.iter().any(|entry| {
                entry.wrong_type
                    && table
                        .get(entry.section)
                        .and_then(|section| section.get(entry.key))
                        == Some(&entry.value)
            })
    }

    /// The dotted paths of the unknown keys that made it into the file.
    fn unknown_paths(&self) -> BTreeSet<String> {
        let table = self.table();
        self.unknown
            .iter()
            .filter(|entry| match entry.section {
                Some(name) => table
                    .get(name)
                    .and_then(|section| section.get(&entry.key))
                    .is_some(),
                None => table.contains_key(&entry.key),
            })
            .map(UnknownEntry::path)
            .collect()
    }
}

fn document() -> impl Strategy<Value = Document> {
    (
        proptest::collection::vec(known_entry(), 0..12),
        proptest::collection::vec(unknown_entry(), 0..5),
        proptest::option::weighted(
            0.05,
            (
                proptest::sample::select(KNOWN).prop_map(|(section, _)| section),
                prop_oneof![
                    any::<i64>().prop_map(Value::Integer),
                    "[a-z]{0,4}".prop_map(Value::String),
                    Just(Value::Array(vec![])),
                ],
            ),
        ),
        proptest::option::of("[a-z]{0,8}"),
    )
        .prop_map(|(known, unknown, broken_section, password_env)| Document {
            known,
            unknown,
            broken_section,
            password_env,
        })
}

fn problem_keys(problems: &[ConfigProblem]) -> BTreeSet<&str> {
    problems
        .iter()
        .map(|problem| problem.key.as_str())
        .collect()
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn any_document_is_checked(document in document()) {
        let text = toml::to_string(&document.table()).unwrap();
        let outcome = check(&text, document.password_env.as_deref())?;
        let unknown = document.unknown_paths();
        if !unknown.is_empty() {
            let problems = outcome.as_ref().err();
            prop_assert!(problems.is_some(), "unknown keys {:?} accepted in\n{}", unknown, text);
            let keys = problem_keys(problems.unwrap());
            // Without a type error, every unknown key is reported by name
            // (with one, see `unknown_keys_after_a_type_error_are_reported`).
            if !document.has_type_error() {
                for path in &unknown {
                    prop_assert!(keys.contains(path.as_str()), "`{}` not in {:?}\n{}", path, keys, text);
                }
            }
        }
        if document.has_type_error() {
            prop_assert!(outcome.is_err(), "a type error accepted in\n{}", text);
        }
    }
}

// ---------------------------------------------------------------------------
// A valid file, and unknown keys added to it.
// ---------------------------------------------------------------------------

const MINIMAL: &str = r#"
[wiki]
api_url = "https://wiki.example.org/w/api.php"
[login]
username = "Example@mybot"
password = "pw-from-file"
"#;

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn unknown_keys_are_exactly_the_problems(unknown in proptest::collection::vec(unknown_entry(), 0..5)) {
        let document: Table = toml::from_str(MINIMAL).unwrap();
        let mut document = document;
        let mut paths = BTreeSet::new();
        for entry in &unknown {
            let table = match entry.section {
                Some(name) => {
                    let section = document
                        .entry(name.to_owned())
                        .or_insert_with(|| Value::Table(Table::new()));
                    section.as_table_mut().unwrap()
                }
                None => &mut document,
            };
            table.insert(entry.key.clone(), entry.value.clone());
            paths.insert(entry.path());
        }
        let text = toml::to_string(&document).unwrap();
        let outcome = check(&text, None)?;
        match outcome {
            Ok(_) => prop_assert!(paths.is_empty(), "{:?} accepted", paths),
            Err(problems) => {
                let keys: BTreeSet<String> = problems.iter().map(|problem| problem.key.clone()).collect();
                prop_assert_eq!(keys, paths);
            }
        }
    }
}

#[test]
fn minimal_file_is_valid() {
    let settings = Settings::from_toml(MINIMAL, base_dir(), &env(None)).unwrap();
    assert_eq!(
        settings.sites[0].wiki.api_url.as_str(),
        "https://wiki.example.org/w/api.php"
    );
}

#[test]
fn unknown_keys_after_a_type_error_are_reported() {
    // The docs promise every problem at once; serde stops at the type
    // error, so `wiki.zz_typo` (after it) is never seen.
    let text = "[server]\nlisten = 5\n[wiki]\nzz_typo = 1\n";
    let problems = Settings::from_toml(text, base_dir(), &env(None)).unwrap_err();
    let keys = problem_keys(&problems);
    assert!(keys.contains("wiki.zz_typo"), "{problems:?}");
}
