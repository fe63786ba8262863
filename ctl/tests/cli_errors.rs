//! The binary's behaviour without a coordinator: help, configuration errors and the destroy
//! confirmation, run as a user would (a fresh process, a clean environment).

use std::process::{Command, Output};

/// Runs `kvs` with no KVS_* variables and an empty config dir, so no profile is found.
fn kvs(args: &[&str], stdin: &str) -> Output {
    let home_dir = tempfile::Builder::new()
        .prefix("kvs-ctl-cli-test-")
        .tempdir()
        .expect("temp home");
    let home = home_dir.path();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kvs"))
        .args(args)
        .env_remove("KVS_ENDPOINT")
        .env_remove("KVS_TOKEN")
        .env_remove("KVS_CA_FILE")
        .env_remove("KVS_PROFILE")
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn kvs");
    {
        use std::io::Write;
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(stdin.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("kvs output")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn t10_help_lists_commands() {
    let out = kvs(&["--help"], "");
    assert!(out.status.success());
    let help = text(&out.stdout);
    for command in [
        "create",
        "wait",
        "info",
        "list",
        "credentials",
        "config",
        "destroy",
        "timeout",
        "maxmemory",
        "keyspace-notifications",
        "events",
        "run",
        "hosts",
        "ca",
        "plans",
    ] {
        assert!(help.contains(command), "help lacks {command}:\n{help}");
    }
}

#[test]
fn t20_create_without_configuration_says_how_to_configure() {
    let out = kvs(&["create", "--plan", "x", "--app", "a"], "");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("error: no coordinator endpoint is configured"),
        "{err}"
    );
    assert!(
        err.contains("--endpoint") && err.contains("KVS_ENDPOINT") && err.contains("config.toml"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn t30_destroy_with_wrong_confirmation_aborts() {
    let out = kvs(
        &["destroy", "redis-acute-6762", "--confirm", "redis-other-1"],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("Confirmation redis-other-1 did not match redis-acute-6762. Aborted."),
        "{err}"
    );
}

#[test]
fn t31_destroy_prompt_reads_stdin() {
    let out = kvs(&["destroy", "redis-acute-6762"], "nope\n");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("To proceed, type redis-acute-6762 or re-run this command with --confirm redis-acute-6762"), "{err}");
    assert!(err.contains("did not match"), "{err}");
}

#[test]
fn t40_bad_input_is_refused_locally() {
    let out = kvs(&["maxmemory", "redis-x", "--policy", "lru"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("valid policies: noeviction"),
        "{}",
        text(&out.stderr)
    );
    let out = kvs(&["--endpoint", "ftp://x", "--token", "t", "list"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("invalid endpoint"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn t50_unreachable_coordinator_is_reported() {
    // Port 1 on localhost: nothing listens there.
    let out = kvs(
        &["--endpoint", "http://127.0.0.1:1", "--token", "t", "list"],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("error: cannot reach the coordinator at http://127.0.0.1:1"),
        "{err}"
    );
}
