//! Who is asking: the identity every use case that reads or changes stored work is given.

use std::fmt;

/// The principal behind a request (a token's name, a client certificate's subject, or
/// `anonymous` when the server runs without authentication) and whether it may see and act
/// on every principal's work.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Caller {
    principal: String,
    admin: bool,
}

impl Caller {
    /// The principal every request has when authentication is off.
    pub const ANONYMOUS: &'static str = "anonymous";

    pub fn new(principal: impl Into<String>, admin: bool) -> Self {
        Self { principal: principal.into(), admin }
    }

    /// The caller of a server without authentication: one shared, non-admin principal.
    pub fn anonymous() -> Self {
        Self::new(Self::ANONYMOUS, false)
    }

    pub fn principal(&self) -> &str {
        &self.principal
    }

    pub fn is_admin(&self) -> bool {
        self.admin
    }

    /// Whether this caller may read or act on work created by `owner`.
    pub fn may_access(&self, owner: &str) -> bool {
        self.admin || self.principal == owner
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_reaches_its_own_work_and_an_admin_everyones() {
        let alice = Caller::new("alice", false);
        assert!(alice.may_access("alice"));
        assert!(!alice.may_access("bob"));
        assert!(Caller::new("ops", true).may_access("bob"));
        assert!(Caller::anonymous().may_access(Caller::ANONYMOUS));
        assert!(!Caller::anonymous().may_access("alice"));
    }
}
