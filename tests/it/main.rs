//! The integration tests: one crate, one test kit ([`kit`]), grouped by the
//! stand-in each tier uses.
//!
//! - [`fakes`]: the stop and finalize procedures against the kit's in-memory
//!   run table and ECS ([`kit::fakes`]), on tokio's paused clock.
//! - [`adapters`]: the exact requests the DynamoDB and ECS adapters send and
//!   how they read every answer, with `aws-smithy-mocks` (no network).
//! - [`moto`]: the handlers in process with real SDK clients against moto's
//!   server (DynamoDB, DynamoDB Streams, ECS over their wire protocols).
//! - [`runtime`]: the real binaries under a Lambda runtime (`cargo lambda
//!   watch`, the kit's Runtime API, `make local`), called with the AWS SDKs and
//!   the AWS CLI; and the execute-api signing of boto3 and aws-sdk-rust.
//! - [`reliability`]: faults (the kit's fault proxy), crashes, races, tenancy
//!   and seeded fuzzing with the replayed corpus (`tests/corpus/`).
//!
//! Filter by tier: `cargo test --test it moto::`.

mod kit;

mod adapters;
mod fakes;
mod moto;
mod reliability;
mod runtime;
