//! Every loss of acknowledged writes without a replica's `WAIT` is reported, and not under-
//! reported: the instance events (read through the Admin API, as an operator would) must add up
//! to at least the bytes of the acknowledged writes the final primary lacks (DESIGN §4 rule 4:
//! "record the estimated data loss (offset gap) as an event").
//!
//! Why a figure and not just a mention: every completed failover writes "estimated data loss
//! N bytes", so "some event mentions a loss" holds even when N is 0 and writes were lost. The
//! simulation knows the truth: an engine's dataset is a list of write ids, its offset
//! `len × WRITE_BYTES` (engines.rs), the coordinator's arithmetic is in the same bytes, and
//! `History::acknowledged` holds every write a client saw acknowledged.
//!
//! The rule, per instance with one final primary:
//!
//! ```text
//!   reported = Σ over failovers of the largest figure of its completion and corrections
//!            + Σ of every other event's figure (an abort, a primary resumed after a reboot)
//!   missing  = acknowledged writes without a replica's WAIT that the final primary lacks
//!   holds when reported ≥ missing × WRITE_BYTES
//! ```
//!
//! "unknown": a failover completed with "estimated data loss unknown" (the deciding leader never
//! saw the old primary's offset, e.g. it was elected while the primary was cut off) covers any
//! amount until a correction for that failover gives bytes, which then count instead: the
//! operator was told writes may be lost and that nobody knew how many, and once the old primary
//! reports what it had, the coordinator knows. The wording is parsed in `loss_reports.rs`. Writes acknowledged with a
//! replica's `WAIT` are the `acked-writes` invariant's: those must never be lost at all.

use super::{Finals, end_of, missing_writes};
use crate::run::Violation;
use crate::stack::engines::WRITE_BYTES;
use crate::stack::history::History;
use crate::stack::loss_reports::{self, Reported};

/// The events add up to at least the bytes of the acknowledged writes (without a replica's
/// `WAIT`) that each instance's final primary lacks.
pub(super) fn losses_reported(history: &History, finals: &Finals, violations: &mut Vec<Violation>) {
    for missing in missing_writes(history, finals, false) {
        let events = history.events.get(&missing.instance);
        let messages = events.into_iter().flatten().map(|(_, m)| m.as_str());
        let lost = missing.ids.len() as u64 * WRITE_BYTES;
        let reported = match loss_reports::reported(messages) {
            Reported::Unknown => continue,
            Reported::Bytes(bytes) if bytes >= lost => continue,
            Reported::Bytes(bytes) => bytes,
        };
        violations.push(Violation {
            invariant: "losses-reported",
            at: end_of(history),
            message: format!(
                "{}: {} acknowledged writes ({lost} bytes) are not on the final primary {}, but \
                 the instance events report {reported} bytes lost (first missing {:?})",
                missing.instance,
                missing.ids.len(),
                missing.host,
                &missing.ids[..missing.ids.len().min(5)]
            ),
        });
    }
}
