//! No write a client saw acknowledged by `WAIT` (a replica had it) is lost: the failover picks
//! the standby by offset, and a rebooted primary waits for a standby that may hold its writes.

use super::{Finals, end_of, missing_writes};
use crate::run::Violation;
use crate::stack::history::History;

/// No write a client saw acknowledged by `WAIT` (a replica had it) is lost.
pub(super) fn acknowledged_writes_kept(
    history: &History,
    finals: &Finals,
    violations: &mut Vec<Violation>,
) {
    for missing in missing_writes(history, finals, true) {
        violations.push(Violation {
            invariant: "acked-writes",
            at: end_of(history),
            message: format!(
                "{}: {} WAIT-acknowledged writes missing on the final primary {} (first {:?})",
                missing.instance,
                missing.ids.len(),
                missing.host,
                &missing.ids[..missing.ids.len().min(5)]
            ),
        });
    }
}
