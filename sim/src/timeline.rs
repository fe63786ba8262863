//! The readable record of one run: `(simulated time, who, event)` lines, and the trace hash.
//!
//! The hash is FNV-1a (64 bit) over every line as printed, so two runs with the same seed print
//! the same hash exactly when they printed the same timeline. std's `RandomState` is seeded per
//! process and would make the hash useless across runs.

use std::fmt::Write as _;
use std::time::Duration;

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a over `bytes`, continuing from `hash`.
pub fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Simulated time since the world started.
    pub at: Duration,
    /// `leader`, `client`, `fault`, a host id, …
    pub who: String,
    pub what: String,
}

impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seconds = self.at.as_secs();
        let millis = self.at.subsec_millis();
        write!(
            f,
            "{seconds:>5}.{millis:03}s  {:<8} {}",
            self.who, self.what
        )
    }
}

/// Every entry of a run, and the running hash of their printed form.
#[derive(Debug, Clone)]
pub struct Timeline {
    entries: Vec<Entry>,
    hash: u64,
}

impl Default for Timeline {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            hash: FNV_OFFSET_BASIS,
        }
    }
}

impl Timeline {
    pub fn push(&mut self, at: Duration, who: &str, what: String) {
        let entry = Entry {
            at,
            who: who.to_string(),
            what,
        };
        let mut line = String::new();
        let _infallible = writeln!(line, "{entry}");
        self.hash = fnv1a(self.hash, line.as_bytes());
        self.entries.push(entry);
    }

    /// The trace hash: FNV-1a of every printed line.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The last `count` entries, printed.
    pub fn tail(&self, count: usize) -> String {
        let start = self.entries.len().saturating_sub(count);
        let mut text = String::new();
        for entry in &self.entries[start..] {
            let _infallible = writeln!(text, "{entry}");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a(FNV_OFFSET_BASIS, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(FNV_OFFSET_BASIS, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(FNV_OFFSET_BASIS, b"foobar"), 0x8594_4171_f739_67e8);
    }
}
