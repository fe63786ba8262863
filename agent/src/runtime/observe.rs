//! Observation: the report tick (INFO polls, retrying fronts and tunnels that failed to bind) and
//! publishing the observed state (statuses, INFO metrics, fencing, errors).

use kvs_proto::model::ProcessStatus;

use super::{ObservedState, ProcessReport, Runtime, tasks};

impl Runtime {
    pub(super) fn on_tick(&mut self) {
        for status in self.supervisor.statuses() {
            let (Some(generation), Some(spec)) = (
                self.supervisor.generation(&status.instance),
                self.supervisor.running(&status.instance),
            ) else {
                continue;
            };
            if status.pid.is_some() && self.polling.insert(status.instance.clone()) {
                tasks::spawn_info(&self.options, spec, generation, self.events_tx.clone());
            }
        }
        // Fronts and tunnels that failed to bind are retried by the reconcile after this tick.
        self.front_errors.clear();
        self.tunnel_errors.clear();
    }

    pub(super) fn publish(&self) {
        let processes = self
            .supervisor
            .statuses()
            .into_iter()
            .map(|s| {
                let front_error = self
                    .front_errors
                    .get(&s.instance)
                    .or(self.tunnel_errors.get(&s.instance));
                let status = match (s.status, front_error) {
                    (ProcessStatus::Running, Some(_)) => ProcessStatus::Failed,
                    (status, _) => status,
                };
                ProcessReport {
                    fenced: self.fencing.fenced().contains(&s.instance),
                    writes_paused: s.pid.is_some() && self.writes_paused(&s.instance),
                    after_reboot: s.pid.is_some() && self.instance_after_reboot(&s.instance),
                    info: self
                        .infos
                        .get(&s.instance)
                        .cloned()
                        .filter(|_| s.pid.is_some())
                        .unwrap_or_default(),
                    last_error: front_error
                        .or(s.last_error.as_ref())
                        .cloned()
                        .unwrap_or_default(),
                    instance: s.instance,
                    epoch: s.epoch,
                    status,
                    pid: s.pid.unwrap_or(0),
                    restarts: s.restarts,
                }
            })
            .collect();
        let state = ObservedState {
            desired_version: self.desired_version,
            processes,
        };
        self.observed_tx.send_if_modified(|current| {
            let changed = *current != state;
            if changed {
                *current = state;
            }
            changed
        });
    }
}
