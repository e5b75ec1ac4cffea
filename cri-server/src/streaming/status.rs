//! What the error stream carries at the end of an exec or attach: a Kubernetes
//! `metav1.Status` as JSON (protocol v4 and later), or for the older protocols the bare
//! message of a failure and nothing on success. Clients read it to the end: a
//! `NonZeroExitCode` status with an `ExitCode` cause becomes the exit code of `kubectl
//! exec` and `crictl exec`.

use serde::Serialize;

/// How the error stream is written, from the negotiated protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFormat {
    /// v4.channel.k8s.io and v5: a Status JSON, also on success.
    Json,
    /// channel.k8s.io, v2, v3: the message of a failure as text.
    Text,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The process ended with a code other than 0; `message` says how.
    ExitCode { code: i32, message: String },
    /// The exec or attach itself failed.
    Internal(String),
}

#[derive(Serialize)]
struct Status<'a> {
    metadata: Empty,
    status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Details>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct Details {
    causes: Vec<Cause>,
}

#[derive(Serialize)]
struct Cause {
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    message: String,
}

impl Outcome {
    /// The bytes for the error stream; empty means nothing is written.
    pub fn encode(&self, format: StatusFormat) -> Vec<u8> {
        let (status, message, reason, details, code) = match self {
            Outcome::Success => ("Success", None, None, None, None),
            Outcome::ExitCode { code, message } => (
                "Failure",
                Some(format!("command terminated with non-zero exit code: {message}")),
                Some("NonZeroExitCode"),
                Some(Details {
                    causes: vec![Cause {
                        reason: Some("ExitCode"),
                        message: code.to_string(),
                    }],
                }),
                None,
            ),
            Outcome::Internal(message) => (
                "Failure",
                Some(format!("Internal error occurred: {message}")),
                Some("InternalError"),
                Some(Details {
                    causes: vec![Cause {
                        reason: None,
                        message: message.clone(),
                    }],
                }),
                Some(500),
            ),
        };
        match format {
            StatusFormat::Json => serde_json::to_vec(&Status {
                metadata: Empty {},
                status,
                message,
                reason,
                details,
                code,
            })
            .unwrap_or_default(),
            StatusFormat::Text => message.unwrap_or_default().into_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn json_of(o: &Outcome) -> Value {
        serde_json::from_slice(&o.encode(StatusFormat::Json)).unwrap()
    }

    #[test]
    fn success_is_a_bare_status() {
        assert_eq!(
            json_of(&Outcome::Success),
            json!({"metadata": {}, "status": "Success"})
        );
        assert!(Outcome::Success.encode(StatusFormat::Text).is_empty());
    }

    #[test]
    fn an_exit_code_is_the_cause_client_go_reads() {
        let o = Outcome::ExitCode {
            code: 7,
            message: "exit status 7".into(),
        };
        assert_eq!(
            json_of(&o),
            json!({
                "metadata": {},
                "status": "Failure",
                "message": "command terminated with non-zero exit code: exit status 7",
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": "7"}]}
            })
        );
        assert_eq!(
            o.encode(StatusFormat::Text),
            b"command terminated with non-zero exit code: exit status 7"
        );
    }

    #[test]
    fn an_internal_error_has_code_500() {
        let v = json_of(&Outcome::Internal("container \"x\" not found".into()));
        assert_eq!(v["reason"], "InternalError");
        assert_eq!(v["code"], 500);
        assert_eq!(v["details"]["causes"][0]["message"], "container \"x\" not found");
    }
}
