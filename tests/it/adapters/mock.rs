//! The exact requests the DynamoDB and ECS adapters send, and how they read
//! every answer, with `aws-smithy-mocks` (no network).

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};
use aws_sdk_dynamodb::types::error::{ConditionalCheckFailedException, ProvisionedThroughputExceededException};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_ecs::operation::stop_task::{StopTaskError, StopTaskOutput};
use aws_sdk_ecs::types::error::{ClusterNotFoundException, InvalidParameterException, ServerException};
use aws_smithy_mocks::{mock, mock_client};
use mwaa_stop::aws::{DynamoRunStore, EcsWorkers};
use mwaa_stop::domain::{RunKey, WorkflowArn};
use mwaa_stop::ports::UpstreamKind;
use mwaa_stop::ports::{RunStore, StopRequest, StopWrite, StoreError};
use mwaa_stop::ports::{TaskStop, WorkerControl};

const ARN: &str = "arn:aws:airflow-serverless:us-east-1:123456789012:workflow/etl-abcDEF1234";
const TASK: &str = "arn:aws:ecs:us-east-1:999999999999:task/workers/0123456789abcdef";

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn key() -> RunKey {
    RunKey { workflow_arn: WorkflowArn::parse(ARN).unwrap(), run_id: "run-1".into() }
}

fn stop() -> StopRequest {
    StopRequest {
        at: "2026-11-21T10:00:00.000Z".into(),
        by: "arn:aws:iam::123456789012:user/alice".into(),
        request_id: "req-1".into(),
        source_ip: Some("203.0.113.7".into()),
    }
}

fn item(status: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("WorkflowArn".into(), s(ARN)),
        ("RunId".into(), s("run-1")),
        ("Status".into(), s(status)),
        ("WorkflowVersion".into(), s("v3")),
        ("Workers".into(), AttributeValue::M(HashMap::from([(TASK.into(), s("workers"))]))),
        ("SomethingASchedulerAdded".into(), AttributeValue::N("7".into())),
    ])
}

fn no_retries(c: aws_sdk_dynamodb::config::Builder) -> aws_sdk_dynamodb::config::Builder {
    c.retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
}

#[tokio::test]
async fn stop_is_one_conditional_update_returning_the_new_item() {
    let rule = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|r| {
            let names = r.expression_attribute_names().unwrap();
            let values = r.expression_attribute_values().unwrap();
            let event = values[":event"].as_l().unwrap()[0].as_m().unwrap();
            r.table_name() == Some("Runs")
                && r.key().unwrap() == &HashMap::from([("WorkflowArn".into(), s(ARN)), ("RunId".into(), s("run-1"))])
                && r.condition_expression() == Some("#status IN (:starting, :queued, :running)")
                && r.update_expression()
                    == Some(
                        "SET #status = :stopping, #stop_at = :now, #stop_by = :by, #modified = :now, \
                         #stopping_shard = :shard, #stopping_since = :now, \
                         #history = list_append(if_not_exists(#history, :empty), :event)",
                    )
                && names["#status"] == "Status"
                && names["#stop_at"] == "StopRequestedAt"
                && names["#stop_by"] == "StopRequestedBy"
                && names["#modified"] == "ModifiedAt"
                && names["#history"] == "History"
                && names["#stopping_shard"] == "StoppingShard"
                && names["#stopping_since"] == "StoppingSince"
                && values[":shard"].as_s().is_ok_and(|shard| shard.parse::<u32>().is_ok_and(|n| n < 8))
                && values[":stopping"] == s("STOPPING")
                && values[":starting"] == s("STARTING")
                && values[":queued"] == s("QUEUED")
                && values[":running"] == s("RUNNING")
                && values[":now"] == s("2026-11-21T10:00:00.000Z")
                && values[":by"] == s("arn:aws:iam::123456789012:user/alice")
                && event["Event"] == s("StopRequested")
                && event["By"] == s("arn:aws:iam::123456789012:user/alice")
                && event["At"] == s("2026-11-21T10:00:00.000Z")
                && event["RequestId"] == s("req-1")
                && event["SourceIp"] == s("203.0.113.7")
                && r.return_values() == Some(&ReturnValue::AllNew)
                && r.return_values_on_condition_check_failure() == Some(&ReturnValuesOnConditionCheckFailure::AllOld)
        })
        .then_output(|| UpdateItemOutput::builder().set_attributes(Some(item("STOPPING"))).build());
    let client = mock_client!(aws_sdk_dynamodb, [&rule]);
    let store = DynamoRunStore::new(client, "Runs");
    let StopWrite::Transitioned(run) = store.request_stop(&key(), &stop()).await.unwrap() else {
        panic!("expected a transition")
    };
    assert_eq!(rule.num_calls(), 1, "the request matched every expectation, once");
    assert_eq!(run.status, "STOPPING");
    assert_eq!(run.workers.get(TASK).map(String::as_str), Some("workers"));
    assert_eq!(run.workflow_version.as_deref(), Some("v3"));
}

#[tokio::test]
async fn failed_condition_tells_not_found_from_not_active_without_a_read() {
    let finished = mock!(aws_sdk_dynamodb::Client::update_item).then_error(|| {
        UpdateItemError::ConditionalCheckFailedException(
            ConditionalCheckFailedException::builder().set_item(Some(item("SUCCESS"))).build(),
        )
    });
    let missing = mock!(aws_sdk_dynamodb::Client::update_item).then_error(|| {
        UpdateItemError::ConditionalCheckFailedException(ConditionalCheckFailedException::builder().build())
    });
    let get = mock!(aws_sdk_dynamodb::Client::get_item).then_output(|| GetItemOutput::builder().build());
    let store = DynamoRunStore::new(mock_client!(aws_sdk_dynamodb, [&finished, &missing, &get]), "Runs");
    match store.request_stop(&key(), &stop()).await.unwrap() {
        StopWrite::NotStoppable(run) => assert_eq!(run.status, "SUCCESS"),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.request_stop(&key(), &stop()).await.unwrap(), StopWrite::NotFound);
    assert_eq!(get.num_calls(), 0, "no GetItem before or after the write");
}

fn validation(message: &str) -> UpdateItemError {
    UpdateItemError::generic(
        aws_sdk_dynamodb::error::ErrorMetadata::builder().code("ValidationException").message(message).build(),
    )
}

/// A request DynamoDB refuses as invalid can never succeed: it is classified
/// as rejected (answered without a retry hint), never as a retryable fault.
#[tokio::test]
async fn a_validation_exception_is_rejected_not_a_retryable_fault() {
    let rule = mock!(aws_sdk_dynamodb::Client::update_item)
        .then_error(|| validation("One or more parameter values were invalid"));
    // The run is read once, to tell a `History` that cannot be appended to
    // (repaired, see below) from any other refusal.
    let read = mock!(aws_sdk_dynamodb::Client::get_item)
        .then_output(|| GetItemOutput::builder().set_item(Some(item("RUNNING"))).build());
    let store = DynamoRunStore::new(mock_client!(aws_sdk_dynamodb, [&rule, &read]), "Runs");
    match store.request_stop(&key(), &stop()).await {
        Err(StoreError::Upstream(u)) => assert_eq!(u.kind, UpstreamKind::Rejected),
        other => panic!("{other:?}"),
    }
}

/// DynamoDB refuses the stop as over the item size limit: the run is read,
/// and the same transition is sent again with its oldest history events
/// dropped and counted, conditioned on the history (its length and last
/// event) and the dropped count being the ones read.
#[tokio::test]
async fn a_stop_over_the_item_size_limit_is_sent_again_with_a_bounded_history() {
    let too_large = mock!(aws_sdk_dynamodb::Client::update_item)
        .then_error(|| validation("Item size to update has exceeded the maximum allowed size"));
    let mut big = item("RUNNING");
    let event = AttributeValue::M(HashMap::from([("Event".into(), s("Note")), ("At".into(), s(&"x".repeat(1000)))]));
    big.insert("History".into(), AttributeValue::L(vec![event; 420]));
    let stored = big.clone();
    let read = mock!(aws_sdk_dynamodb::Client::get_item)
        .match_requests(|r| r.consistent_read() == Some(true))
        .then_output(move || GetItemOutput::builder().set_item(Some(stored.clone())).build());
    let fitted = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|r| {
            let values = r.expression_attribute_values().unwrap();
            let history = values[":history"].as_l().unwrap();
            let dropped: usize = values[":dropped"].as_n().unwrap().parse().unwrap();
            r.update_expression().unwrap().contains("#history = :history, #dropped = :dropped")
                && r.condition_expression()
                    == Some(
                        "#status IN (:starting, :queued, :running) AND (size(#history) = :guard_len AND \
                         #history[419] = :guard_last) AND attribute_not_exists(#dropped)",
                    )
                && values[":guard_len"] == AttributeValue::N("420".into())
                && r.expression_attribute_names().unwrap()["#dropped"] == "HistoryEventsDropped"
                && dropped > 0
                && history.len() + dropped == 421
                && history.last().unwrap().as_m().unwrap()["Event"] == s("StopRequested")
        })
        .then_output(|| UpdateItemOutput::builder().set_attributes(Some(item("STOPPING"))).build());
    let store = DynamoRunStore::new(
        mock_client!(
            aws_sdk_dynamodb,
            aws_smithy_mocks::RuleMode::Sequential,
            [&too_large, &read, &fitted],
            no_retries
        ),
        "Runs",
    );
    let write = store.request_stop(&key(), &stop()).await.unwrap();
    assert!(matches!(write, StopWrite::Transitioned(_)), "{write:?}");
    assert_eq!((too_large.num_calls(), read.num_calls(), fitted.num_calls()), (1, 1, 1));
}

/// A run with `events` history events of about 1 KB each.
fn with_history(status: &str, events: usize, last: &str) -> HashMap<String, AttributeValue> {
    let mut it = item(status);
    let event = AttributeValue::M(HashMap::from([("Event".into(), s("Note")), ("At".into(), s(&"x".repeat(1000)))]));
    let mut history = vec![event; events];
    history.push(AttributeValue::M(HashMap::from([("Event".into(), s(last)), ("At".into(), s("t"))])));
    it.insert("History".into(), AttributeValue::L(history));
    it
}

/// Issue 22 item 3. The fitted write is guarded by the history read; when
/// another writer keeps changing it, the bounded retries run out. The last
/// `ConditionalCheckFailedException` used to be returned as it was, and
/// each caller read it as "the status condition failed": the finalize as
/// "no longer STOPPING" (acknowledged, skipped: the run stayed STOPPING
/// until the reconciler), a child's cancel as "not active" (lost), a child's
/// stop as "not stoppable" (the parent written STOPPED with the child
/// running). Now it is a retryable fault, and only a status that refuses the
/// write (read from `ALL_OLD`) is a verdict.
#[tokio::test]
async fn exhausted_history_retries_are_a_retryable_fault_never_a_status_verdict() {
    use mwaa_stop::ports::{FinalizerStore, StoppedWrite};
    for (op, status) in [("finalize", "STOPPING"), ("cancel", "RUNNING"), ("stop", "RUNNING")] {
        let too_large = mock!(aws_sdk_dynamodb::Client::update_item)
            .match_requests(|r| r.update_expression().unwrap().contains("list_append"))
            .then_error(|| validation("Item size to update has exceeded the maximum allowed size"));
        let read = mock!(aws_sdk_dynamodb::Client::get_item)
            .then_output(move || GetItemOutput::builder().set_item(Some(with_history(status, 420, "A"))).build());
        // Each fitted write finds the history changed by a scheduler (its
        // last event is another one), the status still one it accepts.
        let fitted = mock!(aws_sdk_dynamodb::Client::update_item)
            .match_requests(|r| r.update_expression().unwrap().contains("#history = :history"))
            .then_error(move || {
                UpdateItemError::ConditionalCheckFailedException(
                    ConditionalCheckFailedException::builder().set_item(Some(with_history(status, 420, "B"))).build(),
                )
            });
        let store = DynamoRunStore::new(
            mock_client!(
                aws_sdk_dynamodb,
                aws_smithy_mocks::RuleMode::MatchAny,
                [&too_large, &read, &fitted],
                no_retries
            ),
            "Runs",
        );
        let at = "2026-11-21T10:01:00.000Z";
        let result = match op {
            "finalize" => {
                let w = StoppedWrite {
                    at: at.into(),
                    finalized_by: mwaa_stop::ports::FinalizedBy::Stream,
                    workers_stopped: 1,
                    orphans_stopped: 0,
                    child_policy: None,
                    unconfirmed: Default::default(),
                    watch: false,
                };
                store.finalize_stop(&key(), &w).await.map(|w| format!("{w:?}"))
            }
            "cancel" => store.request_cancel(&key(), "parent-run:x", at).await.map(|w| format!("{w:?}")),
            _ => store.request_stop(&key(), &stop()).await.map(|w| format!("{w:?}")),
        };
        match result {
            Err(StoreError::Upstream(u)) => {
                assert_eq!(u.kind, UpstreamKind::Fault, "{op}: retryable");
                assert!(!StoreError::Upstream(u).is_permanent());
            }
            other => panic!("{op}: exhausted retries must be a retryable fault, got {other:?}"),
        }
        assert_eq!((read.num_calls(), fitted.num_calls()), (3, 3), "{op}: three fitted attempts, each after a read");
    }
}

/// Issue 22 items 3 and 6: a fitted write that fails on a status the write
/// does not accept is that verdict (here the run finished meanwhile), decided
/// from `ALL_OLD`; and a `History` that is not a list (DynamoDB refuses the
/// append as invalid) is replaced, guarded by the value read.
#[tokio::test]
async fn a_history_that_is_not_a_list_is_replaced_and_a_finished_run_is_still_a_verdict() {
    let invalid = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|r| r.update_expression().unwrap().contains("list_append"))
        .then_error(|| validation("An operand in the update expression has an incorrect data type"));
    let mut mistyped = item("RUNNING");
    mistyped.insert("History".into(), s("not a list"));
    let stored = mistyped.clone();
    let read = mock!(aws_sdk_dynamodb::Client::get_item)
        .then_output(move || GetItemOutput::builder().set_item(Some(stored.clone())).build());
    let repaired = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|r| {
            let values = r.expression_attribute_values().unwrap();
            let events: Vec<_> = values[":history"]
                .as_l()
                .unwrap()
                .iter()
                .map(|e| e.as_m().unwrap()["Event"].as_s().unwrap().clone())
                .collect();
            r.condition_expression()
                .unwrap()
                .ends_with("AND #history = :guard_history AND attribute_not_exists(#dropped)")
                && values[":guard_history"] == s("not a list")
                && events == ["HistoryReplaced", "StopRequested"]
        })
        .then_output(|| UpdateItemOutput::builder().set_attributes(Some(item("STOPPING"))).build());
    let store = DynamoRunStore::new(
        mock_client!(aws_sdk_dynamodb, aws_smithy_mocks::RuleMode::MatchAny, [&invalid, &read, &repaired], no_retries),
        "Runs",
    );
    assert!(matches!(store.request_stop(&key(), &stop()).await.unwrap(), StopWrite::Transitioned(_)));
    assert_eq!(repaired.num_calls(), 1);

    // The same, but the run finished between the read and the write.
    let finished = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|r| r.update_expression().unwrap().contains("#history = :history"))
        .then_error(|| {
            let mut found = item("SUCCESS");
            found.insert("History".into(), s("not a list"));
            UpdateItemError::ConditionalCheckFailedException(
                ConditionalCheckFailedException::builder().set_item(Some(found)).build(),
            )
        });
    let store = DynamoRunStore::new(
        mock_client!(aws_sdk_dynamodb, aws_smithy_mocks::RuleMode::MatchAny, [&invalid, &read, &finished], no_retries),
        "Runs",
    );
    match store.request_stop(&key(), &stop()).await.unwrap() {
        StopWrite::NotStoppable(run) => assert_eq!(run.status, "SUCCESS"),
        other => panic!("{other:?}"),
    }
    assert_eq!(finished.num_calls(), 1, "a verdict is not retried");

    // A ValidationException with an appendable history is not ours to
    // repair: it stays the refusal it was.
    let list_read = mock!(aws_sdk_dynamodb::Client::get_item)
        .then_output(|| GetItemOutput::builder().set_item(Some(item("RUNNING"))).build());
    let store = DynamoRunStore::new(
        mock_client!(aws_sdk_dynamodb, aws_smithy_mocks::RuleMode::MatchAny, [&invalid, &list_read], no_retries),
        "Runs",
    );
    match store.request_stop(&key(), &stop()).await {
        Err(StoreError::Upstream(u)) => assert_eq!(u.kind, UpstreamKind::Rejected),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn throttling_after_retries_is_classified() {
    let rule = mock!(aws_sdk_dynamodb::Client::update_item).then_error(|| {
        UpdateItemError::ProvisionedThroughputExceededException(
            ProvisionedThroughputExceededException::builder()
                .message("slow down")
                // what the SDK's deserializer records for every service error
                .meta(
                    aws_sdk_dynamodb::error::ErrorMetadata::builder()
                        .code("ProvisionedThroughputExceededException")
                        .message("slow down")
                        .build(),
                )
                .build(),
        )
    });
    let client = mock_client!(aws_sdk_dynamodb, aws_smithy_mocks::RuleMode::Sequential, [&rule], no_retries);
    let store = DynamoRunStore::new(client, "Runs");
    match store.request_stop(&key(), &stop()).await {
        Err(StoreError::Upstream(u)) => assert_eq!(u.kind, UpstreamKind::Throttled),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_bad_worker_entry_does_not_block_the_stop_but_a_broken_item_is_corrupt() {
    let bad_workers = mock!(aws_sdk_dynamodb::Client::update_item).then_output(|| {
        let mut bad = item("STOPPING");
        bad.insert(
            "Workers".into(),
            AttributeValue::M(HashMap::from([
                (TASK.into(), s("workers")),
                ("arn:aws:ecs:us-east-1:999999999999:task/workers/bad".into(), AttributeValue::N("1".into())),
            ])),
        );
        UpdateItemOutput::builder().set_attributes(Some(bad)).build()
    });
    let not_a_map = mock!(aws_sdk_dynamodb::Client::update_item).then_output(|| {
        let mut bad = item("STOPPING");
        bad.insert("Workers".into(), s("not a map"));
        UpdateItemOutput::builder().set_attributes(Some(bad)).build()
    });
    let broken = mock!(aws_sdk_dynamodb::Client::update_item).then_output(|| {
        let mut bad = item("STOPPING");
        bad.insert("Status".into(), AttributeValue::N("3".into()));
        UpdateItemOutput::builder().set_attributes(Some(bad)).build()
    });
    let store = DynamoRunStore::new(mock_client!(aws_sdk_dynamodb, [&bad_workers, &not_a_map, &broken]), "Runs");
    match store.request_stop(&key(), &stop()).await.unwrap() {
        StopWrite::Transitioned(run) => assert_eq!(run.workers.keys().collect::<Vec<_>>(), vec![TASK]),
        other => panic!("{other:?}"),
    }
    match store.request_stop(&key(), &stop()).await.unwrap() {
        StopWrite::Transitioned(run) => assert!(run.workers.is_empty()),
        other => panic!("{other:?}"),
    }
    assert!(matches!(store.request_stop(&key(), &stop()).await, Err(StoreError::Corrupt { .. })));
}

/// Optional attributes of the wrong type are read as absent, and malformed
/// `ChildRuns` entries stay visible (empty keys) for the child policy to
/// count as skipped: the run is still stoppable and still finalizable.
#[tokio::test]
async fn wrongly_typed_optional_attributes_are_read_as_absent_not_as_a_corrupt_run() {
    let sloppy = mock!(aws_sdk_dynamodb::Client::update_item).then_output(|| {
        let mut bad = item("STOPPING");
        bad.insert("WorkflowVersion".into(), AttributeValue::Bool(true));
        bad.insert("CancelRequested".into(), s("yes"));
        bad.insert("WorkerClusters".into(), s("workers"));
        bad.insert("WorkerStartedBy".into(), s("mwaa-run-1"));
        bad.insert("ChildPolicy".into(), s("ABANDON"));
        bad.insert(
            "ChildRuns".into(),
            AttributeValue::L(vec![
                AttributeValue::M(HashMap::from([("WorkflowArn".into(), s(ARN)), ("RunId".into(), s("child-1"))])),
                AttributeValue::M(HashMap::from([("WorkflowArn".into(), s(ARN))])),
                AttributeValue::M(HashMap::from([
                    ("WorkflowArn".into(), s(ARN)),
                    ("RunId".into(), AttributeValue::N("2".into())),
                ])),
                s("not a map"),
            ]),
        );
        UpdateItemOutput::builder().set_attributes(Some(bad)).build()
    });
    let store = DynamoRunStore::new(mock_client!(aws_sdk_dynamodb, [&sloppy]), "Runs");
    let run = match store.request_stop(&key(), &stop()).await.unwrap() {
        StopWrite::Transitioned(run) => run,
        other => panic!("{other:?}"),
    };
    assert_eq!(run.status, "STOPPING");
    assert_eq!(run.workers.keys().collect::<Vec<_>>(), vec![TASK], "the workers are still stopped");
    assert_eq!((run.workflow_version, run.cancel_requested), (None, None));
    assert_eq!(run.worker_clusters, Some(vec!["workers".to_owned()]), "one cluster written as S still counts");
    assert_eq!(run.worker_started_by.as_deref(), Some("mwaa-run-1"), "well-typed attributes are kept");
    assert_eq!(run.child_policy.as_deref(), Some("ABANDON"));
    let children: Vec<(&str, &str)> =
        run.child_runs.iter().flatten().map(|c| (c.workflow_arn.as_str(), c.run_id.as_str())).collect();
    assert_eq!(children, vec![(ARN, "child-1"), (ARN, ""), (ARN, ""), ("", "")]);
}

#[tokio::test]
async fn get_run_is_a_consistent_read_of_the_key() {
    let rule = mock!(aws_sdk_dynamodb::Client::get_item)
        .match_requests(|r| {
            r.table_name() == Some("Runs")
                && r.consistent_read() == Some(true)
                && r.key().unwrap() == &HashMap::from([("WorkflowArn".into(), s(ARN)), ("RunId".into(), s("run-1"))])
        })
        .then_output(|| GetItemOutput::builder().set_item(Some(item("RUNNING"))).build());
    let missing = mock!(aws_sdk_dynamodb::Client::get_item).then_output(|| GetItemOutput::builder().build());
    let store = DynamoRunStore::new(mock_client!(aws_sdk_dynamodb, [&rule, &missing]), "Runs");
    assert_eq!(store.get_run(&key()).await.unwrap().unwrap().status, "RUNNING");
    assert_eq!(store.get_run(&key()).await.unwrap(), None);
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn stop_task_sends_cluster_task_and_reason() {
    let rule = mock!(aws_sdk_ecs::Client::stop_task)
        .match_requests(|r| r.cluster() == Some("workers") && r.task() == Some(TASK) && r.reason() == Some("why"))
        .then_output(|| {
            StopTaskOutput::builder().task(aws_sdk_ecs::types::Task::builder().last_status("RUNNING").build()).build()
        });
    let gone = mock!(aws_sdk_ecs::Client::stop_task).then_error(|| {
        StopTaskError::InvalidParameterException(
            InvalidParameterException::builder().message("The referenced task was not found.").build(),
        )
    });
    let no_cluster = mock!(aws_sdk_ecs::Client::stop_task)
        .then_error(|| StopTaskError::ClusterNotFoundException(ClusterNotFoundException::builder().build()));
    let broken = mock!(aws_sdk_ecs::Client::stop_task)
        .then_error(|| StopTaskError::ServerException(ServerException::builder().message("boom").build()));
    let client =
        mock_client!(aws_sdk_ecs, aws_smithy_mocks::RuleMode::Sequential, [&rule, &gone, &no_cluster, &broken], |c| c
            .retry_config(aws_sdk_ecs::config::retry::RetryConfig::disabled()));
    let ecs = EcsWorkers::new(client);
    assert_eq!(
        ecs.stop_task("workers", TASK, "why").await.unwrap(),
        TaskStop::Accepted { last_status: Some("RUNNING".into()) }
    );
    assert_eq!(ecs.stop_task("workers", TASK, "why").await.unwrap(), TaskStop::Gone);
    assert_eq!(ecs.stop_task("workers", TASK, "why").await.unwrap(), TaskStop::Gone);
    let err = ecs.stop_task("workers", TASK, "why").await.unwrap_err();
    assert_eq!(err.kind, UpstreamKind::Fault);
    assert_eq!(rule.num_calls(), 1);
}

fn stopped_write() -> mwaa_stop::ports::StoppedWrite {
    mwaa_stop::ports::StoppedWrite {
        at: "2026-11-21T10:01:00.000Z".into(),
        finalized_by: mwaa_stop::ports::FinalizedBy::Reconciler,
        workers_stopped: 3,
        orphans_stopped: 1,
        child_policy: Some(mwaa_stop::ports::ChildPolicyApplied {
            policy: mwaa_stop::domain::ChildPolicy::Terminate,
            children: 2,
            affected: 1,
            skipped: 1,
            skipped_children: vec![],
        }),
        unconfirmed: Default::default(),
        watch: false,
    }
}

#[tokio::test]
async fn finalize_is_one_update_conditioned_on_stopping() {
    use mwaa_stop::ports::{FinalizeWrite, FinalizerStore};
    let rule = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|r| {
            let names = r.expression_attribute_names().unwrap();
            let values = r.expression_attribute_values().unwrap();
            let events = values[":events"].as_l().unwrap();
            let policy = events[0].as_m().unwrap();
            let stopped = events[1].as_m().unwrap();
            r.table_name() == Some("Runs")
                && r.condition_expression() == Some("#status = :stopping")
                && r.update_expression()
                    == Some(
                        "SET #status = :stopped, #completed = :now, #modified = :now, \
                         #workers = :no_workers, #history = list_append(if_not_exists(#history, :empty), :events) \
                         REMOVE #stopping_shard, #stopping_since",
                    )
                && names["#completed"] == "CompletedOn"
                && names["#workers"] == "Workers"
                && values[":stopped"] == s("STOPPED")
                && values[":stopping"] == s("STOPPING")
                && values[":no_workers"] == AttributeValue::M(HashMap::new())
                && policy["Event"] == s("ChildPolicyApplied")
                && policy["Policy"] == s("TERMINATE")
                && policy["Affected"] == AttributeValue::N("1".into())
                && stopped["Event"] == s("Stopped")
                && stopped["WorkersStopped"] == AttributeValue::N("3".into())
                && stopped["OrphansStopped"] == AttributeValue::N("1".into())
                && stopped["FinalizedBy"] == s("reconciler")
                && stopped["At"] == s("2026-11-21T10:01:00.000Z")
        })
        .then_output(|| UpdateItemOutput::builder().build());
    let lost = mock!(aws_sdk_dynamodb::Client::update_item).then_error(|| {
        UpdateItemError::ConditionalCheckFailedException(ConditionalCheckFailedException::builder().build())
    });
    let store = DynamoRunStore::new(mock_client!(aws_sdk_dynamodb, [&rule, &lost]), "Runs");
    assert_eq!(store.finalize_stop(&key(), &stopped_write()).await.unwrap(), FinalizeWrite::Stopped);
    assert_eq!(rule.num_calls(), 1);
    assert_eq!(store.finalize_stop(&key(), &stopped_write()).await.unwrap(), FinalizeWrite::NotStopping);
}

#[tokio::test]
async fn cancel_request_is_conditioned_on_active_and_not_yet_requested() {
    use mwaa_stop::ports::{CancelWrite, FinalizerStore};
    let rule = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|r| {
            let values = r.expression_attribute_values().unwrap();
            let event = values[":event"].as_l().unwrap()[0].as_m().unwrap();
            r.condition_expression()
                == Some("#status IN (:starting, :queued, :running) AND (attribute_not_exists(#cancel) OR #cancel = :false)")
                && r.update_expression()
                    == Some("SET #cancel = :true, #modified = :now, #history = list_append(if_not_exists(#history, :empty), :event)")
                && r.expression_attribute_names().unwrap()["#cancel"] == "CancelRequested"
                && values[":true"] == AttributeValue::Bool(true)
                && event["Event"] == s("CancelRequested")
                && event["By"] == s("parent-run:x")
                && r.return_values_on_condition_check_failure() == Some(&ReturnValuesOnConditionCheckFailure::AllOld)
        })
        .then_output(|| UpdateItemOutput::builder().build());
    let finished = mock!(aws_sdk_dynamodb::Client::update_item).then_error(|| {
        UpdateItemError::ConditionalCheckFailedException(
            ConditionalCheckFailedException::builder().set_item(Some(item("SUCCESS"))).build(),
        )
    });
    let missing = mock!(aws_sdk_dynamodb::Client::update_item).then_error(|| {
        UpdateItemError::ConditionalCheckFailedException(ConditionalCheckFailedException::builder().build())
    });
    let store = DynamoRunStore::new(mock_client!(aws_sdk_dynamodb, [&rule, &finished, &missing]), "Runs");
    let at = "2026-11-21T10:01:00.000Z";
    assert_eq!(store.request_cancel(&key(), "parent-run:x", at).await.unwrap(), CancelWrite::Requested);
    assert_eq!(rule.num_calls(), 1);
    assert_eq!(store.request_cancel(&key(), "parent-run:x", at).await.unwrap(), CancelWrite::NotActive);
    assert_eq!(store.request_cancel(&key(), "parent-run:x", at).await.unwrap(), CancelWrite::NotFound);
}

#[tokio::test]
async fn describe_tasks_reads_states_and_missing_tasks() {
    use aws_sdk_ecs::operation::describe_tasks::DescribeTasksOutput;
    use aws_sdk_ecs::types::{Failure, Task};
    use mwaa_stop::ports::{TaskState, WorkerFleet};
    let rule = mock!(aws_sdk_ecs::Client::describe_tasks)
        .match_requests(|r| r.cluster() == Some("workers") && r.tasks() == ["t1".to_owned(), "t2".to_owned()])
        .then_output(|| {
            DescribeTasksOutput::builder()
                .tasks(Task::builder().task_arn("t1").last_status("STOPPING").desired_status("STOPPED").build())
                .failures(Failure::builder().arn("t2").reason("MISSING").build())
                .build()
        });
    let ecs = EcsWorkers::new(mock_client!(aws_sdk_ecs, [&rule]));
    let d = ecs.describe_tasks("workers", &["t1".into(), "t2".into()]).await.unwrap();
    assert_eq!(
        d.found,
        vec![TaskState {
            arn: "t1".into(),
            last_status: Some("STOPPING".into()),
            desired_status: Some("STOPPED".into())
        }]
    );
    assert!(!d.found[0].is_stopped() && d.found[0].stop_requested());
    assert_eq!(d.missing, vec!["t2".to_owned()]);
}

#[tokio::test]
async fn list_running_filters_by_started_by_and_follows_pages() {
    use aws_sdk_ecs::operation::list_tasks::ListTasksOutput;
    use aws_sdk_ecs::types::DesiredStatus;
    use mwaa_stop::ports::WorkerFleet;
    let first = mock!(aws_sdk_ecs::Client::list_tasks)
        .match_requests(|r| {
            r.cluster() == Some("workers")
                && r.started_by() == Some("run/r1")
                && r.desired_status() == Some(&DesiredStatus::Running)
                && r.next_token().is_none()
        })
        .then_output(|| ListTasksOutput::builder().task_arns("a").task_arns("b").next_token("page2").build());
    let second = mock!(aws_sdk_ecs::Client::list_tasks)
        .match_requests(|r| r.next_token() == Some("page2") && r.started_by() == Some("run/r1"))
        .then_output(|| ListTasksOutput::builder().task_arns("c").build());
    let told = mock!(aws_sdk_ecs::Client::list_tasks)
        .match_requests(|r| r.desired_status() == Some(&DesiredStatus::Stopped) && r.started_by() == Some("run/r1"))
        .then_output(|| ListTasksOutput::builder().build());
    let ecs = EcsWorkers::new(mock_client!(aws_sdk_ecs, [&first, &second, &told]));
    assert_eq!(ecs.list_running("workers", "run/r1").await.unwrap(), vec!["a", "b", "c"]);
}

/// Issue 22 item 1: a task told to stop whose agent hangs is listed by ECS
/// only under `desiredStatus=STOPPED`. Before, the sweep listed only
/// `RUNNING` and never saw it; now both listings are read (and merged), so
/// it is described until its last status is `STOPPED`.
#[tokio::test]
async fn the_sweep_also_lists_tasks_told_to_stop_that_may_still_run() {
    use aws_sdk_ecs::operation::list_tasks::ListTasksOutput;
    use aws_sdk_ecs::types::DesiredStatus;
    use mwaa_stop::ports::WorkerFleet;
    let running = mock!(aws_sdk_ecs::Client::list_tasks)
        .match_requests(|r| r.desired_status() == Some(&DesiredStatus::Running) && r.cluster() == Some("workers"))
        .then_output(|| ListTasksOutput::builder().task_arns("running-1").build());
    let told = mock!(aws_sdk_ecs::Client::list_tasks)
        .match_requests(|r| {
            r.desired_status() == Some(&DesiredStatus::Stopped)
                && r.cluster() == Some("workers")
                && r.started_by() == Some("run/r1")
        })
        .then_output(|| ListTasksOutput::builder().task_arns("hung-1").task_arns("running-1").build());
    let ecs = EcsWorkers::new(mock_client!(aws_sdk_ecs, [&running, &told]));
    assert_eq!(ecs.list_running("workers", "run/r1").await.unwrap(), vec!["hung-1", "running-1"]);
    assert_eq!((running.num_calls(), told.num_calls()), (1, 1));
}

/// Issue 22 item 9: the `STOPPED` write past the stop deadline names the
/// workers not confirmed dead (`UnconfirmedWorkers`, `ErrorMessage`, the
/// `Stopped` event) and keeps the run in the index's watch partition
/// (`StoppingShard = watch-N`, `StoppingSince` kept), so the reconciler
/// follows it up.
#[tokio::test]
async fn a_stopped_write_at_the_deadline_names_the_unconfirmed_workers_and_stays_watched() {
    use mwaa_stop::domain::stopping_shard;
    use mwaa_stop::ports::{FinalizeWrite, FinalizerStore};
    let shard = format!("watch-{}", stopping_shard(&key()));
    let rule = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(move |r| {
            let names = r.expression_attribute_names().unwrap();
            let values = r.expression_attribute_values().unwrap();
            let events = values[":events"].as_l().unwrap();
            let stopped = events.last().unwrap().as_m().unwrap();
            r.condition_expression() == Some("#status = :stopping")
                && r.update_expression()
                    == Some(
                        "SET #status = :stopped, #completed = :now, #modified = :now, #workers = :no_workers, \
                         #stopping_shard = :watch_shard, #unconfirmed = :unconfirmed, #error = :error, \
                         #history = list_append(if_not_exists(#history, :empty), :events)",
                    )
                && names["#unconfirmed"] == "UnconfirmedWorkers"
                && names["#error"] == "ErrorMessage"
                && names["#stopping_shard"] == "StoppingShard"
                && values[":watch_shard"] == s(&shard)
                && values[":unconfirmed"] == AttributeValue::M(HashMap::from([(TASK.to_owned(), s("workers"))]))
                && values[":error"].as_s().is_ok_and(|m| m.contains(TASK) && m.contains("1 worker"))
                && stopped["Event"] == s("Stopped")
                && stopped["UnconfirmedWorkers"] == AttributeValue::L(vec![s(TASK)])
                && stopped["UnconfirmedCount"] == AttributeValue::N("1".into())
        })
        .then_output(|| UpdateItemOutput::builder().build());
    let store = DynamoRunStore::new(mock_client!(aws_sdk_dynamodb, [&rule]), "Runs");
    let write = mwaa_stop::ports::StoppedWrite {
        unconfirmed: [(TASK.to_owned(), "workers".to_owned())].into(),
        watch: true,
        ..stopped_write()
    };
    assert_eq!(store.finalize_stop(&key(), &write).await.unwrap(), FinalizeWrite::Stopped);
    assert_eq!(rule.num_calls(), 1, "the request matched every expectation");
}

/// The reconciler's follow-up of a watched run: one update conditioned on
/// `STOPPED`; confirmed workers leave `UnconfirmedWorkers` and late finds
/// join it, each with a history event; the end of the watch removes the map
/// and the index keys, conditioned on the map's size as read.
#[tokio::test]
async fn the_follow_up_of_a_watched_run_is_one_update_conditioned_on_stopped() {
    use mwaa_stop::ports::{FinalizerStore, WatchWrite};
    let step = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|r| {
            let names = r.expression_attribute_names().unwrap();
            let values = r.expression_attribute_values().unwrap();
            let events = values[":events"].as_l().unwrap();
            let found = events[0].as_m().unwrap();
            let confirmed = events[1].as_m().unwrap();
            r.condition_expression() == Some("#status = :stopped")
                && r.update_expression()
                    == Some(
                        "SET #modified = :now, #history = list_append(if_not_exists(#history, :empty), :events), \
                         #u.#t1 = :c1 REMOVE #u.#t0",
                    )
                && names["#u"] == "UnconfirmedWorkers"
                && names["#t0"] == "old-task"
                && names["#t1"] == "late-task"
                && values[":c1"] == s("workers")
                && found["Event"] == s("LateWorkersFound")
                && found["Workers"] == AttributeValue::L(vec![s("late-task")])
                && confirmed["Event"] == s("WorkersConfirmed")
                && confirmed["Workers"] == AttributeValue::L(vec![s("old-task")])
                && confirmed["At"] == s("2026-11-21T10:20:00.000Z")
        })
        .then_output(|| UpdateItemOutput::builder().build());
    let end = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|r| {
            let names = r.expression_attribute_names().unwrap();
            let values = r.expression_attribute_values().unwrap();
            r.condition_expression() == Some("#status = :stopped AND size(#u) = :read_len")
                && r.update_expression() == Some("SET #modified = :now REMOVE #u, #shard, #since")
                && names["#shard"] == "StoppingShard"
                && names["#since"] == "StoppingSince"
                && values[":read_len"] == AttributeValue::N("1".into())
        })
        .then_output(|| UpdateItemOutput::builder().build());
    let lost = mock!(aws_sdk_dynamodb::Client::update_item).then_error(|| {
        UpdateItemError::ConditionalCheckFailedException(ConditionalCheckFailedException::builder().build())
    });
    let store = DynamoRunStore::new(mock_client!(aws_sdk_dynamodb, [&step, &end, &lost]), "Runs");
    let write = WatchWrite {
        at: "2026-11-21T10:20:00.000Z".into(),
        confirmed: vec!["old-task".into()],
        found: [("late-task".to_owned(), "workers".to_owned())].into(),
        end_watch: false,
        read_len: 1,
    };
    assert!(store.update_watch(&key(), &write).await.unwrap());
    assert_eq!(step.num_calls(), 1, "the request matched every expectation");
    let ending =
        WatchWrite { at: "2026-11-21T10:21:00.000Z".into(), end_watch: true, read_len: 1, ..Default::default() };
    assert!(store.update_watch(&key(), &ending).await.unwrap());
    assert_eq!(end.num_calls(), 1);
    assert!(!store.update_watch(&key(), &ending).await.unwrap(), "not STOPPED (or changed): nothing written");
}

/// The orphan sweep's attributes survive type slips, and children that
/// cannot be read still leave a trace for the child policy to report.
#[tokio::test]
async fn type_slips_never_cost_the_orphan_sweep_or_hide_children() {
    let slipped = mock!(aws_sdk_dynamodb::Client::update_item).then_output(|| {
        let mut bad = item("STOPPING");
        bad.insert("WorkerClusters".into(), AttributeValue::L(vec![s("blue"), AttributeValue::Null(true), s("green")]));
        bad.insert("WorkerStartedBy".into(), AttributeValue::N("7".into()));
        bad.insert("ChildRuns".into(), AttributeValue::M(HashMap::from([("RunId".into(), s("child-1"))])));
        UpdateItemOutput::builder().set_attributes(Some(bad)).build()
    });
    let null_children = mock!(aws_sdk_dynamodb::Client::update_item).then_output(|| {
        let mut bad = item("STOPPING");
        bad.insert("ChildRuns".into(), AttributeValue::Null(true));
        UpdateItemOutput::builder().set_attributes(Some(bad)).build()
    });
    let store = DynamoRunStore::new(mock_client!(aws_sdk_dynamodb, [&slipped, &null_children]), "Runs");
    let StopWrite::Transitioned(run) = store.request_stop(&key(), &stop()).await.unwrap() else { panic!() };
    assert_eq!(run.worker_clusters, Some(vec!["blue".to_owned(), "green".to_owned()]));
    assert_eq!(run.worker_started_by.as_deref(), Some("7"));
    let children: Vec<(&str, &str)> =
        run.child_runs.iter().flatten().map(|c| (c.workflow_arn.as_str(), c.run_id.as_str())).collect();
    assert_eq!(children, vec![("", "")], "an unreadable ChildRuns is one skipped child, not none");
    let StopWrite::Transitioned(run) = store.request_stop(&key(), &stop()).await.unwrap() else { panic!() };
    assert_eq!(run.child_runs, None, "NULL means no children");
}

/// ECS throttling is back-pressure for the pacing, never an SDK retry: with
/// the SDK's standard retries on, a throttled `StopTask` (ECS's HTTP 400
/// `ThrottlingException`, through the real deserializer) is sent once and
/// comes back `Throttled`; the pacing sends it again after a token. Without
/// the product's classifier the same client would have resent it at once.
#[tokio::test]
async fn the_sdk_never_retries_a_throttled_ecs_call() {
    let throttled_then_ok = || {
        mock!(aws_sdk_ecs::Client::stop_task)
            .sequence()
            .http_status(400, Some(r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.into()))
            .output(|| StopTaskOutput::builder().build())
            .build()
    };
    let retries = |c: aws_sdk_ecs::config::Builder| {
        c.retry_config(
            aws_sdk_ecs::config::retry::RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(std::time::Duration::from_millis(1)),
        )
    };

    let rule = throttled_then_ok();
    let client = mock_client!(aws_sdk_ecs, aws_smithy_mocks::RuleMode::Sequential, [&rule], |c| {
        mwaa_stop::aws::no_sdk_retry_of_throttles(retries(c))
    });
    let err = EcsWorkers::new(client).stop_task("workers", TASK, "why").await.unwrap_err();
    assert_eq!(err.kind, UpstreamKind::Throttled);
    assert_eq!(rule.num_calls(), 1, "one attempt, no SDK retry");

    let rule = throttled_then_ok();
    let client = mock_client!(aws_sdk_ecs, aws_smithy_mocks::RuleMode::Sequential, [&rule], retries);
    let again = EcsWorkers::new(client).stop_task("workers", TASK, "why").await;
    assert!(again.is_ok(), "{again:?}");
    assert_eq!(rule.num_calls(), 2, "the SDK alone would have resent the throttled call");
}

/// Run events: one `PutEvents` per 10 events, each on the configured bus and
/// source; an entry the bus refuses (`FailedEntryCount`, an `ErrorCode` on
/// the entry) is reported as not published (so its record is delivered
/// again), the others as published.
#[tokio::test]
async fn put_events_sends_ten_a_call_and_reports_each_refused_entry() {
    use aws_sdk_eventbridge::operation::put_events::PutEventsOutput;
    use aws_sdk_eventbridge::types::PutEventsResultEntry;
    use mwaa_stop::aws::EventBridgePublisher;
    use mwaa_stop::ports::{BusEvent, EventPublisher};
    let rule = mock!(aws_sdk_eventbridge::Client::put_events)
        .match_requests(|r| {
            let entries = r.entries();
            !entries.is_empty()
                && entries.len() <= 10
                && entries.iter().all(|e| {
                    e.event_bus_name() == Some("ops")
                        && e.source() == Some("acme.stops")
                        && e.detail_type() == Some("MWAA Serverless Workflow Run Stopped")
                        && e.resources() == [ARN.to_owned()]
                })
        })
        .then_output(|| {
            // Of each call, the 2nd entry is refused.
            let ok = PutEventsResultEntry::builder().event_id("e").build();
            let refused =
                PutEventsResultEntry::builder().error_code("ThrottlingException").error_message("slow down").build();
            let mut entries = vec![ok.clone(), refused];
            entries.extend(std::iter::repeat_n(ok, 8));
            PutEventsOutput::builder().failed_entry_count(1).set_entries(Some(entries)).build()
        });
    let last = mock!(aws_sdk_eventbridge::Client::put_events).then_output(|| {
        let ok = PutEventsResultEntry::builder().event_id("e").build();
        PutEventsOutput::builder().failed_entry_count(0).set_entries(Some(vec![ok; 2])).build()
    });
    let client = mock_client!(aws_sdk_eventbridge, aws_smithy_mocks::RuleMode::Sequential, [&rule, &last], |c| c
        .retry_config(aws_sdk_eventbridge::config::retry::RetryConfig::disabled()));
    let publisher = EventBridgePublisher::new(client, "ops", "acme.stops");
    let event = BusEvent {
        detail_type: "MWAA Serverless Workflow Run Stopped",
        resources: vec![ARN.to_owned()],
        detail: "{}".into(),
    };
    let results = publisher.publish(&vec![event; 12]).await.unwrap();
    assert_eq!((rule.num_calls(), last.num_calls()), (1, 1), "12 events: a call of 10, a call of 2");
    let refused: Vec<usize> = results.iter().enumerate().filter(|(_, r)| r.is_some()).map(|(i, _)| i).collect();
    assert_eq!(refused, vec![1], "exactly the refused entry: {results:?}");
    assert!(results[1].as_deref().unwrap().contains("ThrottlingException"));
}

/// The reconciler's follow-up of a watched run appends its events to the
/// history. On a run at DynamoDB's item size limit (or whose `History` is
/// not a list), that append is refused: the follow-up is sent again without
/// its events (logged), so the watch still records the confirmation and
/// ends, instead of failing on every pass. An expression names only what it
/// uses (DynamoDB refuses unused names and values).
#[tokio::test]
async fn a_follow_up_refused_for_its_history_events_is_written_without_them() {
    use mwaa_stop::ports::{FinalizerStore, WatchWrite};
    let with_events = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|r| r.update_expression().unwrap().contains("list_append"))
        .then_error(|| validation("Item size to update has exceeded the maximum allowed size"));
    let without = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|r| {
            let names = r.expression_attribute_names().unwrap();
            let values = r.expression_attribute_values().unwrap();
            r.update_expression() == Some("SET #modified = :now REMOVE #u, #shard, #since")
                && !names.contains_key("#history")
                && !values.contains_key(":empty")
                && !values.contains_key(":events")
                && r.condition_expression() == Some("#status = :stopped AND size(#u) = :read_len")
        })
        .then_output(|| UpdateItemOutput::builder().build());
    let store = DynamoRunStore::new(
        mock_client!(aws_sdk_dynamodb, aws_smithy_mocks::RuleMode::MatchAny, [&with_events, &without], no_retries),
        "Runs",
    );
    let write = WatchWrite {
        at: "2026-11-21T10:20:00.000Z".into(),
        confirmed: vec!["old-task".into()],
        found: Default::default(),
        end_watch: true,
        read_len: 1,
    };
    assert!(store.update_watch(&key(), &write).await.unwrap(), "the watch ends");
    assert_eq!((with_events.num_calls(), without.num_calls()), (1, 1));
}
