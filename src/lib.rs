//! Control plane behind the MWAA Serverless `StopWorkflowRun` operation.
//! `ARCHITECTURE.md` has the map; in short, from the inside out:
//!
//! - [`domain`]: the run state machine, the service model's request
//!   constraints, who the caller is, the child policy. Pure; no I/O.
//! - [`ports`]: what the procedures need from the run table and from ECS, as
//!   traits and plain data.
//! - [`authz`]: who may stop or read which workflow: Cedar policies, the
//!   shipped schema and default policy, the decision. Pure; no I/O.
//! - [`pacing`]: ECS's token buckets, kept by a wrapper of the worker port.
//! - [`stop`] and [`finalize`]: the two procedures, written against the ports.
//! - `protocol` and [`error`]: the AWS JSON 1.0 shapes and the one mapping
//!   of every failure to the model's six errors.
//! - Edges, each a folder: [`aws`] (the only place that names the AWS SDK)
//!   and [`lambda`] (the only place that names the Lambda crates).
//! - [`config`]: the composition root, read by the entry points in `src/bin/`
//!   and by nothing in the crate.

pub mod authz;
pub mod aws;
pub mod config;
pub mod domain;
pub mod error;
pub mod finalize;
pub mod lambda;
pub mod metrics;
pub mod pacing;
pub mod ports;
mod protocol;
pub mod run_events;
pub mod stop;
