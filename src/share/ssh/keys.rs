//! Who may come in over SSH, and the server's own key.
//!
//! The authorized-keys file is OpenSSH's format with flightdeck's own
//! options in front of the key:
//!
//! ```text
//! # role and name as options; the comment is only a comment
//! role=captain,name=alice ssh-ed25519 AAAAC3Nza… alice@laptop
//! # no name option: the comment's part before `@` is the name (carol)
//! role=viewer ssh-ed25519 AAAAC3Nza… carol@desk
//! # no role option: a viewer
//! ssh-ed25519 AAAAC3Nza… dave@home
//! ```
//!
//! Options are `role=captain|viewer` and `name=NAME`, and OpenSSH's
//! `from="pattern-list"` (the client addresses the key may sign in from:
//! addresses, `*`/`?` globs, CIDR blocks, `!` to exclude) and
//! `expiry-time="YYYYMMDD[HHMM[SS]][Z]"` (local time, or UTC with `Z`),
//! comma-separated, values optionally in double quotes. `restrict`,
//! `no-port-forwarding`, `no-agent-forwarding`, `no-X11-forwarding` and
//! `no-user-rc` are taken as they are: this server forwards nothing and
//! runs nothing. Anything else (another option, a key that does not parse,
//! a key type the server cannot verify such as RSA, a line without a name,
//! a key listed twice) is an error naming the file and line, and the
//! server does not start.
//!
//! The file is held to OpenSSH's `StrictModes`: it and the directories
//! above it must not be writable by anyone but its owner, and the owner
//! must be the server's user or root ([`check_modes`]).

use super::patterns::{expiry_time, SourcePatterns};
use crate::protocol::Role;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::LineEnding;
use russh::keys::{Algorithm, HashAlg, PrivateKey, PublicKey};
use std::io::{Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// One key that may sign in: whom it stands for and what they may do.
#[derive(Debug, Clone)]
pub struct Authorized {
    pub key: PublicKey,
    pub name: String,
    pub role: Role,
    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// `from="…"`: the addresses it may sign in from (any, without it).
    pub from: Option<SourcePatterns>,
    /// `expiry-time="…"`: seconds since the epoch after which it no longer signs in.
    pub expires: Option<i64>,
}

impl Authorized {
    /// Whether the key may be used now by a client at `peer`; if not, why.
    pub fn admits(&self, peer: Option<IpAddr>, now: std::time::SystemTime) -> Result<(), String> {
        if let Some(expires) = self.expires {
            let now = now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
            if now >= expires {
                return Err(format!("{}'s key expired (expiry-time)", self.name));
            }
        }
        if let Some(from) = &self.from {
            match peer {
                Some(address) if from.admits(address) => {}
                Some(address) => {
                    return Err(format!("{}'s key may not sign in from {address} (from=\"{from}\")", self.name))
                }
                None => {
                    return Err(format!(
                        "{}'s key is limited to from=\"{from}\" and the client's address is unknown",
                        self.name
                    ))
                }
            }
        }
        Ok(())
    }

    /// The same key for the same person with the same rights and limits.
    pub fn same_as(&self, other: &Authorized) -> bool {
        self.key.key_data() == other.key.key_data()
            && self.name == other.name
            && self.role == other.role
            && self.from == other.from
            && self.expires == other.expires
    }
}

/// The authorized-keys file, read once at start.
#[derive(Debug, Clone, Default)]
pub struct AuthorizedKeys {
    keys: Vec<Authorized>,
}

impl AuthorizedKeys {
    pub fn load(path: &Path) -> Result<AuthorizedKeys, String> {
        // Bounded, regular files only (a link to /dev/zero is refused, not read).
        let shown = path.display().to_string();
        let text = crate::files::read_text(path).map_err(|e| e.at(&shown, "authorized keys").to_string())?;
        AuthorizedKeys::parse(&shown, &text)
    }

    /// Every line is checked; the first bad one is the error (`file:line: …`).
    pub fn parse(file: &str, text: &str) -> Result<AuthorizedKeys, String> {
        let (keys, mut errors) = AuthorizedKeys::parse_lenient(file, text);
        match errors.is_empty() {
            true => Ok(keys),
            false => Err(errors.swap_remove(0)),
        }
    }

    /// As [`AuthorizedKeys::parse`], but a bad line is left out (and
    /// said, `file:line: …`) rather than failing the whole file: what a
    /// reload of a file edited while the server runs does, so a slip in
    /// one line locks out that line's key only, never keeps a removed one.
    /// A key listed twice is left out both times.
    pub fn parse_lenient(file: &str, text: &str) -> (AuthorizedKeys, Vec<String>) {
        let mut keys: Vec<Authorized> = Vec::new();
        let mut errors = Vec::new();
        let mut twice = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |message: String| format!("{file}:{}: {message}", n + 1);
            let entry = match parse_line(line) {
                Ok(entry) => entry,
                Err(e) => {
                    errors.push(at(e));
                    continue;
                }
            };
            if let Some(first) = keys.iter().find(|k| k.key.key_data() == entry.key.key_data()) {
                errors.push(at(format!("this key is already listed (for {})", first.name)));
                twice.push(entry.key.key_data().clone());
                continue;
            }
            keys.push(entry);
        }
        keys.retain(|k| !twice.contains(k.key.key_data()));
        (AuthorizedKeys { keys }, errors)
    }

    /// The entry for `key`, if it is listed.
    pub fn find(&self, key: &PublicKey) -> Option<&Authorized> {
        self.keys.iter().find(|k| k.key.key_data() == key.key_data())
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// `[options] type base64 [comment]`: the key starts at the first word
/// that names a key type.
fn parse_line(line: &str) -> Result<Authorized, String> {
    let (options, key_text) = split_options(line)?;
    let key = PublicKey::from_openssh(key_text).map_err(|e| format!("not a public key ({e})"))?;
    check_algorithm(&key)?;
    let mut name = None;
    let mut role = Role::Viewer;
    let (mut from, mut expires) = (None, None);
    for option in options {
        let flag = option.to_ascii_lowercase();
        if ["restrict", "no-port-forwarding", "no-agent-forwarding", "no-x11-forwarding", "no-user-rc"]
            .contains(&flag.as_str())
        {
            // What this server does anyway: it forwards nothing and runs nothing.
            continue;
        }
        let (field, value) = option
            .split_once('=')
            .ok_or_else(|| format!("option `{option}`: expected role=…, name=…, from=\"…\" or expiry-time=\"…\""))?;
        let value = value.trim_matches('"');
        match field {
            "from" if from.is_some() => return Err("from= is given twice".into()),
            "from" => from = Some(SourcePatterns::parse(value)?),
            "expiry-time" if expires.is_some() => return Err("expiry-time= is given twice".into()),
            "expiry-time" => expires = Some(expiry_time(value)?),
            "role" => {
                role = match value {
                    "captain" => Role::Captain,
                    "viewer" => Role::Viewer,
                    other => return Err(format!("role: `{other}` is not a role (captain or viewer)")),
                }
            }
            "name" if valid_name(value) => name = Some(value.to_string()),
            "name" => return Err(format!("name: `{value}` is not a name (letters, digits, . _ -)")),
            other => {
                return Err(format!("unknown option `{other}` (flightdeck knows role=, name=, from= and expiry-time=)"))
            }
        }
    }
    let comment = key.comment().as_str_lossy();
    let from_comment = comment.split('@').next().filter(|n| valid_name(n)).map(str::to_string);
    let name = name.or(from_comment).ok_or("no name: add name=… or a comment such as alice@laptop")?;
    let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
    Ok(Authorized { key, name, role, fingerprint, from, expires })
}

/// Only keys whose signatures the server can check: russh here (over
/// ring, without its `rsa` feature) verifies ed25519 and ECDSA. An RSA
/// line would be listed yet never sign in, so it is refused up front.
fn check_algorithm(key: &PublicKey) -> Result<(), String> {
    match key.algorithm() {
        Algorithm::Ed25519 | Algorithm::Ecdsa { .. } => Ok(()),
        other => Err(format!(
            "{other} keys cannot sign in to this server (it verifies ssh-ed25519 and ecdsa-sha2-nistp256/384/521 \
             signatures only): make one with `ssh-keygen -t ed25519` and list that"
        )),
    }
}

/// OpenSSH's `StrictModes` for the authorized-keys file: it and every
/// directory above it must be owned by the server's user or root and
/// writable by nobody else (a sticky directory such as /tmp may be
/// shared: nobody else can replace what is in it). Otherwise someone
/// else could list their own key.
pub fn check_modes(path: &Path) -> Result<(), String> {
    let shown = path.display();
    let me = unsafe { libc::geteuid() };
    let file = std::fs::metadata(path).map_err(|e| format!("{shown}: {e}"))?;
    if !file.is_file() {
        return Err(format!("{shown}: not a regular file"));
    }
    let unsafe_owner = |uid: u32| uid != me && uid != 0;
    if unsafe_owner(file.uid()) {
        return Err(format!(
            "{shown}: owned by uid {} (not the server's user or root): anyone with that account could add a key",
            file.uid()
        ));
    }
    if file.mode() & 0o022 != 0 {
        return Err(format!(
            "{shown}: writable by group or others (mode {:o}), so anyone could add a key: chmod go-w {shown}",
            file.mode() & 0o777
        ));
    }
    let full = std::fs::canonicalize(path).map_err(|e| format!("{shown}: {e}"))?;
    for dir in full.ancestors().skip(1) {
        let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let sticky = meta.mode() & 0o1000 != 0;
        if unsafe_owner(meta.uid()) {
            return Err(format!(
                "{shown}: the directory {} is owned by uid {} (not the server's user or root)",
                dir.display(),
                meta.uid()
            ));
        }
        if meta.mode() & 0o022 != 0 && !sticky {
            return Err(format!(
                "{shown}: the directory {} is writable by group or others (mode {:o}), so anyone could replace the file",
                dir.display(),
                meta.mode() & 0o777
            ));
        }
    }
    Ok(())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_alphanumeric() || "._-".contains(c))
}

/// The options before the key (comma-separated, quotes kept together) and the key's text.
fn split_options(line: &str) -> Result<(Vec<String>, &str), String> {
    if starts_with_key_type(line) {
        return Ok((Vec::new(), line));
    }
    let mut options = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' if !quoted => options.push(std::mem::take(&mut current)),
            c if c.is_whitespace() && !quoted => {
                options.push(std::mem::take(&mut current));
                let rest = line[i..].trim_start();
                if !starts_with_key_type(rest) {
                    return Err("expected a key type (ssh-ed25519, …) after the options".into());
                }
                return Ok((options, rest));
            }
            c => current.push(c),
        }
    }
    Err("no key on this line".into())
}

fn starts_with_key_type(text: &str) -> bool {
    let word = text.split_whitespace().next().unwrap_or("");
    word.starts_with("ssh-") || word.starts_with("ecdsa-sha2-") || word.starts_with("sk-")
}

/// The server's ed25519 key at `path`: read if it is there, else made
/// and written mode 0600, so clients see the same host key every run.
pub fn host_key(path: &Path) -> Result<PrivateKey, String> {
    let shown = path.display();
    // Bounded, regular files only (a link to /dev/zero is refused, not read).
    match crate::files::read_text(path) {
        Ok(text) => {
            let mode = std::fs::metadata(path).map_err(|e| format!("{shown}: {e}"))?.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(format!(
                    "{shown}: the host key is readable by others (mode {:o}); chmod 600 it",
                    mode & 0o777
                ));
            }
            PrivateKey::from_openssh(text).map_err(|e| format!("{shown}: not an OpenSSH private key ({e})"))
        }
        Err(crate::files::TextError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = PrivateKey::from(Ed25519Keypair::from_seed(&random_seed().map_err(|e| format!("{shown}: {e}"))?));
            let text = key.to_openssh(LineEnding::LF).map_err(|e| format!("{shown}: {e}"))?;
            if let Some(dir) = path.parent() {
                // 0700 whatever the umask: the folder holds the server's private key.
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
                    .map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            // create_new: two servers starting at once do not overwrite each other's key.
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| format!("{shown}: {e}"))?;
            // 0600 whatever the umask (a umask of 077 or 0 alike).
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .and_then(|()| file.write_all(text.as_bytes()))
                .and_then(|()| file.sync_all())
                .map_err(|e| format!("{shown}: {e}"))?;
            Ok(key)
        }
        Err(e) => Err(e.at(&shown.to_string(), "host key").to_string()),
    }
}

/// The host key's folder, if it is there already, must not let others
/// replace the key: not writable by group or others.
pub fn check_host_dir(path: &Path) -> Result<(), String> {
    let Some(dir) = path.parent() else { return Ok(()) };
    match std::fs::metadata(dir) {
        Ok(meta) if meta.mode() & 0o022 != 0 => Err(format!(
            "{}: writable by group or others (mode {:o}), so anyone could replace the host key: chmod 700 {0}",
            dir.display(),
            meta.mode() & 0o777
        )),
        _ => Ok(()),
    }
}

/// `256 SHA256:… (ED25519)`, as `ssh-keygen -l` prints a key.
pub fn host_fingerprint(key: &PrivateKey) -> String {
    let public = key.public_key();
    let bits = match public.algorithm() {
        Algorithm::Ed25519 => "256".to_string(),
        other => other.to_string(),
    };
    format!("{bits} {} (ED25519)", public.fingerprint(HashAlg::Sha256))
}

pub(crate) fn random_seed() -> std::io::Result<[u8; 32]> {
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut seed)?;
    Ok(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILNR9Ck8POZ9gbw7IDU0q1ReSRF6CP28sqvgLE9bCllM";
    const CAROL: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKpZ9kG4mgsVuEz2WodB/JXrFybMytwlW1Mea4oaqZBm";

    #[test]
    fn options_set_role_and_name_and_the_comment_names_when_no_option_does() {
        let text = format!("# team\n\nrole=captain,name=alice {ALICE} someone@laptop\n{CAROL} carol@desk\n");
        let keys = AuthorizedKeys::parse("keys", &text).unwrap();
        assert_eq!(keys.len(), 2);
        let alice = keys.find(&PublicKey::from_openssh(ALICE).unwrap()).unwrap();
        assert_eq!((alice.name.as_str(), alice.role), ("alice", Role::Captain));
        assert!(alice.fingerprint.starts_with("SHA256:"), "{}", alice.fingerprint);
        let carol = keys.find(&PublicKey::from_openssh(CAROL).unwrap()).unwrap();
        // No role option: only watching.
        assert_eq!((carol.name.as_str(), carol.role), ("carol", Role::Viewer));
    }

    #[test]
    fn quoted_values_are_read_without_their_quotes() {
        let keys = AuthorizedKeys::parse("keys", &format!("role=\"viewer\",name=\"bob\" {ALICE}")).unwrap();
        let bob = keys.find(&PublicKey::from_openssh(ALICE).unwrap()).unwrap();
        assert_eq!((bob.name.as_str(), bob.role), ("bob", Role::Viewer));
    }

    #[test]
    fn a_key_not_listed_is_not_found() {
        let keys = AuthorizedKeys::parse("keys", &format!("{ALICE} alice@laptop")).unwrap();
        assert!(keys.find(&PublicKey::from_openssh(CAROL).unwrap()).is_none());
    }

    #[test]
    fn bad_lines_say_file_line_and_what_is_wrong() {
        let cases = [
            (format!("{ALICE} alice@x\nrole=admiral {CAROL} carol@x"), "keys:2: role: `admiral` is not a role"),
            (format!("\n\ncommand=\"sh\" {ALICE} alice@x"), "keys:3: unknown option `command`"),
            (ALICE.to_string(), "keys:1: no name"),
            ("ssh-ed25519 AAAAnotbase64!!".to_string(), "keys:1: not a public key"),
            (format!("{ALICE} a@x\n{ALICE} b@x"), "keys:2: this key is already listed (for a)"),
            ("role=captain".to_string(), "keys:1: no key on this line"),
            ("role=captain nonsense".to_string(), "keys:1: expected a key type"),
            (format!("name=al!ce {ALICE}"), "keys:1: name: `al!ce` is not a name"),
        ];
        for (text, want) in cases {
            let err = AuthorizedKeys::parse("keys", &text).unwrap_err();
            assert!(err.starts_with(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn from_and_expiry_limit_a_key_and_the_forwarding_flags_are_taken() {
        let text = format!(
            "from=\"10.0.0.0/8,!10.9.0.0/16\",expiry-time=\"20300101Z\",restrict,no-X11-forwarding {ALICE} alice@x\n\
             expiry-time=\"20200101Z\" {CAROL} carol@x\n"
        );
        let keys = AuthorizedKeys::parse("keys", &text).unwrap();
        let alice = keys.find(&PublicKey::from_openssh(ALICE).unwrap()).unwrap();
        let at = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        assert!(alice.admits(at("10.1.1.1"), now).is_ok());
        let err = alice.admits(at("10.9.1.1"), now).unwrap_err();
        assert!(err.contains("may not sign in from 10.9.1.1"), "{err}");
        assert!(alice.admits(None, now).is_err(), "an unknown address is not in the list");
        let later = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_900_000_000);
        assert!(alice.admits(at("10.1.1.1"), later).unwrap_err().contains("expired"));
        let carol = keys.find(&PublicKey::from_openssh(CAROL).unwrap()).unwrap();
        assert!(carol.admits(at("127.0.0.1"), now).unwrap_err().contains("carol's key expired"));
    }

    #[test]
    fn rsa_and_other_keys_the_server_cannot_verify_are_refused_with_file_and_line() {
        let rsa = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDO+Mf5F01SV+RZViP75/P8jvAoXOP/mVwLU7s6HXhvjJjt28OaxQtVKzwYPO8RgjtJUt3Rrrid2po/EhnHCtDi6EHqejWuKZVA+4jbxbQSZWSi4lO0hfs0ZxzuVjOb/8BX4XG5Ht01gN4vWlUHJLRaG0u/PBPZHqyxL6N7E45dYQ== rsa@x";
        let err = AuthorizedKeys::parse("keys", &format!("{ALICE} alice@x\n{rsa}\n")).unwrap_err();
        assert!(err.starts_with("keys:2: ssh-rsa keys cannot sign in"), "{err}");
        assert!(err.contains("ssh-keygen -t ed25519"), "{err}");
        let ecdsa = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBN5gmbZIWbVXiJlrvkOMvW9t/FCXVb45k3MUHgdA3FkMI0RymM2M2djroY0yEjsV1oGbvACNFuhimIUxNZT2/RE= e@x";
        assert!(AuthorizedKeys::parse("keys", ecdsa).is_ok(), "ECDSA keys are verified");
    }

    #[test]
    fn a_reload_leaves_out_bad_lines_and_keys_listed_twice() {
        let text = format!("{ALICE} a@x\nrole=admiral {CAROL} c@x\n{ALICE} b@x\n");
        let (keys, errors) = AuthorizedKeys::parse_lenient("keys", &text);
        assert!(keys.is_empty(), "the bad line's key and the doubled key are both out");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].starts_with("keys:2: role") && errors[1].starts_with("keys:3: this key is already listed"));
    }

    #[test]
    fn an_authorized_keys_file_others_could_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("team.keys");
        std::fs::write(&path, format!("{ALICE} a@x\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        check_modes(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o664)).unwrap();
        let err = check_modes(&path).unwrap_err();
        assert!(err.contains("writable by group or others (mode 664)"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = check_modes(&path).unwrap_err();
        assert!(err.contains("the directory") && err.contains("mode 777"), "{err}");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        check_modes(&path).unwrap();
    }

    #[test]
    fn the_host_key_folder_is_private_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/ssh/host_ed25519");
        // Under the usual umask (022), which alone would leave the folder 0755.
        let key = host_key(&path).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(mode(&path), 0o600);
        assert!(host_fingerprint(&key).starts_with("256 SHA256:"), "{}", host_fingerprint(&key));
        std::fs::set_permissions(path.parent().unwrap(), std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(check_host_dir(&path).unwrap_err().contains("writable by group or others"));
    }

    #[test]
    fn the_host_key_is_made_once_private_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ssh/host_ed25519");
        let first = host_key(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let again = host_key(&path).unwrap();
        assert_eq!(first.public_key().key_data(), again.public_key().key_data());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(host_key(&path).unwrap_err().contains("readable by others"));
    }
}
