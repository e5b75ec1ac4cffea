//! One wrapper around every RPC: a span with the method and the request's ids, the latency,
//! the failure logged exactly once with its gRPC code, and the request counted in
//! `corral_grpc_requests_total` / `corral_grpc_request_duration_seconds`.

use std::future::Future;
use std::time::Instant;

use tonic::{Code, Response, Status};
use tracing::Instrument;

use crate::status::CriError;

pub async fn unary<T, F>(
    method: &'static str,
    span: tracing::Span,
    handler: F,
) -> Result<Response<T>, Status>
where
    F: Future<Output = Result<T, CriError>>,
{
    let started = Instant::now();
    let result = handler.instrument(span.clone()).await;
    let _enter = span.enter();
    let elapsed = started.elapsed();
    let elapsed_us = elapsed.as_micros() as u64;
    match result {
        Ok(reply) => {
            crate::metrics::record_grpc(method, Code::Ok, elapsed);
            tracing::debug!(method, elapsed_us, "ok");
            Ok(Response::new(reply))
        }
        Err(e) => {
            let status = Status::from(e);
            crate::metrics::record_grpc(method, status.code(), elapsed);
            match status.code() {
                Code::Internal | Code::DataLoss => {
                    tracing::error!(method, elapsed_us, code = ?status.code(), error = %status.message(), "failed")
                }
                Code::Unimplemented => {
                    tracing::debug!(method, elapsed_us, "unimplemented")
                }
                _ => {
                    tracing::warn!(method, elapsed_us, code = ?status.code(), error = %status.message(), "failed")
                }
            }
            Err(status)
        }
    }
}
