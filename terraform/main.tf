# The analysis pipeline's AWS side. One apply moves the levers together: the Fargate vCPU
# quota, each container's size, the DAG caps (SSM → Airflow Variables) and each container's
# Gemini budget, all computed by modules/capacity from the same inputs.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  account   = data.aws_caller_identity.current.account_id
  partition = data.aws_partition.current.partition
  region    = var.aws_region

  # Names the DAG side derives from PROJECT (plugins/analysis_pipeline/config.py): the
  # cluster, task-definition families, container names, log groups and stream prefixes.
  cluster_name = var.project
  containers = {
    "task-analyzer" = {
      lever_prefix = "TASK_ANALYZER"
      cap_lever    = "MAX_CONCURRENT_ANALYSES"
      vcpu_lever   = "TASK_ANALYZER_VCPU"
    }
    "proctor-video" = {
      lever_prefix = "PROCTOR_VIDEO"
      cap_lever    = "MAX_CONCURRENT_PROCTOR_VIDEOS"
      vcpu_lever   = "PROCTOR_VIDEO_VCPU"
    }
  }
  task_family       = { for k in keys(var.workloads) : k => "${var.project}-${k}" }
  log_group         = { for k in keys(var.workloads) : k => "/ecs/${var.project}/${k}" }
  log_stream_prefix = { for k in keys(var.workloads) : k => k }

  # The image runs as this uid and works in /scratch (containers/*/Dockerfile).
  container_user = "10001:10001"
  scratch_path   = "/scratch"

  recordings = [for u in var.recordings_uri_prefixes : {
    bucket = regex("^s3://([^/]+)/", u)[0]
    prefix = replace(u, "/^s3://[^/]+//", "")
  }]
  recordings_buckets = distinct([for r in local.recordings : r.bucket])
  results_uri        = "s3://${var.results_bucket_name}/${var.results_prefix}"

  fargate_quota = { service_code = "fargate", quota_code = "L-3032A538" }
  # What AWS applies now. A pending request does not change it (the resource's `value`
  # reports the requested figure instead; both are outputs).
  quota_granted = data.aws_servicequotas_service_quota.fargate_vcpu.value
}

# --- the lever arithmetic ------------------------------------------------------------------

module "capacity" {
  source = "./modules/capacity"

  workloads = { for k, w in var.workloads : k => {
    max_concurrent           = w.max_concurrent
    vcpu                     = w.vcpu
    memory_mib               = w.memory_mib
    gemini_weight            = w.gemini_weight
    avg_recording_minutes    = w.avg_recording_minutes
    idle_fraction            = w.idle_fraction
    segment_seconds          = w.segment_seconds
    media_resolution         = w.media_resolution
    tokens_per_second        = w.tokens_per_second
    map_concurrency          = w.map_concurrency
    seconds_per_call         = w.seconds_per_call
    overhead_minutes         = w.overhead_minutes
    tokens_per_call_overhead = w.tokens_per_call_overhead
    minutes_per_analysis     = w.minutes_per_analysis
    batch_size               = w.batch_size
  } }
  fargate_vcpu_quota         = var.fargate_vcpu_quota
  fargate_vcpu_quota_applied = local.quota_granted
  headroom_vcpu              = var.headroom_vcpu
  gemini_project_rpm         = var.gemini_project_rpm
  gemini_project_tpm         = var.gemini_project_tpm
  gemini_reserved_fraction   = var.gemini_reserved_fraction
  analysis_timeout_minutes   = var.analysis_timeout_minutes
}

# --- Fargate On-Demand vCPU quota ------------------------------------------------------------

data "aws_servicequotas_service_quota" "fargate_vcpu" {
  service_code = local.fargate_quota.service_code
  quota_code   = local.fargate_quota.quota_code
}

# Traps handled: (1) the quota only goes up and the provider refuses a value below the
# applied one, so the value is max(applied, needed) via the module; (2) while a request is
# PENDING/CASE_OPENED this resource's `value` is the requested figure, not the granted one,
# so the caps are sized from the data source (granted) and both are outputs; (3) a
# non-adjustable quota fails the plan below instead of failing at apply.
resource "aws_servicequotas_service_quota" "fargate_vcpu" {
  count = var.manage_fargate_quota ? 1 : 0

  service_code = local.fargate_quota.service_code
  quota_code   = local.fargate_quota.quota_code
  value        = module.capacity.quota_to_request

  lifecycle {
    precondition {
      condition     = data.aws_servicequotas_service_quota.fargate_vcpu.adjustable || module.capacity.quota_to_request <= local.quota_granted
      error_message = "The Fargate On-Demand vCPU quota (fargate/L-3032A538) is not adjustable in this account/Region: it is ${local.quota_granted} vCPU but the caps need ${module.capacity.quota_to_request}. Lower the caps (workloads[*].max_concurrent) or fargate_vcpu_quota, or raise it through AWS Support and set manage_fargate_quota = false."
    }
  }
}

check "fargate_quota_granted" {
  assert {
    condition     = !module.capacity.caps_limited_by_quota
    error_message = "The granted Fargate vCPU quota (${local.quota_granted}) is below what the caps need (${module.capacity.required_vcpu}); request status: ${try(aws_servicequotas_service_quota.fargate_vcpu[0].request_status, "not managed here")}. The DAG caps are held at ${jsonencode(module.capacity.effective_caps)} until AWS approves; run apply again after approval to raise them."
  }
}

# --- encryption key for logs, results and images ---------------------------------------------

data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_109:A key policy must grant its own account key administration; Resource "*" means this key.
  #checkov:skip=CKV_AWS_111:A key policy must grant its own account key administration; Resource "*" means this key.
  #checkov:skip=CKV_AWS_356:In a key policy Resource "*" means this key only.
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account}:root"]
    }
  }

  statement {
    sid       = "CloudWatchLogsEncryptsThisPipelinesLogGroups"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account}:log-group:/ecs/${var.project}/*"]
    }
  }
}

resource "aws_kms_key" "this" {
  description             = "${var.project}: container logs, results bucket and images"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.project}"
  target_key_id = aws_kms_key.this.key_id
}

# --- ECS cluster -------------------------------------------------------------------------------

resource "aws_ecs_cluster" "this" {
  name = local.cluster_name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_ecs_cluster_capacity_providers" "this" {
  cluster_name       = aws_ecs_cluster.this.name
  capacity_providers = ["FARGATE"]

  default_capacity_provider_strategy {
    capacity_provider = "FARGATE"
    weight            = 1
  }
}

# --- images and logs ---------------------------------------------------------------------------

resource "aws_ecr_repository" "this" {
  for_each = var.workloads

  name                 = "${var.project}/${each.key}"
  image_tag_mutability = "IMMUTABLE"

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = aws_kms_key.this.arn
  }
}

resource "aws_ecr_lifecycle_policy" "this" {
  for_each = aws_ecr_repository.this

  repository = each.value.name
  policy = jsonencode({
    rules = [
      {
        rulePriority = 1
        description  = "Untagged layers from rebuilt tags expire after a day"
        selection    = { tagStatus = "untagged", countType = "sinceImagePushed", countUnit = "days", countNumber = 1 }
        action       = { type = "expire" }
      },
      {
        rulePriority = 2
        description  = "Keep the newest ${var.ecr_keep_images} images"
        selection    = { tagStatus = "any", countType = "imageCountMoreThan", countNumber = var.ecr_keep_images }
        action       = { type = "expire" }
      },
    ]
  })
}

resource "aws_cloudwatch_log_group" "this" {
  for_each = var.workloads

  name              = local.log_group[each.key]
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
}

# --- network -----------------------------------------------------------------------------------

resource "aws_security_group" "tasks" {
  #checkov:skip=CKV2_AWS_5:Attached at RunTask time: Airflow passes it in the awsvpc network configuration.
  name        = "${var.project}-tasks"
  description = "Analysis tasks: no inbound; HTTPS out to S3, ECR, CloudWatch Logs, Secrets Manager and Gemini"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_egress_rule" "https" {
  security_group_id = aws_security_group.tasks.id
  description       = "HTTPS to AWS APIs and the Gemini API (nothing else is needed)"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

# --- results bucket ------------------------------------------------------------------------------

resource "aws_s3_bucket" "results" {
  #checkov:skip=CKV_AWS_18:Access logging needs a separate log bucket owned by the platform account; CloudTrail data events cover audit.
  #checkov:skip=CKV_AWS_144:Results are reproducible from the recordings (checkpoints make a rerun cheap); cross-region replication is not worth its cost.
  #checkov:skip=CKV2_AWS_62:Nothing consumes bucket events; Airflow reads result.json after the task stops.
  bucket = var.results_bucket_name
}

resource "aws_s3_bucket_public_access_block" "results" {
  bucket                  = aws_s3_bucket.results.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "results" {
  bucket = aws_s3_bucket.results.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "results" {
  bucket = aws_s3_bucket.results.id
  rule {
    bucket_key_enabled = true
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.this.arn
    }
  }
}

resource "aws_s3_bucket_versioning" "results" {
  bucket = aws_s3_bucket.results.id
  versioning_configuration {
    status = "Enabled"
  }
}

# Checkpoints and thumbnails live under each run's OUTPUT_URI (<prefix><kind>/<id>/...), which a
# prefix filter cannot select, so the containers tag them (retention=checkpoint|thumbnail).
resource "aws_s3_bucket_lifecycle_configuration" "results" {
  bucket = aws_s3_bucket.results.id

  rule {
    id     = "checkpoints"
    status = "Enabled"
    filter {
      tag {
        key   = "retention"
        value = "checkpoint"
      }
    }
    expiration {
      days = var.checkpoint_expiry_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
  }

  rule {
    id     = "thumbnails"
    status = "Enabled"
    filter {
      tag {
        key   = "retention"
        value = "thumbnail"
      }
    }
    expiration {
      days = var.thumbnail_expiry_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 7
    }
  }

  rule {
    id     = "housekeeping"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 2
    }
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
  }

  depends_on = [aws_s3_bucket_versioning.results]
}

data "aws_iam_policy_document" "results_bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.results.arn, "${aws_s3_bucket.results.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "results" {
  bucket     = aws_s3_bucket.results.id
  policy     = data.aws_iam_policy_document.results_bucket.json
  depends_on = [aws_s3_bucket_public_access_block.results]
}

# --- IAM: execution role (pull, logs, the one secret) --------------------------------------

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:ecs:${local.region}:${local.account}:*"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

resource "aws_iam_role" "execution" {
  name               = "${var.project}-execution"
  description        = "ECS agent: pulls the images, writes the logs, reads the Gemini key secret"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"] # account-wide by design: it has no resource type
    resources = ["*"]
  }
  statement {
    sid       = "PullThesePipelinesImages"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]
    resources = [for r in aws_ecr_repository.this : r.arn]
  }
  statement {
    sid       = "WriteTheseLogGroups"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [for g in aws_cloudwatch_log_group.this : "${g.arn}:*"]
  }
  statement {
    sid       = "ReadTheGeminiKey"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.gemini_api_key_secret_arn]
  }
  statement {
    sid       = "DecryptImageLayers"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.this.arn]
  }
  dynamic "statement" {
    for_each = var.gemini_api_key_kms_key_arn == null ? [] : [var.gemini_api_key_kms_key_arn]
    content {
      sid       = "DecryptTheGeminiKeyViaSecretsManager"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]
      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["secretsmanager.${local.region}.amazonaws.com"]
      }
    }
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "pull-logs-secret"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

# --- IAM: task role (read recordings, write results; nothing else) -------------------------

resource "aws_iam_role" "task" {
  name               = "${var.project}-task"
  description        = "The analysis containers: read the recordings prefixes, read/write the results prefix"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "task" {
  statement {
    sid       = "ReadRecordings"
    actions   = ["s3:GetObject"]
    resources = [for r in local.recordings : "arn:${local.partition}:s3:::${r.bucket}/${r.prefix}*"]
  }
  dynamic "statement" {
    for_each = local.recordings_buckets
    content {
      sid       = "ListRecordings${statement.key}"
      actions   = ["s3:ListBucket"]
      resources = ["arn:${local.partition}:s3:::${statement.value}"]
      condition {
        test     = "StringLike"
        variable = "s3:prefix"
        values   = [for r in local.recordings : "${r.prefix}*" if r.bucket == statement.value]
      }
    }
  }
  # Read too: a rerun loads the per-segment checkpoints it wrote before.
  statement {
    sid       = "WriteResults"
    actions   = ["s3:PutObject", "s3:PutObjectTagging", "s3:GetObject", "s3:AbortMultipartUpload"]
    resources = ["${aws_s3_bucket.results.arn}/${var.results_prefix}*"]
  }
  statement {
    sid       = "ListResults"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.results.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.results_prefix}*"]
    }
  }
  statement {
    sid       = "EncryptResults"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.this.arn]
  }
  dynamic "statement" {
    for_each = length(var.recordings_kms_key_arns) == 0 ? [] : [var.recordings_kms_key_arns]
    content {
      sid       = "DecryptRecordings"
      actions   = ["kms:Decrypt"]
      resources = statement.value
    }
  }
}

resource "aws_iam_role_policy" "task" {
  name   = "recordings-read-results-write"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task.json
}

# --- task definitions ----------------------------------------------------------------------

locals {
  # Per-container environment: everything of the DESIGN contract that is fixed per image.
  # ANALYSIS_ID, INPUT_URI, OUTPUT_URI and ANALYSIS_CONTEXT come per run from the DAG's
  # containerOverrides; GEMINI_API_KEY only through `secrets`.
  container_environment = { for k, w in var.workloads : k => {
    GEMINI_MAP_MODEL        = w.gemini_map_model
    GEMINI_REDUCE_MODEL     = w.gemini_reduce_model
    GEMINI_MAX_ATTEMPTS     = tostring(w.gemini_max_attempts)
    GEMINI_TIMEOUT_SECONDS  = tostring(w.gemini_timeout_seconds)
    GEMINI_RPM_BUDGET       = tostring(module.capacity.gemini_rpm_budget[k])
    GEMINI_TPM_BUDGET       = tostring(module.capacity.gemini_tpm_budget[k])
    GEMINI_MEDIA_RESOLUTION = w.media_resolution
    SEGMENT_SECONDS         = tostring(w.segment_seconds)
    MAP_CONCURRENCY         = tostring(w.map_concurrency)
    SCRATCH_DIR             = local.scratch_path
    TMPDIR                  = local.scratch_path
  } }
}

resource "aws_ecs_task_definition" "this" {
  for_each = var.workloads

  family                   = local.task_family[each.key]
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = tostring(each.value.vcpu * 1024)
  memory                   = tostring(each.value.memory_mib)
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  # Recordings, segments and the stitched video live here (the root filesystem is read-only).
  ephemeral_storage {
    size_in_gib = each.value.ephemeral_storage_gib
  }

  volume {
    name = "scratch"
  }

  container_definitions = jsonencode([{
    name                   = each.key
    image                  = "${aws_ecr_repository.this[each.key].repository_url}:${each.value.image_tag}"
    essential              = true
    user                   = local.container_user
    readonlyRootFilesystem = true
    privileged             = false
    stopTimeout            = 120
    linuxParameters = {
      initProcessEnabled = true
      capabilities       = { drop = ["ALL"] }
    }
    environment = [for name, value in local.container_environment[each.key] : { name = name, value = value }]
    secrets     = [{ name = "GEMINI_API_KEY", valueFrom = var.gemini_api_key_secret_arn }]
    mountPoints = [{ sourceVolume = "scratch", containerPath = local.scratch_path, readOnly = false }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.this[each.key].name
        awslogs-region        = local.region
        awslogs-stream-prefix = local.log_stream_prefix[each.key]
      }
    }
  }])
}

# --- Airflow: the levers it reads and the permissions it needs -----------------------------

locals {
  # SSM parameters under /airflow/variables/ = Airflow Variables through the SSM secrets
  # backend. Caps come from effective_caps: never more than the granted quota holds.
  airflow_levers = merge(
    { for k, c in local.containers : c.cap_lever => tostring(module.capacity.effective_caps[k]) },
    { for k, c in local.containers : c.vcpu_lever => tostring(var.workloads[k].vcpu) },
    { for k, c in local.containers : "${c.lever_prefix}_TASK_DEFINITION" => local.task_family[k] },
    { for k, c in local.containers : "${c.lever_prefix}_LOG_GROUP" => local.log_group[k] },
    { for k, c in local.containers : "${c.lever_prefix}_GEMINI_RPM_BUDGET" => tostring(module.capacity.gemini_rpm_budget[k]) },
    { for k, c in local.containers : "${c.lever_prefix}_GEMINI_TPM_BUDGET" => tostring(module.capacity.gemini_tpm_budget[k]) },
    {
      FARGATE_VCPU_POOL_SLOTS       = tostring(module.capacity.pool_vcpu)
      ANALYSIS_TIMEOUT_MINUTES      = tostring(var.analysis_timeout_minutes)
      ANALYSIS_ECS_CLUSTER          = aws_ecs_cluster.this.name
      ANALYSIS_ECS_SUBNETS          = join(",", var.subnet_ids)
      ANALYSIS_ECS_SECURITY_GROUPS  = aws_security_group.tasks.id
      ANALYSIS_ECS_ASSIGN_PUBLIC_IP = tostring(var.assign_public_ip)
      ALLOWED_INPUT_PREFIXES        = join(",", var.recordings_uri_prefixes)
      RESULTS_URI                   = local.results_uri
    },
  )
}

resource "aws_ssm_parameter" "airflow_variable" {
  #checkov:skip=CKV2_AWS_34:Capacity levers and resource names, not secrets; plain String keeps them readable by operators.
  for_each = local.airflow_levers

  name        = "/airflow/variables/${each.key}"
  description = "Airflow Variable ${each.key}, written by terraform/ (${var.project}); change it there, not here"
  type        = "String"
  value       = each.value
}

data "aws_iam_policy_document" "airflow" {
  statement {
    sid       = "RunThesePipelinesTasks"
    actions   = ["ecs:RunTask"]
    resources = [for f in local.task_family : "arn:${local.partition}:ecs:${local.region}:${local.account}:task-definition/${f}:*"]
    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.this.arn]
    }
  }
  statement {
    sid       = "WatchAndStopThem"
    actions   = ["ecs:DescribeTasks", "ecs:StopTask"]
    resources = ["arn:${local.partition}:ecs:${local.region}:${local.account}:task/${local.cluster_name}/*"]
    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.this.arn]
    }
  }
  # Reattach after a worker restart and stop-on-timeout find the run's task by startedBy.
  # ListTasks names no task resource, so it is pinned to this cluster by condition instead.
  statement {
    sid       = "FindThemInThisCluster"
    actions   = ["ecs:ListTasks"]
    resources = ["*"]
    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.this.arn]
    }
  }
  statement {
    sid       = "TagThemAtLaunch"
    actions   = ["ecs:TagResource"]
    resources = ["arn:${local.partition}:ecs:${local.region}:${local.account}:task/${local.cluster_name}/*"]
    condition {
      test     = "StringEquals"
      variable = "ecs:CreateAction"
      values   = ["RunTask"]
    }
  }
  statement {
    sid       = "PassOnlyTheseRoles"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.execution.arn, aws_iam_role.task.arn]
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }
  statement {
    sid       = "ReadTheContainerLogs"
    actions   = ["logs:GetLogEvents", "logs:FilterLogEvents", "logs:DescribeLogStreams"]
    resources = flatten([for g in aws_cloudwatch_log_group.this : [g.arn, "${g.arn}:*"]])
  }
  # Results for the check step; recordings (read-only) so validate can see the input exists
  # before any Fargate time is spent.
  statement {
    sid     = "ReadResultsAndRecordings"
    actions = ["s3:GetObject"]
    resources = concat(
      ["${aws_s3_bucket.results.arn}/${var.results_prefix}*"],
      [for r in local.recordings : "arn:${local.partition}:s3:::${r.bucket}/${r.prefix}*"],
    )
  }
  statement {
    sid       = "ListResults"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.results.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.results_prefix}*"]
    }
  }
  dynamic "statement" {
    for_each = local.recordings_buckets
    content {
      sid       = "ListRecordings${statement.key}"
      actions   = ["s3:ListBucket"]
      resources = ["arn:${local.partition}:s3:::${statement.value}"]
      condition {
        test     = "StringLike"
        variable = "s3:prefix"
        values   = [for r in local.recordings : "${r.prefix}*" if r.bucket == statement.value]
      }
    }
  }
  statement {
    sid       = "DecryptResults"
    actions   = ["kms:Decrypt"]
    resources = concat([aws_kms_key.this.arn], var.recordings_kms_key_arns)
  }
  statement {
    sid       = "ReadItsVariables"
    actions   = ["ssm:GetParameter", "ssm:GetParameters"]
    resources = [for p in aws_ssm_parameter.airflow_variable : p.arn]
  }
}

resource "aws_iam_policy" "airflow" {
  name        = "${var.project}-airflow"
  description = "Airflow workers/dag-processor: launch, watch and stop the analysis tasks; read their logs, results, inputs and levers"
  policy      = data.aws_iam_policy_document.airflow.json
}

resource "aws_iam_role_policy_attachment" "airflow" {
  count = var.airflow_role_name == null ? 0 : 1

  role       = var.airflow_role_name
  policy_arn = aws_iam_policy.airflow.arn
}
