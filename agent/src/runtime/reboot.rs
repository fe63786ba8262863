//! Host reboots, as engines see them: each instance directory keeps the boot id its engine last
//! started under (`boot_id`). A primary that starts under another boot id ran on a host that
//! rebooted (power loss, VM stop): with `appendfsync everysec` its AOF may miss the last second
//! of writes that its standby acknowledged, so it stays fenced, refusing clients and the standby's
//! resync, until the coordinator fails over to the standby or raises the epoch (`fencing.rs`).
//!
//! ```text
//!   spawn_start: marker = instances/<name>/boot_id; differs from this boot → after_reboot
//!                (written with this boot's id once the engine runs, except for a rebooted
//!                primary with a standby: its marker moves on only when the coordinator answered)
//!   adoption:    an engine left by a previous agent whose marker names another boot is
//!                after-reboot too, once its desired spec is known (the coordinator may restart a
//!                silent agent over SSH right after the host comes back: found by kvs-sim stack)
//!   runtime: rebooted[name] = epoch of that start; after_reboot while the desired spec is a
//!            primary with a standby at that epoch (a failover or a new epoch ends it)
//! ```

use std::path::Path;

use kvs_proto::model::{DesiredProcess, Role};

use super::Runtime;

const MARKER: &str = "boot_id";

/// True when the engine in `dir` last started under another boot than `boot_id`.
pub(super) async fn started_under_another_boot(dir: &Path, boot_id: Option<&str>) -> bool {
    let Some(current) = boot_id else {
        return false;
    };
    match tokio::fs::read_to_string(dir.join(MARKER)).await {
        Ok(previous) => {
            let previous = previous.trim();
            !previous.is_empty() && previous != current
        }
        Err(_) => false, // a new instance, or one from before this marker existed
    }
}

/// Records this boot as the one the engine in `dir` runs under.
pub(super) async fn mark(dir: &Path, boot_id: Option<&str>) {
    let Some(current) = boot_id else {
        return;
    };
    if let Err(error) = tokio::fs::write(dir.join(MARKER), current).await {
        tracing::warn!(dir = %dir.display(), %error, "cannot record the boot id");
    }
}

/// Whether a primary started under another boot stays fenced: one with a standby.
pub(super) fn fences_after_reboot(spec: &DesiredProcess) -> bool {
    spec.role == Role::Primary && spec.fence_after_seconds.is_some()
}

impl Runtime {
    /// Adopted engines that last started under another boot, now that their desired spec is
    /// known: a primary with a standby is after-reboot; anything else just records this boot.
    pub(super) fn resolve_adopted_reboots(&mut self) {
        let pending: Vec<String> = self.adopted_after_reboot.iter().cloned().collect();
        for name in pending {
            let Some(spec) = self
                .supervisor
                .desired_processes()
                .find(|p| p.instance == name)
                .cloned()
            else {
                continue;
            };
            self.adopted_after_reboot.remove(&name);
            if fences_after_reboot(&spec) {
                self.on_started_after_reboot(&spec);
            } else {
                self.mark_this_boot(&name);
            }
        }
    }

    /// Records this boot in the instance's marker (in the background).
    fn mark_this_boot(&self, instance: &str) {
        let dir = super::paths(&self.options, instance).dir;
        let boot_id = self.options.boot_id.clone();
        tokio::spawn(async move { mark(&dir, boot_id.as_deref()).await });
    }

    /// A primary with a standby whose engine just started after a host reboot.
    pub(super) fn on_started_after_reboot(&mut self, spec: &DesiredProcess) {
        if !fences_after_reboot(spec) {
            return;
        }
        tracing::warn!(
            instance = %spec.instance,
            epoch = spec.epoch,
            "primary restarted after a host reboot: fenced (clients and standby resync refused) \
             until the coordinator fails over or raises the epoch; its AOF may miss the last \
             second of acknowledged writes"
        );
        self.rebooted.insert(spec.instance.clone(), spec.epoch);
    }

    /// The primary `spec` still runs on the data of a rebooted host, unacknowledged.
    pub(super) fn after_reboot(&self, spec: &DesiredProcess) -> bool {
        spec.role == Role::Primary
            && spec.fence_after_seconds.is_some()
            && self
                .rebooted
                .get(&spec.instance)
                .is_some_and(|epoch| spec.epoch <= *epoch)
    }

    /// Like [`Self::after_reboot`], by instance name (no lookup unless it rebooted).
    pub(super) fn instance_after_reboot(&self, instance: &str) -> bool {
        self.rebooted.contains_key(instance)
            && self
                .supervisor
                .desired_processes()
                .find(|p| p.instance == instance)
                .is_some_and(|p| self.after_reboot(p))
    }

    /// Forgets reboots the coordinator has answered (a new epoch, a demotion) or whose instance
    /// is gone.
    pub(super) fn forget_answered_reboots(&mut self) {
        let answered: Vec<String> = self
            .rebooted
            .keys()
            .filter(|name| {
                self.supervisor
                    .desired_processes()
                    .find(|p| &p.instance == *name)
                    .is_none_or(|p| !self.after_reboot(p))
            })
            .cloned()
            .collect();
        for name in answered {
            tracing::info!(instance = %name, "the coordinator answered the reboot: fence lifted");
            self.rebooted.remove(&name);
            self.mark_this_boot(&name);
        }
    }
}
