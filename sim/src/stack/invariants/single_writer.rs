//! At most one primary accepts client writes per instance at any instant (DESIGN §4 rule 5:
//! fencing exists so that a cut-off primary stops before its standby is promoted).

use std::collections::BTreeMap;

use crate::run::Violation;
use crate::stack::history::{Accepted, History};

/// At most one primary accepts client writes per instance at any instant: a write on another
/// host than the current writer must come at a higher epoch (a failover); a write at the same or
/// a lower epoch than the current writer's, on another host, is a second writer (split brain).
/// Reported once per instance, with the number of such writes.
pub(super) fn single_writer(history: &History, violations: &mut Vec<Violation>) {
    let mut writer: BTreeMap<&str, (&str, u64)> = BTreeMap::new();
    // instance → (first offending write, count).
    let mut offending: BTreeMap<&str, (&Accepted, (&str, u64), usize)> = BTreeMap::new();
    for write in &history.accepted {
        match writer.get(write.instance.as_str()).copied() {
            Some((host, epoch)) if host != write.host && write.epoch <= epoch => {
                offending
                    .entry(&write.instance)
                    .or_insert((write, (host, epoch), 0))
                    .2 += 1;
                continue;
            }
            _ => {}
        }
        writer.insert(&write.instance, (&write.host, write.epoch));
    }
    for (instance, (first, (host, epoch), count)) in offending {
        violations.push(Violation {
            invariant: "single-writer",
            at: first.at,
            message: format!(
                "{instance}: {count} writes taken on {} at epoch {} while {host} took writes at \
                 epoch {epoch} (split brain); first: write {}",
                first.host, first.epoch, first.id
            ),
        });
    }
}
