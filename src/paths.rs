//! Where flightdeck keeps its files (via `directories`), overridable for
//! tests and shared hosts with `FLIGHTDECK_DATA_DIR` / `FLIGHTDECK_CONFIG_DIR`.

use std::path::PathBuf;

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
