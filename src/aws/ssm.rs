//! The policy set's deployed location: one SSM parameter (a `String`, or a
//! `SecureString` decrypted with the caller's key access), read whole. The
//! function's role may read that parameter and nothing else (template.yaml).

use crate::ports::{UpstreamError, UpstreamKind};

use super::upstream::from_sdk;

/// Reads the policy set's text from one SSM parameter.
#[derive(Debug, Clone)]
pub struct SsmPolicySource {
    client: aws_sdk_ssm::Client,
    name: String,
}

impl SsmPolicySource {
    pub fn from_conf(conf: &aws_config::SdkConfig, name: &str) -> Self {
        SsmPolicySource { client: aws_sdk_ssm::Client::new(conf), name: name.to_owned() }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The parameter's current value and version.
    pub async fn read(&self) -> Result<(String, i64), UpstreamError> {
        let out = self
            .client
            .get_parameter()
            .name(&self.name)
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| from_sdk("ssm", "GetParameter", &e))?;
        let parameter = out.parameter.ok_or_else(|| {
            UpstreamError::new("ssm", "GetParameter", UpstreamKind::Fault, "answer without a parameter")
        })?;
        Ok((parameter.value.unwrap_or_default(), parameter.version))
    }
}
