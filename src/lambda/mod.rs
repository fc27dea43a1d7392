//! The Lambda edge (the HTTP API function, the stream function and the
//! scheduled reconciler): the only folder that names `lambda_http`,
//! `lambda_runtime` and `aws_lambda_events` (besides the thin `src/bin/`
//! entry points). It turns invocations into calls of the procedures and their
//! outcomes into responses; no handler here returns an error to the runtime.

pub mod context;
pub mod http;
pub mod policies;
pub mod run_events;
pub mod schedule;
pub mod stream;
