//! The single-use URLs of Exec, Attach and PortForward: each call stores its request under
//! a fresh random token that the client presents once, within a minute, as kubelet's
//! streaming library does. A token is 128 random bits, so a URL cannot be guessed; it is
//! removed when used, so it cannot be replayed; at most [`MAX_IN_FLIGHT`] wait at a time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a URL stays valid (kubelet's `streaming.DefaultConfig.StreamIdleTimeout`'s
/// sibling: the request cache TTL).
pub const TOKEN_TTL: Duration = Duration::from_secs(60);
/// Unused URLs kept at once (kubelet's `MaxInFlight`).
pub const MAX_IN_FLIGHT: usize = 1000;

/// What a token stands for: the CRI request that made it.
#[derive(Debug, Clone, PartialEq)]
pub enum Pending {
    Exec(proto::ExecRequest),
    Attach(proto::AttachRequest),
    PortForward(proto::PortForwardRequest),
}

impl Pending {
    /// The URL path segment of this kind of request.
    pub fn method(&self) -> &'static str {
        match self {
            Pending::Exec(_) => "exec",
            Pending::Attach(_) => "attach",
            Pending::PortForward(_) => "portforward",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("too many streaming requests waiting for their client (limit {MAX_IN_FLIGHT}); retry once some have been used or have expired after {}s", TOKEN_TTL.as_secs())]
pub struct Full;

#[derive(Debug, Default)]
pub struct Tokens {
    pending: Mutex<HashMap<String, (Instant, Pending)>>,
}

impl Tokens {
    /// Store `request` under a new token.
    pub fn insert(&self, request: Pending) -> Result<String, Full> {
        self.insert_at(request, Instant::now())
    }

    fn insert_at(&self, request: Pending, now: Instant) -> Result<String, Full> {
        let token = hex::encode(rand::random::<[u8; 16]>());
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending.len() >= MAX_IN_FLIGHT {
            pending.retain(|_, (made, _)| now.duration_since(*made) < TOKEN_TTL);
            if pending.len() >= MAX_IN_FLIGHT {
                return Err(Full);
            }
        }
        pending.insert(token.clone(), (now, request));
        Ok(token)
    }

    /// The request of `token` if it is known, unused and not expired; it is gone afterwards
    /// whatever the answer (also when `method` does not match the request's kind).
    pub fn consume(&self, method: &str, token: &str) -> Option<Pending> {
        self.consume_at(method, token, Instant::now())
    }

    fn consume_at(&self, method: &str, token: &str, now: Instant) -> Option<Pending> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let (made, request) = pending.remove(token)?;
        (now.duration_since(made) < TOKEN_TTL && request.method() == method).then_some(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec() -> Pending {
        Pending::Exec(proto::ExecRequest {
            container_id: "c".into(),
            cmd: vec!["true".into()],
            ..Default::default()
        })
    }

    #[test]
    fn a_token_works_once() {
        let tokens = Tokens::default();
        let t = tokens.insert(exec()).unwrap();
        assert_eq!(t.len(), 32);
        assert_eq!(tokens.consume("exec", &t), Some(exec()));
        assert_eq!(tokens.consume("exec", &t), None);
        assert_eq!(tokens.consume("exec", "nope"), None);
    }

    #[test]
    fn tokens_are_distinct() {
        let tokens = Tokens::default();
        let a = tokens.insert(exec()).unwrap();
        let b = tokens.insert(exec()).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn a_token_of_another_kind_is_spent_and_refused() {
        let tokens = Tokens::default();
        let t = tokens.insert(exec()).unwrap();
        assert_eq!(tokens.consume("attach", &t), None);
        assert_eq!(tokens.consume("exec", &t), None);
    }

    #[test]
    fn a_token_expires_after_a_minute() {
        let tokens = Tokens::default();
        let now = Instant::now();
        let t = tokens.insert_at(exec(), now).unwrap();
        assert_eq!(tokens.consume_at("exec", &t, now + TOKEN_TTL), None);
        let t = tokens.insert_at(exec(), now).unwrap();
        assert!(tokens
            .consume_at("exec", &t, now + TOKEN_TTL - Duration::from_millis(1))
            .is_some());
    }

    #[test]
    fn in_flight_tokens_are_bounded_until_they_expire() {
        let tokens = Tokens::default();
        let now = Instant::now();
        for _ in 0..MAX_IN_FLIGHT {
            tokens.insert_at(exec(), now).unwrap();
        }
        assert!(tokens.insert_at(exec(), now).is_err());
        assert!(tokens.insert_at(exec(), now + TOKEN_TTL).is_ok());
    }
}
