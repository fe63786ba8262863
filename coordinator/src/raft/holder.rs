//! Who holds a file open: named in the "store already open" error, so an operator learns which
//! process to stop (`kvs-coordinator` refuses to open a Raft store another process holds).
//!
//! Linux only: every `/proc/PID/fd/*` link is read; processes this user may not inspect are
//! passed over silently (the message then names none).

use std::path::Path;

/// Most holders named in one message.
const HOLDERS_MAX: usize = 4;

/// `" (held by pid 2548 kvs-coordinator)"`, or `""` when no holder could be found.
pub(crate) fn describe_holders(path: &Path) -> String {
    let holders = holders(path);
    if holders.is_empty() {
        return String::new();
    }
    let named: Vec<String> = holders
        .iter()
        .take(HOLDERS_MAX)
        .map(|(pid, name)| format!("pid {pid} {name}"))
        .collect();
    format!(" (by {})", named.join(", "))
}

/// `(pid, command name)` of every other process with `path` open.
fn holders(path: &Path) -> Vec<(u32, String)> {
    let Ok(target) = path.canonicalize() else {
        return Vec::new();
    };
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
        if pid != me && has_open(pid, &target) {
            let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            found.push((pid, name.trim().to_string()));
        }
    }
    found.sort();
    found
}

fn has_open(pid: u32, target: &Path) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(Result::ok)
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|link| link == target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_nobody_else_holds_names_no_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("file");
        let _open = std::fs::File::create(&path).expect("create");
        // This process holds it, and it is never named.
        assert_eq!(describe_holders(&path), "");
        assert_eq!(describe_holders(&dir.path().join("missing")), "");
    }
}
