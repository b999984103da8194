//! How many peer-review rounds a deliberation runs.

use serde::{Deserialize, Serialize};

use crate::error::{DomainError, Result};

/// Number of peer-review rounds, 0..=5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rounds(u32);

impl Rounds {
    pub const MAX: u32 = 5;
    pub const DEFAULT: Rounds = Rounds(1);

    /// # Errors
    /// Field `rounds` when negative or above 5.
    pub fn new(value: i64) -> Result<Self> {
        match u32::try_from(value) {
            Ok(v) if v <= Self::MAX => Ok(Self(v)),
            _ => {
                Err(DomainError::invalid("rounds", format!("must be within 0..={}, got {value}", Self::MAX)))
            }
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for Rounds {
    fn default() -> Self {
        Self::DEFAULT
    }
}
