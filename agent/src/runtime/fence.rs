//! Fencing and paused writes in the shell: gathers the evidence (when the coordinator leader was
//! last heard, when each front last heard a replica), asks the pure `fencing` module, fences the
//! fronts and sends `CLIENT PAUSE … WRITE` / `CLIENT UNPAUSE` to the engines.

use std::collections::BTreeMap;
use std::time::Duration;

use kvs_proto::model::{DesiredProcess, ProcessStatus, Role};

use super::{Runtime, tasks};
use crate::fencing::{FenceInput, PauseInput, PauseReason};

impl Runtime {
    pub(super) fn update_fencing(&mut self) {
        self.forget_answered_reboots();
        let now = self.now();
        let desired: BTreeMap<String, DesiredProcess> = self
            .supervisor
            .desired_processes()
            .map(|p| (p.instance.clone(), p.clone()))
            .collect();
        let inputs: Vec<FenceInput> = desired
            .values()
            .filter(|p| p.role == Role::Primary)
            .map(|p| FenceInput {
                instance: p.instance.clone(),
                fence_after: p.fence_after_seconds.map(|s| Duration::from_secs(s.into())),
                replica_heard: self.replica_heard(&p.instance),
                from_cache: !self.desired_authoritative,
                after_reboot: self.after_reboot(p),
            })
            .collect();
        let before = self.fencing.fenced().clone();
        let fenced = self
            .fencing
            .update(now, self.coordinator_heard, inputs)
            .clone();
        for name in fenced.difference(&before) {
            if desired.get(name).is_some_and(|p| self.after_reboot(p)) {
                tracing::warn!(instance = %name, "fenced: restarted after a host reboot; refusing clients, pausing writes and refusing the standby's resync");
            } else {
                tracing::warn!(instance = %name, coordinator_heard_ago = ?self.heard_ago(self.coordinator_heard), replica_heard_ago = ?self.heard_ago(self.replica_heard(name)), "fenced: neither the coordinator nor a standby heard lately; refusing clients and pausing writes");
            }
        }
        for name in before.difference(&fenced) {
            tracing::info!(instance = %name, "unfenced: the coordinator is heard again");
        }
        for (name, front) in &self.fronts {
            front.set_fenced(fenced.contains(name));
            front.set_peers_refused(desired.get(name).is_some_and(|p| self.after_reboot(p)));
        }

        let pauses: Vec<PauseInput> = self
            .supervisor
            .statuses()
            .into_iter()
            .filter(|s| s.status == ProcessStatus::Running)
            .filter_map(|s| {
                let generation = self.supervisor.generation(&s.instance)?;
                let want = if fenced.contains(&s.instance) {
                    Some(PauseReason::Fenced)
                } else {
                    desired
                        .get(&s.instance)
                        .filter(|p| p.role == Role::Primary && p.pause_writes)
                        .map(|_| PauseReason::Switchover)
                };
                Some(PauseInput {
                    instance: s.instance,
                    generation,
                    want,
                })
            })
            .collect();
        for order in self.pauses.poll(now, pauses) {
            let Some(spec) = self.supervisor.running(&order.instance) else {
                continue;
            };
            tracing::debug!(instance = %order.instance, command = ?order.command, "write pause");
            tasks::spawn_pause(&self.options, spec, order, self.events_tx.clone());
        }
    }

    /// When the instance's front last heard a replica, on `now`'s clock.
    fn replica_heard(&self, instance: &str) -> Option<Duration> {
        let front = self.fronts.get(instance)?;
        Some(front.peer_heard()?.saturating_duration_since(self.start))
    }

    /// How long ago `heard` was (for the logs; `None`: never).
    fn heard_ago(&self, heard: Option<Duration>) -> Option<Duration> {
        heard.map(|at| self.now().saturating_sub(at))
    }
}
