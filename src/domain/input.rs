//! The request constraints of the published model: `RunId` (`IdString`) and
//! `WorkflowArn`, and the run table key built from them.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

pub const RUN_ID_MAX: usize = 255;
pub const WORKFLOW_ARN_MAX: usize = 2048;

/// The model's patterns, anchored: Smithy patterns are searches, but the issue
/// (and real validation) want full-string matches so nothing can trail.
const RUN_ID_PATTERN: &str = r"[a-zA-Z0-9]+[a-zA-Z0-9\.\-_]*";
const WORKFLOW_ARN_PATTERN: &str = r"arn:(aws(?:-(?:cn|us-gov|iso|iso-b|iso-e|iso-f))?):airflow-serverless:([a-z]{2}-(?:[a-z]+-)+[0-9]{1}):([0-9]{12}):workflow/([a-zA-Z0-9][a-zA-Z0-9\.\-_]{0,254}-[a-zA-Z0-9]{10})";

static RUN_ID_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!("^(?:{RUN_ID_PATTERN})$")).expect("valid regex"));
static WORKFLOW_ARN_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!("^(?:{WORKFLOW_ARN_PATTERN})$")).expect("valid regex"));

/// One failed constraint, named as the model names the member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub name: &'static str,
    pub message: String,
}

/// Smithy counts string length in Unicode scalar values, not bytes.
fn length_error(name: &'static str, value: &str, max: usize) -> Option<FieldError> {
    let len = value.chars().count();
    if len < 1 || len > max {
        Some(FieldError {
            name,
            message: format!(
                "Value at '{name}' failed to satisfy constraint: Member must have length between 1 and {max} (got {len})"
            ),
        })
    } else {
        None
    }
}

fn pattern_error(name: &'static str, pattern: &str) -> FieldError {
    FieldError {
        name,
        message: format!(
            "Value at '{name}' failed to satisfy constraint: Member must satisfy regular expression pattern: {pattern}"
        ),
    }
}

/// Validate a `RunId` against the `IdString` shape.
pub fn check_run_id(value: &str) -> Option<FieldError> {
    length_error("RunId", value, RUN_ID_MAX)
        .or_else(|| (!RUN_ID_RE.is_match(value)).then(|| pattern_error("RunId", RUN_ID_PATTERN)))
}

/// A `WorkflowArn` that passed the model's constraints, with the parts the
/// service needs (the account decides who may touch the run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowArn {
    arn: String,
    partition: String,
    region: String,
    account: String,
    workflow: String,
}

impl WorkflowArn {
    pub fn parse(value: &str) -> Result<WorkflowArn, FieldError> {
        if let Some(err) = length_error("WorkflowArn", value, WORKFLOW_ARN_MAX) {
            return Err(err);
        }
        let caps = WORKFLOW_ARN_RE.captures(value).ok_or_else(|| pattern_error("WorkflowArn", WORKFLOW_ARN_PATTERN))?;
        Ok(WorkflowArn {
            arn: value.to_owned(),
            partition: caps[1].to_owned(),
            region: caps[2].to_owned(),
            account: caps[3].to_owned(),
            workflow: caps[4].to_owned(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.arn
    }
    pub fn partition(&self) -> &str {
        &self.partition
    }
    pub fn region(&self) -> &str {
        &self.region
    }
    pub fn account(&self) -> &str {
        &self.account
    }
    pub fn workflow_name(&self) -> &str {
        &self.workflow
    }
}

impl fmt::Display for WorkflowArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arn)
    }
}

/// The run table's primary key, both parts validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunKey {
    pub workflow_arn: WorkflowArn,
    pub run_id: String,
}

impl fmt::Display for RunKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.workflow_arn, self.run_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const ARN: &str = "arn:aws:airflow-serverless:us-east-1:123456789012:workflow/my-flow-abcDEF1234";

    #[test]
    fn run_id_constraints() {
        assert!(check_run_id("a").is_none());
        assert!(check_run_id("Run-1.2_3").is_none());
        assert!(check_run_id(&"a".repeat(255)).is_none());
        assert_eq!(check_run_id(&"a".repeat(256)).unwrap().name, "RunId");
        assert!(check_run_id(&"a".repeat(256)).unwrap().message.contains("length between 1 and 255"));
        assert!(check_run_id("").unwrap().message.contains("length"));
        for bad in ["-abc", ".abc", "_a", "a b", "a/b", "a\n", "ab\u{e9}", "a:b", "\u{ff41}"] {
            let err = check_run_id(bad).unwrap_or_else(|| panic!("{bad:?} must be rejected"));
            assert!(err.message.contains("regular expression"), "{bad:?}: {}", err.message);
        }
        // 255 multi-byte characters is within the length limit but not the pattern.
        assert!(check_run_id(&"\u{e9}".repeat(255)).unwrap().message.contains("regular expression"));
        assert!(check_run_id(&"\u{e9}".repeat(256)).unwrap().message.contains("length"));
    }

    #[test]
    fn workflow_arn_parts() {
        let arn = WorkflowArn::parse(ARN).unwrap();
        assert_eq!(arn.account(), "123456789012");
        assert_eq!(arn.region(), "us-east-1");
        assert_eq!(arn.partition(), "aws");
        let cn =
            WorkflowArn::parse("arn:aws-cn:airflow-serverless:cn-north-1:123456789012:workflow/a-0123456789").unwrap();
        assert_eq!((cn.partition(), cn.region()), ("aws-cn", "cn-north-1"));
        assert_eq!(arn.workflow_name(), "my-flow-abcDEF1234");
        for ok in [
            "arn:aws-cn:airflow-serverless:cn-north-1:123456789012:workflow/a-0123456789",
            "arn:aws-us-gov:airflow-serverless:us-gov-west-1:123456789012:workflow/a-0123456789",
            "arn:aws-iso-b:airflow-serverless:us-isob-east-1:123456789012:workflow/a.b_c-0123456789",
            // the model (not the prose reference) allows multi-part region names
            "arn:aws:airflow-serverless:ap-southeast-east-1:123456789012:workflow/a-0123456789",
        ] {
            assert!(WorkflowArn::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn workflow_arn_rejects_tricks() {
        for bad in [
            "",
            "arn:aws:airflow-serverless:us-east-1:123456789012:workflow/my-flow-abcDEF1234 ",
            " arn:aws:airflow-serverless:us-east-1:123456789012:workflow/my-flow-abcDEF1234",
            "arn:aws:airflow-serverless:us-east-1:123456789012:workflow/my-flow-abcDEF1234\n",
            "arn:aws:airflow-serverless:us-east-1:123456789012:workflow/my-flow-abcDEF1234/x",
            "arn:aws:airflow-serverless:us-east-1:123456789012:workflow/my-flow-abcDEF123",
            "ARN:AWS:airflow-serverless:us-east-1:123456789012:workflow/my-flow-abcDEF1234",
            "arn:aws:airflow-serverless:US-EAST-1:123456789012:workflow/my-flow-abcDEF1234",
            "arn:aws-xx:airflow-serverless:us-east-1:123456789012:workflow/my-flow-abcDEF1234",
            "arn:aws:airflow:us-east-1:123456789012:workflow/my-flow-abcDEF1234",
            "arn:aws:airflow-serverless:us-east-1:12345678901:workflow/my-flow-abcDEF1234",
            "arn:aws:airflow-serverless:us-east-1:1234567890123:workflow/my-flow-abcDEF1234",
            // fullwidth digits and a Cyrillic 'а' look alike but are not the pattern's ASCII
            "arn:aws:airflow-serverless:us-east-1:１23456789012:workflow/my-flow-abcDEF1234",
            "\u{430}rn:aws:airflow-serverless:us-east-1:123456789012:workflow/my-flow-abcDEF1234",
            "arn:aws:airflow-serverless:us-east-1:123456789012:workflow/-flow-abcDEF1234",
        ] {
            assert!(WorkflowArn::parse(bad).is_err(), "{bad:?} must be rejected");
        }
        let long =
            format!("arn:aws:airflow-serverless:us-east-1:123456789012:workflow/{}-abcDEF1234", "a".repeat(2100));
        assert!(WorkflowArn::parse(&long).unwrap_err().message.contains("length between 1 and 2048"));
        // a name of 255 characters before the suffix is one too many for {0,254}
        let name256 =
            format!("arn:aws:airflow-serverless:us-east-1:123456789012:workflow/{}-abcDEF1234", "a".repeat(256));
        assert!(WorkflowArn::parse(&name256).is_err());
        let name255 =
            format!("arn:aws:airflow-serverless:us-east-1:123456789012:workflow/{}-abcDEF1234", "a".repeat(255));
        assert!(WorkflowArn::parse(&name255).is_ok());
    }
}
