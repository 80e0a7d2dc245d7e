# The two roles of every task: the execution role (the ECS agent: pull, logs, the two
# secrets) and the task role (the container: recordings in, results out). Policies are
# plain JSON (jsonencode) so the tests can decode and check exactly what is granted.

locals {
  ecs_tasks_assume = {
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ecs-tasks.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = {
        ArnLike      = { "aws:SourceArn" = "arn:${local.partition}:ecs:${local.region}:${local.account}:*" }
        StringEquals = { "aws:SourceAccount" = local.account }
      }
    }]
  }

  # KMS use only through the service that needs it: a role holding the key's grant cannot
  # decrypt arbitrary ciphertext with it directly.
  via_secrets_manager = { StringEquals = { "kms:ViaService" = "secretsmanager.${local.region}.amazonaws.com" } }
  via_s3              = { StringEquals = { "kms:ViaService" = "s3.${local.region}.amazonaws.com" } }

  execution_policy = {
    Version = "2012-10-17"
    Statement = [
      {
        # Account-wide by design: GetAuthorizationToken has no resource type.
        Sid      = "EcrLogin"
        Effect   = "Allow"
        Action   = "ecr:GetAuthorizationToken"
        Resource = "*"
      },
      {
        # ECR decrypts KMS-encrypted layers itself (through a grant): no kms: action here.
        Sid      = "PullThesePipelinesImages"
        Effect   = "Allow"
        Action   = ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]
        Resource = [for k in keys(local.workloads) : local.ecr_arn[k]]
      },
      {
        Sid      = "WriteTheseLogGroups"
        Effect   = "Allow"
        Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
        Resource = [for k in keys(local.workloads) : "${local.log_group_arn[k]}:*"]
      },
      {
        Sid      = "ReadTheTwoSecrets"
        Effect   = "Allow"
        Action   = "secretsmanager:GetSecretValue"
        Resource = values(local.container_secrets)
      },
      {
        Sid       = "DecryptTheSecretsViaSecretsManager"
        Effect    = "Allow"
        Action    = "kms:Decrypt"
        Resource  = distinct(compact([aws_kms_key.this.arn, local.gemini_api_key_kms_arn]))
        Condition = local.via_secrets_manager
      },
    ]
  }

  task_policy = {
    Version = "2012-10-17"
    Statement = concat(
      [{
        Sid      = "ReadRecordings"
        Effect   = "Allow"
        Action   = "s3:GetObject"
        Resource = local.recordings_objects
      }],
      [for i, b in local.recordings_buckets : {
        Sid       = "ListRecordings${i}"
        Effect    = "Allow"
        Action    = "s3:ListBucket"
        Resource  = "arn:${local.partition}:s3:::${b}"
        Condition = { StringLike = { "s3:prefix" = [for r in local.recordings : "${r.prefix}*" if r.bucket == b] } }
      }],
      [
        {
          # Read too: a rerun loads the per-segment checkpoints it wrote before.
          Sid      = "WriteResults"
          Effect   = "Allow"
          Action   = ["s3:PutObject", "s3:PutObjectTagging", "s3:GetObject", "s3:AbortMultipartUpload"]
          Resource = local.results_objects
        },
        {
          Sid       = "ListResults"
          Effect    = "Allow"
          Action    = "s3:ListBucket"
          Resource  = local.results_bucket_arn
          Condition = { StringLike = { "s3:prefix" = ["${var.results_prefix}*"] } }
        },
        {
          Sid       = "EncryptResultsViaS3"
          Effect    = "Allow"
          Action    = ["kms:GenerateDataKey", "kms:Decrypt"]
          Resource  = aws_kms_key.this.arn
          Condition = local.via_s3
        },
      ],
      length(var.recordings_kms_key_arns) == 0 ? [] : [{
        Sid       = "DecryptRecordingsViaS3"
        Effect    = "Allow"
        Action    = "kms:Decrypt"
        Resource  = var.recordings_kms_key_arns
        Condition = local.via_s3
      }],
    )
  }
}

resource "aws_iam_role" "execution" {
  name               = "${var.project}-execution"
  description        = "ECS agent: pulls the images, writes the logs, reads the Gemini key and budget store secrets"
  assume_role_policy = jsonencode(local.ecs_tasks_assume)
}

resource "aws_iam_role_policy" "execution" {
  name   = "pull-logs-secrets"
  role   = aws_iam_role.execution.id
  policy = jsonencode(local.execution_policy)
}

resource "aws_iam_role" "task" {
  name               = "${var.project}-task"
  description        = "The analysis containers: read the recordings prefixes, read/write the results prefix"
  assume_role_policy = jsonencode(local.ecs_tasks_assume)
}

resource "aws_iam_role_policy" "task" {
  name   = "recordings-read-results-write"
  role   = aws_iam_role.task.id
  policy = jsonencode(local.task_policy)
}
