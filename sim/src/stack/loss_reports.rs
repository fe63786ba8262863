//! The data-loss figures in the coordinator's instance events, as the operator reads them
//! (`kvs events`): what the `losses-reported` invariant adds up, and what the `loss-zero` break
//! rewrites. The one place that knows the wording.
//!
//! ```text
//!   "failover to host h2 (zone b), epoch 3, estimated data loss 1200 bytes"        failover 3
//!   "failover at epoch 3: corrected estimate of data loss 4100 bytes (…)"          failover 3
//!   "failover to host h2 aborted: …: estimated data loss 300 bytes; …"             this event
//!   "primary host h1 rebooted; …; estimated data loss 200 bytes; the primary resumes …"  this event
//!   "… estimated data loss unknown (primary offset never observed)"               unknown
//! ```
//!
//! A figure follows the words "data loss ": a byte count (`N bytes`) or `unknown`. A failover's
//! completion and its corrections describe one loss (the largest byte figure counts, and a
//! correction's bytes replace an "unknown" completion); every other event with a figure is a loss
//! of its own. The sum is what the events report for the instance; it is unknown when any loss
//! in it still is.

use std::collections::BTreeMap;

/// The words a loss figure follows.
const MARKER: &str = "data loss ";

/// One event's figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figure {
    Bytes(u64),
    /// The coordinator said it does not know how much was lost.
    Unknown,
}

/// The figure of `message`, if it reports a loss.
pub fn figure(message: &str) -> Option<Figure> {
    let (_, rest) = message.rsplit_once(MARKER)?;
    if rest.starts_with("unknown") {
        return Some(Figure::Unknown);
    }
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let bytes = digits.parse().ok()?;
    rest[digits.len()..]
        .starts_with(" bytes")
        .then_some(Figure::Bytes(bytes))
}

/// The epoch of the failover a completion ("failover to host …, epoch N, …") or a correction
/// ("failover at epoch N: …") reports on.
fn failover_epoch(message: &str) -> Option<u64> {
    let number = |text: &str| -> Option<u64> {
        let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    if let Some(rest) = message.strip_prefix("failover at epoch ") {
        return number(rest);
    }
    if message.starts_with("failover to host ") && !message.contains(" aborted: ") {
        let (_, rest) = message.split_once(", epoch ")?;
        return number(rest);
    }
    None
}

/// What the events of one instance report lost, in total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reported {
    Bytes(u64),
    /// At least one event said the loss is unknown.
    Unknown,
}

/// Adds up the figures of an instance's events: each failover counted once, at its largest byte
/// figure (a correction with bytes replaces an "unknown" completion).
pub fn reported<'a>(messages: impl IntoIterator<Item = &'a str>) -> Reported {
    // failover epoch → its largest byte figure (None: only "unknown" so far).
    let mut failovers: BTreeMap<u64, Option<u64>> = BTreeMap::new();
    let mut others = Reported::Bytes(0);
    for message in messages {
        let Some(figure) = figure(message) else {
            continue;
        };
        match (figure, failover_epoch(message)) {
            (Figure::Bytes(bytes), Some(epoch)) => {
                let largest = failovers.entry(epoch).or_default();
                *largest = Some(largest.unwrap_or(0).max(bytes));
            }
            (Figure::Unknown, Some(epoch)) => {
                failovers.entry(epoch).or_default();
            }
            (Figure::Bytes(bytes), None) => others = add(others, Reported::Bytes(bytes)),
            (Figure::Unknown, None) => others = Reported::Unknown,
        }
    }
    failovers.into_values().fold(others, |sum, largest| {
        add(sum, largest.map_or(Reported::Unknown, Reported::Bytes))
    })
}

fn add(a: Reported, b: Reported) -> Reported {
    match (a, b) {
        (Reported::Bytes(a), Reported::Bytes(b)) => Reported::Bytes(a.saturating_add(b)),
        _ => Reported::Unknown,
    }
}

/// `message` with every loss figure made 0 bytes (the `loss-zero` break).
pub fn zeroed(message: &str) -> String {
    let Some((before, rest)) = message.rsplit_once(MARKER) else {
        return message.to_string();
    };
    let tail = match figure(message) {
        Some(Figure::Unknown) => rest.strip_prefix("unknown").unwrap_or(rest),
        Some(Figure::Bytes(_)) => rest.trim_start_matches(|c: char| c.is_ascii_digit()),
        None => return message.to_string(),
    };
    let tail = tail.strip_prefix(" bytes").unwrap_or(tail);
    format!("{before}{MARKER}0 bytes{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPLETED: &str = "failover to host h2 (zone b), epoch 3, estimated data loss 1200 bytes";
    const CORRECTED: &str = "failover at epoch 3: corrected estimate of data loss 4100 bytes \
                             (the old primary took writes after its last report)";
    const ABORTED: &str = "failover to host h2 aborted: host h2 did not report; the old primary \
                           restarted short of what it had acknowledged: estimated data loss 300 \
                           bytes; primary stays on host h1 at epoch 5";
    const UNKNOWN: &str = "failover to host h2 (zone b), epoch 2, estimated data loss unknown \
                           (primary offset never observed)";

    #[test]
    fn figures_are_read_after_data_loss() {
        assert_eq!(figure(COMPLETED), Some(Figure::Bytes(1200)));
        assert_eq!(figure(CORRECTED), Some(Figure::Bytes(4100)));
        assert_eq!(figure(ABORTED), Some(Figure::Bytes(300)));
        assert_eq!(figure(UNKNOWN), Some(Figure::Unknown));
        assert_eq!(figure("standby placed on host h3 (zone c) port 6380"), None);
        assert_eq!(failover_epoch(COMPLETED), Some(3));
        assert_eq!(failover_epoch(CORRECTED), Some(3));
        assert_eq!(failover_epoch(ABORTED), None);
    }

    #[test]
    fn a_correction_replaces_its_failover_s_figure_and_other_losses_add_up() {
        assert_eq!(reported([COMPLETED, CORRECTED]), Reported::Bytes(4100));
        assert_eq!(reported([CORRECTED, COMPLETED]), Reported::Bytes(4100));
        assert_eq!(reported([COMPLETED, ABORTED]), Reported::Bytes(1500));
        assert_eq!(reported([COMPLETED, UNKNOWN]), Reported::Unknown);
        let unknown_corrected = "failover at epoch 2: corrected estimate of data loss 700 bytes";
        assert_eq!(
            reported([COMPLETED, UNKNOWN, unknown_corrected]),
            Reported::Bytes(1900)
        );
        assert_eq!(reported([]), Reported::Bytes(0));
    }

    #[test]
    fn the_break_makes_every_figure_zero() {
        assert_eq!(
            zeroed(COMPLETED),
            "failover to host h2 (zone b), epoch 3, estimated data loss 0 bytes"
        );
        assert_eq!(figure(&zeroed(ABORTED)), Some(Figure::Bytes(0)));
        assert!(zeroed(ABORTED).ends_with("; primary stays on host h1 at epoch 5"));
        assert_eq!(figure(&zeroed(UNKNOWN)), Some(Figure::Bytes(0)));
        assert_eq!(zeroed("standby removed"), "standby removed");
    }
}
