//! The domain: the run state machine, the request constraints of the
//! published service model, who the caller is, the child policy. Pure: no
//! I/O, no SDK types. The adapters translate to and from DynamoDB items; the
//! handler translates to and from the wire.
//!
//! (Named `domain`, not `model`: "the model" in this crate is the published
//! service model of MWAA Serverless, whose shapes `protocol` and `error`
//! follow.)

mod caller;
mod child_policy;
mod input;
mod shard;
mod status;
mod text;
mod worker;

pub use caller::Caller;
pub use child_policy::ChildPolicy;
pub use input::{check_run_id, FieldError, RunKey, WorkflowArn, RUN_ID_MAX, WORKFLOW_ARN_MAX};
pub use shard::{stopping_shard, STOPPING_SHARDS};
pub use status::{RunStatus, StopDecision, UnknownStatus};
pub use text::{timestamp, truncate_to};
pub use worker::{cluster_name, task_arn_cluster, worker_cluster};
