//! Peer reviews.

use serde::{Deserialize, Serialize};

use crate::agent::AgentId;
use crate::error::{DomainError, Result};

/// A reviewer's grade of a proposal, 0 (unusable) to 10 (excellent).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct PeerScore(f64);

impl PeerScore {
    pub const MAX: f64 = 10.0;

    /// # Errors
    /// Field `score` when not a finite number in 0..=10.
    pub fn new(value: f64) -> Result<Self> {
        if value.is_finite() && (0.0..=Self::MAX).contains(&value) {
            Ok(Self(value))
        } else {
            Err(DomainError::invalid("score", format!("must be within 0..=10, got {value}")))
        }
    }

    pub fn value(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for PeerScore {
    type Error = DomainError;

    fn try_from(value: f64) -> Result<Self> {
        Self::new(value)
    }
}

impl From<PeerScore> for f64 {
    fn from(score: PeerScore) -> Self {
        score.0
    }
}

/// One agent's critique of another's proposal in one round.
///
/// `score` is `None` when the reviewer's answer held no usable grade: such a review still
/// reaches the author as critique, but is left out of the peer mean rather than guessed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Review {
    pub reviewer: AgentId,
    pub target: AgentId,
    pub round: u32,
    pub critique: String,
    pub score: Option<PeerScore>,
    pub issues: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_score_accepts_zero_to_ten() {
        assert_eq!(PeerScore::new(0.0).unwrap().value(), 0.0);
        assert_eq!(PeerScore::new(10.0).unwrap().value(), 10.0);
        assert_eq!(PeerScore::new(7.5).unwrap().value(), 7.5);
    }

    #[test]
    fn peer_score_rejects_out_of_range_and_nan() {
        for bad in [-0.1, 10.01, f64::NAN, f64::INFINITY] {
            assert!(PeerScore::new(bad).is_err(), "{bad} accepted");
        }
    }
}
