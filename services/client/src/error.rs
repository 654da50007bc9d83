//! What can go wrong: [`Refusal`] (the API said no), [`ActionError`] (a
//! refusal, or no usable answer at all) and [`ConfigError`] (the client
//! could not be set up).

use std::path::PathBuf;
use std::time::Duration;

/// The API's own error answer: its HTTP status and the
/// `{"error": {"code", "message"}}` body. Displays as
/// `<code> (<status>): <message>`, with control characters escaped (both
/// come from the server and may end up on a terminal).
///
/// This is the hand-written client's `ActionError` struct, field for field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// The stable error code, e.g. `already_decommissioned` (`error` when the
    /// body carried none).
    pub code: String,
    /// The human message (the raw body when it carried none).
    pub message: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            printable(&self.code),
            self.status,
            printable(&self.message)
        )
    }
}

impl std::error::Error for Refusal {}

impl Refusal {
    /// Decodes an error answer: `status` and the raw `body`. A body that is
    /// not the API's error JSON (a proxy's HTML page, say) keeps the code
    /// `error` and becomes the message.
    pub fn from_answer(status: u16, body: &[u8]) -> Self {
        let parsed: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let error = &parsed["error"];
        Self {
            status,
            code: error["code"].as_str().unwrap_or("error").to_string(),
            message: match error["message"].as_str() {
                Some(message) => message.to_string(),
                None if body.iter().all(u8::is_ascii_whitespace) => format!(
                    "an empty HTTP {status} answer, not a powernode API error \
                     (is the URL, and any path prefix in it, the API's?)"
                ),
                None if !parsed.is_null() => String::from_utf8_lossy(body).into_owned(),
                None => not_json(status, body),
            },
        }
    }

    /// The refusal inside `e` (an `anyhow::Error`, with context added or
    /// not, or a boxed error), if that is what it is. The hand-written
    /// client's `ActionError::of`.
    pub fn of<E>(e: &E) -> Option<&Refusal>
    where
        E: AsRef<dyn std::error::Error + Send + Sync + 'static> + ?Sized,
    {
        Self::find(e.as_ref())
    }

    /// The refusal in `e` or any of its sources.
    pub fn find<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refusal> {
        let mut next = Some(e);
        while let Some(err) = next {
            if let Some(found) = err.downcast_ref::<Refusal>() {
                return Some(found);
            }
            if let Some(found) = err.downcast_ref::<ActionError>() {
                return found.refusal();
            }
            next = err.source();
        }
        None
    }

    /// True when `e` holds a refusal with this code. The hand-written
    /// client's `ActionError::is`.
    pub fn is<E>(e: &E, code: &str) -> bool
    where
        E: AsRef<dyn std::error::Error + Send + Sync + 'static> + ?Sized,
    {
        Self::of(e).is_some_and(|r| r.code == code)
    }
}

/// Why an action call (or a stream, or a plain request) has no usable
/// answer. A caller branches on [`ActionError::refusal`] (the API answered
/// and said no: retrying the same call gets the same answer, unless the
/// status is 5xx) against everything else (the API was not heard:
/// [`ActionError::Timeout`], [`ActionError::Transport`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ActionError {
    /// The API answered with an error status and its error body.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// No (complete) answer within `after`; on a stream, silence for
    /// `after`.
    #[error("the powernode API at {url} did not answer within {} s", fmt_secs(*after))]
    Timeout {
        /// The API base URL.
        url: String,
        /// How long was waited.
        after: Duration,
    },
    /// The API could not be reached, or the connection broke (TLS refusals
    /// included: a certificate no trusted CA signed lands here).
    #[error("{}", transport_text(url, source))]
    Transport {
        /// The API base URL.
        url: String,
        /// What the HTTP stack said.
        #[source]
        source: reqwest::Error,
    },
    /// An answer that is not what the API sends: a success that is not JSON,
    /// or whose `data` has not the shape the caller asked for.
    #[error("the answer of the powernode API at {url} ({status}) is not understood: {reason}")]
    Malformed {
        /// The API base URL.
        url: String,
        /// Its HTTP status.
        status: u16,
        /// What is wrong with it.
        reason: String,
    },
    /// The API's https certificate is refused: an unknown or changed CA, an
    /// expired certificate, a name mismatch (the problem in words).
    #[error("cannot trust the powernode API at {url}: {problem}")]
    Certificate {
        /// The API base URL.
        url: String,
        /// What is wrong with the certificate.
        problem: crate::tls::CertProblem,
    },
    /// The arguments could not be encoded as JSON.
    #[error("the arguments of {action} cannot be encoded as JSON")]
    Arguments {
        /// The action.
        action: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The request could not be made at all (bad URL, method, CA file).
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// How many bytes of an answer that is not JSON an error shows.
pub const SHOWN_BYTES: usize = 120;

/// The words for an answer that is not JSON: its status and its first
/// [`SHOWN_BYTES`] bytes (escaped), never the whole body.
pub fn not_json(status: u16, body: &[u8]) -> String {
    let head = String::from_utf8_lossy(&body[..body.len().min(SHOWN_BYTES)]);
    let head = printable(head.trim());
    let more = if body.len() > SHOWN_BYTES {
        format!("… ({} bytes in all)", body.len())
    } else {
        String::new()
    };
    format!(
        "an HTTP {status} answer that is not the powernode API's JSON (a proxy's page? is the \
         URL, and any path prefix in it, the API's?); it begins: {head}{more}"
    )
}

fn fmt_secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}")
    } else {
        format!("{s:.1}")
    }
}

fn transport_text(url: &str, source: &reqwest::Error) -> String {
    if source.is_connect() {
        format!("cannot reach the powernode API at {url}")
    } else if source.is_body() || source.is_decode() {
        format!("the connection to the powernode API at {url} broke during the answer")
    } else {
        format!("no answer from the powernode API at {url}")
    }
}

impl ActionError {
    /// The client error inside `e` (an `anyhow::Error`, with context added
    /// or not, or a boxed error): `ActionError::of(&e)`.
    pub fn of<E>(e: &E) -> Option<&ActionError>
    where
        E: AsRef<dyn std::error::Error + Send + Sync + 'static> + ?Sized,
    {
        Self::find(e.as_ref())
    }

    /// The client error in `e` or any of its sources.
    pub fn find<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a ActionError> {
        let mut next = Some(e);
        while let Some(err) = next {
            if let Some(found) = err.downcast_ref::<ActionError>() {
                return Some(found);
            }
            next = err.source();
        }
        None
    }

    /// True when `e` holds a refusal with this code (see [`Refusal::is`]).
    pub fn is<E>(e: &E, code: &str) -> bool
    where
        E: AsRef<dyn std::error::Error + Send + Sync + 'static> + ?Sized,
    {
        Refusal::is(e, code)
    }

    /// The API's refusal, when it answered with one.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            Self::Refused(r) => Some(r),
            Self::Timeout { .. }
            | Self::Transport { .. }
            | Self::Certificate { .. }
            | Self::Malformed { .. }
            | Self::Arguments { .. }
            | Self::Config(_) => None,
        }
    }

    /// The HTTP status of a refusal or a malformed answer; `None` when the
    /// API was not heard.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Refused(r) => Some(r.status),
            Self::Malformed { status, .. } => Some(*status),
            Self::Timeout { .. }
            | Self::Transport { .. }
            | Self::Certificate { .. }
            | Self::Arguments { .. }
            | Self::Config(_) => None,
        }
    }

    /// The refusal's code; else a fixed code for the kind of failure:
    /// `timeout`, `transport`, `untrusted_certificate`, `malformed_answer`, `invalid_arguments`,
    /// `invalid_config`.
    pub fn code(&self) -> &str {
        match self {
            Self::Refused(r) => &r.code,
            Self::Timeout { .. } => "timeout",
            Self::Transport { .. } => "transport",
            Self::Certificate { .. } => "untrusted_certificate",
            Self::Malformed { .. } => "malformed_answer",
            Self::Arguments { .. } => "invalid_arguments",
            Self::Config(_) => "invalid_config",
        }
    }

    /// True for a refusal with this code.
    pub fn has_code(&self, code: &str) -> bool {
        self.refusal().is_some_and(|r| r.code == code)
    }

    /// True for [`ActionError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }

    /// True when the API was not heard (timeout or transport): the call may
    /// or may not have been carried out.
    pub fn is_unheard(&self) -> bool {
        matches!(self, Self::Timeout { .. } | Self::Transport { .. })
    }

    /// Maps an error of the HTTP stack for the API at `url`; `timeout` is
    /// the limit that was set, reported when it ran out.
    pub(crate) fn from_http(url: &str, e: reqwest::Error, timeout: Option<Duration>) -> Self {
        if e.is_timeout() {
            return Self::Timeout {
                url: url.to_string(),
                after: timeout.unwrap_or_default(),
            };
        }
        if e.is_builder() {
            return Self::Config(ConfigError::Request(e));
        }
        if let Some(problem) = crate::tls::CertProblem::find(&e) {
            return Self::Certificate {
                url: url.to_string(),
                problem,
            };
        }
        Self::Transport {
            url: url.to_string(),
            source: e,
        }
    }
}

/// Why a client could not be set up, or a request not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The base URL (or a path under it) is not one this client can use.
    #[error("invalid powernode API URL {url:?}: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// Why.
        reason: String,
    },
    /// The CA certificate file cannot be read.
    #[error("cannot read the CA certificate file {}", path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The CA certificate file holds no usable certificate.
    #[error("no usable CA certificate in {}: {reason}", path.display())]
    CaCert {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The TLS set-up failed (the system's CA certificates cannot be loaded,
    /// say).
    #[error("cannot set up TLS")]
    Tls(#[source] rustls::Error),
    /// The HTTP stack refused the set-up or the request (an invalid method,
    /// or a token that cannot be a header).
    #[error("cannot make the HTTP request")]
    Request(#[source] reqwest::Error),
    /// An HTTP method that is not one.
    #[error("invalid HTTP method {0:?}")]
    Method(String),
}

/// `text` with every character that could change a terminal or the way
/// text displays (C0 and C1 controls, DEL, the bidirectional overrides,
/// embeddings, isolates and marks, the line and paragraph separators)
/// written as `\u{..}`: the one rule of [`powernode_events::text`], which
/// the API also refuses names by.
pub fn printable(text: &str) -> String {
    powernode_events::text::escape_unsafe(text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_display_escaped() {
        let r = Refusal {
            status: 404,
            code: "not_found\u{1b}[2J".into(),
            message: "no instance \"x\"\r\nforged: line".into(),
        };
        let shown = r.to_string();
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(shown.contains(r"not_found\u{1b}[2J (404)"), "{shown}");
        assert!(shown.contains(r"\u{d}\u{a}forged"), "{shown}");
        assert_eq!(ActionError::from(r.clone()).to_string(), shown);
    }

    #[test]
    fn error_bodies_decode_with_fallbacks() {
        let r = Refusal::from_answer(409, br#"{"error":{"code":"taken","message":"no"}}"#);
        assert_eq!(
            (r.status, r.code.as_str(), r.message.as_str()),
            (409, "taken", "no")
        );
        let r = Refusal::from_answer(502, b"<html>bad gateway</html>");
        assert_eq!((r.status, r.code.as_str()), (502, "error"));
        assert!(r.message.contains("HTTP 502"), "{}", r.message);
        assert!(
            r.message.contains("begins: <html>bad gateway</html>"),
            "{}",
            r.message
        );
        let long = format!("<html>{}</html>", "x".repeat(5000));
        let r = Refusal::from_answer(502, long.as_bytes());
        assert!(r.message.len() < 400, "{}", r.message);
        assert!(r.message.contains("5013 bytes in all"), "{}", r.message);
        let r = Refusal::from_answer(404, b"");
        assert_eq!((r.status, r.code.as_str()), (404, "error"));
        assert!(r.message.contains("path prefix"), "{}", r.message);
    }

    #[test]
    fn found_through_anyhow_context() {
        let e: anyhow::Error = ActionError::from(Refusal {
            status: 409,
            code: "already_decommissioned".into(),
            message: "m".into(),
        })
        .into();
        let e = e.context("decommissioning");
        assert!(ActionError::is(&e, "already_decommissioned"));
        assert_eq!(Refusal::of(&e).map(|r| r.status), Some(409));
        assert!(!Refusal::is(&e, "other"));
        let bare = anyhow::Error::from(Refusal {
            status: 422,
            code: "not_a_candidate".into(),
            message: "m".into(),
        });
        assert!(Refusal::is(&bare, "not_a_candidate"));
        assert!(ActionError::of(&bare).is_none());
        let plain = anyhow::anyhow!("something else");
        assert!(ActionError::of(&plain).is_none());
    }
}
