//! Who reviews whom: a ring over the surviving agents in seat order.
//!
//! In round `r` (1-based) the agent at position `i` of `n` reviews the one at
//! `(i + offset(r)) mod n`, where `offset(r) = ((r − 1) mod (n − 1)) + 1`. So round 1 reviews
//! the next peer, round 2 the one after, and so on; the offset is never 0 or `n`, so nobody
//! ever reviews itself, and it is a rotation, so everyone is reviewed exactly once a round.

/// For each reviewer position `0..n`, the position of the proposal it reviews in `round`
/// (1-based). Empty when fewer than two agents are left, since nobody can be reviewed then.
pub fn ring_assignment(n: usize, round: u32) -> Vec<usize> {
    if n < 2 || round == 0 {
        return Vec::new();
    }
    let offset = ((round as usize - 1) % (n - 1)) + 1;
    (0..n).map(|i| (i + offset) % n).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn round_one_reviews_the_next_seat_and_round_two_the_one_after() {
        assert_eq!(ring_assignment(4, 1), [1, 2, 3, 0]);
        assert_eq!(ring_assignment(4, 2), [2, 3, 0, 1]);
        assert_eq!(ring_assignment(3, 3), [1, 2, 0], "the offset wraps before reaching n");
    }

    #[test]
    fn fewer_than_two_agents_or_round_zero_assign_nothing() {
        assert!(ring_assignment(1, 1).is_empty());
        assert!(ring_assignment(0, 1).is_empty());
        assert!(ring_assignment(5, 0).is_empty());
    }

    proptest! {
        #[test]
        fn nobody_reviews_itself_and_everyone_is_reviewed_once(n in 2usize..=64, round in 1u32..=100) {
            let targets = ring_assignment(n, round);
            prop_assert_eq!(targets.len(), n);
            for (reviewer, target) in targets.iter().enumerate() {
                prop_assert_ne!(reviewer, *target);
                prop_assert!(*target < n);
            }
            prop_assert_eq!(targets.iter().collect::<BTreeSet<_>>().len(), n);
        }
    }
}
