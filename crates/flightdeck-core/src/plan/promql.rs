//! The two forms of a Prometheus query template, and the checks that keep a
//! batched one sound before it ever reaches Prometheus.
//!
//! A batched query asks for many versions at once and answers one series
//! per version, told apart by the version label. Two mistakes would make
//! that silently wrong, so `flightdeck check` refuses them:
//! - `{{versions}}` is a regular expression (`v1\\.4|v1\\.5`): matched with
//!   `=` it selects nothing once two versions are asked;
//! - an aggregation without the label (`sum(...)`) folds every version into
//!   one series that no version can be read from.
//!
//! This is a scan of the template's words and brackets, not a PromQL parser:
//! it finds the aggregation operators and their `by`/`without` lists,
//! skipping quoted strings. What it cannot see (a label dropped by some
//! other construct) is caught when the answer comes: a series without the
//! label makes every version of the batch missing, with that reason.

/// How a template selects the versions it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `{{version}}`: one query per version, answering one number.
    PerVersion,
    /// `{{versions}}`: one query for many versions, one series each.
    Batched,
}

/// The placeholder of a per-version template: the revision, verbatim.
pub const VERSION: &str = "{{version}}";
/// The placeholder of a batched template: the versions asked, as a regular
/// expression alternation, each regex-escaped.
pub const VERSIONS: &str = "{{versions}}";

/// Aggregation operators whose result keeps only the labels they are
/// grouped by (`topk`, `bottomk` and `limitk` keep the series' own labels).
const AGGREGATIONS: [&str; 10] =
    ["sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "quantile", "count_values"];

/// Why a template cannot be run; `label` is the plan's version label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("use {VERSION} (one query per version) or {VERSIONS} (batched), not both")]
    BothForms,
    #[error(
        "the query must select the version with {VERSION} (e.g. {label}=\"{VERSION}\") or, batched, \
         {VERSIONS} (e.g. sum by ({label}) (…{{{label}=~\"{VERSIONS}\"}}…))"
    )]
    NoVersion { label: String },
    /// `{{versions}}` matched with `=` (or inside a longer string) selects
    /// nothing once two versions are asked.
    #[error("{VERSIONS} is a regular expression of the versions asked: match it as {label}=~\"{VERSIONS}\"")]
    VersionsNotARegexMatch { label: String },
    /// An aggregation folds every version into one series.
    #[error(
        "`{op}` here drops the `{label}` label, so no version can be read from the answer: \
         write `{op} by ({label}) (…)` (a batched query answers one series per version)"
    )]
    AggregationDropsLabel { op: String, label: String },
    #[error(
        "a batched query must answer one series per version: aggregate with `sum by ({label}) (…)` \
         (`by (le, {label})` inside histogram_quantile)"
    )]
    NotAggregated { label: String },
}

/// The form of `template`, or why it cannot be run (batched templates are
/// checked against `label`).
pub fn form(template: &str, label: &str) -> Result<Form, TemplateError> {
    match (template.contains(VERSION), template.contains(VERSIONS)) {
        (true, true) => Err(TemplateError::BothForms),
        (true, false) => Ok(Form::PerVersion),
        (false, true) => {
            check_regex_match(template, label)?;
            check_grouping(template, label)?;
            Ok(Form::Batched)
        }
        (false, false) => Err(TemplateError::NoVersion { label: label.to_owned() }),
    }
}

/// A Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`).
pub fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Every `{{versions}}` is the whole of a double-quoted string matched with `=~`.
fn check_regex_match(template: &str, label: &str) -> Result<(), TemplateError> {
    let matched = |at: usize| {
        let before = template[..at].strip_suffix('"').map(str::trim_end);
        let after = &template[at + VERSIONS.len()..];
        before.is_some_and(|b| b.ends_with("=~")) && after.starts_with('"')
    };
    if template.match_indices(VERSIONS).all(|(at, _)| matched(at)) {
        return Ok(());
    }
    Err(TemplateError::VersionsNotARegexMatch { label: label.to_owned() })
}

/// There is an aggregation, and every one keeps `label` (`by` it, or
/// `without` other labels).
fn check_grouping(template: &str, label: &str) -> Result<(), TemplateError> {
    let tokens = tokens(template);
    let mut grouped = false;
    for (i, token) in tokens.iter().enumerate() {
        let Token::Word(op) = token else { continue };
        if !AGGREGATIONS.contains(&op.as_str()) {
            continue;
        }
        let Some(grouping) = grouping(&tokens, i) else { continue };
        let keeps = match &grouping {
            Grouping::By(labels) => labels.iter().any(|l| l == label),
            Grouping::Without(labels) => !labels.iter().any(|l| l == label),
            Grouping::None => false,
        };
        if !keeps {
            return Err(TemplateError::AggregationDropsLabel { op: op.clone(), label: label.to_owned() });
        }
        grouped = true;
    }
    if grouped {
        return Ok(());
    }
    Err(TemplateError::NotAggregated { label: label.to_owned() })
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Open,
    Close,
    Comma,
    Other,
}

/// Words, brackets and commas; quoted strings and everything else are `Other`.
fn tokens(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '(' => out.push(Token::Open),
            ')' => out.push(Token::Close),
            ',' => out.push(Token::Comma),
            '"' | '\'' | '`' => {
                // Backquoted strings have no escapes; the others do.
                let mut escaped = false;
                for d in chars.by_ref() {
                    if d == c && !escaped {
                        break;
                    }
                    escaped = c != '`' && d == '\\' && !escaped;
                }
                out.push(Token::Other);
            }
            c if c == '_' || c.is_ascii_alphabetic() => {
                let mut word = String::from(c);
                while let Some(&d) = chars.peek().filter(|d| **d == '_' || **d == ':' || d.is_ascii_alphanumeric()) {
                    word.push(d);
                    chars.next();
                }
                out.push(Token::Word(word));
            }
            c if c.is_whitespace() => {}
            _ => out.push(Token::Other),
        }
    }
    out
}

/// An aggregation's `by`/`without` list.
enum Grouping {
    By(Vec<String>),
    Without(Vec<String>),
    None,
}

/// The grouping of the aggregation named at `tokens[at]`, before its
/// argument (`sum by (x) (…)`) or after it (`sum(…) by (x)`); `None` when
/// the word is not followed by a call (a metric or label named `sum`).
fn grouping(tokens: &[Token], at: usize) -> Option<Grouping> {
    match tokens.get(at + 1)? {
        Token::Word(_) => modifier(tokens, at + 1).map(|(g, _)| g),
        Token::Open => {
            let close = matching_close(tokens, at + 1)?;
            Some(modifier(tokens, close + 1).map_or(Grouping::None, |(g, _)| g))
        }
        _ => None,
    }
}

/// `by (a, b)` or `without (a)` starting at `tokens[at]`, and the index after it.
fn modifier(tokens: &[Token], at: usize) -> Option<(Grouping, usize)> {
    let Some(Token::Word(word)) = tokens.get(at) else { return None };
    if !matches!(word.as_str(), "by" | "without") || tokens.get(at + 1) != Some(&Token::Open) {
        return None;
    }
    let close = matching_close(tokens, at + 1)?;
    let labels: Vec<String> = tokens[at + 2..close]
        .iter()
        .filter_map(|t| match t {
            Token::Word(w) => Some(w.clone()),
            _ => None,
        })
        .collect();
    let grouping = if word == "by" { Grouping::By(labels) } else { Grouping::Without(labels) };
    Some((grouping, close + 1))
}

fn matching_close(tokens: &[Token], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, t) in tokens.iter().enumerate().skip(open) {
        match t {
            Token::Open => depth += 1,
            Token::Close => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::PromQueries;

    #[test]
    fn the_default_queries_are_batched_and_the_old_ones_per_version() {
        for (_, t) in PromQueries::default().templates() {
            assert_eq!(form(t, "version"), Ok(Form::Batched), "{t}");
        }
        for (_, t) in PromQueries::batched("app_version").templates() {
            assert_eq!(form(t, "app_version"), Ok(Form::Batched), "{t}");
        }
        for (_, t) in PromQueries::per_version().templates() {
            assert_eq!(form(t, "version"), Ok(Form::PerVersion), "{t}");
        }
    }

    #[test]
    fn grouping_by_the_label_before_or_after_the_argument_is_batched() {
        let ok = [
            r#"sum(increase(m{version=~"{{versions}}"}[1m])) by (version)"#,
            r#"sum by (job, version) (rate(m{version =~ "{{versions}}"}[1m]))"#,
            r#"sum without (instance, pod) (rate(m{version=~"{{versions}}"}[1m]))"#,
            r#"max by (version) (p99_ms{version=~"{{versions}}", job="sum"})"#,
        ];
        for t in ok {
            assert_eq!(form(t, "version"), Ok(Form::Batched), "{t}");
        }
    }

    #[test]
    fn an_aggregation_that_drops_the_label_is_refused() {
        let drops = |op: &str, label: &str| TemplateError::AggregationDropsLabel { op: op.into(), label: label.into() };
        let e = form(r#"sum(increase(m{version=~"{{versions}}"}[1m]))"#, "version").unwrap_err();
        assert_eq!(e, drops("sum", "version"));
        assert!(e.to_string().starts_with("`sum` here drops the `version` label"), "{e}");
        // The outer aggregation folds the inner one's versions together.
        let e = form(r#"avg(sum by (version) (m{version=~"{{versions}}"}))"#, "version").unwrap_err();
        assert_eq!(e, drops("avg", "version"));
        let e = form(r#"sum without (version) (m{version=~"{{versions}}"})"#, "version").unwrap_err();
        assert_eq!(e, drops("sum", "version"));
        // Grouped by another label than the plan's.
        let e = form(r#"sum by (version) (m{app=~"{{versions}}"})"#, "app").unwrap_err();
        assert_eq!(e, drops("sum", "app"));
        let e = form(r#"m{version=~"{{versions}}"}"#, "version").unwrap_err();
        assert_eq!(e, TemplateError::NotAggregated { label: "version".into() });
        assert!(e.to_string().starts_with("a batched query must answer one series per version"), "{e}");
    }

    #[test]
    fn versions_must_be_matched_as_a_regular_expression() {
        let not_regex = TemplateError::VersionsNotARegexMatch { label: "version".into() };
        let e = form(r#"sum by (version) (m{version="{{versions}}"})"#, "version").unwrap_err();
        assert_eq!(e, not_regex);
        assert_eq!(
            e.to_string(),
            r#"{{versions}} is a regular expression of the versions asked: match it as version=~"{{versions}}""#
        );
        let e = form(r#"sum by (version) (m{version=~"v0|{{versions}}"})"#, "version").unwrap_err();
        assert_eq!(e, not_regex);
    }

    #[test]
    fn a_template_selects_versions_one_way() {
        let e = form(r#"sum(m{version="{{version}}"}) + sum by (version) (m{version=~"{{versions}}"})"#, "version");
        assert_eq!(e, Err(TemplateError::BothForms));
        let message = TemplateError::BothForms.to_string();
        assert_eq!(message, "use {{version}} (one query per version) or {{versions}} (batched), not both");
        let e = form("sum(m)", "version").unwrap_err();
        assert_eq!(e, TemplateError::NoVersion { label: "version".into() });
        let message = e.to_string();
        assert!(
            message.starts_with("the query must select the version with {{version}} (e.g. version=\"{{version}}\")")
        );
        assert!(message.ends_with("(…{version=~\"{{versions}}\"}…))"), "{message}");
    }

    #[test]
    fn label_names_follow_prometheus() {
        assert!(is_label_name("version") && is_label_name("_v2") && is_label_name("app_version"));
        assert!(!is_label_name("") && !is_label_name("2v") && !is_label_name("app-version"));
    }
}
