//! Control plane behind the MWAA Serverless `StopWorkflowRun` operation.
//!
//! # Layout
//!
//! - [`model`]: the run state machine, the model's request constraints, who
//!   the caller is. Pure; no I/O.
//! - [`error`]: the service's six modeled errors and the one mapping to AWS
//!   JSON 1.0 error responses.
//! - [`upstream`]: DynamoDB/ECS failures (after SDK retries) classified into
//!   throttling, timeout and fault.
//! - [`store`]: the run table contract, the `RunStore` trait and its DynamoDB
//!   adapter (the one conditional `UpdateItem`).
//! - [`workers`]: the `WorkerControl` trait and its ECS adapter (`StopTask`).
//! - [`service`]: the operations written against those traits: the stop
//!   transition and the bounded `StopTask` fan-out, the read.
//! - [`api`]: the wire protocol: `X-Amz-Target` dispatch, input validation,
//!   IAM identity, response and error shapes.
//! - [`finalizer`]: the stop finalizer (DynamoDB stream → Lambda): verifies
//!   every worker stopped, sweeps for unregistered ones, applies the child
//!   policy, writes `STOPPED` once.
//! - [`config`]: environment configuration, read once per cold start.
//!
//! Binaries are thin: `src/bin/run-api.rs` and `src/bin/stop-finalizer.rs`
//! read config, build the SDK clients once and run the handler.

pub mod api;
pub mod config;
pub mod error;
pub mod finalizer;
pub mod model;
pub mod service;
pub mod store;
pub mod upstream;
pub mod workers;
