//! The user config: `<config dir>/config.toml`.
//!
//! ```toml
//! plans = ["~/deploys/checkout.toml"]   # what `flightdeck` with no arguments watches
//! theme = "default"                      # cockpit theme (a plan's `theme` wins for its rollout)
//! keymap = "default"                     # shipped keymap to start from ("default" | "vim")
//! actor = "alice"                        # name on every action (default: $USER)
//! production_contexts = ["prod-eu-1"]    # kube contexts shown (and themed) as production
//! mouse = false                          # no mouse capture: the terminal's text selection works
//!
//! [[notify]]                             # `serve`'s notifications (see crate::service::notify)
//! kind = "slack"
//! url_env = "FLIGHTDECK_SLACK_URL"
//! ```

use flightdeck_core::TomlFile;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub plans: Vec<PathBuf>,
    pub theme: Option<String>,
    pub keymap: Option<String>,
    pub actor: Option<String>,
    /// Kubernetes contexts that are production, whatever the plans say.
    #[serde(default)]
    pub production_contexts: Vec<String>,
    /// The cockpit captures the mouse (wheel scrolls, click selects) unless
    /// this is false, which leaves text selection to the terminal.
    pub mouse: Option<bool>,
    /// Where `serve` sends notifications (`[[notify]]` tables).
    #[serde(default)]
    pub notify: Vec<crate::service::notify::NotifyConfig>,
}

impl Config {
    /// Reads the config file if it exists; errors name the file, line and field.
    ///
    /// Only a config that is not there is the default config. One that is
    /// there but cannot be read (permissions, a directory, a device, too
    /// large) is refused with the reason: running without it would drop
    /// what it says, `production_contexts` (and their confirmations) first.
    pub fn load(dir: &Path) -> Result<Config, String> {
        let path = dir.join("config.toml");
        let shown = path.display().to_string();
        match crate::files::read_text(&path) {
            Ok(text) => Config::parse(&shown, &text),
            Err(crate::files::TextError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(e.at(&shown, "config").to_string()),
        }
    }

    pub fn parse(file: &str, text: &str) -> Result<Config, String> {
        let config = TomlFile::parse(file, text, "config").and_then(|toml| toml.deserialize());
        config.map_err(|e| e.to_string())
    }

    /// Who acts: the configured name, else the login name.
    pub fn actor(&self) -> String {
        self.actor.clone().or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "captain".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_name_the_file_and_line() {
        let err = Config::parse("config.toml", "theme = \"light\"\ncolour = 3\n").unwrap_err();
        assert!(err.starts_with("config.toml:2:1: colour: unknown key `colour`, expected one of"), "{err}");
    }

    #[test]
    fn only_a_missing_config_is_the_default_one() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Config::load(dir.path()).unwrap().production_contexts.is_empty());
        let path = dir.path().join("config.toml");
        std::fs::create_dir(&path).unwrap();
        let err = Config::load(dir.path()).unwrap_err();
        let expected =
            format!("{}:1:1: config: cannot read the file: not a regular file (a directory)", path.display());
        assert_eq!(err, expected);
    }

    #[test]
    fn a_full_config_parses() {
        let c = Config::parse(
            "c",
            "plans = [\"a.toml\"]\ntheme = \"mono\"\nkeymap = \"vim\"\nactor = \"bob\"\nmouse = false\n",
        )
        .unwrap();
        assert_eq!(c.plans, vec![PathBuf::from("a.toml")]);
        assert_eq!(c.actor(), "bob");
        assert_eq!(c.mouse, Some(false));
    }
}
