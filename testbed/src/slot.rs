//! Address slots: each cluster on this machine owns a block of loopback addresses, so clusters that
//! run at the same time (nextest runs tests as parallel processes) never collide on ports.
//!
//! ```text
//!   slot 0   (the dev cluster)   coordinator 127.0.0.1    hosts 127.0.0.11  127.0.0.12  127.0.0.13
//!   slot k   (tests, k ≥ 1)      coordinator 127.0.k.1    hosts 127.0.k.11  127.0.k.12  127.0.k.13
//! ```
//!
//! A replicated coordinator adds nodes 2 and 3 at 127.0.k.2 and 127.0.k.3.
//!
//! A slot is claimed with an exclusive lock on `$TMPDIR/kvs-testbed-slots/<k>.lock`; the kernel
//! releases it when the process exits, however it exits. Linux routes all of 127.0.0.0/8 to `lo`.

use std::fs::{File, OpenOptions};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Slots tests may use (1..=this).
pub const TEST_SLOTS: u8 = 200;

/// Zones of the hosts, in order: host i is in `ZONES[i]`.
pub const ZONES: [&str; 3] = ["a", "b", "c"];

/// A claimed block of loopback addresses; the claim lasts as long as this value.
#[derive(Debug)]
pub struct Slot {
    /// The slot number (the third octet).
    pub index: u8,
    /// Held open and locked: the claim.
    _lock: File,
}

impl Slot {
    /// Claims slot `index`, failing if another process holds it.
    pub fn claim(index: u8) -> Result<Slot> {
        match try_claim(index)? {
            Some(slot) => Ok(slot),
            None => bail!(
                "address slot {index} ({}) is in use by another testbed on this machine (lock {})",
                Slot::host_address_of(index, 0),
                lock_path(index).display()
            ),
        }
    }

    /// Claims slot `index` if no other process holds it (`None` if one does).
    pub fn try_claim(index: u8) -> Result<Option<Slot>> {
        try_claim(index)
    }

    /// Claims the first free test slot.
    pub fn claim_any() -> Result<Slot> {
        for index in 1..=TEST_SLOTS {
            if let Some(slot) = try_claim(index)? {
                return Ok(slot);
            }
        }
        bail!("all {TEST_SLOTS} testbed address slots are in use")
    }

    /// The coordinator's address: 127.0.0.1 for slot 0, else 127.0.k.1.
    pub fn coordinator_address(&self) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, self.index, 1)
    }

    /// Coordinator node `node`'s address (0-based): 127.0.k.(1 + node); node 0 is
    /// [`Slot::coordinator_address`].
    pub fn coordinator_node_address(&self, node: usize) -> Ipv4Addr {
        let last = 1 + u8::try_from(node).expect("at most a few coordinators per cluster");
        Ipv4Addr::new(127, 0, self.index, last)
    }

    /// Host i's address (127.0.k.11 + i).
    pub fn host_address(&self, host: usize) -> Ipv4Addr {
        Slot::host_address_of(self.index, host)
    }

    fn host_address_of(index: u8, host: usize) -> Ipv4Addr {
        let last = 11 + u8::try_from(host).expect("at most a few hosts per cluster");
        Ipv4Addr::new(127, 0, index, last)
    }
}

fn lock_path(index: u8) -> PathBuf {
    std::env::temp_dir()
        .join("kvs-testbed-slots")
        .join(format!("{index}.lock"))
}

fn try_claim(index: u8) -> Result<Option<Slot>> {
    let path = lock_path(index);
    if let Some(dir) = path.parent() {
        create_shared_dir(dir)?;
    }
    let file = open_lock_file(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(Slot { index, _lock: file })),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(err)) => {
            Err(err).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// The slot directory is shared by every user's tests (root's and others'), like `/tmp` itself:
/// world-writable with the sticky bit.
fn create_shared_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777))
        .with_context(|| format!("making {} shared (mode 1777)", dir.display()))
}

/// A lock file another user created is opened read-only: `flock` needs no write access.
fn open_lock_file(path: &Path) -> Result<File> {
    use std::os::unix::fs::PermissionsExt;
    let created = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path);
    match created {
        Ok(file) => {
            // Readable by every user, so theirs can lock it too (umask may have narrowed it).
            let _ = file.set_permissions(std::fs::Permissions::from_mode(0o644));
            Ok(file)
        }
        Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
            File::open(path).with_context(|| format!("opening {} read-only", path.display()))
        }
        Err(err) => Err(err).with_context(|| format!("opening {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_claims_get_different_slots() {
        let first = Slot::claim_any().expect("first");
        let second = Slot::claim_any().expect("second");
        assert_ne!(first.index, second.index);
        assert_eq!(
            first.host_address(1),
            Ipv4Addr::new(127, 0, first.index, 12)
        );
        assert!(
            Slot::claim(first.index).is_err(),
            "a held slot cannot be claimed again"
        );
    }
}
