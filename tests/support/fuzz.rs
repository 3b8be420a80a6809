//! What the property tests (`tests/fuzz_*.rs`) share: their proptest
//! configuration.

use proptest::test_runner::{Config, FileFailurePersistence};

/// `cases` cases (or `PROPTEST_CASES` when set, for a longer run), with
/// failing inputs kept in `regressions` and replayed first on every run.
pub fn config(cases: u32, regressions: &'static str) -> Config {
    let default = Config::default();
    Config {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            default.cases
        } else {
            cases
        },
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(regressions))),
        ..default
    }
}
