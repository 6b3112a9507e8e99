//! Operator roles and the permissions they grant (pure): the authorization policy of the HTTP
//! API. Each route of `http::routes::ROUTES` names one [`Permission`]; a principal's [`Role`]
//! either allows it or the request is refused 403.

use std::fmt;
use std::str::FromStr;

/// What a route needs from the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// No token needed (health, verifier key, JWKS, OpenAPI, dashboard files).
    Public,
    /// Every GET of fleet data.
    Read,
    /// Every state-changing operator action.
    Operate,
    /// The audit trail and its verification.
    Audit,
    /// The punch export routes.
    ExportPunches,
    /// Creating, listing and revoking API tokens.
    ManageTokens,
}

impl Permission {
    /// The name used in errors, audit reasons and the OpenAPI document.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Public => "public",
            Permission::Read => "read",
            Permission::Operate => "operate",
            Permission::Audit => "audit",
            Permission::ExportPunches => "export_punches",
            Permission::ManageTokens => "manage_tokens",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The role of an API token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything (the bootstrap `admin.token`).
    Admin,
    /// Read + Operate.
    Operator,
    /// Read.
    Viewer,
    /// Read + Audit + ExportPunches.
    Auditor,
}

impl Role {
    /// Every role, for matrices and help texts.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Operator, Role::Viewer, Role::Auditor];

    /// Whether this role grants `p`.
    pub fn allows(self, p: Permission) -> bool {
        use Permission as P;
        matches!(
            (self, p),
            (_, P::Public | P::Read)
                | (Role::Admin, _)
                | (Role::Operator, P::Operate)
                | (Role::Auditor, P::Audit | P::ExportPunches)
        )
    }

    /// The role's name: `admin`, `operator`, `viewer` or `auditor`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
            Role::Auditor => "auditor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of the four.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownRole(pub String);

impl fmt::Display for UnknownRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown role {:?} (expected admin, operator, viewer or auditor)",
            self.0
        )
    }
}

impl std::error::Error for UnknownRole {}

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert!("Admin".parse::<Role>().is_err());
        assert!("".parse::<Role>().is_err());
    }

    #[test]
    fn grants() {
        use Permission as P;
        let all = [
            P::Public,
            P::Read,
            P::Operate,
            P::Audit,
            P::ExportPunches,
            P::ManageTokens,
        ];
        let granted = |r: Role| {
            all.iter()
                .copied()
                .filter(|p| r.allows(*p))
                .collect::<Vec<_>>()
        };
        assert_eq!(granted(Role::Admin), all.to_vec());
        assert_eq!(granted(Role::Viewer), vec![P::Public, P::Read]);
        assert_eq!(
            granted(Role::Operator),
            vec![P::Public, P::Read, P::Operate]
        );
        assert_eq!(
            granted(Role::Auditor),
            vec![P::Public, P::Read, P::Audit, P::ExportPunches]
        );
    }
}
