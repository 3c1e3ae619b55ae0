//! Prometheus' answer (`/api/v1/query`) to readings: one number for a
//! per-version query, one number per version (by its label) for a batched one.

use serde::de::IgnoredAny;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Why one query gave no usable number.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(super) enum QueryError {
    #[error("cannot connect to {address}: {detail}")]
    Connect { address: String, detail: String },
    #[error("no answer from {address} within {timeout:?}")]
    Timeout { address: String, timeout: Duration },
    #[error("no answer from {address} within {timeout:?}: all {slots} query slots stayed busy")]
    NoSlot { address: String, timeout: Duration, slots: usize },
    #[error("request to {address} failed: {detail}")]
    Transport { address: String, detail: String },
    #[error("HTTP {status}: {detail}")]
    Http { status: u16, detail: String },
    #[error("status {status}: {detail}")]
    Failed { status: String, detail: String },
    #[error("malformed answer: {0}")]
    Malformed(String),
    #[error("result type {0}, expected an instant vector or a scalar")]
    ResultType(String),
    #[error("{0} series, expected one (aggregate the query, e.g. with sum(...))")]
    SeveralSeries(usize),
    #[error("{count} series with {label}=\"{version}\", expected one (group the query by ({label}) only)")]
    SeveralForVersion { count: usize, label: String, version: String },
    #[error(
        "a series without the `{0}` label in the answer, so no version can be told apart (group the query by ({0}))"
    )]
    Unlabelled(String),
    #[error("empty result (no series matched)")]
    Empty,
    #[error("value {0} is not a finite number")]
    NotFinite(f64),
    #[error("negative count {0}")]
    Negative(f64),
}

/// One query's answer for one version: `None` is no series (an empty vector).
pub(super) type Reading = Result<Option<f64>, QueryError>;

/// Prometheus' answer envelope.
#[derive(Deserialize)]
struct Reply {
    status: String,
    data: Option<Data>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
}

impl Reply {
    /// "bad_data: parse error ..." or the bare status.
    fn error_text(&self) -> String {
        match (&self.error_type, &self.error) {
            (Some(t), Some(e)) => format!("{t}: {e}"),
            (None, Some(e)) => e.clone(),
            (Some(t), None) => t.clone(),
            (None, None) => format!("no error text (status {})", self.status),
        }
    }
}

/// A successful answer's result.
#[derive(Debug, Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
pub(super) enum Data {
    Vector(Vec<Series>),
    Scalar(Point),
    Matrix(IgnoredAny),
    String(IgnoredAny),
}

#[derive(Debug, Deserialize)]
pub(super) struct Series {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    value: Point,
}

/// `[<unix seconds>, "<number>"]`; Prometheus writes NaN and ±Inf as text.
#[derive(Debug, Deserialize)]
pub(super) struct Point(IgnoredAny, String);

impl Point {
    fn number(&self) -> Result<f64, QueryError> {
        self.1.parse().map_err(|_| QueryError::Malformed(format!("value {:?} is not a number", self.1)))
    }
}

/// One HTTP answer to its result: a non-2xx status, a `status` other than
/// `success` and malformed JSON are errors.
pub(super) fn parse_reply(status: u16, body: &str) -> Result<Data, QueryError> {
    let reply: Result<Reply, _> = serde_json::from_str(body);
    if !(200..300).contains(&status) {
        let detail = reply.map_or_else(|_| excerpt(body), |r| r.error_text());
        return Err(QueryError::Http { status, detail });
    }
    let reply = reply.map_err(|e| QueryError::Malformed(format!("{e} in {}", excerpt(body))))?;
    if reply.status != "success" {
        return Err(QueryError::Failed { status: reply.status.clone(), detail: reply.error_text() });
    }
    reply.data.ok_or_else(|| QueryError::Malformed("no data".into()))
}

/// A per-version query's answer: a scalar or exactly one series.
pub(super) fn single(data: &Data) -> Reading {
    match data {
        Data::Scalar(point) => point.number().map(Some),
        Data::Vector(series) => match series.as_slice() {
            [] => Ok(None),
            [one] => one.value.number().map(Some),
            many => Err(QueryError::SeveralSeries(many.len())),
        },
        other => Err(unexpected(other)),
    }
}

/// `version`'s number in a batched answer: its one series by `label`;
/// absent is `None` (the same "no data" as an empty per-version answer).
/// A series without the label (an aggregation dropped it) means no version
/// can be trusted, so every version of the batch gets that error.
pub(super) fn for_version(data: &Data, label: &str, version: &str) -> Reading {
    let series = match data {
        Data::Vector(series) => series,
        Data::Scalar(_) => return Err(QueryError::Unlabelled(label.to_owned())),
        other => return Err(unexpected(other)),
    };
    if series.iter().any(|s| !s.metric.contains_key(label)) {
        return Err(QueryError::Unlabelled(label.to_owned()));
    }
    let mine: Vec<&Series> = series.iter().filter(|s| s.metric[label] == version).collect();
    match mine.as_slice() {
        [] => Ok(None),
        [one] => one.value.number().map(Some),
        many => Err(QueryError::SeveralForVersion {
            count: many.len(),
            label: label.to_owned(),
            version: version.to_owned(),
        }),
    }
}

/// A histogram's buckets in an answer: `(le, count)` of every series (for
/// a batched answer, of `version`'s series by `label`), as Prometheus
/// names the edges (`"0.25"`, `"+Inf"`). Empty when nothing matched.
pub(super) fn buckets(data: &Data, label: Option<&str>, version: &str) -> Result<Vec<(f64, f64)>, QueryError> {
    let series = match data {
        Data::Vector(series) => series,
        other => return Err(unexpected(other)),
    };
    let mut out = Vec::new();
    for s in series {
        if label.is_some_and(|label| s.metric.get(label).map(String::as_str) != Some(version)) {
            continue;
        }
        let Some(le) = s.metric.get("le") else {
            return Err(QueryError::Malformed("a bucket series without an `le` label (group by (le, …))".into()));
        };
        let edge: f64 = le.parse().map_err(|_| QueryError::Malformed(format!("le={le:?} is not a number")))?;
        out.push((edge, s.value.number()?));
    }
    Ok(out)
}

fn unexpected(data: &Data) -> QueryError {
    let kind = match data {
        Data::Matrix(_) => "matrix",
        Data::String(_) => "string",
        Data::Vector(_) => "vector",
        Data::Scalar(_) => "scalar",
    };
    QueryError::ResultType(kind.into())
}

/// The start of a body, for messages (an HTML error page can be long).
fn excerpt(body: &str) -> String {
    const LIMIT: usize = 200;
    let body = body.trim();
    match body.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{:?}…", &body[..cut]),
        None if body.is_empty() => "empty body".into(),
        None => format!("{body:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(in crate::metrics::prometheus) fn vector(value: &str) -> String {
        format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{}},"value":[1700000000.0,"{value}"]}}]}}}}"#
        )
    }

    const EMPTY: &str = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;

    fn one(status: u16, body: &str) -> Reading {
        single(&parse_reply(status, body)?)
    }

    #[test]
    fn replies_parse_to_one_number() {
        assert_eq!(one(200, &vector("299.6")), Ok(Some(299.6)));
        assert_eq!(one(200, EMPTY), Ok(None));
        let scalar = r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"42"]}}"#;
        assert_eq!(one(200, scalar), Ok(Some(42.0)));
        assert!(one(200, &vector("NaN")).unwrap().unwrap().is_nan());
        assert_eq!(one(200, &vector("+Inf")), Ok(Some(f64::INFINITY)));
    }

    #[test]
    fn unusable_replies_say_why() {
        let failed = r#"{"status":"error","errorType":"execution","error":"query timed out"}"#;
        assert_eq!(one(200, failed).unwrap_err().to_string(), "status error: execution: query timed out");
        let bad = r#"{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected \")\""}"#;
        assert_eq!(one(400, bad).unwrap_err().to_string(), r#"HTTP 400: bad_data: 1:5: parse error: unexpected ")""#);
        assert_eq!(
            one(502, "<html>Bad Gateway</html>").unwrap_err().to_string(),
            r#"HTTP 502: "<html>Bad Gateway</html>""#
        );
        let malformed = one(200, r#"{"status":"success","data":{"resultType":"vector","result":[{"#);
        assert!(matches!(malformed, Err(QueryError::Malformed(_))), "{malformed:?}");
        let two = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"code":"200"},"value":[1,"1"]},{"metric":{"code":"500"},"value":[1,"2"]}]}}"#;
        assert_eq!(one(200, two), Err(QueryError::SeveralSeries(2)));
        let matrix = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert_eq!(one(200, matrix), Err(QueryError::ResultType("matrix".into())));
        let text = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"many"]}]}}"#;
        assert!(matches!(one(200, text), Err(QueryError::Malformed(_))));
    }

    fn batched(series: &[(&str, &str)]) -> Data {
        let series: Vec<String> = series
            .iter()
            .map(|(v, n)| format!(r#"{{"metric":{{"version":"{v}","job":"api"}},"value":[1,"{n}"]}}"#))
            .collect();
        let body =
            format!(r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#, series.join(","));
        parse_reply(200, &body).unwrap()
    }

    #[test]
    fn a_batched_answer_gives_each_version_its_own_series() {
        let data = batched(&[("v1", "120"), ("v2.0", "7"), ("v3", "NaN")]);
        assert_eq!(for_version(&data, "version", "v1"), Ok(Some(120.0)));
        assert_eq!(for_version(&data, "version", "v2.0"), Ok(Some(7.0)));
        assert!(for_version(&data, "version", "v3").unwrap().unwrap().is_nan());
        // Not in the answer: no data for that version, as an empty per-version answer.
        assert_eq!(for_version(&data, "version", "v4"), Ok(None));
        // `v2.0` is a label value, not a pattern: `v2x0` is not it.
        assert_eq!(for_version(&data, "version", "v2x0"), Ok(None));
    }

    #[test]
    fn several_series_for_one_version_fail_that_version_only() {
        let data = batched(&[("v1", "1"), ("v2", "2"), ("v2", "3")]);
        assert_eq!(for_version(&data, "version", "v1"), Ok(Some(1.0)));
        let e = for_version(&data, "version", "v2").unwrap_err();
        assert_eq!(e.to_string(), r#"2 series with version="v2", expected one (group the query by (version) only)"#);
    }

    #[test]
    fn an_answer_without_the_label_fails_every_version() {
        let data = parse_reply(200, &vector("10")).unwrap();
        for version in ["v1", "v2"] {
            assert_eq!(for_version(&data, "version", version), Err(QueryError::Unlabelled("version".into())));
        }
        let data = batched(&[("v1", "1")]);
        assert_eq!(for_version(&data, "revision", "v1"), Err(QueryError::Unlabelled("revision".into())));
        let scalar = parse_reply(200, r#"{"status":"success","data":{"resultType":"scalar","result":[1,"4"]}}"#);
        assert!(matches!(for_version(&scalar.unwrap(), "version", "v1"), Err(QueryError::Unlabelled(_))));
    }
}
