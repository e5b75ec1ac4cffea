//! The one place runtime errors become gRPC statuses.

use runtime::{Error, ErrorKind};
use tonic::{Code, Status};

/// What a handler returns on failure.
#[derive(Debug)]
pub enum CriError {
    Runtime(Error),
    /// The request itself is malformed before it reaches the runtime.
    InvalidArgument {
        field: &'static str,
        reason: String,
    },
    /// The RPC belongs to a capability that has not landed yet.
    Unimplemented(&'static str),
}

impl From<Error> for CriError {
    fn from(e: Error) -> Self {
        CriError::Runtime(e)
    }
}

impl CriError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        CriError::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }

    pub fn code(&self) -> Code {
        match self {
            CriError::InvalidArgument { .. } => Code::InvalidArgument,
            CriError::Unimplemented(_) => Code::Unimplemented,
            CriError::Runtime(e) => match e.kind() {
                ErrorKind::InvalidArgument { .. } => Code::InvalidArgument,
                ErrorKind::NotFound => Code::NotFound,
                ErrorKind::AlreadyExists => Code::AlreadyExists,
                ErrorKind::FailedPrecondition => Code::FailedPrecondition,
                ErrorKind::Unavailable => Code::Unavailable,
                ErrorKind::Unauthenticated => Code::Unauthenticated,
                ErrorKind::DataLoss => Code::DataLoss,
                ErrorKind::DeadlineExceeded => Code::DeadlineExceeded,
                ErrorKind::Internal => Code::Internal,
            },
        }
    }

    pub fn message(&self) -> String {
        match self {
            CriError::InvalidArgument { field, reason } => format!("invalid {field}: {reason}"),
            CriError::Unimplemented(method) => {
                format!("{method} is not implemented by this version of corral")
            }
            CriError::Runtime(e) => runtime::error::chain(e),
        }
    }
}

impl From<CriError> for Status {
    fn from(e: CriError) -> Status {
        Status::new(e.code(), e.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_codes() {
        let cases = [
            (Error::invalid("image.image", "bad"), Code::InvalidArgument),
            (
                Error::NotFound {
                    what: "image x".into(),
                },
                Code::NotFound,
            ),
            (Error::Internal("bug".into()), Code::Internal),
        ];
        for (e, code) in cases {
            let s = Status::from(CriError::from(e));
            assert_eq!(s.code(), code);
        }
        let s = Status::from(CriError::invalid("image", "empty"));
        assert_eq!(s.message(), "invalid image: empty");
        assert_eq!(
            Status::from(CriError::Unimplemented("Attach")).code(),
            Code::Unimplemented
        );
    }
}
