//! Who a caller is to the policies: its IAM principal ARN, an assumed-role
//! session normalized to its role.

/// The principal local requests without an identity are evaluated as when a
/// policy set is configured locally (`make local AUTHZ_POLICY_FILE=…`): a
/// fixed user of the local stack's account (moto's default account, the one
/// `localdev` seeds its workflows in).
pub const LOCAL_PRINCIPAL: &str = "arn:aws:iam::123456789012:user/local-unauthenticated";
/// The account of [`LOCAL_PRINCIPAL`].
pub const LOCAL_ACCOUNT: &str = "123456789012";

/// The policy principal of an IAM principal ARN: an STS assumed-role session
/// `arn:PARTITION:sts::ACCOUNT:assumed-role/ROLE/SESSION` is the role
/// `arn:PARTITION:iam::ACCOUNT:role/ROLE` (the session ARN carries no role
/// path, so neither does the result: policies name a role by its name).
/// Anything else (users, the root, federated users, a caller id that is not an
/// ARN) is kept as it is.
pub fn normalize(principal: &str) -> String {
    let mut parts = principal.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("sts"), Some(""), Some(account), Some(resource)) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return principal.to_owned();
    };
    let Some(rest) = resource.strip_prefix("assumed-role/") else { return principal.to_owned() };
    match rest.split_once('/') {
        Some((role, session)) if !role.is_empty() && !session.is_empty() && !partition.is_empty() => {
            format!("arn:{partition}:iam::{account}:role/{role}")
        }
        _ => principal.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assumed_role_session_is_its_role_in_its_partition() {
        assert_eq!(
            normalize("arn:aws:sts::123456789012:assumed-role/etl-bot/i-0abc"),
            "arn:aws:iam::123456789012:role/etl-bot"
        );
        assert_eq!(
            normalize("arn:aws-us-gov:sts::123456789012:assumed-role/ops/alice@example.com"),
            "arn:aws-us-gov:iam::123456789012:role/ops"
        );
        // A session name may itself contain slashes? It may not in IAM, but
        // whatever follows the role's name is the session.
        assert_eq!(normalize("arn:aws:sts::123456789012:assumed-role/r/a/b"), "arn:aws:iam::123456789012:role/r");
    }

    #[test]
    fn everything_else_is_kept() {
        for p in [
            "arn:aws:iam::123456789012:user/alice",
            "arn:aws:iam::123456789012:root",
            "arn:aws:iam::123456789012:role/ops",
            "arn:aws:sts::123456789012:federated-user/bob",
            "arn:aws:sts::123456789012:assumed-role/no-session",
            "arn:aws:sts::123456789012:assumed-role//s",
            "arn:aws:sts:us-east-1:123456789012:assumed-role/r/s",
            "AIDAEXAMPLE",
            "",
        ] {
            assert_eq!(normalize(p), p);
        }
    }
}
