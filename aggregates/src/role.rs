//! User roles and their strict hierarchy.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Roles nest (admin ⊇ security_lead ⊇ analyst ⊇ viewer), so permission checks are a single
/// comparison instead of lists of roles that drift apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    SecurityLead,
    Analyst,
    Viewer,
}

labelled_enum!(Role, "role", {
    Admin => "admin",
    SecurityLead => "security_lead",
    Analyst => "analyst",
    Viewer => "viewer",
});

impl Role {
    const fn rank(self) -> u8 {
        match self {
            Role::Admin => 3,
            Role::SecurityLead => 2,
            Role::Analyst => 1,
            Role::Viewer => 0,
        }
    }

    /// Whether this role holds every permission of `other`.
    pub const fn at_least(self, other: Role) -> bool {
        self.rank() >= other.rank()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_includes_every_role_below_it() {
        // Role::ALL is ordered from most to least privileged.
        for (i, higher) in Role::ALL.into_iter().enumerate() {
            for (j, lower) in Role::ALL.into_iter().enumerate() {
                assert_eq!(higher.at_least(lower), i <= j, "{higher} at least {lower}");
            }
        }
    }

    #[test]
    fn roles_serialize_in_snake_case_and_parse_back_ignoring_case() {
        for role in Role::ALL {
            assert_eq!(serde_json::to_string(&role).unwrap(), format!("\"{role}\""));
            assert_eq!(role.as_str().to_uppercase().parse::<Role>(), Ok(role));
        }
        assert_eq!(Role::SecurityLead.to_string(), "security_lead");
        assert!("owner".parse::<Role>().is_err());
    }
}
