//! Taking over engines a previous agent left running, so an agent crash or `kill -9` neither
//! restarts the engine nor triggers a failover: the engine keeps its data and its clients' state.

use std::time::Duration;

use kvs_proto::model::DesiredProcess;

use super::{Action, Phase, Slot, Supervisor};

/// What the shell found out about a leftover engine (from `/proc` and its engine.conf).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdoptedEngine {
    pub pid: u32,
    /// The catalog label of the binary it runs.
    pub engine: String,
    /// The port in the engine.conf it was started with, if readable.
    pub engine_port: Option<u16>,
}

impl Supervisor {
    /// A leftover engine of `instance` was found. Returns the generation it now runs as, or
    /// `None` if the instance already has a process (then the shell must stop the leftover).
    ///
    /// The engine counts as up (not yet ready) with an unknown spec. Once a desired spec names
    /// the instance, `poll` adopts it (`Action::Adopt`) if it runs the same engine on the same
    /// port, else stops it so a new one starts. Without a desired spec it is left alone until
    /// an authoritative desired state omits the instance.
    pub fn on_adopted(
        &mut self,
        instance: &str,
        engine: AdoptedEngine,
        now: Duration,
    ) -> Option<u64> {
        let slot = self
            .slots
            .entry(instance.to_string())
            .or_insert_with(|| Slot::new(None, now));
        if slot.generation().is_some() || self.shutting_down {
            return None;
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        slot.phase = Phase::Up {
            generation,
            pid: engine.pid,
            ready: false,
        };
        slot.running = None;
        slot.adopted = Some(engine);
        Some(generation)
    }

    /// The first desired spec for an adopted engine: adopt it live, or replace it.
    pub(super) fn adopt(
        name: &str,
        slot: &mut Slot,
        adopted: AdoptedEngine,
        desired: DesiredProcess,
        generation: u64,
        actions: &mut Vec<Action>,
    ) {
        if adopted.engine != desired.engine || adopted.engine_port != Some(desired.engine_port) {
            slot.last_error = Some(format!(
                "the engine left by the previous agent runs {} on port {}; replacing it with {} on port {}",
                adopted.engine,
                adopted
                    .engine_port
                    .map_or_else(|| "?".to_string(), |p| p.to_string()),
                desired.engine,
                desired.engine_port
            ));
            slot.phase = Phase::Stopping { generation };
            actions.push(Action::Stop {
                instance: name.to_string(),
                generation,
            });
            return;
        }
        slot.reconfiguring = Some(desired.clone());
        actions.push(Action::Adopt {
            instance: name.to_string(),
            generation,
            process: Box::new(desired),
        });
    }
}
