//! A bucket's configuration, each by its owner: default encryption, Block Public Access
//! and Object Ownership.

use s3s::dto::{
    DeleteBucketEncryptionInput, DeleteBucketEncryptionOutput, DeletePublicAccessBlockInput,
    DeletePublicAccessBlockOutput, GetBucketEncryptionInput, GetBucketEncryptionOutput,
    GetBucketOwnershipControlsInput, GetBucketOwnershipControlsOutput, GetPublicAccessBlockInput,
    GetPublicAccessBlockOutput, OwnershipControls, OwnershipControlsRule,
    PublicAccessBlockConfiguration, PutBucketEncryptionInput, PutBucketEncryptionOutput,
    PutBucketOwnershipControlsInput, PutBucketOwnershipControlsOutput, PutPublicAccessBlockInput,
    PutPublicAccessBlockOutput, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
};

use super::super::meta::{self, ObjectOwnership, PublicAccessBlock, SseAlgorithm};
use super::call::Call;
use super::error::ApiError;

fn malformed_xml() -> ApiError {
    ApiError::refused(
        "MalformedXML",
        400,
        "The XML you provided was not well-formed or did not validate against our published schema",
    )
}

pub async fn put_encryption(
    cx: Call,
    input: PutBucketEncryptionInput,
) -> Result<PutBucketEncryptionOutput, ApiError> {
    cx.admin_bucket(&input.bucket).await?;
    let rule = input
        .server_side_encryption_configuration
        .rules
        .first()
        .ok_or_else(malformed_xml)?;
    let by_default = rule
        .apply_server_side_encryption_by_default
        .as_ref()
        .ok_or_else(|| {
            ApiError::invalid_argument("ApplyServerSideEncryptionByDefault is required")
        })?;
    let algorithm = SseAlgorithm::parse(by_default.sse_algorithm.as_str()).ok_or_else(|| {
        ApiError::invalid_argument(format!(
            "Unsupported SSEAlgorithm: {}",
            by_default.sse_algorithm.as_str()
        ))
    })?;
    let key = by_default.kms_master_key_id.clone();
    if key.is_some() && algorithm != SseAlgorithm::AwsKms {
        return Err(ApiError::invalid_argument(
            "a KMSMasterKeyID is not applicable if the default sse algorithm is not aws:kms",
        ));
    }
    let bucket_key = rule.bucket_key_enabled.unwrap_or(false);
    cx.update_bucket(&input.bucket, move |b| {
        b.encryption = meta::BucketEncryption {
            algorithm,
            kms_key_id: key,
            bucket_key_enabled: bucket_key,
        };
    })
    .await?;
    Ok(PutBucketEncryptionOutput {})
}

pub async fn get_encryption(
    cx: Call,
    input: GetBucketEncryptionInput,
) -> Result<GetBucketEncryptionOutput, ApiError> {
    let b = cx.admin_bucket(&input.bucket).await?;
    let rule = ServerSideEncryptionRule {
        apply_server_side_encryption_by_default: Some(ServerSideEncryptionByDefault {
            kms_master_key_id: b.encryption.kms_key_id.clone(),
            sse_algorithm: ServerSideEncryption::from(b.encryption.algorithm.as_str().to_string()),
        }),
        bucket_key_enabled: Some(b.encryption.bucket_key_enabled),
    };
    Ok(GetBucketEncryptionOutput {
        server_side_encryption_configuration: Some(ServerSideEncryptionConfiguration {
            rules: vec![rule],
        }),
    })
}

pub async fn delete_encryption(
    cx: Call,
    input: DeleteBucketEncryptionInput,
) -> Result<DeleteBucketEncryptionOutput, ApiError> {
    cx.admin_bucket(&input.bucket).await?;
    cx.update_bucket(&input.bucket, |b| {
        b.encryption = meta::BucketEncryption::default()
    })
    .await?;
    Ok(DeleteBucketEncryptionOutput {})
}

pub async fn put_public_access_block(
    cx: Call,
    input: PutPublicAccessBlockInput,
) -> Result<PutPublicAccessBlockOutput, ApiError> {
    cx.admin_bucket(&input.bucket).await?;
    let c = &input.public_access_block_configuration;
    let bpa = PublicAccessBlock {
        block_public_acls: c.block_public_acls.unwrap_or(false),
        ignore_public_acls: c.ignore_public_acls.unwrap_or(false),
        block_public_policy: c.block_public_policy.unwrap_or(false),
        restrict_public_buckets: c.restrict_public_buckets.unwrap_or(false),
    };
    cx.update_bucket(&input.bucket, move |b| b.public_access_block = Some(bpa))
        .await?;
    Ok(PutPublicAccessBlockOutput {})
}

pub async fn get_public_access_block(
    cx: Call,
    input: GetPublicAccessBlockInput,
) -> Result<GetPublicAccessBlockOutput, ApiError> {
    let b = cx.admin_bucket(&input.bucket).await?;
    let p = b.public_access_block.ok_or_else(|| {
        ApiError::refused(
            "NoSuchPublicAccessBlockConfiguration",
            404,
            "The public access block configuration was not found",
        )
    })?;
    Ok(GetPublicAccessBlockOutput {
        public_access_block_configuration: Some(PublicAccessBlockConfiguration {
            block_public_acls: Some(p.block_public_acls),
            block_public_policy: Some(p.block_public_policy),
            ignore_public_acls: Some(p.ignore_public_acls),
            restrict_public_buckets: Some(p.restrict_public_buckets),
        }),
    })
}

pub async fn delete_public_access_block(
    cx: Call,
    input: DeletePublicAccessBlockInput,
) -> Result<DeletePublicAccessBlockOutput, ApiError> {
    cx.admin_bucket(&input.bucket).await?;
    cx.update_bucket(&input.bucket, |b| b.public_access_block = None)
        .await?;
    Ok(DeletePublicAccessBlockOutput {})
}

pub async fn put_ownership_controls(
    cx: Call,
    input: PutBucketOwnershipControlsInput,
) -> Result<PutBucketOwnershipControlsOutput, ApiError> {
    cx.admin_bucket(&input.bucket).await?;
    let rule = input.ownership_controls.rules.first().ok_or_else(|| {
        ApiError::refused("MalformedXML", 400, "OwnershipControls needs one rule")
    })?;
    let o = ObjectOwnership::parse(rule.object_ownership.as_str()).ok_or_else(|| {
        ApiError::invalid_argument(format!(
            "Invalid ObjectOwnership: {}",
            rule.object_ownership.as_str()
        ))
    })?;
    cx.update_bucket(&input.bucket, move |b| b.ownership = o)
        .await?;
    Ok(PutBucketOwnershipControlsOutput {})
}

pub async fn get_ownership_controls(
    cx: Call,
    input: GetBucketOwnershipControlsInput,
) -> Result<GetBucketOwnershipControlsOutput, ApiError> {
    let b = cx.admin_bucket(&input.bucket).await?;
    Ok(GetBucketOwnershipControlsOutput {
        ownership_controls: Some(OwnershipControls {
            rules: vec![OwnershipControlsRule {
                object_ownership: s3s::dto::ObjectOwnership::from(b.ownership.as_str().to_string()),
            }],
        }),
    })
}
