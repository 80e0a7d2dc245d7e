# --- naming and placement ---------------------------------------------------------------

variable "project" {
  description = "Name prefix for every resource. The DAG side (plugins/analysis_pipeline/config.py PROJECT) derives the cluster, task-definition and log-group names from the same value."
  type        = string
  default     = "analysis-pipeline"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,40}$", var.project))
    error_message = "project must be 3-41 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "aws_region" {
  description = "AWS Region for every resource (the Fargate vCPU quota is per Region)."
  type        = string
}

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}
}

variable "vpc_id" {
  description = "VPC the Fargate tasks run in."
  type        = string
}

variable "subnet_ids" {
  description = "Subnets for the Fargate tasks (private subnets with a NAT gateway or VPC endpoints for S3, ECR, CloudWatch Logs and Secrets Manager, plus a route to the Gemini API)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) > 0
    error_message = "At least one subnet is required."
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
  description = "ARN of the Secrets Manager secret holding the Gemini API key (created out of band so the key never enters Terraform state). Injected as GEMINI_API_KEY through the task definitions' secrets."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+", var.gemini_api_key_secret_arn))
    error_message = "gemini_api_key_secret_arn must be a Secrets Manager secret ARN."
  }
}

variable "gemini_api_key_kms_key_arn" {
  description = "Customer-managed KMS key encrypting that secret, if any (the execution role may decrypt with it via Secrets Manager only); null for the AWS-managed key."
  type        = string
  default     = null
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
}

variable "airflow_role_name" {
  description = "IAM role of the Airflow workers/dag-processor to attach the Airflow policy to; null to attach it elsewhere (its ARN is an output)."
  type        = string
  default     = null
}

# --- the levers (moved together by one apply) ---------------------------------------------

variable "workloads" {
  description = <<-EOT
    The two containers, keyed by ECS container name ("task-analyzer", "proctor-video"; the DAG
    side uses the same names). Sizing and caps: max_concurrent (the DAG cap), vcpu, memory_mib,
    ephemeral_storage_gib (scratch for recordings, 21-200), image_tag. Gemini: gemini_weight
    (share per running container), map/reduce models, attempts and timeout. The prediction
    profile (recording minutes, idle fraction, segment seconds, media resolution,
    map_concurrency, seconds per call, measured minutes_per_analysis, batch_size) is documented
    in modules/capacity/variables.tf; SEGMENT_SECONDS, MAP_CONCURRENCY and
    GEMINI_MEDIA_RESOLUTION are also what the container is given, so the model and the run
    agree.
  EOT
  type = map(object({
    image_tag                = string
    max_concurrent           = number
    vcpu                     = number
    memory_mib               = number
    ephemeral_storage_gib    = optional(number, 50)
    gemini_weight            = optional(number, 1)
    gemini_map_model         = optional(string, "gemini-2.5-flash")
    gemini_reduce_model      = optional(string, "gemini-2.5-flash")
    gemini_max_attempts      = optional(number, 6)
    gemini_timeout_seconds   = optional(number, 300)
    avg_recording_minutes    = optional(number, 30)
    idle_fraction            = optional(number, 0)
    segment_seconds          = optional(number, 120)
    media_resolution         = optional(string, "default")
    tokens_per_second        = optional(number)
    map_concurrency          = optional(number, 4)
    seconds_per_call         = optional(number, 120)
    overhead_minutes         = optional(number, 3)
    tokens_per_call_overhead = optional(number, 2000)
    minutes_per_analysis     = optional(number)
    batch_size               = optional(number, 0)
  }))

  validation {
    condition     = toset(keys(var.workloads)) == toset(["task-analyzer", "proctor-video"])
    error_message = "workloads must have exactly the keys \"task-analyzer\" and \"proctor-video\" (the container names the DAGs launch)."
  }
  validation {
    condition     = alltrue([for w in values(var.workloads) : w.ephemeral_storage_gib >= 21 && w.ephemeral_storage_gib <= 200])
    error_message = "ephemeral_storage_gib must be 21-200 (Fargate's range)."
  }
}

variable "fargate_vcpu_quota" {
  description = "Fargate On-Demand vCPU quota (fargate / L-3032A538) to hold in this Region; null sizes it from the caps. The request only ever goes up (max of this, the caps' need and what AWS applies now)."
  type        = number
  default     = null
}

variable "manage_fargate_quota" {
  description = "Request the Fargate vCPU quota from Terraform. Set false where quotas are managed centrally; the caps are then still limited by the applied quota."
  type        = bool
  default     = true
}

variable "headroom_vcpu" {
  description = "vCPUs of the quota kept free for other Fargate users in the account/Region and tasks still stopping."
  type        = number
  default     = 0
}

variable "gemini_project_rpm" {
  description = "Gemini requests per minute of the whole project (its quota tier)."
  type        = number
}

variable "gemini_project_tpm" {
  description = "Gemini input tokens per minute of the whole project."
  type        = number
}

variable "gemini_reserved_fraction" {
  description = "Fraction of the Gemini project quota kept back from the containers."
  type        = number
  default     = 0
}

variable "analysis_timeout_minutes" {
  description = "ANALYSIS_TIMEOUT_MINUTES: the Airflow execution_timeout of one launch (the ECS task is stopped after it)."
  type        = number
  default     = 120
}
