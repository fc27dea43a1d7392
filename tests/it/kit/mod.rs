//! The test kit, one of each thing: a real moto server on a free loopback
//! port (DynamoDB, DynamoDB Streams, ECS over their wire protocols) with the
//! run table and a worker cluster ([`World`]), SDK clients pointed at it, the
//! in-memory fakes ([`fakes`]), the stream reader and delivery loop
//! ([`stream`]), the fault proxy ([`proxy`]), the Lambda Runtime API
//! ([`runtime_api`]), the SigV4 verifier ([`sigv4`]), the one loopback HTTP
//! server they are built on ([`serve`]), and the API Gateway HTTP API
//! (payload 2.0) event builder ([`http_event`], [`raw_http_event`]), and
//! the driver of `make local` / `make sam-local` ([`local_stack`]).
//!
//! moto comes from the project's virtualenv (`make venv`, which `make test`
//! runs first). If it is missing the tests fail with that instruction: an
//! integration test that silently skips proves nothing.
#![allow(dead_code)]

pub mod events;
pub mod fakes;
pub mod local_stack;
pub mod moto;
pub mod process;
pub mod proxy;
pub mod runtime_api;
pub mod serve;
pub mod sigv4;
pub mod stream;
pub mod venv;
pub mod world;

pub use events::*;
pub use moto::*;
pub use process::*;
pub use stream::{copy, deliver, deliver_to, StreamTail};
pub use venv::*;
pub use world::*;

use std::net::TcpListener;
use std::path::PathBuf;

pub const ACCOUNT: &str = "123456789012";
pub const OTHER_ACCOUNT: &str = "210987654321";
pub const ALICE: &str = "arn:aws:iam::123456789012:user/alice";
pub const MALLORY: &str = "arn:aws:iam::210987654321:user/mallory";
pub const REGION: &str = "us-east-1";

pub fn workflow_arn(name: &str) -> String {
    format!("arn:aws:airflow-serverless:{REGION}:{ACCOUNT}:workflow/{name}-abcDEF1234")
}

pub fn project_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind a free port").local_addr().unwrap().port()
}

pub fn log_dir() -> PathBuf {
    let dir = project_dir().join("target").join("test-logs");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
