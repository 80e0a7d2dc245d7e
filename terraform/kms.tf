# One customer-managed key for this pipeline's logs, results, images, the budget store and
# its connection secret.

resource "aws_kms_key" "this" {
  description             = "${var.project}: container logs, results bucket, images, Gemini budget store"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = jsonencode(local.kms_key_policy)
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.project}"
  target_key_id = aws_kms_key.this.key_id
}

locals {
  # In a key policy Resource "*" means this key. The account administers it (IAM policies
  # then grant use, each scoped with kms:ViaService); CloudWatch Logs may use it for this
  # pipeline's log groups only.
  kms_key_policy = {
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdministers"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "CloudWatchLogsEncryptsThisPipelinesLogGroups"
        Effect    = "Allow"
        Principal = { Service = "logs.${local.region}.amazonaws.com" }
        Action    = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
        Resource  = "*"
        Condition = {
          ArnLike = { "kms:EncryptionContext:aws:logs:arn" = "arn:${local.partition}:logs:${local.region}:${local.account}:log-group:/ecs/${var.project}/*" }
        }
      },
    ]
  }
}
