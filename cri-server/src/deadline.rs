//! Client deadlines, answered with DEADLINE_EXCEEDED.
//!
//! tonic honours the `grpc-timeout` header itself, but answers an expired call with
//! CANCELLED; kubelet and critest expect DEADLINE_EXCEEDED. This layer takes the header
//! before tonic sees it and enforces the deadline with the right code.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::codegen::http;

#[derive(Clone)]
pub struct Deadline<S> {
    inner: S,
}

pub fn layer<S>(inner: S) -> Deadline<S> {
    Deadline { inner }
}

impl<S, B> tower::Service<http::Request<B>> for Deadline<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let timeout = req
            .headers_mut()
            .remove("grpc-timeout")
            .and_then(|v| v.to_str().ok().and_then(parse_grpc_timeout));
        let fut = self.inner.call(req);
        Box::pin(async move {
            let Some(limit) = timeout else {
                return fut.await;
            };
            match tokio::time::timeout(limit, fut).await {
                Ok(r) => r,
                Err(_) => Ok(tonic::Status::deadline_exceeded(format!(
                    "the client's deadline of {limit:?} passed"
                ))
                .into_http()),
            }
        })
    }
}

/// `grpc-timeout`: up to 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Service, ServiceExt};

    /// A call slower than the client's deadline answers DEADLINE_EXCEEDED (as a gRPC
    /// trailers-only response), and the inner service never sees the header.
    #[tokio::test]
    async fn slow_calls_get_deadline_exceeded() {
        let inner = tower::service_fn(|req: http::Request<()>| async move {
            assert!(req.headers().get("grpc-timeout").is_none());
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok::<_, std::convert::Infallible>(http::Response::new(tonic::body::Body::empty()))
        });
        let mut svc = layer(inner);
        let req = http::Request::builder()
            .header("grpc-timeout", "20m")
            .body(())
            .unwrap();
        let resp = svc.ready().await.unwrap().call(req).await.unwrap();
        let status = tonic::Status::from_header_map(resp.headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        // Without a deadline the call runs to the end.
        let req = http::Request::builder().body(()).unwrap();
        let resp = svc.ready().await.unwrap().call(req).await.unwrap();
        assert!(tonic::Status::from_header_map(resp.headers()).is_none());
    }

    #[test]
    fn grpc_timeout_values() {
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("7n"), Some(Duration::from_nanos(7)));
        assert_eq!(parse_grpc_timeout("S"), None);
        assert_eq!(parse_grpc_timeout("123456789S"), None);
        assert_eq!(parse_grpc_timeout("5x"), None);
    }
}
