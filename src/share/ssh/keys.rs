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
//! Options are `role=captain|viewer` and `name=NAME`, comma-separated,
//! values optionally in double quotes. Anything else (another option, a
//! key that does not parse, a line without a name, a key listed twice)
//! is an error naming the file and line, and the server does not start.

use crate::protocol::Role;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::LineEnding;
use russh::keys::{HashAlg, PrivateKey, PublicKey};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// One key that may sign in: whom it stands for and what they may do.
#[derive(Debug, Clone)]
pub struct Authorized {
    pub key: PublicKey,
    pub name: String,
    pub role: Role,
    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
}

/// The authorized-keys file, read once at start.
#[derive(Debug, Clone, Default)]
pub struct AuthorizedKeys {
    keys: Vec<Authorized>,
}

impl AuthorizedKeys {
    pub fn load(path: &Path) -> Result<AuthorizedKeys, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        AuthorizedKeys::parse(&path.display().to_string(), &text)
    }

    /// Every line is checked; the first bad one is the error (`file:line: …`).
    pub fn parse(file: &str, text: &str) -> Result<AuthorizedKeys, String> {
        let mut keys: Vec<Authorized> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |message: String| format!("{file}:{}: {message}", n + 1);
            let entry = parse_line(line).map_err(at)?;
            if let Some(first) = keys.iter().find(|k| k.key.key_data() == entry.key.key_data()) {
                return Err(at(format!("this key is already listed (for {})", first.name)));
            }
            keys.push(entry);
        }
        Ok(AuthorizedKeys { keys })
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
    let mut name = None;
    let mut role = Role::Viewer;
    for option in options {
        let (field, value) =
            option.split_once('=').ok_or_else(|| format!("option `{option}`: expected role=… or name=…"))?;
        let value = value.trim_matches('"');
        match field {
            "role" => {
                role = match value {
                    "captain" => Role::Captain,
                    "viewer" => Role::Viewer,
                    other => return Err(format!("role: `{other}` is not a role (captain or viewer)")),
                }
            }
            "name" if valid_name(value) => name = Some(value.to_string()),
            "name" => return Err(format!("name: `{value}` is not a name (letters, digits, . _ -)")),
            other => return Err(format!("unknown option `{other}` (flightdeck knows role= and name=)")),
        }
    }
    let comment = key.comment().as_str_lossy();
    let from_comment = comment.split('@').next().filter(|n| valid_name(n)).map(str::to_string);
    let name = name.or(from_comment).ok_or("no name: add name=… or a comment such as alice@laptop")?;
    let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
    Ok(Authorized { key, name, role, fingerprint })
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
    match std::fs::read_to_string(path) {
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
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = PrivateKey::from(Ed25519Keypair::from_seed(&random_seed().map_err(|e| format!("{shown}: {e}"))?));
            let text = key.to_openssh(LineEnding::LF).map_err(|e| format!("{shown}: {e}"))?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            // create_new: two servers starting at once do not overwrite each other's key.
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| format!("{shown}: {e}"))?;
            file.write_all(text.as_bytes()).map_err(|e| format!("{shown}: {e}"))?;
            Ok(key)
        }
        Err(e) => Err(format!("{shown}: {e}")),
    }
}

fn random_seed() -> std::io::Result<[u8; 32]> {
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
