//! One dev cluster per directory: `kvs-testbed dev` holds an exclusive lock on `DIR/dev.lock`
//! (with its PID inside) for as long as it runs, and refuses to start over processes an earlier
//! run left behind (from before engines and nodes died with the testbed, or started by hand).
//!
//! ```text
//!   acquire(dir) ─► lock held by a live dev ─► Err("… in use by kvs-testbed dev (pid N) …")
//!                ─► processes still using dir ─► Err("… still used by pid N kvs-agent … kill N …")
//!                ─► DirGuard (released when dropped or when the process dies)
//! ```
//!
//! Both errors are one line that names the PIDs and the command that frees the directory.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::process;

/// The lock file's name inside the cluster directory.
pub const LOCK_FILE_NAME: &str = "dev.lock";

/// Most PIDs named in one message.
const NAMED_MAX: usize = 8;

/// Held while the dev cluster runs; the kernel releases the lock when the process exits.
pub struct DirGuard {
    /// Kept open: closing it would release the lock.
    _file: File,
}

/// Takes the directory's lock (creating the directory) or says who holds it.
pub fn acquire(dir: &Path) -> Result<DirGuard> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(LOCK_FILE_NAME);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            bail!(
                "{} is in use by another `kvs-testbed dev` (pid {pid}): stop it with Ctrl-C in \
                 its terminal or `kill {pid}`, or pass another --dir",
                dir.display()
            );
        }
        Err(TryLockError::Error(err)) => {
            return Err(err).with_context(|| format!("locking {}", path.display()));
        }
    }
    refuse_leftovers(dir)?;
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())?;
    Ok(DirGuard { _file: file })
}

/// Fails (one line) if processes other than this one still use files in `dir`.
fn refuse_leftovers(dir: &Path) -> Result<()> {
    let users = process::processes_using(dir);
    if users.is_empty() {
        return Ok(());
    }
    let named: Vec<String> = users
        .iter()
        .take(NAMED_MAX)
        .map(|(pid, name)| format!("{pid} {name}"))
        .collect();
    let pids: Vec<String> = users.iter().map(|(pid, _)| pid.to_string()).collect();
    bail!(
        "{} is still used by processes of an earlier run (pid {}): stop them with `kill {}`, then \
         start again",
        dir.display(),
        named.join(", "),
        pids.join(" ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_guard_on_the_same_dir_names_the_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = acquire(dir.path()).expect("first");
        let err = acquire(dir.path()).err().expect("second refused");
        let text = format!("{err:#}");
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        assert!(!text.contains('\n'), "one line: {text}");
        drop(first);
        acquire(dir.path()).expect("free again once the first is gone");
    }
}
