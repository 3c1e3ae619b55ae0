//! Who may act on a shared engine: `serve --captains alice,bob --viewers
//! carol`. Named viewers only watch. When captains are named, everyone
//! else only watches too; with no captains named, anyone not named a
//! viewer is a captain (the socket is the user's own, mode 0600).

use crate::protocol::Role;

#[derive(Debug, Clone, Default)]
pub struct Roles {
    pub captains: Vec<String>,
    pub viewers: Vec<String>,
}

impl Roles {
    pub fn role_of(&self, name: &str) -> Role {
        if self.viewers.iter().any(|v| v == name) {
            Role::Viewer
        } else if self.captains.is_empty() || self.captains.iter().any(|c| c == name) {
            Role::Captain
        } else {
            Role::Viewer
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_captains_leave_everyone_else_watching() {
        let roles = Roles { captains: vec!["alice".into()], viewers: vec!["carol".into()] };
        assert_eq!(roles.role_of("alice"), Role::Captain);
        assert_eq!(roles.role_of("carol"), Role::Viewer);
        assert_eq!(roles.role_of("mallory"), Role::Viewer);
        let open = Roles { captains: vec![], viewers: vec!["carol".into()] };
        assert_eq!(open.role_of("bob"), Role::Captain);
        assert_eq!(open.role_of("carol"), Role::Viewer);
    }
}
