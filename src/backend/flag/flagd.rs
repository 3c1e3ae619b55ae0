//! OpenFeature flagd through its flag definition file.
//!
//! flagd (and every in-process flagd provider) reads flags from a JSON file
//! in the schema of <https://flagd.dev/schema/v0/flags.json>, and reloads
//! it when it changes (a file sync, or a ConfigMap mounted as one). A
//! flag's `fractional` targeting splits users between variants by a hash
//! of their targeting key; its buckets' weights are the split:
//!
//! ```json
//! "new-checkout": {
//!   "state": "ENABLED",
//!   "variants": { "off": false, "on": true },
//!   "defaultVariant": "off",
//!   "targeting": { "fractional": [ ["off", 90], ["on", 10] ] }
//! }
//! ```
//!
//! ```toml
//! [target]
//! backend = "flagd"
//! file = "/etc/flagd/flags.json"
//! flag = "new-checkout"
//! stable_variant = "off"
//! canary_variant = "on"
//! ```
//!
//! The file is the source of truth, as NGINX's upstream file is. `apply`
//! rewrites only the two weights of the one `fractional` whose buckets are
//! the stable and the canary variant (stable `100 - w`, canary `w`): every
//! other byte of the file stays as it was (formatting, key order, other
//! flags). The change is written atomically (a temporary file beside it,
//! then a rename, with the file's permissions), so flagd never reads half a
//! file. `observe` reads the file back and reports the canary bucket's
//! share of the two weights; a flag whose `state` is `DISABLED` serves
//! nobody a variant and reads 0 %. A hand edit is therefore drift: the core
//! pauses with the weights it found, and `resume` writes the stage's back.
//!
//! Refused, with the reason (the rollout pauses): a file that is missing,
//! not JSON, or has no such flag; variants that are not in the flag's
//! `variants`; no `fractional` between the two variants, or more than one;
//! a `fractional` with a third bucket (it takes a share flightdeck does not
//! drive), a bucket without a weight, or a weight that is an expression
//! rather than a whole number. `Scale` changes nothing (a flag has no
//! capacity); `SwitchActive` is 100/0; `Undo` and `Native` are unsupported.
//!
//! Parameters (`[target]` or `[target.params]`): [`PARAMS`].

use super::share;
use crate::backend::target::{expect_backend, required};
use crate::backend::{Backend, BackendError};
use async_trait::async_trait;
use flightdeck_core::plan::params::{Param, ParamKind::Text};
use flightdeck_core::plan::params::{ParamError, TargetError};
use flightdeck_core::plan::{BackendKind, Target};
use flightdeck_core::rollout::{Effect, Observation, Version};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// What a flagd target reads (see [`flightdeck_core::plan::params`]).
pub const PARAMS: &[Param] = &[
    Param::required("file", Text, "the flag definition file flagd reads (JSON, flagd's schema)"),
    Param::required("flag", Text, "the flag's key in that file"),
    Param::required("stable_variant", Text, "the variant users keep (a key of the flag's `variants`)"),
    Param::required("canary_variant", Text, "the variant being rolled out"),
];

/// The most flightdeck reads of a flag file: flagd's own files are small.
const FILE_LIMIT: u64 = 16 << 20;

/// One flag of a flagd definition file, split between two variants.
#[derive(Debug)]
pub struct Flagd {
    file: PathBuf,
    flag: String,
    stable_variant: String,
    canary_variant: String,
    /// Held for a whole read-change-write, so two writes never interleave.
    writing: tokio::sync::Mutex<()>,
}

impl Flagd {
    /// Reads the target's parameters (see the module doc).
    pub fn from_target(target: &Target) -> Result<Flagd, TargetError> {
        expect_backend(target, BackendKind::Flagd)?;
        let param = |key: &'static str| required(target, "flagd", key);
        let (file, flag) = (PathBuf::from(param("file")?), param("flag")?);
        let (stable_variant, canary_variant) = (param("stable_variant")?, param("canary_variant")?);
        if stable_variant == canary_variant {
            let message = format!("`{canary_variant}` is also the stable variant");
            return Err(ParamError::new("canary_variant", message).into());
        }
        Ok(Flagd { file, flag, stable_variant, canary_variant, writing: tokio::sync::Mutex::new(()) })
    }

    fn refused(&self, action: &str, detail: String) -> BackendError {
        BackendError::Refused { backend: self.name(), action: action.to_string(), detail }
    }

    /// The file's text and where the flag's split is in it.
    fn read(&self, action: &str) -> Result<(String, Split), BackendError> {
        let text = crate::files::read_text_within(&self.file, FILE_LIMIT).map_err(|e| {
            let detail = match e {
                crate::files::TextError::Io(e) => format!("cannot read {}: {e}", self.file.display()),
                e => e.at(&self.file.display().to_string(), "flag file").to_string(),
            };
            self.refused(action, detail)
        })?;
        let split = Split::find(&text, &self.flag, &self.stable_variant, &self.canary_variant)
            .map_err(|e| self.refused(action, format!("{}: {e}", self.file.display())))?;
        Ok((text, split))
    }

    /// Sets the canary bucket to `canary` and the stable one to the rest.
    async fn set_split(&self, canary: u8) -> Result<(), BackendError> {
        let action = format!("set {} to {canary} % {}", self.flag, self.canary_variant);
        let _writing = self.writing.lock().await;
        let (text, split) = self.read(&action)?;
        let canary = u64::from(canary.min(100));
        if (split.stable, split.canary) == (100 - canary, canary) {
            return Ok(());
        }
        let changed = split.with(&text, 100 - canary, canary);
        write_atomically(&self.file, &changed)
            .map_err(|e| self.refused(&action, format!("cannot write {}: {e}", self.file.display())))
    }
}

impl std::fmt::Display for Flagd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "flagd {} in {}", self.flag, self.file.display())
    }
}

#[async_trait]
impl Backend for Flagd {
    fn name(&self) -> String {
        self.to_string()
    }

    async fn apply(&self, effect: &Effect) -> Result<(), BackendError> {
        match effect {
            Effect::SetWeight { canary } => self.set_split(*canary).await,
            Effect::SwitchActive { to: Version::Canary } => self.set_split(100).await,
            Effect::SwitchActive { to: Version::Stable } => self.set_split(0).await,
            // Both variants are code paths of one deployment: nothing to scale.
            Effect::Scale { .. } | Effect::Notify(_) => Ok(()),
            Effect::Undo { .. } | Effect::Native { .. } => {
                Err(BackendError::Unsupported { backend: self.name(), effect: effect.to_string() })
            }
        }
    }

    async fn observe(&self) -> Result<Observation, BackendError> {
        let (_, split) = self.read("read back")?;
        let (canary_weight, native_detail) = if split.disabled {
            (Some(0), Some(format!("flag {} is DISABLED in the file: nobody gets a variant", self.flag)))
        } else {
            (share(split.stable, split.canary), None)
        };
        Ok(Observation { canary_weight, native_detail, ..Observation::default() })
    }
}

/// Writes `text` to a temporary file beside `path` with `path`'s
/// permissions, then renames it over `path`: a reader sees the old file or
/// the new one, never a part.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.flightdeck-tmp"));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        if let Ok(meta) = std::fs::metadata(path) {
            std::fs::set_permissions(&tmp, meta.permissions())?;
        }
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Where one flag's stable and canary weights are in the file's text.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Split {
    stable: u64,
    canary: u64,
    stable_at: Range<usize>,
    canary_at: Range<usize>,
    /// The flag's `state` is `DISABLED`.
    disabled: bool,
}

impl Split {
    /// Finds the flag `key` and its one `fractional` between `stable` and `canary`.
    fn find(text: &str, key: &str, stable: &str, canary: &str) -> Result<Split, String> {
        // serde_json says where a broken file breaks; the span scanner then
        // only ever sees valid JSON.
        if let Err(e) = serde_json::from_str::<serde_json::Value>(text) {
            return Err(format!("not JSON: {e}"));
        }
        let root = Scanner::new(text).document();
        let flags = root.get("flags").ok_or("no `flags` in the file")?;
        let flag = match &flags.value {
            Json::Object(_) => flags.get(key),
            Json::Array(items) => {
                items.iter().find(|f| f.get("key").and_then(|k| k.text(text)).as_deref() == Some(key))
            }
            Json::Scalar => None,
        }
        .ok_or_else(|| format!("no flag `{key}`"))?;
        let variants = flag.get("variants").ok_or_else(|| format!("flag `{key}` has no `variants`"))?;
        for variant in [stable, canary] {
            if variants.get(variant).is_none() {
                return Err(format!("flag `{key}` has no variant `{variant}`"));
            }
        }
        let disabled = flag.get("state").and_then(|s| s.text(text)).is_some_and(|s| s == "DISABLED");
        let targeting = flag.get("targeting").ok_or_else(|| {
            format!(
                "flag `{key}` has no `targeting`; give it {{\"fractional\": [[\"{stable}\", 100], [\"{canary}\", 0]]}}"
            )
        })?;
        let mut splits = Vec::new();
        targeting.each_fractional(&mut |buckets| splits.push(buckets));
        let ours: Vec<&[Node]> = splits
            .into_iter()
            .filter(|buckets| {
                let names: Vec<String> = buckets.iter().filter_map(|b| bucket_name(b, text)).collect();
                names.iter().any(|n| n == stable) && names.iter().any(|n| n == canary)
            })
            .collect();
        let buckets = match ours.as_slice() {
            [one] => *one,
            [] => return Err(format!("flag `{key}` has no `fractional` between `{stable}` and `{canary}`")),
            many => {
                return Err(format!(
                    "flag `{key}` has {} `fractional` splits between `{stable}` and `{canary}`; flightdeck drives one",
                    many.len()
                ))
            }
        };
        let mut found = (None, None);
        for bucket in buckets {
            let Some(name) = bucket_name(bucket, text) else { continue };
            let weight = bucket_weight(bucket, text).map_err(|e| format!("flag `{key}` bucket `{name}`: {e}"))?;
            if name == stable {
                found.0 = Some(weight);
            } else if name == canary {
                found.1 = Some(weight);
            } else {
                return Err(format!(
                    "flag `{key}`'s fractional has a third bucket `{name}`, whose share flightdeck would not drive"
                ));
            }
        }
        let ((stable, stable_at), (canary, canary_at)) = (found.0.unwrap(), found.1.unwrap());
        Ok(Split { stable, canary, stable_at, canary_at, disabled })
    }

    /// `text` with the two weights replaced, every other byte kept.
    fn with(&self, text: &str, stable: u64, canary: u64) -> String {
        let mut edits = [(self.stable_at.clone(), stable), (self.canary_at.clone(), canary)];
        // From the end, so the earlier span's offsets still hold.
        edits.sort_by_key(|(at, _)| std::cmp::Reverse(at.start));
        let mut out = text.to_string();
        for (at, weight) in edits {
            out.replace_range(at, &weight.to_string());
        }
        out
    }
}

/// A bucket `["variant", weight]`'s variant; `None` for the bucketing
/// expression that may come first (not an array).
fn bucket_name(bucket: &Node, text: &str) -> Option<String> {
    match &bucket.value {
        Json::Array(items) => items.first()?.text(text),
        _ => None,
    }
}

/// A bucket's weight and where it is written.
fn bucket_weight(bucket: &Node, text: &str) -> Result<(u64, Range<usize>), String> {
    let Json::Array(items) = &bucket.value else { return Err("not a bucket".into()) };
    let weight = items.get(1).ok_or("no weight; write one (`[\"name\", 0]`) for flightdeck to set")?;
    let written = &text[weight.span.clone()];
    match (&weight.value, written.parse::<u64>()) {
        (Json::Scalar, Ok(n)) => Ok((n, weight.span.clone())),
        _ => Err(format!("weight `{written}` is not a whole number flightdeck can set")),
    }
}

/// A JSON value and where it is in the text.
#[derive(Debug)]
struct Node {
    span: Range<usize>,
    value: Json,
}

#[derive(Debug)]
enum Json {
    /// Keys decoded, in file order.
    Object(Vec<(String, Node)>),
    Array(Vec<Node>),
    /// A string, number, boolean or null, as written.
    Scalar,
}

impl Node {
    fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Json::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// A string value, decoded.
    fn text(&self, text: &str) -> Option<String> {
        serde_json::from_str::<String>(&text[self.span.clone()]).ok()
    }

    /// Calls `found` with the arguments of every `fractional` operator under this node.
    fn each_fractional<'a>(&'a self, found: &mut dyn FnMut(&'a [Node])) {
        match &self.value {
            Json::Object(members) => {
                for (key, value) in members {
                    match (&**key, &value.value) {
                        ("fractional", Json::Array(args)) => found(args),
                        _ => value.each_fractional(found),
                    }
                }
            }
            Json::Array(items) => items.iter().for_each(|item| item.each_fractional(found)),
            Json::Scalar => {}
        }
    }
}

/// Reads valid JSON (checked by serde_json first) into [`Node`]s with spans.
struct Scanner<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        Scanner { text, at: 0 }
    }

    fn document(mut self) -> Node {
        self.value()
    }

    fn peek(&self) -> u8 {
        self.text.as_bytes().get(self.at).copied().unwrap_or(0)
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), b' ' | b'\t' | b'\n' | b'\r') {
            self.at += 1;
        }
    }

    fn value(&mut self) -> Node {
        self.skip_space();
        let start = self.at;
        let value = match self.peek() {
            b'{' => self.members(),
            b'[' => self.items(),
            b'"' => {
                self.string();
                Json::Scalar
            }
            _ => {
                while !matches!(self.peek(), b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r' | 0) {
                    self.at += 1;
                }
                Json::Scalar
            }
        };
        Node { span: start..self.at, value }
    }

    /// Past a string, from its opening quote to after its closing one.
    fn string(&mut self) {
        self.at += 1;
        loop {
            match self.peek() {
                b'\\' => self.at += 2,
                b'"' => break self.at += 1,
                0 => break,
                _ => self.at += 1,
            }
        }
    }

    fn members(&mut self) -> Json {
        self.at += 1;
        let mut members = Vec::new();
        loop {
            self.skip_space();
            match self.peek() {
                b'}' | 0 => break self.at += 1,
                b',' => self.at += 1,
                _ => {
                    let key_start = self.at;
                    self.string();
                    let key = serde_json::from_str::<String>(&self.text[key_start..self.at]).unwrap_or_default();
                    self.skip_space();
                    self.at += 1; // the colon
                    members.push((key, self.value()));
                }
            }
        }
        Json::Object(members)
    }

    fn items(&mut self) -> Json {
        self.at += 1;
        let mut items = Vec::new();
        loop {
            self.skip_space();
            match self.peek() {
                b']' | 0 => break self.at += 1,
                b',' => self.at += 1,
                _ => items.push(self.value()),
            }
        }
        Json::Array(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"{
  "$schema": "https://flagd.dev/schema/v0/flags.json",
  "flags": {
    "other": { "state": "ENABLED", "variants": { "a": 1, "b": 2 }, "defaultVariant": "a",
               "targeting": { "fractional": [["a", 50], ["b", 50]] } },
    "new-checkout": {
      "state": "ENABLED",
      "variants": { "off": false, "on": true },
      "defaultVariant": "off",
      "targeting": {
        "if": [ { "in": ["@example.com", { "var": "email" }] }, "on",
                { "fractional": [ { "cat": [ { "var": "$flagd.flagKey" }, { "var": "targetingKey" } ] },
                                  [ "off" , 90 ],
                                  ["on", 10] ] } ]
      }
    }
  }
}
"#;

    fn split(text: &str) -> Result<Split, String> {
        Split::find(text, "new-checkout", "off", "on")
    }

    #[test]
    fn finds_the_split_nested_in_targeting_and_rewrites_only_its_two_weights() {
        let s = split(FILE).unwrap();
        assert_eq!((s.stable, s.canary, s.disabled), (90, 10, false));
        assert_eq!(&FILE[s.stable_at.clone()], "90");
        let changed = s.with(FILE, 75, 25);
        assert_eq!(
            changed,
            FILE.replace("[ \"off\" , 90 ]", "[ \"off\" , 75 ]").replace("[\"on\", 10]", "[\"on\", 25]")
        );
        let again = split(&changed).unwrap();
        assert_eq!((again.stable, again.canary), (75, 25));
        // Widening a number shifts the later one; both still land.
        let full = again.with(&changed, 0, 100);
        assert_eq!((split(&full).unwrap().stable, split(&full).unwrap().canary), (0, 100));
        // The other flag's identical-looking split is untouched.
        assert!(full.contains(r#"[["a", 50], ["b", 50]]"#));
    }

    #[test]
    fn a_disabled_flag_is_seen() {
        let text = FILE.replacen(
            "\"state\": \"ENABLED\",\n      \"variants\": { \"off\"",
            "\"state\": \"DISABLED\",\n      \"variants\": { \"off\"",
            1,
        );
        assert!(split(&text).unwrap().disabled);
    }

    #[test]
    fn refuses_what_it_cannot_drive_with_the_reason() {
        let e = |text: &str| split(text).unwrap_err();
        assert!(e("{ \"flags\": ").starts_with("not JSON"), "{}", e("{"));
        assert_eq!(Split::find(FILE, "nope", "off", "on").unwrap_err(), "no flag `nope`");
        assert_eq!(
            Split::find(FILE, "new-checkout", "off", "beta").unwrap_err(),
            "flag `new-checkout` has no variant `beta`"
        );
        assert!(e(&FILE.replace("[\"on\", 10]", "[\"on\", 5], [\"beta\", 5]")).contains("third bucket `beta`"));
        assert!(e(&FILE.replace("[\"on\", 10]", "[\"on\"]")).contains("bucket `on`: no weight"));
        assert!(e(&FILE.replace("[\"on\", 10]", "[\"on\", 1.5]")).contains("`1.5` is not a whole number"));
        assert!(e(&FILE.replace("[\"on\", 10]", "[\"on\", {\"var\": \"w\"}]")).contains("is not a whole number"));
        let twice = FILE.replace("\"on\",\n", "{ \"fractional\": [[\"off\", 1], [\"on\", 1]] },\n");
        assert!(e(&twice).contains("has 2 `fractional` splits"), "{}", e(&twice));
        assert!(e(&FILE.replace("fractional", "fraction")).contains("no `fractional` between `off` and `on`"));
    }

    #[test]
    fn flags_given_as_an_array_are_found_by_key() {
        let text = r#"{"flags": [{"key": "new-checkout", "state": "ENABLED", "variants": {"off": false, "on": true},
            "defaultVariant": "off", "targeting": {"fractional": [["off", 99], ["on", 1]]}}]}"#;
        let s = split(text).unwrap();
        assert_eq!((s.stable, s.canary), (99, 1));
    }

    #[test]
    fn strings_with_escapes_and_brackets_do_not_confuse_the_scanner() {
        let text = r#"{"flags": {"new-checkout": {"metadata": {"note": "a \"quoted\" ] } [ {"}, "state": "ENABLED",
            "variants": {"off": "x", "on": "y"}, "defaultVariant": "off",
            "targeting": {"fractional": [["off", 100], ["on", 0]]}}}}"#;
        let s = split(text).unwrap();
        assert_eq!((s.stable, s.canary), (100, 0));
    }

    fn target(file: &Path) -> Target {
        let params = [
            ("file", file.display().to_string()),
            ("flag", "new-checkout".to_string()),
            ("stable_variant", "off".to_string()),
            ("canary_variant", "on".to_string()),
        ];
        Target {
            backend: BackendKind::Flagd,
            group: "flags".into(),
            production: false,
            params: params.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        }
    }

    #[tokio::test]
    async fn applies_reads_back_and_keeps_the_files_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flags.json");
        std::fs::write(&path, FILE).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let flagd = Flagd::from_target(&target(&path)).unwrap();
        assert_eq!(flagd.observe().await.unwrap().canary_weight, Some(10));
        flagd.apply(&Effect::SetWeight { canary: 50 }).await.unwrap();
        assert_eq!(flagd.observe().await.unwrap().canary_weight, Some(50));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
        flagd.apply(&Effect::Scale { version: Version::Stable, percent: 0 }).await.unwrap();
        flagd.apply(&Effect::SwitchActive { to: Version::Stable }).await.unwrap();
        assert_eq!(flagd.observe().await.unwrap().canary_weight, Some(0));
        std::fs::remove_file(&path).unwrap();
        let e = flagd.apply(&Effect::SetWeight { canary: 1 }).await.unwrap_err().to_string();
        assert!(e.contains("cannot read") && e.contains("flags.json"), "{e}");
    }

    #[test]
    fn reads_the_target() {
        let mut t = target(Path::new("/etc/flagd/flags.json"));
        assert_eq!(Flagd::from_target(&t).unwrap().name(), "flagd new-checkout in /etc/flagd/flags.json");
        t.params.insert("canary_variant".into(), "off".into());
        let same = ParamError::new("canary_variant", "`off` is also the stable variant");
        assert_eq!(Flagd::from_target(&t).unwrap_err(), same.into());
        t.params.remove("flag");
        assert_eq!(Flagd::from_target(&t).unwrap_err(), TargetError::Missing { backend: "flagd", key: "flag" });
    }
}
