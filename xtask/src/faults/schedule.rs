//! The seeded plan of a fault-injection round: a small deterministic
//! random number generator ([`Rng`], SplitMix64) and [`plan`], which gives
//! every trial its verb, the point of the verb's run at which `rpod` is
//! killed (a fraction of its measured duration), whether the whole
//! process group is killed or only `rpod` itself, and (for `--network`
//! rounds) whether the trial's containers publish a port.
//!
//! Each trial draws from its own generator, derived from the round's seed
//! and the trial's number, so `--seed S --trial T` replays trial `T` of
//! round `S` alone, exactly as it ran in the whole round.

use std::time::Duration;

/// Delays are drawn uniformly in `[0, KILL_SPAN × duration]`.
pub const KILL_SPAN: f64 = 1.2;

/// The share of trials that kill the whole process group instead of the
/// `rpod` process alone.
const GROUP_KILL_SHARE: f64 = 1.0 / 3.0;

/// The share of trials whose containers publish a port (`--network`).
const PUBLISH_SHARE: f64 = 0.5;

/// SplitMix64: tiny, fast and good enough to spread kill points; the same
/// seed always gives the same sequence.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator starting at `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The generator of trial `trial` of round `seed`.
    pub fn for_trial(seed: u64, trial: u32) -> Rng {
        let mut mix = Rng(seed ^ u64::from(trial).wrapping_mul(0xA076_1D64_78BD_642F));
        Rng(mix.next_u64())
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform float in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        // The top 53 bits, exactly representable.
        #[allow(clippy::cast_precision_loss)]
        let bits = (self.next_u64() >> 11) as f64;
        bits / (1u64 << 53) as f64
    }
}

/// How the verb's `rpod` is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillMode {
    /// `kill -KILL <pid>`: only `rpod`; its children (runc, an exec'd
    /// process) live on.
    Pid,
    /// `kill -KILL -<pgid>`: `rpod` and every child still in its process
    /// group (conmon double-forks and calls setsid, so it is never hit).
    Group,
}

impl KillMode {
    /// Short name for the report.
    pub fn name(self) -> &'static str {
        match self {
            KillMode::Pid => "pid",
            KillMode::Group => "group",
        }
    }
}

/// What one trial does.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialPlan {
    /// 1-based trial number.
    pub trial: u32,
    /// Index into the round's verb list.
    pub verb: usize,
    /// Kill point as a fraction of the verb's measured duration, in
    /// `[0, KILL_SPAN)`.
    pub fraction: f64,
    /// Whom the kill hits.
    pub mode: KillMode,
    /// In a `--network` round: the containers publish a loopback port.
    pub publish: bool,
}

impl TrialPlan {
    /// The kill delay for a verb that typically takes `duration`.
    pub fn delay(&self, duration: Duration) -> Duration {
        duration.mul_f64(self.fraction)
    }
}

/// The plan of trial `trial` (1-based) of round `seed` over `verbs` verbs:
/// verbs go round-robin (starting at a seed-chosen verb, so every verb gets
/// its share of the trials), the kill point and mode are drawn from the
/// trial's own generator.
pub fn plan_trial(seed: u64, trial: u32, verbs: usize) -> TrialPlan {
    let verbs = verbs.max(1);
    let verbs_u64 = u64::try_from(verbs).unwrap_or(1);
    let start = usize::try_from(seed % verbs_u64).unwrap_or(0);
    let index = usize::try_from(trial.saturating_sub(1)).unwrap_or(0);
    let mut rng = Rng::for_trial(seed, trial);
    let fraction = rng.next_f64() * KILL_SPAN;
    let mode = if rng.next_f64() < GROUP_KILL_SHARE {
        KillMode::Group
    } else {
        KillMode::Pid
    };
    // Drawn last, so the kill points of a seed are those of rounds
    // without the network.
    let publish = rng.next_f64() < PUBLISH_SHARE;
    TrialPlan {
        trial,
        verb: (start + index) % verbs,
        fraction,
        mode,
        publish,
    }
}

/// The plans of trials `1..=trials`.
pub fn plan(seed: u64, trials: u32, verbs: usize) -> Vec<TrialPlan> {
    (1..=trials).map(|t| plan_trial(seed, t, verbs)).collect()
}

/// A seed for a round started without `--seed`: the clock mixed with our PID.
pub fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    #[allow(clippy::cast_possible_truncation)]
    let low = nanos as u64;
    let mut rng = Rng::new(low ^ (u64::from(std::process::id()) << 32));
    // Keep seeds short enough to type.
    rng.next_u64() % 1_000_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_plan() {
        assert_eq!(plan(42, 50, 15), plan(42, 50, 15));
        assert_ne!(plan(42, 50, 15), plan(43, 50, 15));
    }

    #[test]
    fn a_trial_replays_alone() {
        let round = plan(7, 30, 15);
        for p in &round {
            assert_eq!(&plan_trial(7, p.trial, 15), p);
        }
    }

    #[test]
    fn verbs_round_robin() {
        let round = plan(3, 30, 15);
        for verb in 0..15 {
            assert_eq!(round.iter().filter(|p| p.verb == verb).count(), 2);
        }
    }

    #[test]
    fn delays_span_the_duration() {
        let round = plan(11, 2000, 15);
        assert!(round.iter().all(|p| (0.0..KILL_SPAN).contains(&p.fraction)));
        // Uniform: some early, some late, some past the end.
        assert!(round.iter().any(|p| p.fraction < 0.1));
        assert!(round.iter().any(|p| p.fraction > 1.0));
        let mean = round.iter().map(|p| p.fraction).sum::<f64>() / 2000.0;
        assert!((mean - KILL_SPAN / 2.0).abs() < 0.05, "mean {mean}");
        let groups = round.iter().filter(|p| p.mode == KillMode::Group).count();
        assert!((500..850).contains(&groups), "{groups} group kills");
        let publish = round.iter().filter(|p| p.publish).count();
        assert!((850..1150).contains(&publish), "{publish} publishing");
        let d = round[0].delay(Duration::from_millis(100));
        assert!(d <= Duration::from_millis(120));
    }

    #[test]
    fn known_sequence() {
        // SplitMix64's reference output for seed 0.
        let mut rng = Rng::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }
}
