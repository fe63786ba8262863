//! Every loss of acknowledged writes without a replica's `WAIT` is reported as an instance
//! event, so an operator learns of it (DESIGN §4: losses are estimated and recorded).

use super::{Finals, end_of, missing_writes};
use crate::run::Violation;
use crate::stack::history::History;

/// Every loss of acknowledged writes (without a replica's `WAIT`) is reported as an instance
/// event: a failover's estimated data loss, or a rebooted primary that may miss writes.
pub(super) fn losses_reported(history: &History, finals: &Finals, violations: &mut Vec<Violation>) {
    for missing in missing_writes(history, finals, false) {
        let reported = history.events.get(&missing.instance).is_some_and(|events| {
            events
                .iter()
                .any(|(_, m)| m.contains("data loss") || m.contains("may miss"))
        });
        if !reported {
            violations.push(Violation {
                invariant: "losses-reported",
                at: end_of(history),
                message: format!(
                    "{}: {} acknowledged writes are not on the final primary {}, and no instance \
                     event reports a loss",
                    missing.instance,
                    missing.ids.len(),
                    missing.host
                ),
            });
        }
    }
}
