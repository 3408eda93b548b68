//! Operator roles: what each may do, from reading to managing other operators.
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What an operator may do. Roles are ordered: each includes the ones before it.
///
/// ```
/// use nightshift::Role;
/// assert!(Role::Admin.allows(Role::Operator));
/// assert!(!Role::Viewer.allows(Role::Operator));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything but secrets.
    Viewer,
    /// Also creates, aborts, cancels, updates and reruns jobs.
    Operator,
    /// Also manages operators and tokens, and reads the audit log.
    Admin,
}

impl Role {
    /// Every role, least first.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// Whether this role may do what `needed` may.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "{} is not a role (viewer, operator, admin)",
                    crate::text::quote(s)
                )
            })
    }
}
