//! Who is asking: the identity every use case that reads or changes stored work is given.

use std::fmt;

/// The principal behind a request (a token's name, a client certificate's subject, or
/// `anonymous` when the server runs without authentication) and whether it may see and act
/// on every principal's work.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Caller {
    principal: String,
    admin: bool,
    /// Set only by [`Caller::anonymous`]: the caller of a server without authentication. Not
    /// derived from the name, so an authenticated principal that calls itself `anonymous`
    /// (which the adapters refuse anyway) still gets none of its rights.
    unauthenticated: bool,
}

impl Caller {
    /// The principal every request has when authentication is off. Reserved: no token or
    /// certificate may name it (see [`Caller::is_reserved_name`]).
    pub const ANONYMOUS: &'static str = "anonymous";

    /// An authenticated principal.
    pub fn new(principal: impl Into<String>, admin: bool) -> Self {
        Self { principal: principal.into(), admin, unauthenticated: false }
    }

    /// The caller of a server without authentication: one shared, non-admin principal.
    pub fn anonymous() -> Self {
        Self { principal: Self::ANONYMOUS.to_owned(), admin: false, unauthenticated: true }
    }

    /// Whether `name` may not be an authenticated principal's: `anonymous`, in any case, is
    /// what work stored while authentication was off belongs to.
    pub fn is_reserved_name(name: &str) -> bool {
        name.eq_ignore_ascii_case(Self::ANONYMOUS)
    }

    /// Whether this is the caller of a server without authentication.
    pub fn is_unauthenticated(&self) -> bool {
        self.unauthenticated
    }

    pub fn principal(&self) -> &str {
        &self.principal
    }

    pub fn is_admin(&self) -> bool {
        self.admin
    }

    /// Whether this caller may read or act on work created by `owner`. Work stored while
    /// authentication was off (owned by `anonymous`) is reached only by admins and by the
    /// unauthenticated caller, never by a principal that merely bears the name.
    pub fn may_access(&self, owner: &str) -> bool {
        self.admin || (self.principal == owner && (self.unauthenticated || !Self::is_reserved_name(owner)))
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

    #[test]
    fn work_stored_without_authentication_is_not_reached_by_a_principal_named_anonymous() {
        let impostor = Caller::new("anonymous", false);
        assert!(!impostor.may_access(Caller::ANONYMOUS));
        assert!(!impostor.is_unauthenticated());
        assert!(Caller::new("ops", true).may_access(Caller::ANONYMOUS));
        assert!(Caller::anonymous().is_unauthenticated());
        for name in ["anonymous", "Anonymous", "ANONYMOUS"] {
            assert!(Caller::is_reserved_name(name), "{name}");
        }
        assert!(!Caller::is_reserved_name("anonymous-bot"));
    }
}
