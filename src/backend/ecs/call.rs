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

/// Error codes of an operation the endpoint does not have: the AWS JSON
/// protocols answer an unknown `X-Amz-Target` with
/// `UnknownOperationException` (HTTP 400); the query protocol says
/// `InvalidAction`. HTTP 501 (Not Implemented) is what local emulators
/// (LocalStack) answer for an API they do not emulate.
const UNKNOWN_OPERATION: [&str; 3] = ["UnknownOperationException", "UnknownOperation", "InvalidAction"];

/// Whether `e` says the endpoint has no such operation (an older or
/// partial endpoint), as opposed to refusing this call (throttling,
/// AccessDenied, a server error): only the first may be worked around.
pub fn is_unknown_operation<E>(e: &SdkError<E, HttpResponse>) -> bool
where
    E: ProvideErrorMetadata,
{
    match e {
        SdkError::ServiceError(service) => {
            UNKNOWN_OPERATION.contains(&service.err().code().unwrap_or("")) || service.raw().status().as_u16() == 501
        }
        _ => false,
    }
}

/// Whether `e` failed on the credentials (none, expired, an SSO session to
/// renew) rather than on the way to AWS: its text (the whole chain of
/// sources, where the SDK's `CredentialsError` says "credentials") says so.
fn is_credentials<E>(e: &SdkError<E, HttpResponse>) -> bool
where
    E: std::error::Error + 'static,
{
    let text = DisplayErrorContext(e).to_string().to_ascii_lowercase();
    ["credential", "token", "sso session"].iter().any(|w| text.contains(w))
}

/// An error and its sources, each said once ("dispatch failure: other: an
/// error occurred while loading credentials: failed to read `…`").
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut said: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if said.last() != Some(&text) {
            said.push(text);
        }
        next = err.source();
    }
    said.join(": ")
}

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
            // Credentials that cannot be loaded (an expired SSO session)
            // fail before anything is sent, as a dispatch failure: AWS was
            // not reached, but it is the credentials that need doing.
            SdkError::DispatchFailure(_) if is_credentials(&e) => {
                let text = causes(&e);
                self.refusal(action, format!("AWS credentials could not be loaded ({text}){}", self.login_hint()))
            }
            SdkError::DispatchFailure(_) => BackendError::Unreachable {
                backend: self.label.clone(),
                detail: format!("{action}: {}", DisplayErrorContext(&e)),
            },
            // Credentials that cannot be loaded fail before anything is sent.
            _ => {
                let text = DisplayErrorContext(&e).to_string();
                let hint = if is_credentials(&e) { self.login_hint() } else { String::new() };
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

    fn login_hint(&self) -> String {
        match &self.profile {
            Some(profile) => format!("; refresh them (`aws sso login --profile {profile}`, or new keys), then resume"),
            None => "; refresh them (AWS_* variables or a profile), then resume".to_owned(),
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

    type ListError = aws_sdk_ecs::operation::list_service_deployments::ListServiceDeploymentsError;

    /// A service's answer as the SDK hands it over: status, and the code of a JSON body.
    fn service_error(status: u16, body: &str) -> SdkError<ListError, HttpResponse> {
        use aws_sdk_ecs::error::ErrorMetadata;
        let json = serde_json::from_str::<serde_json::Value>(body).ok();
        let code = json.as_ref().and_then(|v| v["__type"].as_str());
        let mut meta = ErrorMetadata::builder();
        if let Some(code) = code {
            meta = meta.code(code);
        }
        let raw = HttpResponse::new(status.try_into().unwrap(), body.to_owned().into());
        SdkError::service_error(ListError::generic(meta.build()), raw)
    }

    #[test]
    fn only_an_unknown_operation_is_unsupported() {
        assert!(is_unknown_operation(&service_error(400, r#"{"__type":"UnknownOperationException"}"#)));
        assert!(is_unknown_operation(&service_error(501, r#"{"__type":"InternalFailure"}"#)));
        for (status, body) in [
            (400, r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#),
            (400, r#"{"__type":"AccessDeniedException","message":"not authorized"}"#),
            (500, r#"{"__type":"ServerException"}"#),
            (500, "<html>Internal Server Error</html>"),
        ] {
            assert!(!is_unknown_operation(&service_error(status, body)), "{status} {body}");
        }
    }

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
        assert!(expired.to_string().contains("aws sso login --profile prod`"), "{expired}");
        assert!(!expired.to_string().contains("<profile>"), "{expired}");
        assert_eq!(site.refused("x", "", "", 500).to_string(), "ecs prod/checkout refused x: HTTP 500");
    }
}
