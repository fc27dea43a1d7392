//! Which cluster a worker task runs in, read from its ARN.
//!
//! A task ARN of the current format names its cluster
//! (`arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/ID`); the old format
//! (`arn:aws:ecs:REGION:ACCOUNT:task/ID`) does not. Where the ARN names one,
//! it is the truth: ECS answers "not found" for a task asked about in another
//! cluster, which must never pass for "dead".

/// The cluster name a task ARN carries, if any (`None` for an old-format
/// ARN, a bare task id, or anything else).
pub fn task_arn_cluster(task: &str) -> Option<&str> {
    let rest = task.strip_prefix("arn:")?;
    // partition:service:region:account:resource
    let mut parts = rest.splitn(5, ':');
    let (_partition, service, _region, _account, resource) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if service != "ecs" {
        return None;
    }
    let path = resource.strip_prefix("task/")?;
    match path.split_once('/') {
        Some((cluster, id)) if !cluster.is_empty() && !id.is_empty() && !id.contains('/') => Some(cluster),
        _ => None,
    }
}

/// The name of a cluster value, which may be a name or a cluster ARN
/// (`arn:aws:ecs:REGION:ACCOUNT:cluster/NAME`).
pub fn cluster_name(cluster: &str) -> &str {
    if cluster.starts_with("arn:") {
        if let Some((_, name)) = cluster.rsplit_once(":cluster/") {
            return name;
        }
    }
    cluster
}

/// The cluster to address a task in: the ARN's own where it names one, else
/// the recorded value. `Err` carries the ARN's cluster when the recorded one
/// names another (the caller logs the mismatch and uses the ARN's).
pub fn worker_cluster<'a>(task: &'a str, recorded: &'a str) -> Result<&'a str, &'a str> {
    match task_arn_cluster(task) {
        Some(own) if own != cluster_name(recorded) => Err(own),
        // Same name: keep the recorded value (it may be the cluster's ARN).
        _ => Ok(recorded),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEW: &str = "arn:aws:ecs:us-east-1:123456789012:task/mwaa-workers/0123456789abcdef0123456789abcdef";
    const OLD: &str = "arn:aws:ecs:us-east-1:123456789012:task/0123456789abcdef0123456789abcdef";

    #[test]
    fn the_task_arn_names_its_cluster_when_it_has_one() {
        assert_eq!(task_arn_cluster(NEW), Some("mwaa-workers"));
        assert_eq!(task_arn_cluster(OLD), None);
        assert_eq!(task_arn_cluster("t1"), None);
        assert_eq!(task_arn_cluster("arn:aws:ecs:us-east-1:1:cluster/x"), None);
        assert_eq!(task_arn_cluster("arn:aws-cn:ecs:cn-north-1:1:task/c/abc"), Some("c"));
    }

    #[test]
    fn clusters_compare_by_name_whether_recorded_as_name_or_arn() {
        assert_eq!(cluster_name("arn:aws:ecs:us-east-1:123456789012:cluster/mwaa-workers"), "mwaa-workers");
        assert_eq!(cluster_name("mwaa-workers"), "mwaa-workers");
        let arn = "arn:aws:ecs:us-east-1:123456789012:cluster/mwaa-workers";
        assert_eq!(worker_cluster(NEW, arn), Ok(arn));
        assert_eq!(worker_cluster(NEW, "mwaa-workers"), Ok("mwaa-workers"));
        assert_eq!(worker_cluster(NEW, "other"), Err("mwaa-workers"), "the ARN's cluster wins");
        assert_eq!(worker_cluster(OLD, "other"), Ok("other"), "an old ARN carries none: the record is all we have");
    }
}
