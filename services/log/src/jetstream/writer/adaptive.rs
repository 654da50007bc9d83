//! The adaptive group commit's decision: how to send one wave of queued
//! appends, as one atomic batch or as pipelined single publishes, by what
//! each has cost on the server the writer talks to.
//!
//! Which is faster depends on the server, not on the code: with
//! `sync_interval: always` every single publish is one disk flush, so an
//! atomic batch (one flush) wins from a few appends on; without it an R1
//! server stages every atomic batch in a store of its own, a fixed cost of
//! milliseconds that singles never pay. A replicated stream sits in between.
//! So the writer measures both and keeps the cheaper.
//!
//! Waves are grouped by size into power-of-two buckets (1, 2–3, 4–7, …,
//! 512–1023). For each bucket and each way of sending, the model keeps an
//! EWMA of the cost *per append* (the time from the first message sent to
//! the last answer received, divided by the wave's size). A wave goes the
//! cheaper way; a way never tried in its bucket is tried first. The other
//! way is tried again now and then, to notice when the server changes: after
//! [`EXPLORE_BASE`] × (its cost / the winner's cost) waves of the bucket,
//! capped at [`EXPLORE_MAX_INTERVAL`]. A way that is k times dearer is tried
//! once every 16·k waves, so exploring costs at most about 1/16 of the
//! winner's time whatever k is, while a close second is re-checked often.
//!
//! Pure logic, no clock and no I/O: the writer reports what each wave cost
//! ([`Model::observe`]), and the tests below drive it with made-up costs.

use std::time::Duration;

/// How one wave is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// One atomic batch: one commit, one flush.
    Atomic,
    /// Separate publishes, back to back, their acks awaited together.
    Singles,
}

impl Shape {
    fn other(self) -> Self {
        match self {
            Shape::Atomic => Shape::Singles,
            Shape::Singles => Shape::Atomic,
        }
    }
}

/// A decision: the shape, and whether it was taken only to re-measure it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Choice {
    /// How to send the wave.
    pub shape: Shape,
    /// True when the model expects the other shape to be cheaper (or has
    /// not tried this one in the bucket yet) and sends this way to measure it.
    pub exploring: bool,
}

/// Size buckets: 1, 2–3, 4–7, …, 512–1023 (the server takes 1000 at most).
const BUCKETS: usize = 10;
/// Weight of a new measurement in the running average.
const ALPHA: f64 = 0.25;
/// The loser of a bucket is re-measured after this many waves times how
/// many times dearer it was (see the module docs).
pub(crate) const EXPLORE_BASE: f64 = 16.0;
/// Longest gap, in waves of a bucket, between two measurements of its loser.
pub(crate) const EXPLORE_MAX_INTERVAL: u64 = 4096;

/// Running cost of one shape in one bucket.
#[derive(Debug, Clone, Copy, Default)]
struct Estimate {
    /// Microseconds per append; `None` until measured.
    per_append_us: Option<f64>,
}

impl Estimate {
    fn update(&mut self, sample: f64) {
        self.per_append_us = Some(match self.per_append_us {
            None => sample,
            Some(old) => old + ALPHA * (sample - old),
        });
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    atomic: Estimate,
    singles: Estimate,
    /// Waves decided in this bucket since the loser was last sent.
    since_loser: u64,
}

impl Bucket {
    fn estimate(&mut self, shape: Shape) -> &mut Estimate {
        match shape {
            Shape::Atomic => &mut self.atomic,
            Shape::Singles => &mut self.singles,
        }
    }
}

/// The cost model of the adaptive writer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Model {
    buckets: [Bucket; BUCKETS],
}

fn bucket_of(n: usize) -> usize {
    let n = n.max(1);
    (usize::BITS - 1 - n.leading_zeros()).min(BUCKETS as u32 - 1) as usize
}

impl Model {
    /// How to send a wave of `n` unguarded appends. A lone append always
    /// goes as a single publish (a batch of one only adds the batch's cost).
    pub(crate) fn choose(&mut self, n: usize) -> Choice {
        if n <= 1 {
            return Choice {
                shape: Shape::Singles,
                exploring: false,
            };
        }
        let b = &mut self.buckets[bucket_of(n)];
        let (atomic, singles) = (b.atomic.per_append_us, b.singles.per_append_us);
        let (winner, winner_cost, loser_cost) = match (atomic, singles) {
            // Untried ways first: atomic (one flush, the production guess).
            (None, _) => {
                return Choice {
                    shape: Shape::Atomic,
                    exploring: true,
                }
            }
            (Some(_), None) => {
                return Choice {
                    shape: Shape::Singles,
                    exploring: true,
                }
            }
            (Some(a), Some(s)) if a <= s => (Shape::Atomic, a, s),
            (Some(a), Some(s)) => (Shape::Singles, s, a),
        };
        b.since_loser += 1;
        if b.since_loser >= explore_interval(winner_cost, loser_cost) {
            b.since_loser = 0;
            return Choice {
                shape: winner.other(),
                exploring: true,
            };
        }
        Choice {
            shape: winner,
            exploring: false,
        }
    }

    /// What a wave of `n` appends sent as `shape` cost, first message sent
    /// to last answer received. Waves the server did not answer as a whole
    /// (a refused batch, an unreachable server) are not reported.
    pub(crate) fn observe(&mut self, shape: Shape, n: usize, elapsed: Duration) {
        if n == 0 {
            return;
        }
        let per_append = elapsed.as_secs_f64() * 1e6 / n as f64;
        self.buckets[bucket_of(n)]
            .estimate(shape)
            .update(per_append);
    }

    /// Microseconds per append for waves of `n` sent as `shape`, once measured.
    #[cfg(test)]
    pub(crate) fn per_append_us(&self, shape: Shape, n: usize) -> Option<f64> {
        let b = &self.buckets[bucket_of(n)];
        match shape {
            Shape::Atomic => b.atomic.per_append_us,
            Shape::Singles => b.singles.per_append_us,
        }
    }
}

/// Waves between two measurements of the loser: [`EXPLORE_BASE`] times how
/// many times dearer it is, so that the time spent exploring stays about
/// 1/[`EXPLORE_BASE`] of the winner's.
fn explore_interval(winner_cost: f64, loser_cost: f64) -> u64 {
    let ratio = if winner_cost > 0.0 {
        loser_cost / winner_cost
    } else {
        f64::INFINITY
    };
    let waves = (EXPLORE_BASE * ratio).ceil();
    if waves.is_finite() {
        (waves as u64).clamp(EXPLORE_BASE as u64, EXPLORE_MAX_INTERVAL)
    } else {
        EXPLORE_MAX_INTERVAL
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    /// Runs `waves` decisions for waves of `n`, answering each with the
    /// cost `cost(shape)` per append; returns how many went each way.
    fn drive(
        model: &mut Model,
        n: usize,
        waves: usize,
        cost: impl Fn(Shape) -> u64,
    ) -> (usize, usize) {
        let (mut atomic, mut singles) = (0, 0);
        for _ in 0..waves {
            let c = model.choose(n);
            match c.shape {
                Shape::Atomic => atomic += 1,
                Shape::Singles => singles += 1,
            }
            model.observe(c.shape, n, us(cost(c.shape) * n as u64));
        }
        (atomic, singles)
    }

    #[test]
    fn sizes_fall_into_power_of_two_buckets() {
        let cases = [
            (0, 0),
            (1, 0),
            (2, 1),
            (3, 1),
            (4, 2),
            (63, 5),
            (64, 6),
            (511, 8),
            (512, 9),
            (1000, 9),
            (5000, 9),
        ];
        for (n, b) in cases {
            assert_eq!(bucket_of(n), b, "n = {n}");
        }
    }

    #[test]
    fn a_lone_append_is_always_a_single_publish() {
        let mut m = Model::default();
        // Even when atomic batches of one were measured cheaper.
        m.observe(Shape::Atomic, 1, us(1));
        m.observe(Shape::Singles, 1, us(1000));
        for _ in 0..100 {
            assert_eq!(m.choose(1).shape, Shape::Singles);
        }
    }

    #[test]
    fn given_nothing_measured_when_a_wave_comes_then_atomic_then_singles_are_tried() {
        let mut m = Model::default();
        let first = m.choose(64);
        assert_eq!(
            first,
            Choice {
                shape: Shape::Atomic,
                exploring: true
            }
        );
        m.observe(Shape::Atomic, 64, us(3_000));
        let second = m.choose(64);
        assert_eq!(
            second,
            Choice {
                shape: Shape::Singles,
                exploring: true
            }
        );
        // A measurement of another bucket does not count for this one.
        m.observe(Shape::Singles, 8, us(100));
        assert_eq!(m.choose(64).shape, Shape::Singles);
    }

    #[test]
    fn given_sync_always_costs_when_waves_come_then_atomic_wins_almost_always() {
        // sync_interval: always: a single costs a flush (200 µs), an atomic
        // batch of 64 costs ~3 ms in all (47 µs per append).
        let mut m = Model::default();
        let (atomic, singles) = drive(&mut m, 64, 2_000, |s| match s {
            Shape::Atomic => 47,
            Shape::Singles => 200,
        });
        assert!(atomic > 1_950, "atomic {atomic}, singles {singles}");
        assert!(singles >= 2, "the loser was never re-measured");
    }

    #[test]
    fn given_a_server_without_sync_when_waves_come_then_singles_win_almost_always() {
        // No sync: singles ~20 µs each, an atomic batch a fixed ~3 ms.
        let mut m = Model::default();
        let (atomic, singles) = drive(&mut m, 32, 2_000, |s| match s {
            Shape::Atomic => 3_000 / 32,
            Shape::Singles => 20,
        });
        assert!(singles > 1_950, "atomic {atomic}, singles {singles}");
        assert!(atomic >= 2, "the loser was never re-measured");
    }

    #[test]
    fn exploring_costs_at_most_about_a_sixteenth_of_the_winners_time() {
        for ratio in [1.1_f64, 2.0, 5.0, 40.0] {
            let mut m = Model::default();
            let winner = 100.0;
            let loser = winner * ratio;
            let waves = 20_000;
            let mut spent = 0.0;
            for _ in 0..waves {
                let c = m.choose(100);
                let cost = match c.shape {
                    Shape::Atomic => winner,
                    Shape::Singles => loser,
                };
                spent += cost;
                m.observe(c.shape, 100, Duration::from_secs_f64(cost * 100.0 / 1e6));
            }
            let ideal = winner * waves as f64;
            let overhead = spent / ideal - 1.0;
            assert!(
                overhead <= 1.0 / EXPLORE_BASE + 0.01,
                "ratio {ratio}: exploring cost {:.1} % over always choosing the winner",
                overhead * 100.0
            );
        }
    }

    #[test]
    fn given_a_winner_when_the_server_changes_then_the_model_follows() {
        let mut m = Model::default();
        // First the server syncs every write: atomic wins.
        drive(&mut m, 128, 500, |s| match s {
            Shape::Atomic => 30,
            Shape::Singles => 60,
        });
        assert_eq!(m.choose(128).shape, Shape::Atomic);
        // Then singles become four times cheaper than batches.
        let (atomic, singles) = drive(&mut m, 128, 2_000, |s| match s {
            Shape::Atomic => 40,
            Shape::Singles => 10,
        });
        assert!(singles > 1_800, "atomic {atomic}, singles {singles}");
        let mut last = Vec::new();
        for _ in 0..20 {
            let c = m.choose(128);
            last.push(c.shape);
            m.observe(
                c.shape,
                128,
                us(128 * if c.shape == Shape::Atomic { 40 } else { 10 }),
            );
        }
        assert!(
            last.iter().filter(|s| **s == Shape::Singles).count() >= 19,
            "still choosing {last:?}"
        );
    }

    #[test]
    fn buckets_decide_independently() {
        // Small waves: singles cheaper; big waves: atomic cheaper.
        let mut m = Model::default();
        let cost = |n: usize, s: Shape| -> u64 {
            match s {
                Shape::Atomic => 2_500 / n as u64 + 5,
                Shape::Singles => 150,
            }
        };
        for _ in 0..200 {
            for n in [4usize, 256] {
                let c = m.choose(n);
                m.observe(c.shape, n, us(cost(n, c.shape) * n as u64));
            }
        }
        assert_eq!(m.choose(4).shape, Shape::Singles);
        assert_eq!(m.choose(256).shape, Shape::Atomic);
        let a = m.per_append_us(Shape::Atomic, 256).unwrap_or(f64::NAN);
        assert!((a - 14.0).abs() < 1.0, "atomic estimate at 256: {a}");
    }

    #[test]
    fn the_exploring_interval_grows_with_the_gap_and_is_capped() {
        assert_eq!(explore_interval(100.0, 100.0), 16);
        assert_eq!(explore_interval(100.0, 110.0), 18);
        assert_eq!(explore_interval(100.0, 400.0), 64);
        assert_eq!(explore_interval(1.0, 1e9), EXPLORE_MAX_INTERVAL);
        assert_eq!(explore_interval(0.0, 5.0), EXPLORE_MAX_INTERVAL);
    }
}
