//! AWS calls that fail, in words the cockpit can show: which call, on what,
//! and what to do. Throttling and expired credentials get their own
//! message; every other service error keeps AWS's code and message.

use crate::backend::BackendError;
use aws_sdk_ecs::config::http::HttpResponse;
use aws_sdk_ecs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// Error codes AWS answers when it throttles a caller.
const THROTTLING: [&str; 8] = [
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
];

/// Error codes of expired, missing or wrong credentials.
const CREDENTIALS: [&str; 9] = [
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestExpired",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "MissingAuthenticationToken",
    "AuthFailure",
];

/// Where calls go, for messages: the backend's label and the profile.
#[derive(Debug, Clone)]
pub struct Site {
    pub label: String,
    pub profile: Option<String>,
}

impl Site {
    /// A failed SDK call of `action` ("set canary weight 10 % (ModifyRule …)").
    pub fn error<E>(&self, action: &str, e: SdkError<E, HttpResponse>) -> BackendError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match &e {
            SdkError::ServiceError(service) => {
                let err = service.err();
                let status = service.raw().status().as_u16();
                self.refused(action, err.code().unwrap_or(""), err.message().unwrap_or(""), status)
            }
            SdkError::TimeoutError(_) => BackendError::Unreachable {
                backend: self.label.clone(),
                detail: format!("{action}: no answer within {} s", super::CALL_TIMEOUT.as_secs()),
            },
            SdkError::DispatchFailure(_) => BackendError::Unreachable {
                backend: self.label.clone(),
                detail: format!("{action}: {}", DisplayErrorContext(&e)),
            },
            // Credentials that cannot be loaded fail before anything is sent.
            _ => {
                let text = DisplayErrorContext(&e).to_string();
                let hint = if text.contains("credentials") || text.contains("token") { self.login_hint() } else { "" };
                self.refusal(action, format!("{text}{hint}"))
            }
        }
    }

    /// A service's answer, by code (HTTP status when there is none).
    pub fn refused(&self, action: &str, code: &str, message: &str, status: u16) -> BackendError {
        let said = match (code, message) {
            ("", "") => format!("HTTP {status}"),
            ("", m) => format!("HTTP {status}: {m}"),
            (c, "") => c.to_owned(),
            (c, m) => format!("{c}: {m}"),
        };
        let detail = if THROTTLING.contains(&code) || status == 429 {
            format!("AWS is throttling calls ({said}); flightdeck holds here, resume once calls go through")
        } else if CREDENTIALS.contains(&code) {
            format!("AWS credentials expired or invalid ({said}){}", self.login_hint())
        } else {
            said
        };
        self.refusal(action, detail)
    }

    pub fn refusal(&self, action: &str, detail: String) -> BackendError {
        BackendError::Refused { backend: self.label.clone(), action: action.to_owned(), detail }
    }

    fn login_hint(&self) -> &'static str {
        if self.profile.is_some() {
            "; refresh them (`aws sso login --profile <profile>`, or new keys), then resume"
        } else {
            "; refresh them (AWS_* variables or a profile), then resume"
        }
    }

    /// A verb ECS does not have, refused with the reason.
    pub fn unsupported(&self, verb: &str, why: &str) -> BackendError {
        BackendError::Unsupported { backend: self.label.clone(), effect: format!("{verb}: {why}") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_and_credentials_say_what_to_do() {
        let site = Site { label: "ecs prod/checkout".into(), profile: Some("prod".into()) };
        let throttled = site.refused("observe (DescribeServices)", "ThrottlingException", "Rate exceeded", 400);
        assert_eq!(
            throttled.to_string(),
            "ecs prod/checkout refused observe (DescribeServices): AWS is throttling calls (ThrottlingException: \
             Rate exceeded); flightdeck holds here, resume once calls go through"
        );
        let expired =
            site.refused("x", "ExpiredTokenException", "The security token included in the request is expired", 400);
        assert!(expired.to_string().contains("AWS credentials expired or invalid (ExpiredTokenException"), "{expired}");
        assert!(expired.to_string().contains("aws sso login --profile"), "{expired}");
        assert_eq!(site.refused("x", "", "", 500).to_string(), "ecs prod/checkout refused x: HTTP 500");
    }
}
