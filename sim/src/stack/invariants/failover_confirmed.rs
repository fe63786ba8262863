//! No failover before the primary's host was unreachable from every vantage point for the whole
//! confirmation window (DESIGN §4 rule 3), and none for an engine or agent crash alone (rules 1, 2).

use std::time::Duration;

use crate::run::Violation;
use crate::stack::coordinators::{CONFIRMATION_WINDOW, PROBE_INTERVAL};
use crate::stack::history::History;

/// No failover unless the primary's host was unreachable from every vantage point for the whole
/// window (counted from its last sign of life, up to one probe interval before the cut), or it
/// restarted after a host crash (the reboot rule). An engine or agent crash alone never fails over.
pub(super) fn failover_confirmed(history: &History, violations: &mut Vec<Violation>) {
    let required = CONFIRMATION_WINDOW.saturating_sub(PROBE_INTERVAL + Duration::from_secs(1));
    for promotion in &history.promotions {
        // The writer before the promotion.
        let previous = history
            .accepted
            .iter()
            .rfind(|w| w.instance == promotion.instance && w.at <= promotion.at)
            .filter(|w| w.host != promotion.host);
        let Some(previous) = previous else { continue };
        let from = promotion.at.saturating_sub(required);
        let cut_off = history.unreachable_throughout(&previous.host, from, promotion.at);
        let rebooted = history
            .unreachable
            .get(&previous.host)
            .is_some_and(|intervals| {
                intervals.iter().any(|(start, end)| {
                    *start < promotion.at && end.is_some_and(|e| e <= promotion.at)
                })
            });
        if !cut_off && !rebooted {
            violations.push(Violation {
                invariant: "failover-confirmed",
                at: promotion.at,
                message: format!(
                    "{} promoted on {} at epoch {}, but its primary's host {} was not cut off \
                     from every vantage point for {required:?} before",
                    promotion.instance, promotion.host, promotion.epoch, previous.host
                ),
            });
        }
    }
}
