//! Finding, watching and stopping leftover engines, with `sleep` standing in for the engine (the
//! identification only looks at the executable and the working directory).

use std::path::Path;

use tokio::process::{Child, Command};

use super::*;

const SLEEP: &str = "/usr/bin/sleep";

fn sleep_binaries() -> Vec<PathBuf> {
    canonical_binaries([Path::new(SLEEP)])
}

/// An instance directory with an engine.conf, and `sleep 30` running in it.
fn instance(root: &Path, name: &str) -> (InstancePaths, Child) {
    let paths = InstancePaths::new(root, name);
    std::fs::create_dir_all(&paths.dir).expect("dir");
    std::fs::write(&paths.conf, "bind 127.0.0.1\nport 16399\n").expect("conf");
    let child = Command::new(SLEEP)
        .arg("30")
        .current_dir(&paths.dir)
        .kill_on_drop(true)
        .spawn()
        .expect("sleep");
    (paths, child)
}

fn pid_of(child: &Child) -> u32 {
    child.id().expect("running")
}

fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

#[test]
fn conf_address_is_parsed() {
    let conf = "# Rendered by kvs-agent\nbind 127.0.0.1\nport 16380\nprotected-mode yes\n";
    assert_eq!(
        conf_address(conf),
        (Some(16380), Some("127.0.0.1".parse().expect("ip")))
    );
    assert_eq!(conf_address("port nope\n"), (None, None));
}

#[tokio::test]
async fn found_through_the_pid_file_or_the_working_directory() {
    let root = tempfile::tempdir().expect("tempdir");
    let (paths, child) = instance(root.path(), "redis-found-1");
    let pid = pid_of(&child);

    // No pid file: found by its working directory.
    let found = find(&paths, &sleep_binaries())
        .await
        .expect("found by scan");
    assert_eq!(found.pid, pid);
    assert_eq!(found.port, Some(16399));
    assert_eq!(found.bind, Some("127.0.0.1".parse().expect("ip")));

    // The pid file names it.
    std::fs::write(&paths.pid, format!("{pid}\n")).expect("pid file");
    assert_eq!(
        find(&paths, &sleep_binaries()).await.map(|f| f.pid),
        Some(pid)
    );

    // Not an engine binary: not ours to touch.
    assert!(
        find(&paths, &canonical_binaries([Path::new("/bin/true")]))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn a_reused_pid_is_left_alone() {
    let root = tempfile::tempdir().expect("tempdir");
    let paths = InstancePaths::new(root.path(), "redis-reused-1");
    std::fs::create_dir_all(&paths.dir).expect("dir");
    // The pid file names a process of the same binary working elsewhere (a reused PID).
    let (_, unrelated) = instance(root.path(), "redis-other-1");
    let pid = pid_of(&unrelated);
    std::fs::write(&paths.pid, format!("{pid}\n")).expect("pid file");
    assert!(find(&paths, &sleep_binaries()).await.is_none());
    stop(&paths, &sleep_binaries(), Duration::from_secs(1)).await;
    assert!(is_alive(pid), "an unrelated process was killed");
}

#[tokio::test]
async fn stop_waits_until_the_leftover_is_gone() {
    let root = tempfile::tempdir().expect("tempdir");
    let (paths, child) = instance(root.path(), "redis-stop-1");
    let pid = pid_of(&child);
    std::fs::write(&paths.pid, format!("{pid}\n")).expect("pid file");
    stop(&paths, &sleep_binaries(), Duration::from_secs(5)).await;
    assert!(!is_alive(pid), "the leftover survived");
    assert!(!paths.pid.exists(), "the pid file stays");
}

#[tokio::test]
async fn an_adopted_engine_is_watched_and_stopped() {
    let root = tempfile::tempdir().expect("tempdir");

    // Its exit (here: kill -9 from outside) resolves the watch future.
    let (paths, child) = instance(root.path(), "redis-watch-1");
    let pid = pid_of(&child);
    let found = find(&paths, &sleep_binaries()).await.expect("found");
    let (engine, exited) = watch(found, paths.clone(), Duration::from_secs(5)).await;
    assert_eq!(engine.pid, pid);
    assert_eq!(
        std::fs::read_to_string(&paths.pid)
            .expect("pid file")
            .trim(),
        pid.to_string()
    );
    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    let reason = tokio::time::timeout(Duration::from_secs(5), exited)
        .await
        .expect("exit noticed");
    assert!(reason.contains("exited"), "{reason}");
    drop(engine);

    // Stopping the handle stops the process and waits for it.
    let (paths, child) = instance(root.path(), "redis-watch-2");
    let pid = pid_of(&child);
    let found = find(&paths, &sleep_binaries()).await.expect("found");
    let (mut engine, exited) = watch(found, paths.clone(), Duration::from_secs(5)).await;
    engine.stop();
    let reason = tokio::time::timeout(Duration::from_secs(10), exited)
        .await
        .expect("stopped");
    assert_eq!(reason, "stopped (SIGTERM)");
    assert!(!is_alive(pid));
}
