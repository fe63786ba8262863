//! Random secrets and names: passwords, tokens, instance names and host ids. The RNG is handed in
//! (seeded from the OS in production, from the seed in the simulation), never taken from a global.

use rand::distributions::Alphanumeric;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use std::sync::Mutex;

/// Length of generated passwords and tokens: 32 alphanumerics ≈ 190 bits.
pub const SECRET_LENGTH: usize = 32;

pub struct Secrets {
    rng: Mutex<StdRng>,
}

impl Secrets {
    /// Seeded from the operating system's entropy.
    pub fn from_os() -> Self {
        Self {
            rng: Mutex::new(StdRng::from_entropy()),
        }
    }

    /// Deterministic, for tests and the simulation.
    pub fn from_seed(seed: u64) -> Self {
        Self {
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut StdRng) -> T) -> T {
        let mut rng = self
            .rng
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut rng)
    }

    pub fn password(&self) -> String {
        self.with(|rng| {
            rng.sample_iter(&Alphanumeric)
                .take(SECRET_LENGTH)
                .map(char::from)
                .collect()
        })
    }

    pub fn instance_name(&self) -> String {
        let (a, b) = self.with(|rng| (rng.next_u64(), rng.next_u64()));
        kvs_proto::names::instance_name(a, b)
    }

    pub fn host_id(&self, zone: &str) -> String {
        let suffix = self.with(|rng| rng.next_u32());
        let zone: String = zone
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(16)
            .collect();
        format!("h-{zone}-{suffix:08x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_secrets_repeat_and_look_right() {
        let (a, b) = (Secrets::from_seed(7), Secrets::from_seed(7));
        assert_eq!(a.password(), b.password());
        let p = a.password();
        assert_eq!(p.len(), SECRET_LENGTH);
        assert!(p.chars().all(|c| c.is_ascii_alphanumeric()));
        assert!(a.instance_name().starts_with("redis-"));
        assert!(a.host_id("zone a").starts_with("h-zonea-"));
    }
}
