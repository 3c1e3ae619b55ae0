//! Where flightdeck keeps its files (via `directories`), overridable for
//! tests and shared hosts with `FLIGHTDECK_DATA_DIR` / `FLIGHTDECK_CONFIG_DIR`.

use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

fn project() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("dev", "flightdeck", "flightdeck")
}

/// Journals and logs.
pub fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FLIGHTDECK_DATA_DIR") {
        return PathBuf::from(dir);
    }
    project().map_or_else(|| PathBuf::from(".flightdeck"), |p| p.data_dir().to_path_buf())
}

/// User config, themes and keymaps.
pub fn config_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FLIGHTDECK_CONFIG_DIR") {
        return PathBuf::from(dir);
    }
    project().map_or_else(|| PathBuf::from(".flightdeck"), |p| p.config_dir().to_path_buf())
}

pub fn journal_dir() -> PathBuf {
    data_dir().join("journal")
}

pub fn log_dir() -> PathBuf {
    data_dir().join("logs")
}

/// Where `serve` listens and `attach` connects by default: the runtime
/// directory (private to the user, cleared at logout) where there is one,
/// else the data directory.
pub fn socket_path() -> PathBuf {
    if std::env::var_os("FLIGHTDECK_DATA_DIR").is_some() {
        return data_dir().join("serve.sock");
    }
    let runtime = project().and_then(|p| p.runtime_dir().map(|d| d.to_path_buf()));
    runtime.unwrap_or_else(data_dir).join("serve.sock")
}

/// Makes `dir` (and any missing parent) mode 0700 whatever the umask, and
/// takes group and others' access away from it if it exists: journals,
/// logs and sockets are the user's alone. For the journal, log and socket
/// directories.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o700))?;
    }
    Ok(())
}

/// Options that create a file mode 0600 whatever the umask (journals, logs).
pub fn private_file() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.mode(0o600);
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_dirs_and_files_are_the_users_alone_whatever_the_umask() {
        // Under the usual umask (022) plain creation would give 0755 and 0644.
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        private_dir(&dir).unwrap();
        private_file().write(true).create(true).open(dir.join("j.jsonl")).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root.path().join("a")), 0o700);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("j.jsonl")), 0o600);
        // An existing directory open to others is closed.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
    }
}
