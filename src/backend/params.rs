//! What a backend reads from a plan's `[target]`. Each backend declares
//! its parameters once, beside the code that reads them (name, type,
//! required, help); `flightdeck check` and `run` hold a target to that
//! declaration, with positions, before the backend is built. Adding a
//! parameter is one line in the backend's file.

use flightdeck_core::plan::{BackendKind, Target, TARGET_KEYS};
use flightdeck_core::{TomlError, TomlFile};
use std::ops::Range;

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

/// The parameters of `backend`: its own, then those it shares with its
/// family. `None` when the backend is not part of this build.
pub fn declared(backend: BackendKind) -> Option<&'static [&'static [Param]]> {
    match backend {
        BackendKind::Sim => Some(&[super::sim::PARAMS]),
        #[cfg(feature = "proxy")]
        BackendKind::Haproxy => Some(&[super::proxy::haproxy::PARAMS, super::proxy::PARAMS]),
        #[cfg(feature = "proxy")]
        BackendKind::Envoy => Some(&[super::proxy::envoy::PARAMS, super::proxy::PARAMS]),
        #[cfg(feature = "proxy")]
        BackendKind::Nginx => Some(&[super::proxy::nginx::PARAMS, super::proxy::PARAMS]),
        #[cfg(feature = "k8s")]
        BackendKind::ArgoRollouts => Some(&[super::k8s::ARGO_PARAMS, super::k8s::PARAMS]),
        #[cfg(feature = "k8s")]
        BackendKind::Deployment => Some(&[super::k8s::DEPLOYMENT_PARAMS, super::k8s::PARAMS]),
        #[cfg(feature = "ecs")]
        BackendKind::Ecs => Some(&[super::ecs::PARAMS]),
        #[allow(unreachable_patterns)] // every backend built
        _ => None,
    }
}

/// Holds a plan's target to its backend's declaration: every required
/// parameter is there (else the error points at `[target]`), then each
/// parameter, in file order, is known and of its type (else the error
/// points at its value). Backends not in this build are left to the caller.
pub fn check(target: &Target, toml: &TomlFile) -> Result<(), TomlError> {
    let Some(declared) = declared(target.backend) else { return Ok(()) };
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
    use flightdeck_core::Plan;

    const ROLLOUT: &str = "[rollout]\nname = \"a\"\nstable = \"v1\"\ncanary = \"v2\"\n\n";

    fn check_text(target: &str) -> Result<(), String> {
        let text = format!("{ROLLOUT}{target}");
        let plan = Plan::parse("p.toml", &text).map_err(|e| e.to_string())?;
        let toml = TomlFile::parse("p.toml", &text, "plan").unwrap();
        check(&plan.target, &toml).map_err(|e| e.to_string())
    }

    #[test]
    fn every_built_backend_declares_helpful_unique_parameters() {
        for name in BackendKind::NAMES {
            let backend = BackendKind::parse(name).unwrap();
            let Some(declared) = declared(backend) else { continue };
            let params: Vec<&Param> = declared.iter().flat_map(|g| g.iter()).collect();
            for (i, p) in params.iter().enumerate() {
                assert!(!p.help.trim().is_empty(), "{name}.{} has no help", p.name);
                assert!(params[..i].iter().all(|q| q.name != p.name), "{name}.{} declared twice", p.name);
            }
        }
    }

    #[test]
    fn a_missing_required_parameter_points_at_the_target_table() {
        let error = check_text("[target]\nbackend = \"sim\"\n").map(|_| "ok");
        assert_eq!(error, Ok("ok"), "the simulator needs nothing");
        #[cfg(feature = "proxy")]
        {
            let error =
                check_text("[target]\nbackend = \"envoy\"\nadmin = \"x\"\nstable_cluster = \"a\"\n").unwrap_err();
            assert!(
                error.starts_with("p.toml:6:1: target.canary_cluster: backend \"envoy\" needs parameter"),
                "{error}"
            );
        }
    }

    #[test]
    fn unknown_and_ill_typed_parameters_point_at_the_first_in_the_file() {
        let error = check_text("[target]\nprobe_rps = \"x\"\nrps = \"fast\"\n").unwrap_err();
        assert_eq!(error, "p.toml:7:13: target.probe_rps: `x` is not a number");
        let error = check_text("[target]\nrps = 10\n\n[target.params]\nscenaro = \"healthy\"\n").unwrap_err();
        assert!(
            error.starts_with("p.toml:10:11: target.params.scenaro: unknown parameter for backend \"sim\""),
            "{error}"
        );
        let error = check_text("[target]\nscenario = \"chaos\"\n").unwrap_err();
        assert!(error.starts_with("p.toml:7:12: target.scenario: unknown scenario `chaos`; expected one of: healthy"));
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
