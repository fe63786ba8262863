//! Fencing and paused writes in the shell: gathers the evidence (coordinator session, INFO
//! `connected_slaves`), asks the pure `fencing` module, fences the fronts and sends
//! `CLIENT PAUSE … WRITE` / `CLIENT UNPAUSE` to the engines.

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
                replica_connected: self
                    .infos
                    .get(&p.instance)
                    .is_some_and(|i| i.connected_replicas > 0),
                from_cache: !self.desired_authoritative,
                after_reboot: self.after_reboot(p),
            })
            .collect();
        let before = self.fencing.fenced().clone();
        let fenced = self
            .fencing
            .update(now, self.coordinator_connected, inputs)
            .clone();
        for name in fenced.difference(&before) {
            if desired.get(name).is_some_and(|p| self.after_reboot(p)) {
                tracing::warn!(instance = %name, "fenced: restarted after a host reboot; refusing clients, pausing writes and refusing the standby's resync");
            } else {
                tracing::warn!(instance = %name, coordinator_connected = self.coordinator_connected, "fenced: no coordinator and no standby; refusing clients and pausing writes");
            }
        }
        for name in before.difference(&fenced) {
            tracing::info!(instance = %name, coordinator_connected = self.coordinator_connected, "unfenced");
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
}
