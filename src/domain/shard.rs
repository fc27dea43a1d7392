//! The sharding of the reconciler's sparse index of `STOPPING` runs.

use super::input::RunKey;

/// How many partitions the reconciler's index of stopping runs is spread
/// over (`StoppingShard` = "0".."7"), so no single index partition takes
/// every stop.
pub const STOPPING_SHARDS: u32 = 8;

/// The `StoppingShard` of a run: FNV-1a of its key, stable across versions
/// and machines.
pub fn stopping_shard(key: &RunKey) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in key.workflow_arn.as_str().bytes().chain([b'/']).chain(key.run_id.bytes()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h % STOPPING_SHARDS).to_string()
}

#[cfg(test)]
mod tests {
    use super::super::input::WorkflowArn;
    use super::*;

    const ARN: &str = "arn:aws:airflow-serverless:us-east-1:123456789012:workflow/my-flow-abcDEF1234";

    #[test]
    fn stopping_shards_are_stable_and_spread() {
        let key = |run: &str| RunKey { workflow_arn: WorkflowArn::parse(ARN).unwrap(), run_id: run.into() };
        assert_eq!(stopping_shard(&key("run-1")), stopping_shard(&key("run-1")));
        let shards: std::collections::BTreeSet<String> =
            (0..200).map(|i| stopping_shard(&key(&format!("run-{i}")))).collect();
        assert_eq!(shards.len(), STOPPING_SHARDS as usize, "200 runs use every shard: {shards:?}");
        assert!(shards.iter().all(|s| s.parse::<u32>().unwrap() < STOPPING_SHARDS));
    }
}
