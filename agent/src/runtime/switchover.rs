//! The agent's part in a fast planned switchover: facts the coordinator waits for, reported as
//! soon as they hold rather than at the next report tick.
//!
//! ```text
//!   primary (pause_writes):  CLIENT PAUSE done ──► INFO started after it ──► report
//!                            writes_paused + that offset (the offset the standby must reach)
//!   standby (catch_up):      INFO every CATCH_UP_POLL ──► report when the offset moves
//! ```
//!
//! An INFO already in flight when the pause took effect may have read the offset before it, so
//! its answer does not count; a new poll is started when it lands.

use std::collections::BTreeMap;
use std::time::Duration;

use kvs_proto::model::Role;

use super::{Runtime, tasks};

/// How often a standby that a switchover waits for is polled.
pub(super) const CATCH_UP_POLL: Duration = Duration::from_millis(10);

/// Whether the offset known for a paused primary was read after the pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Freshness {
    /// The INFO in flight started before the pause: its offset does not count.
    StalePollInFlight,
    /// Waiting for an INFO started after the pause.
    Waiting,
    /// The last INFO was read after the pause.
    Fresh,
}

/// Per paused primary: is its reported offset final?
#[derive(Debug, Default)]
pub(super) struct PausedOffsets {
    by_instance: BTreeMap<String, Freshness>,
}

impl PausedOffsets {
    fn is_fresh(&self, instance: &str) -> bool {
        self.by_instance.get(instance) == Some(&Freshness::Fresh)
    }
}

impl Runtime {
    /// A CLIENT PAUSE / UNPAUSE finished (`was_paused`: before it). A new pause needs an INFO
    /// read after it before `writes_paused` is reported.
    pub(super) fn on_pause_changed(&mut self, instance: &str, was_paused: bool) {
        if !self.pauses.is_paused(instance) {
            self.paused_offsets.by_instance.remove(instance);
            return;
        }
        if was_paused {
            return; // a renewal: the offset known is still final
        }
        let freshness = if self.polling.contains(instance) {
            Freshness::StalePollInFlight
        } else {
            self.poll_info_now(instance);
            Freshness::Waiting
        };
        self.paused_offsets
            .by_instance
            .insert(instance.to_string(), freshness);
    }

    /// An INFO answer for `instance` was recorded (`ok`: it succeeded).
    pub(super) fn on_info_for_pause(&mut self, instance: &str, ok: bool) {
        let Some(freshness) = self.paused_offsets.by_instance.get_mut(instance) else {
            return;
        };
        match *freshness {
            Freshness::StalePollInFlight => {
                *freshness = Freshness::Waiting;
                self.poll_info_now(instance);
            }
            Freshness::Waiting if ok => {
                *freshness = Freshness::Fresh;
                let offset = self.infos.get(instance).map(|i| i.replication_offset);
                tracing::info!(%instance, ?offset, "writes paused; this offset is final while paused");
            }
            Freshness::Waiting | Freshness::Fresh => {}
        }
    }

    /// Writes are paused and the offset reported was read after the pause.
    pub(super) fn writes_paused(&self, instance: &str) -> bool {
        self.pauses.is_paused(instance) && self.paused_offsets.is_fresh(instance)
    }

    /// Some standby is the target of a planned switchover (poll it every [`CATCH_UP_POLL`]).
    pub(super) fn catching_up(&self) -> bool {
        self.supervisor
            .desired_processes()
            .any(|p| p.role == Role::Standby && p.catch_up)
    }

    /// Polls every running standby a switchover waits for (unless a poll is in flight).
    pub(super) fn poll_catch_up(&mut self) {
        let targets: Vec<String> = self
            .supervisor
            .desired_processes()
            .filter(|p| p.role == Role::Standby && p.catch_up)
            .map(|p| p.instance.clone())
            .collect();
        for instance in targets {
            if self.infos.contains_key(&instance) {
                self.poll_info_now(&instance);
            }
        }
    }

    /// Starts an INFO poll of a running engine unless one is in flight.
    fn poll_info_now(&mut self, instance: &str) {
        let (Some(spec), Some(generation)) = (
            self.supervisor.running(instance),
            self.supervisor.generation(instance),
        ) else {
            return;
        };
        if self.polling.insert(instance.to_string()) {
            tasks::spawn_info(&self.options, spec, generation, self.events_tx.clone());
        }
    }
}
