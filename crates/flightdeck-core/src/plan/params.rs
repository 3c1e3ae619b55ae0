//! What a backend reads from a plan's `[target]`. Each backend declares
//! its parameters once, beside the code that reads them, as [`Param`]s
//! (name, type, required, help); `flightdeck check` and `run` hold a
//! target to that declaration with [`check`], before the backend is built.
//! Adding a parameter is one line in the backend's file.

use super::{Target, TARGET_KEYS};
use crate::toml_file::{TomlError, TomlFile};
use std::ops::Range;

/// A parameter of a plan's `[target]` that its backend cannot use; shown
/// at that parameter's value in the plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("target.{key}: {message}")]
pub struct ParamError {
    pub key: String,
    pub message: String,
}

impl ParamError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> ParamError {
        ParamError { key: key.into(), message: message.into() }
    }
}

/// An error about one field of a plan outside `[target]`
/// (`rollout.canary`, `strategy.kind`, `metrics.load_balancer`), shown at it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The dotted path of the field.
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &'static str, message: impl Into<String>) -> FieldError {
        FieldError { field, message: message.into() }
    }
}

/// Why a backend cannot be built from a plan's `[target]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// One parameter cannot be used.
    #[error(transparent)]
    Param(#[from] ParamError),
    /// A parameter the backend needs is not there (the plan check refuses
    /// this first; this is for targets built in code).
    #[error("{backend} target needs `{key}`")]
    Missing { backend: &'static str, key: &'static str },
    /// The target cannot go with another part of the plan.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// The target names another backend: the caller picked the wrong one.
    #[error("target backend is {found}, not {expected}")]
    OtherBackend { found: &'static str, expected: &'static str },
    /// About the target as a whole (a client that cannot be built).
    #[error("{0}")]
    Target(String),
}

/// One parameter a backend reads.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    pub kind: ParamKind,
    pub required: bool,
    /// What it is, in a few words ("the HAProxy backend holding both servers").
    pub help: &'static str,
}

/// What a parameter's value must look like. Values come as text (TOML
/// integers and booleans are written out).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParamKind {
    /// Any text (names, paths, addresses; the backend checks their shape).
    Text,
    /// A number, decimals allowed.
    Number,
    /// A whole number.
    Whole,
    /// A whole number of at least 1.
    Count,
    /// A positive number of milliseconds.
    Millis,
    /// One of these words.
    OneOf(&'static [&'static str]),
}

impl Param {
    pub const fn required(name: &'static str, kind: ParamKind, help: &'static str) -> Param {
        Param { name, kind, required: true, help }
    }

    pub const fn optional(name: &'static str, kind: ParamKind, help: &'static str) -> Param {
        Param { name, kind, required: false, help }
    }

    /// Why `value` does not fit, if it does not.
    fn refuse(&self, value: &str) -> Option<String> {
        let fits = match self.kind {
            ParamKind::Text => !(self.required && value.trim().is_empty()),
            ParamKind::Number => value.parse::<f64>().is_ok_and(f64::is_finite),
            ParamKind::Whole => value.parse::<i64>().is_ok(),
            ParamKind::Count => value.parse::<u32>().is_ok_and(|n| n > 0),
            ParamKind::Millis => value.trim().parse::<u64>().is_ok_and(|n| n > 0),
            ParamKind::OneOf(words) => words.contains(&value),
        };
        (!fits).then(|| match self.kind {
            ParamKind::Text => format!("must not be blank; give {}", self.help),
            ParamKind::Number => format!("`{value}` is not a number"),
            ParamKind::Whole => format!("`{value}` is not a whole number"),
            ParamKind::Count => format!("`{value}` is not a whole number ≥ 1"),
            ParamKind::Millis => format!("`{value}` is not a positive number of milliseconds"),
            ParamKind::OneOf(words) => {
                format!("unknown {} `{value}`; expected one of: {}", self.name, words.join(", "))
            }
        })
    }
}

/// Holds a plan's target to `declared`, its backend's parameters (its
/// own, then those it shares with its family): every required parameter
/// is there (else the error points at `[target]`), then each parameter,
/// in file order, is known and of its type (else the error points at its
/// value).
pub fn check(target: &Target, declared: &[&[Param]], toml: &TomlFile) -> Result<(), TomlError> {
    let params = || declared.iter().flat_map(|group| group.iter());
    let backend = target.backend.name();
    if let Some(missing) = params().find(|p| p.required && !target.params.contains_key(p.name)) {
        let required: Vec<&str> = params().filter(|p| p.required).map(|p| p.name).collect();
        let (field, place) = written_at(missing.name);
        let message = format!(
            "backend {backend:?} needs parameter `{}` ({}) in {place}; required for {backend}: {}",
            missing.name,
            missing.help,
            required.join(", ")
        );
        return Err(toml.error(toml.span_of(&["target"]).as_ref(), &field, message));
    }
    let mut present: Vec<(&str, &str, String, Option<Range<usize>>)> = target
        .params
        .iter()
        .map(|(name, value)| {
            let (field, span) = located(toml, name);
            (name.as_str(), value.as_str(), field, span)
        })
        .collect();
    present.sort_by_key(|(_, _, _, span)| span.as_ref().map_or(0, |s| s.start));
    for (name, value, field, span) in present {
        let message = match params().find(|p| p.name == name) {
            Some(param) => param.refuse(value),
            None => {
                let known: Vec<&str> = params().map(|p| p.name).collect();
                Some(format!("unknown parameter for backend {backend:?}; it reads: {}", known.join(", ")))
            }
        };
        if let Some(message) = message {
            return Err(toml.error(span.as_ref(), &field, message));
        }
    }
    Ok(())
}

/// Where a parameter is written: its field (`target.x`, or
/// `target.params.x` for one set in `[target.params]`) and its value's
/// place, else `[target]`'s.
fn located(toml: &TomlFile, name: &str) -> (String, Option<Range<usize>>) {
    let inline = toml.span_of(&["target", name]).filter(|_| !TARGET_KEYS.contains(&name));
    match inline {
        Some(span) => (format!("target.{name}"), Some(span)),
        None => {
            let span = toml.span_of(&["target", "params", name]).or_else(|| toml.span_of(&["target"]));
            (format!("target.params.{name}"), span)
        }
    }
}

/// The field and table a missing parameter goes in: a name that is one of
/// `[target]`'s own keys can only be set in `[target.params]`.
fn written_at(name: &str) -> (String, &'static str) {
    if TARGET_KEYS.contains(&name) {
        (format!("target.params.{name}"), "[target.params]")
    } else {
        (format!("target.{name}"), "[target]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Plan;

    const ROLLOUT: &str = "[rollout]\nname = \"a\"\nstable = \"v1\"\ncanary = \"v2\"\n\n";

    /// A backend's own parameters and its family's.
    const OWN: &[Param] = &[
        Param::required("admin", ParamKind::Text, "the admin listener"),
        Param::optional("scenario", ParamKind::OneOf(&["healthy", "bad-canary"]), "how the canary behaves"),
        Param::optional("rps", ParamKind::Number, "requests per second"),
        Param::optional("probe_rps", ParamKind::Number, "probe requests per second"),
    ];
    const FAMILY: &[Param] = &[Param::required("backend", ParamKind::Text, "the proxy's backend")];

    fn check_text(target: &str) -> Result<(), String> {
        let text = format!("{ROLLOUT}{target}");
        let plan = Plan::parse("p.toml", &text).map_err(|e| e.to_string())?;
        let toml = TomlFile::parse("p.toml", &text, "plan").unwrap();
        check(&plan.target, &[OWN, FAMILY], &toml).map_err(|e| e.to_string())
    }

    #[test]
    fn a_missing_required_parameter_points_at_the_target_table_with_what_it_is() {
        let error = check_text("[target]\nbackend = \"envoy\"\n\n[target.params]\nbackend = \"b\"\n").unwrap_err();
        assert_eq!(
            error,
            "p.toml:6:1: target.admin: backend \"envoy\" needs parameter `admin` (the admin listener) in [target]; \
             required for envoy: admin, backend"
        );
        let error = check_text("[target]\nbackend = \"envoy\"\nadmin = \"a\"\n").unwrap_err();
        assert!(
            error.starts_with(
                "p.toml:6:1: target.params.backend: backend \"envoy\" needs parameter `backend` \
                                   (the proxy's backend) in [target.params]"
            ),
            "{error}"
        );
    }

    #[test]
    fn unknown_and_ill_typed_parameters_point_at_the_first_in_the_file() {
        let full = "[target]\nbackend = \"envoy\"\nadmin = \"a\"\n";
        let nested = "\n[target.params]\nbackend = \"b\"\n";
        assert_eq!(check_text(&format!("{full}{nested}")), Ok(()));
        let error = check_text(&format!("{full}probe_rps = \"x\"\nrps = \"fast\"\n{nested}")).unwrap_err();
        assert_eq!(error, "p.toml:9:13: target.probe_rps: `x` is not a number");
        let error = check_text(&format!("{full}{nested}scenaro = \"healthy\"\n")).unwrap_err();
        assert!(error.starts_with("p.toml:12:11: target.params.scenaro: unknown parameter for backend \"envoy\""));
        let error = check_text(&format!("{full}scenario = \"chaos\"\n{nested}")).unwrap_err();
        assert_eq!(
            error,
            "p.toml:9:12: target.scenario: unknown scenario `chaos`; expected one of: healthy, bad-canary"
        );
        let error = check_text(&format!("{full}scenario = false\n{nested}")).unwrap_err();
        assert!(error.starts_with("p.toml:9:12: target.scenario: unknown scenario `false`"), "{error}");
    }

    #[test]
    fn each_kind_refuses_what_does_not_fit() {
        let param = |kind| Param::optional("p", kind, "a p");
        assert_eq!(param(ParamKind::Number).refuse("1.5"), None);
        assert!(param(ParamKind::Number).refuse("NaN").is_some());
        assert_eq!(param(ParamKind::Whole).refuse("-3"), None);
        assert!(param(ParamKind::Whole).refuse("3.5").is_some());
        assert!(param(ParamKind::Count).refuse("0").is_some());
        assert_eq!(param(ParamKind::Millis).refuse(" 250 "), None);
        assert!(param(ParamKind::Millis).refuse("soon").is_some());
        assert!(param(ParamKind::OneOf(&["a", "b"])).refuse("c").is_some());
        assert_eq!(Param::optional("p", ParamKind::Text, "a p").refuse(""), None);
        assert!(Param::required("p", ParamKind::Text, "a p").refuse(" ").is_some());
    }
}
