//! The fault schedule: derived only from the seed and the number of faults
//! (the rig's topology is fixed), so the same seed replays the same faults
//! in the same order with the same timings.

use std::fmt;
use std::time::Duration;

/// A small deterministic generator (SplitMix64): the same seed gives the
/// same numbers on every machine and every build.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next_u64() % items.len() as u64) as usize]
    }
}

/// What kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `docker kill -s KILL` of a service replica; `docker start` after.
    KillService,
    /// `docker kill -s KILL` of an agent; `docker start` after.
    KillAgent,
    /// `docker kill -s KILL` of one NATS node; `docker start` after.
    KillNats,
    /// `docker stop` (SIGTERM, then SIGKILL) of one NATS node; `docker start` after.
    StopNats,
    /// An agent disconnected from the rig network, reconnected (with its address) after.
    PartitionAgent,
    /// A service disconnected from the rig network, reconnected after.
    PartitionService,
    /// `$JS.API.STREAM.LEADER.STEPDOWN.<stream>`: the stream elects another leader.
    LeaderStepdown,
}

impl Kind {
    /// Every kind, in the table's order.
    pub const ALL: [Kind; 7] = [
        Kind::KillService,
        Kind::KillAgent,
        Kind::KillNats,
        Kind::StopNats,
        Kind::PartitionAgent,
        Kind::PartitionService,
        Kind::LeaderStepdown,
    ];

    /// The name in the schedule and the table.
    pub fn name(self) -> &'static str {
        match self {
            Kind::KillService => "kill-service",
            Kind::KillAgent => "kill-agent",
            Kind::KillNats => "kill-nats",
            Kind::StopNats => "stop-nats",
            Kind::PartitionAgent => "partition-agent",
            Kind::PartitionService => "partition-service",
            Kind::LeaderStepdown => "leader-stepdown",
        }
    }

    /// How often it is drawn, relative to the others.
    fn weight(self) -> u64 {
        match self {
            Kind::KillService => 4,
            Kind::KillAgent => 3,
            Kind::KillNats => 2,
            Kind::StopNats => 1,
            Kind::PartitionAgent => 2,
            Kind::PartitionService => 2,
            Kind::LeaderStepdown => 2,
        }
    }
}

/// The rig's fault targets, in a fixed order (the schedule depends on it).
#[derive(Debug, Clone)]
pub struct Targets {
    /// Service replicas (`api`, `provisioner-1`, …).
    pub services: Vec<String>,
    /// Agent slots (`a-server-1`, …).
    pub agents: Vec<String>,
    /// NATS nodes (`nats-1`, …).
    pub nats: Vec<String>,
    /// Streams whose leader may be asked to step down.
    pub streams: Vec<String>,
}

/// One scheduled fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// 1-based position in the schedule.
    pub n: usize,
    /// What.
    pub kind: Kind,
    /// Whom: a service, an agent slot, a NATS node or a stream.
    pub target: String,
    /// How long the workload runs before the fault.
    pub lead: Duration,
    /// How long the target stays down or cut off (zero for a step-down).
    pub down: Duration,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "#{:<3} {:<17} {:<16} after {:>4} ms, for {:>5} ms",
            self.n,
            self.kind.name(),
            self.target,
            self.lead.as_millis(),
            self.down.as_millis()
        )
    }
}

/// The schedule of `faults` faults for `seed`.
pub fn schedule(seed: u64, faults: usize, targets: &Targets) -> Vec<Fault> {
    let mut rng = Rng::new(seed);
    let total: u64 = Kind::ALL.iter().map(|k| k.weight()).sum();
    (1..=faults)
        .map(|n| {
            let mut draw = rng.range(0, total - 1);
            let kind = *Kind::ALL
                .iter()
                .find(|k| {
                    if draw < k.weight() {
                        true
                    } else {
                        draw -= k.weight();
                        false
                    }
                })
                .expect("the draw is below the total weight");
            let (pool, down) = match kind {
                Kind::KillService => (&targets.services, rng.range(500, 6000)),
                // Past the sensor's 3 s silence threshold about half the time.
                Kind::KillAgent => (&targets.agents, rng.range(1000, 8000)),
                Kind::KillNats | Kind::StopNats => (&targets.nats, rng.range(2000, 10_000)),
                Kind::PartitionAgent => (&targets.agents, rng.range(1000, 8000)),
                Kind::PartitionService => (&targets.services, rng.range(1000, 6000)),
                Kind::LeaderStepdown => (&targets.streams, 0),
            };
            let target = rng.pick(pool).clone();
            Fault {
                n,
                kind,
                target,
                lead: Duration::from_millis(rng.range(500, 3000)),
                down: Duration::from_millis(down),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets() -> Targets {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect();
        Targets {
            services: v(&["api", "failover-1", "sensor"]),
            agents: v(&["a-server-1", "b-server-1"]),
            nats: v(&["nats-1", "nats-2", "nats-3"]),
            streams: v(&["EVENTS"]),
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        let a = schedule(42, 200, &targets());
        let b = schedule(42, 200, &targets());
        assert_eq!(a, b);
        // A longer schedule begins with the shorter one.
        assert_eq!(schedule(42, 20, &targets())[..], a[..20]);
    }

    #[test]
    fn other_seeds_give_other_schedules_with_every_kind() {
        let a = schedule(1, 200, &targets());
        let b = schedule(2, 200, &targets());
        assert_ne!(a, b);
        for k in Kind::ALL {
            assert!(a.iter().any(|f| f.kind == k), "{} never drawn", k.name());
        }
        for f in &a {
            let pool = match f.kind {
                Kind::KillService | Kind::PartitionService => &targets().services,
                Kind::KillAgent | Kind::PartitionAgent => &targets().agents,
                Kind::KillNats | Kind::StopNats => &targets().nats,
                Kind::LeaderStepdown => &targets().streams,
            };
            assert!(pool.contains(&f.target), "{f}");
            assert!(f.lead >= Duration::from_millis(500));
            assert_eq!(f.down.is_zero(), f.kind == Kind::LeaderStepdown, "{f}");
        }
    }

    #[test]
    fn splitmix_matches_its_reference_output() {
        // SplitMix64 seeded with 0: the reference implementation's first outputs.
        let mut r = Rng::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }
}
