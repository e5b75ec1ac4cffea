//! One wrapper around every RPC: a span with the method and the request's ids, the latency,
//! and the failure logged exactly once with its gRPC code.

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
    let elapsed_us = started.elapsed().as_micros() as u64;
    match result {
        Ok(reply) => {
            tracing::debug!(method, elapsed_us, "ok");
            Ok(Response::new(reply))
        }
        Err(e) => {
            let status = Status::from(e);
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
