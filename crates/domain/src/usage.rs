//! Token and call accounting.

use std::ops::{Add, AddAssign};

use serde::{Deserialize, Serialize};

/// What backend calls cost: tokens as reported by the model server, calls made, time waited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub calls: u64,
    pub latency_ms: u64,
}

impl TokenUsage {
    /// Prompt plus completion tokens.
    pub const fn total_tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

impl Add for TokenUsage {
    type Output = TokenUsage;

    fn add(self, rhs: Self) -> Self {
        TokenUsage {
            prompt_tokens: self.prompt_tokens + rhs.prompt_tokens,
            completion_tokens: self.completion_tokens + rhs.completion_tokens,
            calls: self.calls + rhs.calls,
            latency_ms: self.latency_ms + rhs.latency_ms,
        }
    }
}

impl AddAssign for TokenUsage {
    fn add_assign(&mut self, rhs: Self) {
        *self = *self + rhs;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_adds_field_by_field() {
        let mut a = TokenUsage { prompt_tokens: 1, completion_tokens: 2, calls: 1, latency_ms: 5 };
        a += TokenUsage { prompt_tokens: 10, completion_tokens: 20, calls: 2, latency_ms: 7 };
        assert_eq!(a, TokenUsage { prompt_tokens: 11, completion_tokens: 22, calls: 3, latency_ms: 12 });
        assert_eq!(a.total_tokens(), 33);
    }
}
