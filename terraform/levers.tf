# What Airflow reads: the levers as SSM parameters under /airflow/variables/ (= Airflow
# Variables through the SSM secrets backend; plugins/analysis_pipeline/config.py names
# them), and the policy its workers/dag-processor need.

locals {
  # Caps come from effective_caps: never more than the granted quota holds. The Gemini
  # budgets are fleet-wide (the same for both kinds: one shared store), per model.
  airflow_levers = merge(
    { for k, c in local.containers : c.cap_lever => tostring(module.capacity.effective_caps[k]) },
    { for k, c in local.containers : c.vcpu_lever => tostring(local.workloads[k].vcpu) },
    { for k, c in local.containers : "${c.lever_prefix}_TASK_DEFINITION" => local.task_family[k] },
    { for k, c in local.containers : "${c.lever_prefix}_LOG_GROUP" => local.log_group[k] },
    { for k, c in local.containers : "${c.lever_prefix}_GEMINI_RPM_BUDGET" => tostring(module.capacity.gemini_rpm_budget) },
    { for k, c in local.containers : "${c.lever_prefix}_GEMINI_TPM_BUDGET" => tostring(module.capacity.gemini_tpm_budget) },
    {
      FARGATE_VCPU_POOL_SLOTS       = tostring(module.capacity.pool_vcpu)
      ANALYSIS_TIMEOUT_MINUTES      = tostring(module.capacity.analysis_timeout_minutes)
      ANALYSIS_ECS_CLUSTER          = local.cluster_name
      ANALYSIS_ECS_SUBNETS          = join(",", var.subnet_ids)
      ANALYSIS_ECS_SECURITY_GROUPS  = aws_security_group.tasks.id
      ANALYSIS_ECS_ASSIGN_PUBLIC_IP = tostring(var.assign_public_ip)
      ALLOWED_INPUT_PREFIXES        = join(",", var.recordings_uri_prefixes)
      RESULTS_URI                   = local.results_uri
    },
  )
  ssm_prefix = "/airflow/variables/"

  airflow_policy = {
    Version = "2012-10-17"
    Statement = concat(
      [
        {
          Sid       = "RunThesePipelinesTasks"
          Effect    = "Allow"
          Action    = "ecs:RunTask"
          Resource  = [for k in keys(local.workloads) : "arn:${local.partition}:ecs:${local.region}:${local.account}:task-definition/${local.task_family[k]}:*"]
          Condition = { ArnEquals = { "ecs:cluster" = local.cluster_arn } }
        },
        {
          Sid       = "WatchAndStopThem"
          Effect    = "Allow"
          Action    = ["ecs:DescribeTasks", "ecs:StopTask"]
          Resource  = "arn:${local.partition}:ecs:${local.region}:${local.account}:task/${local.cluster_name}/*"
          Condition = { ArnEquals = { "ecs:cluster" = local.cluster_arn } }
        },
        {
          # Reattach after a worker restart and stop-on-timeout find the run's task by
          # startedBy. ListTasks names no task resource: pinned to this cluster by condition.
          Sid       = "FindThemInThisCluster"
          Effect    = "Allow"
          Action    = "ecs:ListTasks"
          Resource  = "*"
          Condition = { ArnEquals = { "ecs:cluster" = local.cluster_arn } }
        },
        {
          Sid       = "TagThemAtLaunch"
          Effect    = "Allow"
          Action    = "ecs:TagResource"
          Resource  = "arn:${local.partition}:ecs:${local.region}:${local.account}:task/${local.cluster_name}/*"
          Condition = { StringEquals = { "ecs:CreateAction" = "RunTask" } }
        },
        {
          Sid       = "PassOnlyTheseRoles"
          Effect    = "Allow"
          Action    = "iam:PassRole"
          Resource  = [aws_iam_role.execution.arn, aws_iam_role.task.arn]
          Condition = { StringEquals = { "iam:PassedToService" = "ecs-tasks.amazonaws.com" } }
        },
        {
          Sid      = "ReadTheContainerLogs"
          Effect   = "Allow"
          Action   = ["logs:GetLogEvents", "logs:FilterLogEvents", "logs:DescribeLogStreams"]
          Resource = flatten([for k in keys(local.workloads) : [local.log_group_arn[k], "${local.log_group_arn[k]}:*"]])
        },
        {
          # Results for the check step; recordings (read-only) so validate can see the
          # input exists before any Fargate time is spent.
          Sid      = "ReadResultsAndRecordings"
          Effect   = "Allow"
          Action   = "s3:GetObject"
          Resource = concat([local.results_objects], local.recordings_objects)
        },
        {
          Sid       = "ListResults"
          Effect    = "Allow"
          Action    = "s3:ListBucket"
          Resource  = local.results_bucket_arn
          Condition = { StringLike = { "s3:prefix" = ["${var.results_prefix}*"] } }
        },
      ],
      [for i, b in local.recordings_buckets : {
        Sid       = "ListRecordings${i}"
        Effect    = "Allow"
        Action    = "s3:ListBucket"
        Resource  = "arn:${local.partition}:s3:::${b}"
        Condition = { StringLike = { "s3:prefix" = [for r in local.recordings : "${r.prefix}*" if r.bucket == b] } }
      }],
      [
        {
          Sid       = "DecryptResultsAndRecordingsViaS3"
          Effect    = "Allow"
          Action    = "kms:Decrypt"
          Resource  = concat([aws_kms_key.this.arn], var.recordings_kms_key_arns)
          Condition = local.via_s3
        },
        {
          Sid      = "ReadItsVariables"
          Effect   = "Allow"
          Action   = ["ssm:GetParameter", "ssm:GetParameters"]
          Resource = [for name in keys(local.airflow_levers) : "arn:${local.partition}:ssm:${local.region}:${local.account}:parameter${local.ssm_prefix}${name}"]
        },
      ],
    )
  }
}

resource "aws_ssm_parameter" "airflow_variable" {
  #checkov:skip=CKV2_AWS_34:Capacity levers and resource names, not secrets; plain String keeps them readable by operators.
  for_each = local.airflow_levers

  name        = "${local.ssm_prefix}${each.key}"
  description = "Airflow Variable ${each.key}, written by terraform/ (${var.project}); change it there, not here"
  type        = "String"
  value       = each.value
}

resource "aws_iam_policy" "airflow" {
  name        = "${var.project}-airflow"
  description = "Airflow workers/dag-processor: launch, watch and stop the analysis tasks; read their logs, results, inputs and levers"
  policy      = jsonencode(local.airflow_policy)
}

resource "aws_iam_role_policy_attachment" "airflow" {
  count = var.airflow_role_name == null ? 0 : 1

  role       = var.airflow_role_name
  policy_arn = aws_iam_policy.airflow.arn
}
