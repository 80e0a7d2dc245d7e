# What Airflow reads: one Airflow Variable, `analysis_pipeline_settings`, a JSON object of
# every lever and name the DAG side needs (plugins/analysis_pipeline/config.py FIELDS),
# written as the SSM parameter /airflow/variables/analysis_pipeline_settings and read
# through Airflow's SystemsManagerParameterStoreBackend. One document: a parse sees an
# apply's levers together, and costs one lookup. The Gemini budgets are not in it: the task
# definitions are their only source (ecs.tf). Also the policy the Airflow role needs.

locals {
  # Caps come from effective_caps: never more than the granted quota holds.
  airflow_settings = merge(
    { for k, c in local.containers : c.cap_lever => tostring(module.capacity.effective_caps[k]) },
    { for k, c in local.containers : c.vcpu_lever => tostring(local.workloads[k].vcpu) },
    { for k, c in local.containers : "${c.lever_prefix}_TASK_DEFINITION" => local.task_family[k] },
    { for k, c in local.containers : "${c.lever_prefix}_LOG_GROUP" => local.log_group[k] },
    {
      FARGATE_VCPU_POOL_SLOTS         = tostring(module.capacity.pool_vcpu)
      ANALYSIS_TIMEOUT_MINUTES        = tostring(module.capacity.analysis_timeout_minutes)
      ANALYSIS_LAUNCH_RETRIES         = tostring(var.launch_retries)
      ANALYSIS_SENTINEL_RETRY_SECONDS = tostring(var.sentinel_retry_seconds)
      ANALYSIS_CRASH_RETRY_SECONDS    = tostring(var.crash_retry_seconds)
      ANALYSIS_ECS_CLUSTER            = local.cluster_name
      ANALYSIS_ECS_SUBNETS            = join(",", var.subnet_ids)
      ANALYSIS_ECS_SECURITY_GROUPS    = aws_security_group.tasks.id
      ANALYSIS_ECS_ASSIGN_PUBLIC_IP   = tostring(var.assign_public_ip)
      ALLOWED_INPUT_PREFIXES          = join(",", var.recordings_uri_prefixes)
      RESULTS_URI                     = local.results_uri
    },
  )
  ssm_prefix             = "/airflow/variables/"
  ssm_connections_prefix = "/airflow/connections/"
  settings_variable      = "analysis_pipeline_settings"

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
          # Exactly what the DAG side reads through the SSM secrets backend: the settings
          # Variable and its two connections (SecureString, decrypted through SSM only).
          Sid    = "ReadItsSettingsAndConnections"
          Effect = "Allow"
          Action = ["ssm:GetParameter", "ssm:GetParameters"]
          Resource = concat(
            ["arn:${local.partition}:ssm:${local.region}:${local.account}:parameter${local.ssm_prefix}${local.settings_variable}"],
            values(local.connection_parameter_arn),
          )
        },
        {
          Sid       = "DecryptItsConnectionsViaSsm"
          Effect    = "Allow"
          Action    = "kms:Decrypt"
          Resource  = aws_kms_key.this.arn
          Condition = { StringEquals = { "kms:ViaService" = "ssm.${local.region}.amazonaws.com" } }
        },
      ],
    )
  }
}

resource "aws_ssm_parameter" "airflow_settings" {
  #checkov:skip=CKV2_AWS_34:Capacity levers and resource names, not secrets; plain String keeps them readable by operators.
  name        = "${local.ssm_prefix}${local.settings_variable}"
  description = "Airflow Variable ${local.settings_variable}: every lever and name the ${var.project} DAGs read, written by terraform/ (change it there, not here)"
  type        = "String"
  value       = jsonencode(local.airflow_settings)
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
