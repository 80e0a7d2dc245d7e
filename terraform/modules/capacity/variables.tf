# The one declaration of a workload (the root module passes its `workloads` through and
# reads the normalised value back from output.workloads, so defaults live only here).
variable "workloads" {
  description = <<-EOT
    One entry per container image, keyed by its ECS container name. Per workload:
    - image and size: image_tag and/or image_digest, vcpu and memory_mib (Fargate task size; vcpu is whole vCPUs
      because the Airflow pool counts whole slots), ephemeral_storage_gib (scratch, 21-200);
    - the DAG cap: max_concurrent;
    - Gemini: gemini_map_model (every MAP call), gemini_reduce_model (the one REDUCE call),
      gemini_max_attempts, gemini_timeout_seconds, gemini_weight (its share of a model's
      budget while the workloads compete for it: GEMINI_BUDGET_WEIGHT, default 1 each);
    - the recording profile that predicts Gemini demand: avg_recording_minutes,
      idle_fraction, segment_seconds, media_resolution (default ~300 tokens per second of
      video, low ~100), tokens_per_second (overrides the resolution's published figure);
    - the pacing model: map_concurrency, seconds_per_call, overhead_minutes,
      tokens_per_call_overhead; minutes_per_analysis (a measured duration, which overrides
      the model when set); batch_size (submissions to drain, for the prediction only).
    SEGMENT_SECONDS, MAP_CONCURRENCY and GEMINI_MEDIA_RESOLUTION are also what the container
    is given, so the prediction and the run agree.
  EOT
  type = map(object({
    image_tag                = optional(string)
    image_digest             = optional(string)
    max_concurrent           = number
    vcpu                     = number
    memory_mib               = number
    ephemeral_storage_gib    = optional(number, 50)
    gemini_map_model         = optional(string, "gemini-2.5-flash")
    gemini_reduce_model      = optional(string, "gemini-2.5-flash")
    gemini_max_attempts      = optional(number, 6)
    gemini_timeout_seconds   = optional(number, 300)
    gemini_weight            = optional(number, 1)
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
    condition     = length(var.workloads) > 0
    error_message = "At least one workload is required."
  }
  validation {
    condition = alltrue([for w in values(var.workloads) :
    w.max_concurrent >= 1 && floor(w.max_concurrent) == w.max_concurrent])
    error_message = "max_concurrent (the DAG cap) must be a whole number >= 1: a cap of 0 would queue every run forever."
  }
  validation {
    condition     = alltrue([for w in values(var.workloads) : contains([1, 2, 4, 8, 16], w.vcpu)])
    error_message = "vcpu must be one of the whole Fargate sizes 1, 2, 4, 8 or 16 (the Airflow pool counts whole vCPUs)."
  }
  validation {
    # try(): an invalid vcpu has no memory range (the rule above reports it).
    condition = alltrue([for w in values(var.workloads) : try(
      w.memory_mib >= local.fargate_memory[tostring(w.vcpu)].min &&
      w.memory_mib <= local.fargate_memory[tostring(w.vcpu)].max &&
      w.memory_mib % local.fargate_memory[tostring(w.vcpu)].step == 0,
      false
    )])
    error_message = "memory_mib is not a valid Fargate size for its vcpu (1 vCPU: 2048-8192 step 1024; 2: 4096-16384 step 1024; 4: 8192-30720 step 1024; 8: 16384-61440 step 4096; 16: 32768-122880 step 8192)."
  }
  validation {
    condition     = alltrue([for w in values(var.workloads) : w.ephemeral_storage_gib >= 21 && w.ephemeral_storage_gib <= 200])
    error_message = "ephemeral_storage_gib must be 21-200 (Fargate's range)."
  }
  validation {
    condition = alltrue([for w in values(var.workloads) :
      can(regex("^[a-z0-9][a-z0-9.-]{0,99}$", w.gemini_map_model)) && can(regex("^[a-z0-9][a-z0-9.-]{0,99}$", w.gemini_reduce_model)) &&
      w.gemini_max_attempts >= 1 && w.gemini_max_attempts <= 50 && floor(w.gemini_max_attempts) == w.gemini_max_attempts &&
      w.gemini_timeout_seconds > 0
    ])
    error_message = "Gemini settings out of range: model names like gemini-2.5-flash, gemini_max_attempts a whole number 1-50, gemini_timeout_seconds > 0 (the containers' limits)."
  }
  validation {
    condition = alltrue([for w in values(var.workloads) :
      w.avg_recording_minutes > 0 &&
      w.idle_fraction >= 0 && w.idle_fraction < 1 &&
      w.segment_seconds >= 10 && w.segment_seconds <= 3600 &&
      w.map_concurrency >= 1 && w.map_concurrency <= 64 && floor(w.map_concurrency) == w.map_concurrency &&
      w.seconds_per_call > 0 && w.overhead_minutes >= 0 && w.tokens_per_call_overhead >= 0 &&
      w.batch_size >= 0 && (w.minutes_per_analysis == null ? true : w.minutes_per_analysis > 0) &&
      (w.tokens_per_second == null ? true : w.tokens_per_second > 0)
    ])
    error_message = "Workload profile out of range: avg_recording_minutes > 0, 0 <= idle_fraction < 1, 10 <= segment_seconds <= 3600, map_concurrency a whole number 1-64 (the container's limits), seconds_per_call > 0, overhead_minutes >= 0, batch_size >= 0, minutes_per_analysis and tokens_per_second > 0 when set."
  }
  validation {
    condition     = alltrue([for w in values(var.workloads) : w.gemini_weight >= 0.01 && w.gemini_weight <= 1000])
    error_message = "gemini_weight must be between 0.01 and 1000 (the containers' GEMINI_BUDGET_WEIGHT)."
  }
  validation {
    condition     = alltrue([for w in values(var.workloads) : contains(["default", "low"], w.media_resolution)])
    error_message = "media_resolution must be \"default\" (~300 tokens per second of video) or \"low\" (~100)."
  }
}

variable "fargate_vcpu_quota" {
  description = "The Fargate On-Demand vCPU quota (fargate / L-3032A538) to plan for. null requests exactly what the caps need (plus headroom). The plan fails when the caps need more than this."
  type        = number
  default     = null

  validation {
    condition     = var.fargate_vcpu_quota == null ? true : var.fargate_vcpu_quota >= 1
    error_message = "fargate_vcpu_quota must be >= 1 (or null to size it from the caps)."
  }
}

variable "fargate_vcpu_quota_applied" {
  description = "The quota value AWS applies now (the data source's value, i.e. what has been granted). null when unknown (offline planning: the planned quota counts as applied). The request never goes below it and the DAG caps never exceed what it holds."
  type        = number
  default     = null

  validation {
    condition     = var.fargate_vcpu_quota_applied == null ? true : var.fargate_vcpu_quota_applied >= 0
    error_message = "fargate_vcpu_quota_applied must be >= 0 (or null when unknown)."
  }
}

variable "headroom_vcpu" {
  description = "vCPUs of the quota kept free for anything else running Fargate in this account and Region (and for tasks still stopping)."
  type        = number
  default     = 0
  nullable    = false

  validation {
    condition     = var.headroom_vcpu >= 0
    error_message = "headroom_vcpu must be >= 0."
  }
}

variable "gemini_project_rpm" {
  description = "Gemini requests per minute of the project, per model (the quota tier of every model not in gemini_model_quotas)."
  type        = number

  validation {
    condition     = var.gemini_project_rpm >= 1
    error_message = "gemini_project_rpm must be >= 1."
  }
}

variable "gemini_project_tpm" {
  description = "Gemini input tokens per minute of the project, per model (every model not in gemini_model_quotas)."
  type        = number

  validation {
    condition     = var.gemini_project_tpm >= 1
    error_message = "gemini_project_tpm must be >= 1."
  }
}

variable "gemini_model_quotas" {
  description = "Per-model Gemini project quotas where a model's tier differs from gemini_project_rpm/tpm, e.g. { \"gemini-2.5-pro\" = { rpm = 150, tpm = 2000000 } }."
  type = map(object({
    rpm = number
    tpm = number
  }))
  default  = {}
  nullable = false

  validation {
    condition     = alltrue([for m, q in var.gemini_model_quotas : can(regex("^[a-z0-9][a-z0-9.-]{0,99}$", m)) && q.rpm >= 1 && q.tpm >= 1])
    error_message = "gemini_model_quotas: keys are model names (e.g. gemini-2.5-pro), rpm and tpm >= 1."
  }
}

variable "gemini_reserved_fraction" {
  description = "Fraction of each model's Gemini project quota kept back from the containers (other consumers of the same key, retries)."
  type        = number
  default     = 0
  nullable    = false

  validation {
    condition     = var.gemini_reserved_fraction >= 0 && var.gemini_reserved_fraction < 1
    error_message = "gemini_reserved_fraction must be in [0, 1)."
  }
}

variable "min_tpm_budget" {
  description = "Smallest GEMINI_TPM_BUDGET the containers accept (their settings reject anything lower)."
  type        = number
  default     = 1000
  nullable    = false

  validation {
    condition     = var.min_tpm_budget >= 1
    error_message = "min_tpm_budget must be >= 1."
  }
}

variable "analysis_timeout_minutes" {
  description = "ANALYSIS_TIMEOUT_MINUTES, the Airflow execution_timeout for one launch; must exceed the predicted minutes per analysis or every run times out."
  type        = number
  default     = 120
  nullable    = false

  validation {
    condition     = var.analysis_timeout_minutes >= 1
    error_message = "analysis_timeout_minutes must be >= 1."
  }
}
