//! Raft safety as the coordinators saw it: at most one leader per term.

use std::time::Duration;

use crate::run::Violation;
use crate::stack::history::History;

/// Raft: at most one leader per term.
pub(super) fn one_leader_per_term(history: &History, violations: &mut Vec<Violation>) {
    for (term, nodes) in &history.leaders {
        if nodes.len() > 1 {
            violations.push(Violation {
                invariant: "one-leader-per-term",
                at: Duration::ZERO,
                message: format!("term {term} had leaders {nodes:?}"),
            });
        }
    }
}
