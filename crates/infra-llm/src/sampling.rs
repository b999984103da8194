//! Sampling per call: how agents on one model are kept from writing the same answer.
//!
//! The rule, in one place:
//!
//! * **Writing** (propose, revise): seat `i` samples at `base + offset(i)`, clamped to `[0, 2]`,
//!   where the offsets go `0, +s, −s, +2s, −2s, +3s, −3s, +3s, −3s, …` with `s` =
//!   [`TEMPERATURE_STEP`]: seats alternate above and below the profile's temperature, no further
//!   than three steps from it, so a large council stays near the configured setting.
//! * **Judging** (review, select): every seat samples at `min(base, `[`JUDGE_TEMPERATURE`]`)`:
//!   grades and choices should depend on the proposal, not on the dice, and small models keep
//!   their JSON well-formed more often when cold.
//! * **Seed**: every call sends `seed = `[`SEED_BASE`]` + seat`, so seats differ even where the
//!   temperature clamps to the same value (or is 0), and a rerun of a council is reproducible on
//!   servers that honour seeds.

use crate::profile::MAX_TEMPERATURE;
use crate::prompts::PromptKind;

/// Temperature distance between neighbouring seats when writing.
pub const TEMPERATURE_STEP: f64 = 0.15;
/// How many steps from the base temperature a seat may go.
pub const MAX_STEPS: usize = 3;
/// Temperature ceiling of review and selection calls.
pub const JUDGE_TEMPERATURE: f64 = 0.3;
/// Seed of seat 0; seat `i` gets `SEED_BASE + i`.
pub const SEED_BASE: u64 = 1_000;

/// Temperature and seed of one call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sampling {
    pub(crate) temperature: f64,
    pub(crate) seed: u64,
}

/// The sampling of the agent in `seat` for `phase`, on a profile whose temperature is `base`.
pub(crate) fn sampling(base: f64, seat: usize, phase: PromptKind) -> Sampling {
    let temperature = match phase {
        PromptKind::Propose | PromptKind::Revise => {
            let steps = seat.div_ceil(2).min(MAX_STEPS) as f64;
            let sign = if seat % 2 == 1 { 1.0 } else { -1.0 };
            base + sign * steps * TEMPERATURE_STEP
        }
        PromptKind::Review | PromptKind::Select => base.min(JUDGE_TEMPERATURE),
    };
    let temperature = (temperature.clamp(0.0, MAX_TEMPERATURE) * 1000.0).round() / 1000.0;
    Sampling { temperature, seed: SEED_BASE + seat as u64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writing(base: f64, seat: usize) -> f64 {
        sampling(base, seat, PromptKind::Propose).temperature
    }

    #[test]
    fn writing_seats_alternate_around_the_base() {
        let temps: Vec<f64> = (0..7).map(|seat| writing(0.7, seat)).collect();
        assert_eq!(temps, vec![0.7, 0.85, 0.55, 1.0, 0.4, 1.15, 0.25]);
    }

    #[test]
    fn writing_spread_is_capped_and_clamped() {
        assert_eq!(writing(0.7, 7), 1.15);
        assert_eq!(writing(0.7, 8), 0.25);
        assert_eq!(writing(0.0, 2), 0.0);
        assert_eq!(writing(1.95, 1), 2.0);
        assert_eq!(sampling(0.7, 3, PromptKind::Revise).temperature, 1.0);
    }

    #[test]
    fn judging_is_cold_and_the_same_for_every_seat() {
        for seat in 0..5 {
            assert_eq!(sampling(0.7, seat, PromptKind::Review).temperature, JUDGE_TEMPERATURE);
            assert_eq!(sampling(0.1, seat, PromptKind::Select).temperature, 0.1);
        }
    }

    #[test]
    fn every_seat_gets_its_own_seed() {
        let seeds: Vec<u64> = (0..4).map(|seat| sampling(0.0, seat, PromptKind::Propose).seed).collect();
        assert_eq!(seeds, vec![1000, 1001, 1002, 1003]);
        assert_eq!(sampling(0.7, 2, PromptKind::Review).seed, 1002);
    }
}
