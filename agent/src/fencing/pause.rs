//! Paused client writes (`CLIENT PAUSE <ms> WRITE`), level-triggered per live engine.
//!
//! Why an engine is paused: a planned switchover (`pause_writes` in its desired spec) or fencing.
//! Pauses are short and renewed (`RENEW_EVERY`) while wanted, so a crashed coordinator or agent
//! does not leave a switchover pause in place for long; a fence pause is long (`FENCE_PAUSE`) so
//! the engine stays fenced if the agent itself dies. When no pause is wanted, the engine is
//! unpaused once (also once per new engine process, whose pause state is unknown).

use std::collections::BTreeMap;
use std::time::Duration;

/// A switchover pause lasts this long unless renewed.
pub const SWITCHOVER_PAUSE: Duration = Duration::from_secs(10);
/// A fence pause lasts this long unless renewed or lifted.
pub const FENCE_PAUSE: Duration = Duration::from_secs(24 * 3600);
/// Wanted pauses are re-issued this often.
pub const RENEW_EVERY: Duration = Duration::from_secs(3);
/// A failed pause or unpause is retried after this.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseReason {
    /// Planned switchover (`pause_writes`).
    Switchover,
    /// Fenced (DESIGN §4 rule 5).
    Fenced,
}

impl PauseReason {
    pub fn duration(self) -> Duration {
        match self {
            PauseReason::Switchover => SWITCHOVER_PAUSE,
            PauseReason::Fenced => FENCE_PAUSE,
        }
    }
}

/// What to send to an engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseCommand {
    /// `CLIENT PAUSE <millis> WRITE`. The engines keep the later end of two pauses, so a
    /// shorter pause replacing a longer one (fence lifted, switchover still on) is preceded by
    /// `CLIENT UNPAUSE` (`unpause_first`).
    Pause {
        millis: u64,
        reason: PauseReason,
        unpause_first: bool,
    },
    /// `CLIENT UNPAUSE`.
    Unpause,
}

/// One live, ready engine and the pause it should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PauseInput {
    pub instance: String,
    pub generation: u64,
    pub want: Option<PauseReason>,
}

/// A command for the shell to run; report it back with `WritePauses::on_done`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PauseOrder {
    pub instance: String,
    pub generation: u64,
    pub command: PauseCommand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Applied {
    Unknown,
    Paused(PauseReason),
    Unpaused,
}

#[derive(Debug, Clone)]
struct Slot {
    generation: u64,
    applied: Applied,
    /// The command in flight.
    pending: Option<PauseCommand>,
    /// When the last command succeeded.
    done_at: Option<Duration>,
    /// No command before this (after a failure).
    retry_at: Duration,
}

/// The pause state of every live engine.
#[derive(Debug, Clone, Default)]
pub struct WritePauses {
    slots: BTreeMap<String, Slot>,
}

impl WritePauses {
    pub fn new() -> Self {
        Self::default()
    }

    /// The commands due at `now`. Engines not in `inputs` are forgotten.
    pub fn poll(
        &mut self,
        now: Duration,
        inputs: impl IntoIterator<Item = PauseInput>,
    ) -> Vec<PauseOrder> {
        let mut slots = BTreeMap::new();
        let mut orders = Vec::new();
        for input in inputs {
            let mut slot = match self.slots.remove(&input.instance) {
                Some(slot) if slot.generation == input.generation => slot,
                _ => Slot {
                    generation: input.generation,
                    applied: Applied::Unknown,
                    pending: None,
                    done_at: None,
                    retry_at: now,
                },
            };
            if slot.pending.is_none() && now >= slot.retry_at {
                let command = match input.want {
                    Some(reason) => {
                        let renew = slot
                            .done_at
                            .is_none_or(|at| now.saturating_sub(at) >= RENEW_EVERY);
                        (slot.applied != Applied::Paused(reason) || renew).then(|| {
                            PauseCommand::Pause {
                                millis: u64::try_from(reason.duration().as_millis())
                                    .unwrap_or(u64::MAX),
                                reason,
                                unpause_first: match slot.applied {
                                    Applied::Paused(old) => old.duration() > reason.duration(),
                                    // A previous agent may have left a fence pause.
                                    Applied::Unknown => reason.duration() < FENCE_PAUSE,
                                    Applied::Unpaused => false,
                                },
                            }
                        })
                    }
                    None => (slot.applied != Applied::Unpaused).then_some(PauseCommand::Unpause),
                };
                if let Some(command) = command {
                    slot.pending = Some(command);
                    orders.push(PauseOrder {
                        instance: input.instance.clone(),
                        generation: input.generation,
                        command,
                    });
                }
            }
            slots.insert(input.instance, slot);
        }
        self.slots = slots;
        orders
    }

    /// A command finished.
    pub fn on_done(
        &mut self,
        instance: &str,
        generation: u64,
        result: Result<(), String>,
        now: Duration,
    ) {
        let Some(slot) = self
            .slots
            .get_mut(instance)
            .filter(|s| s.generation == generation)
        else {
            return;
        };
        let Some(command) = slot.pending.take() else {
            return;
        };
        match result {
            Ok(()) => {
                slot.applied = match command {
                    PauseCommand::Pause { reason, .. } => Applied::Paused(reason),
                    PauseCommand::Unpause => Applied::Unpaused,
                };
                slot.done_at = Some(now);
            }
            Err(_) => {
                slot.applied = Applied::Unknown;
                slot.retry_at = now + RETRY_AFTER;
            }
        }
    }

    /// True if the engine is known to be paused (for any reason).
    pub fn is_paused(&self, instance: &str) -> bool {
        self.slots
            .get(instance)
            .is_some_and(|s| matches!(s.applied, Applied::Paused(_)))
    }
}
