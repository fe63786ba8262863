//! The fault plans of each scenario, drawn from the seed (see `scenario.rs` for the edges
//! the durations are biased toward).

use std::time::Duration;

use kvs_coordinator::control::HaConfig;
use rand::Rng;
use rand::rngs::StdRng;

use super::{CHAOS_END_SECONDS, WARMUP};
use crate::faults::{Action, Cut, Fault, FaultKind, FaultPlan, Target, ZoneTarget};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub(super) struct Gen<'a> {
    pub rng: &'a mut StdRng,
    pub config: HaConfig,
    pub plan: FaultPlan,
}

impl Gen<'_> {
    /// A fault start inside the chaos phase.
    fn start(&mut self) -> Duration {
        secs(self.rng.gen_range(WARMUP.as_secs() + 10..CHAOS_END_SECONDS))
    }

    /// A duration biased toward the rules' edges.
    fn edge(&mut self) -> Duration {
        let window = self.config.confirmation_window.as_secs();
        let fence = self.config.fence_after.as_secs();
        if self.rng.gen_bool(0.25) {
            return secs(self.rng.gen_range(1..=window * 3));
        }
        let bases = [
            window,
            window + 30,
            window + 35,
            fence,
            fence + 60,
            window * 2 + 30,
        ];
        let base = bases[self.rng.gen_range(0..bases.len())];
        secs(
            base.saturating_add_signed(self.rng.gen_range(-3..=3))
                .max(1),
        )
    }

    fn instance(&mut self) -> usize {
        self.rng.gen_range(0..2)
    }

    fn add(&mut self, start: Duration, duration: Duration, kind: FaultKind) {
        self.plan.faults.push(Fault {
            start,
            duration,
            kind,
        });
    }

    fn role_target(&mut self) -> Target {
        let n = self.instance();
        if self.rng.gen_bool(0.7) {
            Target::PrimaryOf(n)
        } else {
            Target::StandbyOf(n)
        }
    }

    fn random_cut(&mut self) -> Cut {
        let n = self.instance();
        match self.rng.gen_range(0..4) {
            0 => Cut::full(),
            1 => Cut {
                coordinators: true,
                all_hosts: false,
                standbys_of: Some(n),
                clients: false,
                one_way: self.rng.gen_bool(0.3),
            },
            2 => Cut {
                coordinators: true,
                all_hosts: false,
                standbys_of: None,
                clients: self.rng.gen_bool(0.5),
                one_way: self.rng.gen_bool(0.3),
            },
            _ => Cut {
                coordinators: false,
                all_hosts: false,
                standbys_of: Some(n),
                clients: false,
                one_way: false,
            },
        }
    }

    pub fn zone_outage(&mut self) {
        let start = self.start();
        let duration = if self.rng.gen_bool(0.5) {
            self.edge()
        } else {
            secs(self.rng.gen_range(200..=400))
        };
        let zone = if self.rng.gen_bool(0.8) {
            ZoneTarget::OfPrimary(self.instance())
        } else {
            ZoneTarget::Named(["a", "b", "c"][self.rng.gen_range(0..3)].into())
        };
        self.add(start, duration, FaultKind::ZoneCut { zone });
    }

    pub fn engine_crash(&mut self) {
        for _ in 0..self.rng.gen_range(1..=4) {
            let start = self.start();
            let crash_loop = self.rng.gen_bool(0.4);
            let duration = if crash_loop {
                secs(self.rng.gen_range(30..=400))
            } else {
                secs(self.rng.gen_range(1..=3))
            };
            let (target, instance) = (self.role_target(), self.instance());
            self.add(
                start,
                duration,
                FaultKind::EngineCrash {
                    target,
                    instance,
                    crash_loop,
                },
            );
        }
    }

    pub fn agent_crash(&mut self) {
        for _ in 0..self.rng.gen_range(1..=3) {
            let start = self.start();
            let duration = self.edge();
            let target = self.role_target();
            self.add(start, duration, FaultKind::AgentHang { target });
        }
    }

    pub fn flapping(&mut self) {
        let start = self.start();
        let window = self.config.confirmation_window.as_secs();
        let on = if self.rng.gen_bool(0.5) {
            window + 30 - self.rng.gen_range(1..=5)
        } else {
            self.rng.gen_range(5..window)
        };
        let off = self.rng.gen_range(1..=10);
        let total = secs(self.rng.gen_range(200..=600));
        let cut = self.random_cut();
        let target = Target::PrimaryOf(self.instance());
        self.add(
            start,
            total,
            FaultKind::Partition {
                target,
                cut,
                flap: Some((on, off)),
            },
        );
    }

    pub fn primary_cut(&mut self) {
        let n = self.instance();
        let start = self.start();
        let duration = secs(self.rng.gen_range(150..=500));
        let one_way = self.rng.gen_bool(0.3);
        let cut = Cut {
            coordinators: true,
            all_hosts: false,
            standbys_of: None,
            clients: false,
            one_way,
        };
        self.add(
            start,
            duration,
            FaultKind::Partition {
                target: Target::PrimaryOf(n),
                cut,
                flap: None,
            },
        );
        if self.rng.gen_bool(0.5) {
            // Later the standby link goes too, while clients still reach the old primary.
            let later = start + secs(self.rng.gen_range(0..=60));
            let cut = Cut {
                coordinators: false,
                all_hosts: false,
                standbys_of: Some(n),
                clients: false,
                one_way: false,
            };
            let duration = self.edge();
            self.add(
                later,
                duration,
                FaultKind::Partition {
                    target: Target::PrimaryOf(n),
                    cut,
                    flap: None,
                },
            );
        }
    }

    pub fn leader_lost(&mut self) {
        let n = self.instance();
        let start = self.start();
        let window = self.config.confirmation_window.as_secs();
        let cut = if self.rng.gen_bool(0.5) {
            Cut::full()
        } else {
            self.random_cut()
        };
        let duration = secs(self.rng.gen_range(window + 60..=window + 300));
        self.add(
            start,
            duration,
            FaultKind::Partition {
                target: Target::PrimaryOf(n),
                cut,
                flap: None,
            },
        );
        let at = start + secs(window.saturating_add_signed(self.rng.gen_range(-5..=15)));
        self.plan.actions.push((at, Action::LeaderChange));
        if self.rng.gen_bool(0.4) {
            let again = at + secs(self.rng.gen_range(1..=60));
            self.plan.actions.push((again, Action::LeaderChange));
        }
    }

    fn one_fault(&mut self, start: Duration) {
        let duration = self.edge();
        let kind = match self.rng.gen_range(0..6) {
            0 => FaultKind::HostCrash {
                target: self.role_target(),
                lose_unsynced: false,
            },
            1 => FaultKind::Partition {
                target: self.role_target(),
                cut: self.random_cut(),
                flap: None,
            },
            2 => FaultKind::AgentHang {
                target: self.role_target(),
            },
            3 => FaultKind::EngineCrash {
                target: self.role_target(),
                instance: self.instance(),
                crash_loop: self.rng.gen_bool(0.3),
            },
            4 => FaultKind::ZoneCut {
                zone: ZoneTarget::OfPrimary(self.instance()),
            },
            _ => {
                let host = format!("h{}", self.rng.gen_range(1..=6));
                FaultKind::HostCrash {
                    target: Target::Host(host),
                    lose_unsynced: false,
                }
            }
        };
        self.add(start, duration, kind);
    }

    pub fn double_failure(&mut self) {
        let n = self.instance();
        let start = self.start();
        let first = self.edge();
        self.add(
            start,
            first,
            FaultKind::HostCrash {
                target: Target::PrimaryOf(n),
                lose_unsynced: false,
            },
        );
        let second = start + secs(self.rng.gen_range(0..=first.as_secs().max(1)));
        let kind = match self.rng.gen_range(0..3) {
            0 => FaultKind::HostCrash {
                target: Target::StandbyOf(n),
                lose_unsynced: false,
            },
            1 => FaultKind::AgentHang {
                target: Target::StandbyOf(n),
            },
            _ => FaultKind::Partition {
                target: Target::StandbyOf(n),
                cut: self.random_cut(),
                flap: None,
            },
        };
        let duration = self.edge();
        self.add(second, duration, kind);
    }

    pub fn random(&mut self) {
        for _ in 0..self.rng.gen_range(1..=6) {
            let start = self.start();
            self.one_fault(start);
        }
        for _ in 0..self.rng.gen_range(0..=2) {
            let at = self.start();
            self.plan.actions.push((at, Action::LeaderChange));
        }
        for _ in 0..self.rng.gen_range(0..=2) {
            let at = self.start();
            let instance = self.instance();
            self.plan.actions.push((
                at,
                Action::Switchover {
                    instance,
                    allow_data_loss: false,
                },
            ));
        }
    }

    pub fn power_loss(&mut self) {
        let start = self.start();
        let duration = secs(self.rng.gen_range(5..=60));
        let target = Target::PrimaryOf(self.instance());
        self.add(
            start,
            duration,
            FaultKind::HostCrash {
                target,
                lose_unsynced: true,
            },
        );
    }
}
