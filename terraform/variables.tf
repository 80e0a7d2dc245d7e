# --- naming and placement ---------------------------------------------------------------

variable "project" {
  description = "Name prefix for every resource. The DAG side (plugins/analysis_pipeline/config.py PROJECT) derives the cluster, task-definition and log-group names from the same value."
  type        = string
  default     = "analysis-pipeline"

  validation {
    # 30 at most: "<project>-budget" must fit ElastiCache's 40-character names.
    condition     = can(regex("^[a-z][a-z0-9-]{1,28}[a-z0-9]$", var.project)) && !strcontains(var.project, "--")
    error_message = "project must be 3-30 lowercase letters, digits or single hyphens, starting with a letter and not ending with a hyphen."
  }
}

variable "aws_region" {
  description = "AWS Region for every resource (the Fargate vCPU quota is per Region)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]$", var.aws_region))
    error_message = "aws_region must be a Region code such as eu-west-1 or us-gov-west-1."
  }
}

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k, v in var.tags : length(k) >= 1 && length(k) <= 128 && length(v) <= 256 && !startswith(lower(k), "aws:")])
    error_message = "Tag keys must be 1-128 characters and not start with aws:, values at most 256 characters."
  }
}

variable "vpc_id" {
  description = "VPC the Fargate tasks and the budget store run in."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]{8,17}$", var.vpc_id))
    error_message = "vpc_id must look like vpc-0123456789abcdef0."
  }
}

variable "subnet_ids" {
  description = "Subnets for the Fargate tasks and the budget store (private subnets with a NAT gateway or VPC endpoints for S3, ECR, CloudWatch Logs and Secrets Manager, plus a route to the Gemini API)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) > 0 && alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", s))])
    error_message = "At least one subnet is required, each like subnet-0123456789abcdef0."
  }
}

variable "assign_public_ip" {
  description = "Give tasks a public IP (only for public subnets without a NAT gateway)."
  type        = bool
  default     = false
}

# --- data -----------------------------------------------------------------------------------

variable "recordings_uri_prefixes" {
  description = "s3://bucket/prefix/ URIs recordings may come from. The task role may read only these; Airflow's ALLOWED_INPUT_PREFIXES is set to the same list."
  type        = list(string)

  validation {
    condition = length(var.recordings_uri_prefixes) > 0 && alltrue([
      for u in var.recordings_uri_prefixes : can(regex("^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/([^*?]+/)?$", u))
    ])
    error_message = "Each recordings prefix must look like s3://bucket/ or s3://bucket/some/prefix/ (ending in '/', no wildcards)."
  }
}

variable "recordings_kms_key_arns" {
  description = "KMS keys that encrypt the recordings buckets (SSE-KMS), if any: the task role may decrypt with these only."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.recordings_kms_key_arns : can(regex(local.kms_key_arn_pattern, a))])
    error_message = "recordings_kms_key_arns must be KMS key ARNs (arn:aws:kms:<region>:<account>:key/<key id>), not aliases."
  }
}

variable "results_bucket_name" {
  description = "Name of the S3 bucket this configuration creates for results, checkpoints, stitched videos and thumbnails."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.results_bucket_name))
    error_message = "results_bucket_name must be a valid S3 bucket name."
  }
}

variable "results_prefix" {
  description = "Key prefix under which every run's OUTPUT_URI is made (RESULTS_URI = s3://<bucket>/<prefix>). The task role may write only here."
  type        = string
  default     = "analyses/"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9_.-]*/$", var.results_prefix))
    error_message = "results_prefix must be one path segment ending in '/', e.g. analyses/."
  }
}

variable "checkpoint_expiry_days" {
  description = "Days after which results objects tagged retention=checkpoint (per-segment MAP checkpoints) expire."
  type        = number
  default     = 14

  validation {
    condition     = var.checkpoint_expiry_days >= 1
    error_message = "checkpoint_expiry_days must be >= 1."
  }
}

variable "thumbnail_expiry_days" {
  description = "Days after which results objects tagged retention=thumbnail (proctoring evidence frames) expire."
  type        = number
  default     = 365

  validation {
    condition     = var.thumbnail_expiry_days >= 1
    error_message = "thumbnail_expiry_days must be >= 1."
  }
}

variable "gemini_api_key_secret_arn" {
  description = "ARN of an existing Secrets Manager secret holding the Gemini API key; null (the default): Terraform creates the secret <project>/gemini-api-key without a value, which a person sets with put-secret-value (secrets.tf). Either way the key never enters Terraform state; it reaches the containers as GEMINI_API_KEY through the task definitions' secrets."
  type        = string
  default     = null

  validation {
    # The full ARN, with the 6-character suffix Secrets Manager appends: the IAM grant
    # (Resource = this ARN) matches only the full ARN, so a partial one would deny access.
    condition     = var.gemini_api_key_secret_arn == null || can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}$", coalesce(var.gemini_api_key_secret_arn, "-")))
    error_message = "gemini_api_key_secret_arn must be the full Secrets Manager secret ARN, ending in the 6-character suffix AWS appends to the name (e.g. ...:secret:analysis-pipeline/gemini-api-key-AbCdEf)."
  }
}

variable "gemini_api_key_kms_key_arn" {
  description = "Customer-managed KMS key encrypting an existing secret (gemini_api_key_secret_arn), if any (the execution role may decrypt with it via Secrets Manager only); null for the AWS-managed key. A Terraform-created secret uses the pipeline's own key."
  type        = string
  default     = null

  validation {
    condition     = var.gemini_api_key_kms_key_arn == null || can(regex(local.kms_key_arn_pattern, coalesce(var.gemini_api_key_kms_key_arn, "-")))
    error_message = "gemini_api_key_kms_key_arn must be a KMS key ARN (arn:aws:kms:<region>:<account>:key/<key id>) or null."
  }
}

variable "log_retention_days" {
  description = "CloudWatch retention for the containers' logs."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts (e.g. 30, 90, 365)."
  }
}

variable "ecr_keep_images" {
  description = "Tagged images kept per ECR repository (older ones expire; untagged ones after a day)."
  type        = number
  default     = 30

  validation {
    condition     = var.ecr_keep_images >= 1 && var.ecr_keep_images <= 1000 && floor(var.ecr_keep_images) == var.ecr_keep_images
    error_message = "ecr_keep_images must be a whole number 1-1000."
  }
}

variable "airflow_role_name" {
  description = "IAM role of the Airflow workers/dag-processor to attach the Airflow policy to; null to attach it elsewhere (its ARN is an output)."
  type        = string
  default     = null

  validation {
    condition     = var.airflow_role_name == null || can(regex("^[A-Za-z0-9+=,.@_-]{1,64}$", coalesce(var.airflow_role_name, "-")))
    error_message = "airflow_role_name must be an IAM role name (not an ARN) or null."
  }
}


locals {
  # Key ARNs only: an alias ARN would not match the key the grant is checked against.
  kms_key_arn_pattern = "^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/(mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
}

# --- the levers (moved together by one apply) ---------------------------------------------

variable "workloads" {
  description = <<-EOT
    The two containers, keyed by ECS container name ("task-analyzer", "proctor-video"; the
    DAG side uses the same names). The object type, its defaults and its range checks are
    declared once, in modules/capacity/variables.tf (image_tag and/or image_digest: the image
    pushed to the workload's ECR repository, which the plan checks is there; max_concurrent = the DAG cap,
    vcpu, memory_mib, ephemeral_storage_gib, the Gemini models and retries, gemini_weight
    (the workload's share of the shared Gemini budget while both kinds wait), and the
    prediction profile).
  EOT
  # Typed by modules/capacity; `any` here so the type and its defaults exist only there.
  type = any

  validation {
    condition     = can(keys(var.workloads)) && try(toset(keys(var.workloads)) == toset(["task-analyzer", "proctor-video"]), false)
    error_message = "workloads must have exactly the keys \"task-analyzer\" and \"proctor-video\" (the container names the DAGs launch)."
  }
  validation {
    # The image by tag, by digest (what `make push` prints; a rollback is an apply with the
    # previous one), or both (the tag must then name that digest: checked at plan).
    condition = alltrue([for w in values(var.workloads) :
      (try(w.image_tag, null) != null || try(w.image_digest, null) != null) &&
      (try(w.image_tag, null) == null || can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", w.image_tag))) &&
      (try(w.image_digest, null) == null || can(regex("^sha256:[0-9a-f]{64}$", w.image_digest)))
    ])
    error_message = "Every workload needs its image: image_tag (an ECR tag: letters, digits, _ . -, at most 128 characters) and/or image_digest (sha256: and 64 lowercase hex digits, as `make push` prints)."
  }
}

variable "fargate_vcpu_quota" {
  description = "Fargate On-Demand vCPU quota (fargate / L-3032A538) to hold in this Region; null sizes it from the caps. The request only ever goes up (max of this, the caps' need and what AWS applies now)."
  type        = number
  default     = null

  validation {
    condition     = var.fargate_vcpu_quota == null || try(var.fargate_vcpu_quota >= 1, false)
    error_message = "fargate_vcpu_quota must be >= 1 (or null to size it from the caps)."
  }
}

variable "manage_fargate_quota" {
  description = "Request the Fargate vCPU quota from Terraform. Set false where quotas are managed centrally; the caps are then still limited by the applied quota."
  type        = bool
  default     = true
  nullable    = false
}

variable "headroom_vcpu" {
  description = "vCPUs of the quota kept free for other Fargate users in the account/Region and tasks still stopping (null: the module's default, 0)."
  type        = number
  default     = null

  validation {
    condition     = var.headroom_vcpu == null || try(var.headroom_vcpu >= 0, false)
    error_message = "headroom_vcpu must be >= 0."
  }
}

variable "gemini_project_rpm" {
  description = "Gemini requests per minute of the project, per model (its quota tier): with the shared budget store this is the whole fleet's limit for each model, less gemini_reserved_fraction."
  type        = number

  validation {
    condition     = var.gemini_project_rpm >= 1
    error_message = "gemini_project_rpm must be >= 1."
  }
}

variable "gemini_project_tpm" {
  description = "Gemini input tokens per minute of the project, per model: the whole fleet's limit for each model, less gemini_reserved_fraction."
  type        = number

  validation {
    condition     = var.gemini_project_tpm >= 1
    error_message = "gemini_project_tpm must be >= 1."
  }
}

variable "gemini_model_quotas" {
  description = "Per-model quotas where a model's tier differs from gemini_project_rpm/tpm (Gemini quotas are per model), e.g. { \"gemini-2.5-pro\" = { rpm = 150, tpm = 2000000 } }. Range checks in modules/capacity."
  type = map(object({
    rpm = number
    tpm = number
  }))
  default = {}
}

variable "gemini_reserved_fraction" {
  description = "Fraction of each model's Gemini project quota kept back from the containers (other users of the same key); null: the module's default, 0."
  type        = number
  default     = null

  validation {
    condition     = var.gemini_reserved_fraction == null || try(var.gemini_reserved_fraction >= 0 && var.gemini_reserved_fraction < 1, false)
    error_message = "gemini_reserved_fraction must be in [0, 1)."
  }
}

variable "analysis_timeout_minutes" {
  description = "ANALYSIS_TIMEOUT_MINUTES: the Airflow execution_timeout of one launch (the ECS task is stopped after it); null: the module's default, 120."
  type        = number
  default     = null

  validation {
    condition     = var.analysis_timeout_minutes == null || try(var.analysis_timeout_minutes >= 1, false)
    error_message = "analysis_timeout_minutes must be >= 1."
  }
}

# --- metrics, alarms and the backend's access -------------------------------------------------

variable "metrics_namespace" {
  description = "CloudWatch namespace of the metrics the containers print as Embedded Metric Format lines (METRICS_NAMESPACE); the dashboard and alarms read it."
  type        = string
  default     = "AnalysisPipeline"

  validation {
    condition     = can(regex("^[A-Za-z0-9._#:/ -]{1,255}$", var.metrics_namespace)) && !startswith(var.metrics_namespace, "AWS/")
    error_message = "metrics_namespace must be 1-255 of A-Z a-z 0-9 . _ # : / - and space, and not start with AWS/ (reserved)."
  }
}

variable "runbook_url" {
  description = "Where docs/RUNBOOK.md is published (its https URL, without a #section); every alarm names its section there. Null: alarms name the file in the repository."
  type        = string
  default     = null

  validation {
    condition     = var.runbook_url == null || can(regex("^https://[^\\s#]+$", coalesce(var.runbook_url, "-")))
    error_message = "runbook_url must be an https URL without a fragment (the alarms add #<section>), or null."
  }
}

variable "alarm_email_addresses" {
  description = "Addresses subscribed (email, each confirms once) to the alarms topic. Chat channels (Discord through a relay, Slack through AWS Chatbot) subscribe to the topic output alarm_topic_arn."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.alarm_email_addresses : can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", a))])
    error_message = "alarm_email_addresses must be email addresses."
  }
}

variable "alarm_failure_rate_percent" {
  description = "Failure-rate alarm: percent of the analyses finished within 15 minutes that failed (invalid input excluded: the caller's mistake) above which it fires."
  type        = number
  default     = 20

  validation {
    condition     = var.alarm_failure_rate_percent > 0 && var.alarm_failure_rate_percent < 100
    error_message = "alarm_failure_rate_percent must be between 0 and 100 (exclusive)."
  }
}

variable "alarm_failure_rate_min_analyses" {
  description = "Failure-rate alarm: analyses that must have finished within the 15 minutes before a rate is judged (one failure out of two is not a trend)."
  type        = number
  default     = 5

  validation {
    condition     = var.alarm_failure_rate_min_analyses >= 1 && floor(var.alarm_failure_rate_min_analyses) == var.alarm_failure_rate_min_analyses
    error_message = "alarm_failure_rate_min_analyses must be a whole number >= 1."
  }
}

variable "alarm_ceiling_percent" {
  description = "Budget-ceiling alarm: the learnt Gemini ceiling as a percent of the configured limit (BudgetCeilingPercent) below which, held for alarm_ceiling_minutes, it fires (another client shares the key, or the limit is set above the real quota)."
  type        = number
  default     = 80

  validation {
    condition     = var.alarm_ceiling_percent > 0 && var.alarm_ceiling_percent <= 100
    error_message = "alarm_ceiling_percent must be in (0, 100]."
  }
}

variable "alarm_ceiling_minutes" {
  description = "Budget-ceiling alarm: how long the ceiling must stay low (minutes, a multiple of 5)."
  type        = number
  default     = 30

  validation {
    condition     = var.alarm_ceiling_minutes >= 5 && var.alarm_ceiling_minutes <= 1440 && var.alarm_ceiling_minutes % 5 == 0
    error_message = "alarm_ceiling_minutes must be a multiple of 5 between 5 and 1440."
  }
}

variable "alarm_cost_per_hour_usd" {
  description = "Cost alarm: estimated Gemini USD (usage.estimated_usd of the analyses finished within one hour) above which it fires. The decision record's 12 analyses at a time cost about 5 USD per hour."
  type        = number
  default     = 20

  validation {
    condition     = var.alarm_cost_per_hour_usd > 0
    error_message = "alarm_cost_per_hour_usd must be > 0."
  }
}

variable "results_reader_principals" {
  description = "IAM principals (role or user ARNs, or an account root) the backend uses to assume the results reader role, which reads result.json, report.html, videos and thumbnails and presigns links to them. Empty: any principal of this account allowed by its own IAM policy."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for p in var.results_reader_principals : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(root|role/.+|user/.+)$", p))])
    error_message = "results_reader_principals must be IAM role or user ARNs, or arn:aws:iam::<account>:root."
  }
}

variable "launch_retries" {
  description = "ANALYSIS_LAUNCH_RETRIES: Airflow retries of one launch after the first try (the sentinel and crashes; capacity refusals are rescheduled, not retried)."
  type        = number
  default     = 3

  validation {
    condition     = var.launch_retries >= 0 && var.launch_retries <= 10 && floor(var.launch_retries) == var.launch_retries
    error_message = "launch_retries must be a whole number from 0 to 10."
  }
}

variable "sentinel_retry_seconds" {
  description = "ANALYSIS_SENTINEL_RETRY_SECONDS: first retry delay after a run ended with the all-segments-failed sentinel (quota storm); doubles per try, at most 2 h."
  type        = number
  default     = 900

  validation {
    condition     = var.sentinel_retry_seconds >= 1 && floor(var.sentinel_retry_seconds) == var.sentinel_retry_seconds
    error_message = "sentinel_retry_seconds must be a whole number of seconds >= 1."
  }
}

variable "crash_retry_seconds" {
  description = "ANALYSIS_CRASH_RETRY_SECONDS: first retry delay after a container left no usable result; doubles per try, at most 2 h."
  type        = number
  default     = 120

  validation {
    condition     = var.crash_retry_seconds >= 1 && floor(var.crash_retry_seconds) == var.crash_retry_seconds
    error_message = "crash_retry_seconds must be a whole number of seconds >= 1."
  }
}
