//! `apply` for the high-availability commands: standby placement, the failover steps and events.
//!
//! ```text
//!   PlaceStandby ──► standbys += placement
//!   BeginFailover(expected_epoch) ──► failover = intent { new_epoch: epoch + 1, .. }
//!   OrderPromotion(new_epoch)     ──► intent.promotion_ordered (planned switchover only)
//!   CompleteFailover(new_epoch)   ──► primary = target, old primary → standby, epoch = new_epoch,
//!                                     every attached app's version + 1 (the URL rotated),
//!                                     last_failover = what its loss estimate was based on
//!   CorrectDataLoss(epoch, bytes) ──► last_failover.data_loss_bytes = bytes (only upwards)
//!   AbortFailover(new_epoch)      ──► failover = None (epoch = new_epoch + 1 if promotion ordered)
//!   ResumeAfterReboot(expected)   ──► epoch + 1 (a rebooted primary serves again, no failover)
//! ```
//!
//! Epochs only grow. Every refusal is checked before anything changes, so a refused command
//! leaves the state exactly as it was (the tests compare whole states).
//!
//! Decision: on completion the old primary's placement stays as a standby of the new primary.
//! While its host is down it simply isn't running; when the host returns it is told "standby at
//! the new epoch" (never "primary at the old one") and resyncs. The policy (control::standby)
//! removes it once a replacement standby is in sync, so the instance keeps one standby.

use super::ClusterState;
use super::command::{Applied, Command, CommandOutcome, Refusal};
use super::model::{CompletedFailover, FailoverIntent, Instance, Placement};

impl ClusterState {
    /// Applies one of the HA commands (the caller routes only those here).
    pub(super) fn apply_ha(&mut self, command: &Command) -> CommandOutcome {
        match command {
            Command::PlaceStandby {
                name,
                placement,
                at_ms,
            } => self.place_standby(name, placement, *at_ms),
            Command::BeginFailover {
                name,
                expected_epoch,
                new_primary_host,
                planned,
                allow_data_loss,
                primary_offset,
                target_offset,
                reason,
                at_ms,
            } => {
                let intent = FailoverIntent {
                    target_host_id: new_primary_host.clone(),
                    new_epoch: expected_epoch.saturating_add(1),
                    planned: *planned,
                    allow_data_loss: *allow_data_loss,
                    promotion_ordered: !*planned,
                    promotion_ordered_at_ms: (!*planned).then_some(*at_ms),
                    pause_desired_version: self.desired_version + 1,
                    primary_offset: *primary_offset,
                    target_offset: *target_offset,
                    started_at_ms: *at_ms,
                    reason: reason.clone(),
                };
                self.begin_failover(name, *expected_epoch, intent)
            }
            Command::OrderPromotion {
                name,
                epoch,
                primary_offset,
                target_offset,
                at_ms,
            } => self.order_promotion(name, *epoch, (*primary_offset, *target_offset), *at_ms),
            Command::CompleteFailover {
                name,
                epoch,
                data_loss_bytes,
                at_ms,
            } => self.complete_failover(name, *epoch, *data_loss_bytes, *at_ms),
            Command::CorrectDataLoss {
                name,
                epoch,
                data_loss_bytes,
                at_ms,
            } => self.correct_data_loss(name, *epoch, *data_loss_bytes, *at_ms),
            Command::AbortFailover {
                name,
                epoch,
                reason,
                at_ms,
            } => self.abort_failover(name, *epoch, reason, *at_ms),
            Command::RemoveStandby {
                name,
                host_id,
                at_ms,
            } => self.remove_standby(name, host_id, *at_ms),
            Command::ResumeAfterReboot {
                name,
                expected_epoch,
                reason,
                at_ms,
            } => self.resume_after_reboot(name, *expected_epoch, reason, *at_ms),
            Command::RecordEvent {
                name,
                message,
                at_ms,
            } => {
                self.instance(name)?;
                self.push_event(name, *at_ms, message.clone());
                Ok(Applied::Done)
            }
            other => unreachable!("apply_ha called with {}", other.kind()),
        }
    }

    fn instance(&self, name: &str) -> Result<&Instance, Refusal> {
        self.instances
            .get(name)
            .ok_or_else(|| Refusal::NoSuchInstance(name.to_string()))
    }

    /// `name` at `expected_epoch` with no failover in flight, or the refusal.
    fn idle_at_epoch(&self, name: &str, expected_epoch: u64) -> Result<&Instance, Refusal> {
        let instance = self.instance(name)?;
        if instance.failover.is_some() {
            return Err(Refusal::FailoverInProgress(name.to_string()));
        }
        if instance.epoch != expected_epoch {
            return Err(Refusal::StaleEpoch {
                instance: name.to_string(),
                expected: expected_epoch,
                actual: instance.epoch,
            });
        }
        Ok(instance)
    }

    fn instance_mut(&mut self, name: &str) -> &mut Instance {
        self.instances
            .get_mut(name)
            .expect("checked by instance() before any change")
    }

    /// The in-flight failover of `name` at `epoch`, or the refusal.
    fn intent(&self, name: &str, epoch: u64) -> Result<&FailoverIntent, Refusal> {
        let intent = self
            .instance(name)?
            .failover
            .as_ref()
            .ok_or_else(|| Refusal::NoFailover(name.to_string()))?;
        if intent.new_epoch != epoch {
            return Err(Refusal::StaleEpoch {
                instance: name.to_string(),
                expected: epoch,
                actual: intent.new_epoch,
            });
        }
        Ok(intent)
    }

    fn zone_of(&self, host_id: &str) -> String {
        self.hosts
            .get(host_id)
            .map(|h| h.zone.clone())
            .unwrap_or_else(|| "unknown".into())
    }

    fn place_standby(&mut self, name: &str, placement: &Placement, at_ms: i64) -> CommandOutcome {
        let instance = self.instance(name)?;
        if instance.failover.is_some() {
            return Err(Refusal::FailoverInProgress(name.to_string()));
        }
        let host = &placement.host_id;
        if !self.hosts.contains_key(host) {
            return Err(Refusal::NoSuchHost(host.clone()));
        }
        let serves = std::iter::once(&instance.primary)
            .chain(&instance.standbys)
            .any(|p| p.host_id == *host);
        if serves {
            return Err(Refusal::HostAlreadyServes {
                instance: name.to_string(),
                host: host.clone(),
            });
        }
        let used = self.ports_in_use(host);
        if let Some(port) = placement.ports().into_iter().find(|p| used.contains(p)) {
            return Err(Refusal::PortTaken {
                host: host.clone(),
                port,
            });
        }
        let message = format!(
            "standby placed on host {host} (zone {}) port {}",
            self.zone_of(host),
            placement.front_port
        );
        self.instance_mut(name).standbys.push(placement.clone());
        self.desired_version += 1;
        self.push_event(name, at_ms, message);
        Ok(Applied::Done)
    }

    fn begin_failover(
        &mut self,
        name: &str,
        expected_epoch: u64,
        intent: FailoverIntent,
    ) -> CommandOutcome {
        let instance = self.idle_at_epoch(name, expected_epoch)?;
        if !instance
            .standbys
            .iter()
            .any(|s| s.host_id == intent.target_host_id)
        {
            return Err(Refusal::NoSuchStandby {
                instance: name.to_string(),
                host: intent.target_host_id.clone(),
            });
        }
        let kind = if intent.planned {
            "planned switchover"
        } else {
            "failover"
        };
        let message = format!(
            "{kind} to host {} (zone {}) begun, epoch {}: {}",
            intent.target_host_id,
            self.zone_of(&intent.target_host_id),
            intent.new_epoch,
            intent.reason
        );
        let at_ms = intent.started_at_ms;
        self.instance_mut(name).failover = Some(intent);
        self.desired_version += 1;
        self.push_event(name, at_ms, message);
        Ok(Applied::Done)
    }

    fn order_promotion(
        &mut self,
        name: &str,
        epoch: u64,
        (primary_offset, target_offset): (Option<u64>, Option<u64>),
        at_ms: i64,
    ) -> CommandOutcome {
        let intent = self.intent(name, epoch)?;
        if intent.promotion_ordered {
            return Err(Refusal::FailoverStep {
                instance: name.to_string(),
                reason: "promotion already ordered".into(),
            });
        }
        let message = format!(
            "standby on host {} caught up (primary offset {}); promoting at epoch {epoch}",
            intent.target_host_id,
            offset_text(primary_offset)
        );
        let intent = self
            .instance_mut(name)
            .failover
            .as_mut()
            .expect("checked by intent()");
        intent.promotion_ordered = true;
        intent.promotion_ordered_at_ms = Some(at_ms);
        intent.primary_offset = primary_offset.or(intent.primary_offset);
        intent.target_offset = target_offset.or(intent.target_offset);
        self.desired_version += 1;
        self.push_event(name, at_ms, message);
        Ok(Applied::Done)
    }

    fn complete_failover(
        &mut self,
        name: &str,
        epoch: u64,
        data_loss_bytes: Option<u64>,
        at_ms: i64,
    ) -> CommandOutcome {
        let intent = self.intent(name, epoch)?.clone();
        if !intent.promotion_ordered {
            return Err(Refusal::FailoverStep {
                instance: name.to_string(),
                reason: "promotion not ordered yet".into(),
            });
        }
        let instance = self.instance_mut(name);
        let index = instance
            .standbys
            .iter()
            .position(|s| s.host_id == intent.target_host_id)
            .ok_or_else(|| Refusal::NoSuchStandby {
                instance: name.to_string(),
                host: intent.target_host_id.clone(),
            })?;
        let new_primary = instance.standbys.remove(index);
        let old_primary = std::mem::replace(&mut instance.primary, new_primary);
        instance.last_failover = Some(CompletedFailover {
            epoch,
            old_primary_host_id: old_primary.host_id.clone(),
            old_epoch: instance.epoch,
            target_offset: intent.target_offset,
            data_loss_bytes,
        });
        instance.standbys.insert(0, old_primary);
        instance.epoch = epoch;
        instance.failover = None;
        for app in self.apps.values_mut() {
            if app.attachments.values().any(|i| i == name) {
                app.version += 1;
            }
        }
        self.desired_version += 1;
        let loss = match data_loss_bytes {
            Some(bytes) => format!("{bytes} bytes"),
            None => "unknown (primary offset never observed)".into(),
        };
        let message = format!(
            "failover to host {} (zone {}), epoch {epoch}, estimated data loss {loss}",
            intent.target_host_id,
            self.zone_of(&intent.target_host_id)
        );
        self.push_event(name, at_ms, message);
        Ok(Applied::Done)
    }

    /// A larger estimate of the last completed failover's loss, from what its old primary
    /// reported at its old epoch. Refused unless it is about that failover and raises the
    /// reported figure (an "unknown" figure is raised by any).
    fn correct_data_loss(
        &mut self,
        name: &str,
        epoch: u64,
        data_loss_bytes: u64,
        at_ms: i64,
    ) -> CommandOutcome {
        let instance = self.instance(name)?;
        let last = instance
            .last_failover
            .as_ref()
            .ok_or_else(|| Refusal::FailoverStep {
                instance: name.to_string(),
                reason: "no completed failover to correct".into(),
            })?;
        if last.epoch != epoch {
            return Err(Refusal::StaleEpoch {
                instance: name.to_string(),
                expected: epoch,
                actual: last.epoch,
            });
        }
        if last.data_loss_bytes.is_some_and(|b| b >= data_loss_bytes) {
            return Err(Refusal::FailoverStep {
                instance: name.to_string(),
                reason: format!(
                    "the reported loss is already {} bytes",
                    last.data_loss_bytes.unwrap_or(0)
                ),
            });
        }
        let why = match last.data_loss_bytes {
            Some(_) => "took writes after the last report of it",
            None => "reported the offset it had",
        };
        let old_host = last.old_primary_host_id.clone();
        let last = self
            .instance_mut(name)
            .last_failover
            .as_mut()
            .expect("checked above");
        last.data_loss_bytes = Some(data_loss_bytes);
        let message = format!(
            "failover at epoch {epoch}: corrected estimate of data loss {data_loss_bytes} bytes \
             (the old primary on host {old_host} {why})"
        );
        self.push_event(name, at_ms, message);
        Ok(Applied::Done)
    }

    fn abort_failover(
        &mut self,
        name: &str,
        epoch: u64,
        reason: &str,
        at_ms: i64,
    ) -> CommandOutcome {
        let intent = self.intent(name, epoch)?.clone();
        let instance = self.instance_mut(name);
        instance.failover = None;
        if intent.promotion_ordered {
            // Orders at new_epoch went out (target: primary, old primary: standby). Burn that
            // epoch so the restored roles carry a strictly newer one every agent accepts.
            instance.epoch = intent.new_epoch + 1;
        }
        let epoch_now = instance.epoch;
        self.desired_version += 1;
        let message = format!(
            "failover to host {} aborted: {reason}; primary stays on host {} at epoch {epoch_now}",
            intent.target_host_id, self.instances[name].primary.host_id
        );
        self.push_event(name, at_ms, message);
        Ok(Applied::Done)
    }

    fn resume_after_reboot(
        &mut self,
        name: &str,
        expected_epoch: u64,
        reason: &str,
        at_ms: i64,
    ) -> CommandOutcome {
        self.idle_at_epoch(name, expected_epoch)?;
        let instance = self.instance_mut(name);
        instance.epoch += 1;
        let epoch = instance.epoch;
        self.desired_version += 1;
        self.push_event(
            name,
            at_ms,
            format!("{reason}; the primary resumes from its own data at epoch {epoch}"),
        );
        Ok(Applied::Done)
    }

    fn remove_standby(&mut self, name: &str, host_id: &str, at_ms: i64) -> CommandOutcome {
        let instance = self.instance(name)?;
        if instance.failover.is_some() {
            return Err(Refusal::FailoverInProgress(name.to_string()));
        }
        let Some(index) = instance.standbys.iter().position(|s| s.host_id == host_id) else {
            return Err(Refusal::NoSuchStandby {
                instance: name.to_string(),
                host: host_id.to_string(),
            });
        };
        self.instance_mut(name).standbys.remove(index);
        self.desired_version += 1;
        self.push_event(name, at_ms, format!("standby on host {host_id} removed"));
        Ok(Applied::Done)
    }
}

fn offset_text(offset: Option<u64>) -> String {
    offset.map_or_else(|| "unknown".into(), |o| o.to_string())
}

#[cfg(test)]
mod tests;
