//! Epochs only grow: an agent refuses a stale epoch, so a promotion at an old epoch would be a
//! second primary nobody can fence.

use std::collections::BTreeMap;

use crate::run::Violation;
use crate::stack::history::History;

/// Epochs only grow: each promotion of an instance is at a higher epoch than the one before.
pub(super) fn epochs_grow(history: &History, violations: &mut Vec<Violation>) {
    let mut last: BTreeMap<&str, u64> = BTreeMap::new();
    for promotion in &history.promotions {
        if let Some(previous) = last.get(promotion.instance.as_str())
            && promotion.epoch <= *previous
        {
            violations.push(Violation {
                invariant: "epochs-grow",
                at: promotion.at,
                message: format!(
                    "{} promoted at epoch {} after epoch {previous}",
                    promotion.instance, promotion.epoch
                ),
            });
        }
        last.insert(&promotion.instance, promotion.epoch);
    }
}
