//! Deliberately broken rules (`--break NAME`), to show the invariants catch them. A break
//! changes what the coordinator or the agents run with; the invariants keep judging by the rules
//! as designed (the world's `nominal` config).

use std::collections::BTreeSet;
use std::time::Duration;

use kvs_coordinator::control::HaConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Break {
    /// The coordinator's confirmation window is 0: a host is "confirmed down" at once.
    WindowZero,
    /// Agents never fence a primary.
    NoFencing,
    /// Full stack only: every data-loss figure in the instance events becomes "0 bytes". It is
    /// rewritten where the simulation records the events the Admin API listed
    /// (`stack/clients.rs`), not in the coordinator: the only thing the simulation hands the
    /// coordinator is its production config, and a config field that breaks the estimate would
    /// ship in every build. The `losses-reported` invariant must catch it.
    LossZero,
}

impl Break {
    pub const ALL: [Break; 3] = [Break::WindowZero, Break::NoFencing, Break::LossZero];

    pub fn name(self) -> &'static str {
        match self {
            Break::WindowZero => "window-zero",
            Break::NoFencing => "no-fencing",
            Break::LossZero => "loss-zero",
        }
    }

    pub fn parse(name: &str) -> Result<Self, String> {
        Break::ALL
            .into_iter()
            .find(|b| b.name() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = Break::ALL.iter().map(|b| b.name()).collect();
                format!("unknown break {name:?}; known: {}", known.join(", "))
            })
    }
}

/// The set of broken rules of a run (usually empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Breaks(pub BTreeSet<Break>);

impl Breaks {
    pub fn none() -> Self {
        Self::default()
    }

    pub fn of(breaks: &[Break]) -> Self {
        Self(breaks.iter().copied().collect())
    }

    pub fn has(&self, b: Break) -> bool {
        self.0.contains(&b)
    }

    pub fn apply_to_coordinator(&self, config: &mut HaConfig) {
        if self.has(Break::WindowZero) {
            config.confirmation_window = Duration::ZERO;
        }
    }

    /// The `--break a,b` flags for a reproduction command ("" when none).
    pub fn flags(&self) -> String {
        self.0
            .iter()
            .map(|b| format!(" --break {}", b.name()))
            .collect()
    }
}
