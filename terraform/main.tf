# The analysis pipeline's AWS side. One apply moves the levers together: the Fargate vCPU
# quota (quota.tf), each container's size (ecs.tf), the DAG caps (levers.tf: SSM → Airflow
# Variables) and the fleet-wide Gemini budgets kept in the shared budget store
# (budget_store.tf), all computed by modules/capacity from the same inputs.
#
# Files by concern: kms.tf, ecs.tf (cluster, ECR, task definitions), images.tf (the pushed
# images the task definitions run, checked at plan), logs.tf, s3.tf,
# network.tf, iam.tf (execution and task roles), budget_store.tf, quota.tf, levers.tf (SSM
# parameters and the Airflow policy).

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  account    = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  dns_suffix = data.aws_partition.current.dns_suffix
  region     = var.aws_region

  # The workloads with every default filled in: the type is declared once, in
  # modules/capacity/variables.tf.
  workloads = module.capacity.workloads

  # Names the DAG side derives from PROJECT (plugins/analysis_pipeline/config.py): the
  # cluster, task-definition families, container names, log groups and stream prefixes.
  cluster_name = var.project
  cluster_arn  = "arn:${local.partition}:ecs:${local.region}:${local.account}:cluster/${local.cluster_name}"
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
  task_family       = { for k in keys(local.workloads) : k => "${var.project}-${k}" }
  log_group         = { for k in keys(local.workloads) : k => "/ecs/${var.project}/${k}" }
  log_group_arn     = { for k, g in local.log_group : k => "arn:${local.partition}:logs:${local.region}:${local.account}:log-group:${g}" }
  log_stream_prefix = { for k in keys(local.workloads) : k => k }
  ecr_name          = { for k in keys(local.workloads) : k => "${var.project}/${k}" }
  ecr_arn           = { for k, n in local.ecr_name : k => "arn:${local.partition}:ecr:${local.region}:${local.account}:repository/${n}" }
  ecr_url           = { for k, n in local.ecr_name : k => "${local.account}.dkr.ecr.${local.region}.${local.dns_suffix}/${n}" }

  # The image runs as this uid and works in /scratch (containers/*/Dockerfile).
  container_user = "10001:10001"
  scratch_path   = "/scratch"

  recordings = [for u in var.recordings_uri_prefixes : {
    bucket = regex("^s3://([^/]+)/", u)[0]
    prefix = replace(u, "/^s3://[^/]+//", "")
  }]
  recordings_buckets = distinct([for r in local.recordings : r.bucket])
  recordings_objects = [for r in local.recordings : "arn:${local.partition}:s3:::${r.bucket}/${r.prefix}*"]
  results_bucket_arn = "arn:${local.partition}:s3:::${var.results_bucket_name}"
  results_objects    = "${local.results_bucket_arn}/${var.results_prefix}*"
  results_uri        = "s3://${var.results_bucket_name}/${var.results_prefix}"
}

# --- the lever arithmetic ------------------------------------------------------------------

module "capacity" {
  source = "./modules/capacity"

  workloads                  = var.workloads
  fargate_vcpu_quota         = var.fargate_vcpu_quota
  fargate_vcpu_quota_applied = local.quota_granted
  headroom_vcpu              = var.headroom_vcpu
  gemini_project_rpm         = var.gemini_project_rpm
  gemini_project_tpm         = var.gemini_project_tpm
  gemini_model_quotas        = var.gemini_model_quotas
  gemini_reserved_fraction   = var.gemini_reserved_fraction
  analysis_timeout_minutes   = var.analysis_timeout_minutes
}
