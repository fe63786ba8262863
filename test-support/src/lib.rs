//! What every KVS test crate shares (a dev-dependency only): the rule for tests whose
//! precondition is missing (not root, no network namespaces, no sshd, no engine binary, no CLI,
//! no redis-cli).
//!
//! ```text
//!   precondition missing ─► KVS_TEST_STRICT=1 (CI) ─► panic: "PRECONDITION MISSING: …" (fails)
//!                        └► otherwise (a laptop)    ─► "SKIPPED: …" on stderr and in the skip
//!                                                      log ($KVS_TEST_SKIP_LOG), test returns
//! ```
//!
//! A skipped test is not a passed test: CI runs strict, so a missing install step fails the run
//! instead of hiding tests. `make test` prints the skip log at the end, so skips on a laptop are
//! seen even though the test runner hides the output of passing tests.

use std::io::Write;

/// Set to `1` (CI does): a missing precondition fails the test.
pub const STRICT_ENV: &str = "KVS_TEST_STRICT";
/// A file every skip is appended to (one line each); unset: no log.
pub const SKIP_LOG_ENV: &str = "KVS_TEST_SKIP_LOG";

/// Whether missing preconditions fail tests (`KVS_TEST_STRICT=1`).
pub fn strict() -> bool {
    std::env::var(STRICT_ENV).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// The running test's name (libtest and nextest name the test thread after the test).
fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("unnamed test")
        .to_string()
}

/// The test cannot run here because `missing` (what is missing and how to get it). Under
/// [`STRICT_ENV`] this panics, failing the test; otherwise it says SKIPPED loudly and the caller
/// returns.
#[track_caller]
pub fn skip(missing: &str) {
    let test = test_name();
    if strict() {
        panic!("PRECONDITION MISSING ({STRICT_ENV}=1): {test}: {missing}");
    }
    let line = format!("SKIPPED {test}: {missing} (set {STRICT_ENV}=1 to fail instead)");
    eprintln!("\n**** {line} ****\n");
    if let Some(path) = std::env::var_os(SKIP_LOG_ENV) {
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| writeln!(file, "{line}"));
        if let Err(err) = appended {
            eprintln!("cannot append to {}: {err}", path.to_string_lossy());
        }
    }
}

/// `Some(value)`, or [`skip`] with `missing` and `None`.
#[track_caller]
pub fn require<T, E: std::fmt::Display>(
    found: Result<T, E>,
    missing: impl FnOnce(E) -> String,
) -> Option<T> {
    match found {
        Ok(value) => Some(value),
        Err(err) => {
            skip(&missing(err));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn require_passes_values_through() {
        let found: Result<u8, String> = Ok(7);
        assert_eq!(require(found, |e| e), Some(7));
    }
}
