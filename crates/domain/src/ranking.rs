//! Ranking: a total, deterministic order of scored proposals.

use std::cmp::Ordering;

use crate::agent::AgentId;
use crate::scoring::Score;

/// What a proposal is ranked by.
#[derive(Debug, Clone, PartialEq)]
pub struct RankKey {
    pub score: Score,
    pub failed_checks: usize,
    pub created_at_ms: i64,
    pub agent: AgentId,
}

impl RankKey {
    /// Higher score first; ties go to fewer failed checks, then the earlier proposal, then the
    /// smaller agent id, so the same inputs always give the same winner.
    pub fn order(&self, other: &Self) -> Ordering {
        other
            .score
            .value()
            .total_cmp(&self.score.value())
            .then(self.failed_checks.cmp(&other.failed_checks))
            .then(self.created_at_ms.cmp(&other.created_at_ms))
            .then_with(|| self.agent.cmp(&other.agent))
    }
}

/// Sorts items best first by their key and pairs each with its 1-based rank.
pub fn rank<T>(mut items: Vec<T>, key: impl Fn(&T) -> &RankKey) -> Vec<(u32, T)> {
    items.sort_by(|a, b| key(a).order(key(b)));
    items.into_iter().zip(1u32..).map(|(item, rank)| (rank, item)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(agent: &str, score: f64, failed: usize, at: i64) -> RankKey {
        RankKey {
            score: Score::new(score).unwrap(),
            failed_checks: failed,
            created_at_ms: at,
            agent: AgentId::new(agent).unwrap(),
        }
    }

    fn order(keys: Vec<RankKey>) -> Vec<String> {
        rank(keys, |k| k).into_iter().map(|(_, k)| k.agent.to_string()).collect()
    }

    #[test]
    fn winner_is_highest_score() {
        assert_eq!(
            order(vec![key("a", 0.2, 0, 0), key("b", 0.9, 0, 0), key("c", 0.5, 0, 0)]),
            ["b", "c", "a"]
        );
    }

    #[test]
    fn ties_go_to_fewer_failed_checks_then_earlier_then_id() {
        assert_eq!(order(vec![key("a", 0.5, 2, 0), key("b", 0.5, 1, 9)]), ["b", "a"]);
        assert_eq!(order(vec![key("a", 0.5, 1, 9), key("b", 0.5, 1, 3)]), ["b", "a"]);
        assert_eq!(order(vec![key("b", 0.5, 1, 3), key("a", 0.5, 1, 3)]), ["a", "b"]);
    }

    #[test]
    fn ranks_are_one_based_and_consecutive() {
        let ranked = rank(vec![key("a", 0.1, 0, 0), key("b", 0.2, 0, 0), key("c", 0.3, 0, 0)], |k| k);
        assert_eq!(ranked.iter().map(|(r, _)| *r).collect::<Vec<_>>(), [1, 2, 3]);
    }
}
