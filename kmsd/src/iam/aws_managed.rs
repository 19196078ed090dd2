//! The AWS managed policies atrest knows (`arn:aws:iam::aws:policy/NAME`): they can be
//! attached, read with `GetPolicy`/`GetPolicyVersion` and listed (`Scope=AWS`), and
//! cannot be changed or deleted. Their documents are AWS's, limited to the services
//! atrest serves (KMS, EC2, S3, IAM, STS, CloudTrail) where AWS's document is longer
//! (`ReadOnlyAccess` lists hundreds of services; the statements about the others
//! would never match a request here). Policy ids are derived from the name
//! ([`super::derived_id`]), not AWS's; every one is version `v1`, dated when AWS
//! first published it. docs/IAM.md lists them.

use crate::api::Timestamp;

/// One AWS managed policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwsManagedPolicy {
    pub name: &'static str,
    pub path: &'static str,
    pub description: &'static str,
    pub document: &'static str,
    /// Unix seconds of its first publication.
    pub create_date_secs: i64,
}

impl AwsManagedPolicy {
    pub fn arn(&self) -> String {
        format!("arn:aws:iam::aws:policy{}{}", self.path, self.name)
    }
    pub fn id(&self) -> String {
        super::derived_id("ANPA", &self.arn())
    }
    pub fn create_date(&self) -> Timestamp {
        Timestamp::from_secs(self.create_date_secs)
    }
}

/// 2015-02-06T18:39:46Z, when IAM's first managed policies were published.
const FEB_2015: i64 = 1_423_247_986;

/// The set, in name order.
pub const POLICIES: &[AwsManagedPolicy] = &[
    AwsManagedPolicy {
        name: "AWSCloudTrail_ReadOnlyAccess",
        path: "/",
        description: "Provides access to view trails and events in CloudTrail",
        document: r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["cloudtrail:Get*","cloudtrail:Describe*","cloudtrail:List*","cloudtrail:LookupEvents"],"Resource":"*"}]}"#,
        create_date_secs: 1_539_724_331,
    },
    AwsManagedPolicy {
        name: "AWSKeyManagementServicePowerUser",
        path: "/",
        description: "Provides access to AWS Key Management Service (AWS KMS).",
        document: r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["kms:CreateAlias","kms:CreateKey","kms:DeleteAlias","kms:Describe*","kms:GenerateRandom","kms:Get*","kms:List*","kms:TagResource","kms:UntagResource","iam:ListGroups","iam:ListRoles","iam:ListUsers"],"Resource":"*"}]}"#,
        create_date_secs: FEB_2015,
    },
    AwsManagedPolicy {
        name: "AdministratorAccess",
        path: "/",
        description: "Provides full access to AWS services and resources.",
        document: r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
        create_date_secs: FEB_2015,
    },
    AwsManagedPolicy {
        name: "AmazonEC2FullAccess",
        path: "/",
        description: "Provides full access to Amazon EC2 via the AWS Management Console.",
        document: r#"{"Version":"2012-10-17","Statement":[{"Action":"ec2:*","Effect":"Allow","Resource":"*"},{"Effect":"Allow","Action":"elasticloadbalancing:*","Resource":"*"},{"Effect":"Allow","Action":"cloudwatch:*","Resource":"*"},{"Effect":"Allow","Action":"autoscaling:*","Resource":"*"}]}"#,
        create_date_secs: FEB_2015,
    },
    AwsManagedPolicy {
        name: "AmazonEC2ReadOnlyAccess",
        path: "/",
        description: "Provides read only access to Amazon EC2 via the AWS Management Console.",
        document: r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ec2:Describe*","Resource":"*"},{"Effect":"Allow","Action":"elasticloadbalancing:Describe*","Resource":"*"},{"Effect":"Allow","Action":["cloudwatch:ListMetrics","cloudwatch:GetMetricStatistics","cloudwatch:Describe*"],"Resource":"*"},{"Effect":"Allow","Action":"autoscaling:Describe*","Resource":"*"}]}"#,
        create_date_secs: FEB_2015,
    },
    AwsManagedPolicy {
        name: "AmazonS3FullAccess",
        path: "/",
        description: "Provides full access to all buckets via the AWS Management Console.",
        document: r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*","s3-object-lambda:*"],"Resource":"*"}]}"#,
        create_date_secs: FEB_2015,
    },
    AwsManagedPolicy {
        name: "AmazonS3ReadOnlyAccess",
        path: "/",
        description: "Provides read only access to all buckets via the AWS Management Console.",
        document: r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:Get*","s3:List*","s3:Describe*","s3-object-lambda:Get*","s3-object-lambda:List*"],"Resource":"*"}]}"#,
        create_date_secs: FEB_2015,
    },
    AwsManagedPolicy {
        name: "IAMFullAccess",
        path: "/",
        description: "Provides full access to IAM via the AWS Management Console.",
        document: r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["iam:*","organizations:DescribeAccount","organizations:DescribeOrganization","organizations:DescribeOrganizationalUnit","organizations:DescribePolicy","organizations:ListChildren","organizations:ListParents","organizations:ListPoliciesForTarget","organizations:ListRoots","organizations:ListPolicies","organizations:ListTargetsForPolicy"],"Resource":"*"}]}"#,
        create_date_secs: FEB_2015,
    },
    AwsManagedPolicy {
        name: "IAMReadOnlyAccess",
        path: "/",
        description: "Provides read only access to IAM via the AWS Management Console.",
        document: r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["iam:GenerateCredentialReport","iam:GenerateServiceLastAccessedDetails","iam:Get*","iam:List*","iam:SimulateCustomPolicy","iam:SimulatePrincipalPolicy"],"Resource":"*"}]}"#,
        create_date_secs: FEB_2015,
    },
    AwsManagedPolicy {
        name: "PowerUserAccess",
        path: "/",
        description: "Provides full access to AWS services and resources, but does not allow management of Users and groups.",
        document: r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","NotAction":["iam:*","organizations:*","account:*"],"Resource":"*"},{"Effect":"Allow","Action":["iam:CreateServiceLinkedRole","iam:DeleteServiceLinkedRole","iam:ListRoles","organizations:DescribeOrganization","account:ListRegions","account:GetAccountInformation"],"Resource":"*"}]}"#,
        create_date_secs: FEB_2015,
    },
    AwsManagedPolicy {
        name: "ReadOnlyAccess",
        path: "/",
        description: "Provides read-only access to AWS services and resources.",
        document: r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["cloudtrail:Describe*","cloudtrail:Get*","cloudtrail:List*","cloudtrail:LookupEvents","ec2:Describe*","ec2:Get*","ec2:List*","iam:Generate*","iam:Get*","iam:List*","iam:Simulate*","kms:Describe*","kms:Get*","kms:List*","s3:Describe*","s3:Get*","s3:List*","sts:GetAccessKeyInfo","sts:GetCallerIdentity","sts:GetSessionToken"],"Resource":"*"}]}"#,
        create_date_secs: FEB_2015,
    },
];

/// The policy with this ARN, if atrest knows it.
pub fn by_arn(arn: &str) -> Option<&'static AwsManagedPolicy> {
    let name = arn.strip_prefix("arn:aws:iam::aws:policy/")?;
    POLICIES.iter().find(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicyDocument;

    #[test]
    fn every_document_parses_and_is_found_by_arn() {
        let mut names: Vec<&str> = POLICIES.iter().map(|p| p.name).collect();
        let sorted = {
            let mut s = names.clone();
            s.sort_unstable();
            s
        };
        assert_eq!(names, sorted, "keep POLICIES in name order");
        names.dedup();
        assert_eq!(names.len(), POLICIES.len());
        for p in POLICIES {
            PolicyDocument::parse_identity_policy(p.document)
                .unwrap_or_else(|e| panic!("{}: {e}", p.name));
            assert_eq!(by_arn(&p.arn()), Some(p));
            assert!(p.id().starts_with("ANPA"));
        }
        assert!(by_arn("arn:aws:iam::aws:policy/Nope").is_none());
    }
}
