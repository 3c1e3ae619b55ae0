//! Who may act on a shared engine: `serve --captains alice,bob --viewers
//! carol`.
//!
//! On the socket, who someone is comes from the kernel, not from what the
//! client says: the server reads the connecting process's user id from the
//! socket's peer credentials (`SO_PEERCRED`) and looks its login name up in
//! the user database (`getpwuid_r`). That login name is the name every
//! command of the connection carries (so an approval counts once per user,
//! whatever names its clients give), and roles name login names:
//!
//! - a user in `--viewers` only watches;
//! - when `--captains` names anyone, only they may act and everyone else
//!   watches;
//! - with no `--captains`, only the server's own user may act (the socket is
//!   that user's alone unless `--socket-group` shares it).
//!
//! A user id with no entry in the user database, or whose login name is not
//! a safe display name ([`valid_name`]), is named `#UID` (`#1001`), and
//! `--captains`/`--viewers` may name it so. The name in a client's hello is
//! a display hint at most: it is shown beside the session, never used for
//! who acts or which role they get.

use crate::protocol::wire::valid_name;
use crate::protocol::Role;
use std::ffi::{CStr, CString};

#[derive(Debug, Clone, Default)]
pub struct Roles {
    pub captains: Vec<String>,
    pub viewers: Vec<String>,
}

impl Roles {
    /// The role of the user named `login`; `own` says whether it is the
    /// server's own user.
    pub fn role_of(&self, login: &str, own: bool) -> Role {
        if self.viewers.iter().any(|v| v == login) {
            Role::Viewer
        } else if self.captains.iter().any(|c| c == login) || (self.captains.is_empty() && own) {
            Role::Captain
        } else {
            Role::Viewer
        }
    }

    /// Every name is a user of this host (or `#UID`): a mistyped captain
    /// would otherwise silently leave nobody able to act.
    pub fn check(&self) -> Result<(), String> {
        for (flag, names) in [("--captains", &self.captains), ("--viewers", &self.viewers)] {
            for name in names {
                if name.strip_prefix('#').is_some_and(|n| n.parse::<u32>().is_ok()) {
                    continue;
                }
                if uid_of(name).is_none() {
                    return Err(format!(
                        "{flag}: no user named {:?} on this host (roles name login names, or #UID)",
                        crate::protocol::inert(name)
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Who is on the other end of a socket, as the kernel says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    /// The login name, or `#UID`.
    pub name: String,
}

impl Identity {
    pub fn of_uid(uid: u32) -> Identity {
        let name = login_name(uid).filter(|n| valid_name(n)).unwrap_or_else(|| format!("#{uid}"));
        Identity { uid, name }
    }

    /// Whether this is the user the server runs as.
    pub fn is_own(&self) -> bool {
        // SAFETY: geteuid has no preconditions and cannot fail.
        self.uid == unsafe { libc::geteuid() }
    }
}

/// The login name of `uid` in the user database.
pub fn login_name(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: `pwd` and `buf` outlive the call; `result` is set to null or to `&pwd`.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr().cast(), buf.len(), &mut result) };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        // SAFETY: on success `pw_name` points to a NUL-terminated string in `buf`.
        return Some(unsafe { CStr::from_ptr(pwd.pw_name) }.to_string_lossy().into_owned());
    }
}

/// The user id of the login `name` in the user database.
pub fn uid_of(name: &str) -> Option<u32> {
    let cname = CString::new(name).ok()?;
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: as in `login_name`.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = unsafe { libc::getpwnam_r(cname.as_ptr(), &mut pwd, buf.as_mut_ptr().cast(), buf.len(), &mut result) };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        return (rc == 0 && !result.is_null()).then_some(pwd.pw_uid);
    }
}

/// The group id of the group `name` (or a number) in the group database.
pub fn gid_of(name: &str) -> Option<u32> {
    if let Ok(gid) = name.parse::<u32>() {
        return Some(gid);
    }
    let cname = CString::new(name).ok()?;
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: as in `login_name`, for the group database.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        let rc = unsafe { libc::getgrnam_r(cname.as_ptr(), &mut grp, buf.as_mut_ptr().cast(), buf.len(), &mut result) };
        if rc == libc::ERANGE && buf.len() < 1 << 22 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        return (rc == 0 && !result.is_null()).then_some(grp.gr_gid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_captains_leave_everyone_else_watching() {
        let roles = Roles { captains: vec!["alice".into()], viewers: vec!["carol".into()] };
        assert_eq!(roles.role_of("alice", false), Role::Captain);
        assert_eq!(roles.role_of("carol", true), Role::Viewer);
        assert_eq!(roles.role_of("mallory", false), Role::Viewer);
        // The server's own user is no captain when captains are named without it.
        assert_eq!(roles.role_of("deploy", true), Role::Viewer);
    }

    #[test]
    fn with_no_captains_only_the_servers_own_user_acts() {
        let open = Roles { captains: vec![], viewers: vec!["carol".into()] };
        assert_eq!(open.role_of("deploy", true), Role::Captain);
        assert_eq!(open.role_of("bob", false), Role::Viewer);
        assert_eq!(open.role_of("carol", false), Role::Viewer);
    }

    #[test]
    fn users_are_looked_up_in_the_user_database() {
        assert_eq!(login_name(0).as_deref(), Some("root"));
        assert_eq!(uid_of("root"), Some(0));
        assert_eq!(Identity::of_uid(0).name, "root");
        // No such user: named by number.
        assert_eq!(Identity::of_uid(4_000_000_123).name, "#4000000123");
        assert!(Roles { captains: vec!["root".into(), "#4000000123".into()], viewers: vec![] }.check().is_ok());
        let typo = Roles { captains: vec![], viewers: vec!["no-such-user-here".into()] }.check().unwrap_err();
        assert!(typo.starts_with("--viewers: no user named \"no-such-user-here\""), "{typo}");
    }
}
