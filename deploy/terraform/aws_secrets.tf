# Secrets: the admin token, the join token and the coordinators' SSH probe key are generated here
# and kept in SSM Parameter Store as SecureStrings under the cluster's own KMS key. Coordinators
# seed their token files and probe key from them at first boot (kvs-coordinator uses files that
# already exist), so all nodes probe with one key, whose public half Terraform puts on every agent;
# agents read the join token.
# Coordinator 1 writes the CA bundle (public, a plain String) to /kvs/<name>/ca-pem once it has
# bootstrapped. Operators fetch all three with the commands in the outputs.
#
# The tokens and the probe key are also in the Terraform state (random_password, tls_private_key): keep the state encrypted and
# access-controlled (e.g. an S3 backend with encryption and a restrictive bucket policy).

resource "aws_kms_key" "this" {
  description             = "KVS cluster ${var.name}: SSM tokens and flow logs"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
  tags                    = local.common_tags
}

resource "aws_kms_alias" "this" {
  name          = "alias/kvs-${var.name}"
  target_key_id = aws_kms_key.this.key_id
}

data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_111:This is a KMS key policy: Resource "*" means this key only, and the account-root statement is AWS's default key policy (it delegates use of the key to IAM policies).
  #checkov:skip=CKV_AWS_356:This is a KMS key policy: Resource "*" means this key only.
  #checkov:skip=CKV_AWS_109:This is a KMS key policy: kms:* for the account root is AWS's default statement that lets IAM policies grant use of this key; without it the key becomes unmanageable.
  # The account administers the key; IAM policies (the instance roles below) grant its use.
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"] # in a key policy, "*" is this key
    principals {
      type        = "AWS"
      identifiers = ["arn:aws:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }

  statement {
    sid       = "FlowLogGroupEncrypts"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"] # in a key policy, "*" is this key
    principals {
      type        = "Service"
      identifiers = ["logs.${data.aws_region.current.name}.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:aws:logs:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:log-group:/kvs/${var.name}/vpc-flow"]
    }
  }
}

resource "random_password" "admin_token" {
  length  = 48
  special = false
}

resource "random_password" "join_token" {
  length  = 48
  special = false
}

resource "aws_ssm_parameter" "admin_token" {
  name        = local.admin_token_name
  description = "KVS ${var.name}: admin token for the kvs CLI (kvs --token)"
  type        = "SecureString"
  key_id      = aws_kms_key.this.arn
  value       = random_password.admin_token.result
  tags        = local.common_tags
}

resource "aws_ssm_parameter" "join_token" {
  name        = local.join_token_name
  description = "KVS ${var.name}: join token agents register with"
  type        = "SecureString"
  key_id      = aws_kms_key.this.arn
  value       = random_password.join_token.result
  tags        = local.common_tags
}

resource "tls_private_key" "probe" {
  algorithm = "ED25519"
}

resource "aws_ssm_parameter" "probe_key" {
  name        = local.probe_key_name
  description = "KVS ${var.name}: the coordinators' SSH probe private key (OpenSSH, ed25519)"
  type        = "SecureString"
  key_id      = aws_kms_key.this.arn
  value       = tls_private_key.probe.private_key_openssh
  tags        = local.common_tags
}

# Written by coordinator 1 at first boot; Terraform only creates it (and never resets it).
resource "aws_ssm_parameter" "ca_pem" {
  #checkov:skip=CKV2_AWS_34:The cluster CA bundle is a public certificate (clients verify with it), not a secret; a plain String lets agents and operators read it without KMS rights.
  name        = local.ca_pem_name
  description = "KVS ${var.name}: cluster CA bundle (PEM), published by coordinator 1"
  type        = "String"
  # Standard tier: 4 KB, room for a bundle of two or three certificates (CA rotation).
  value = "pending: coordinator 1 has not published the CA yet"
  tags  = local.common_tags

  lifecycle {
    ignore_changes = [value]
  }
}
