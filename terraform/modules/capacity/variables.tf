variable "workloads" {
  description = <<-EOT
    One entry per container image, keyed by its ECS container name. Per workload:
    max_concurrent (the DAG cap), vcpu and memory_mib (Fargate task size; vcpu is whole
    vCPUs because the Airflow pool counts whole slots), gemini_weight (relative share of the
    Gemini project quota per running container), the recording profile used to predict
    Gemini demand (avg_recording_minutes, idle_fraction, segment_seconds, media_resolution,
    tokens_per_second which overrides the resolution's published figure when set),
    the pacing model (map_concurrency, seconds_per_call, overhead_minutes,
    tokens_per_call_overhead), minutes_per_analysis (a measured duration, which overrides the
    model when set) and batch_size (submissions to drain for the prediction).
  EOT
  type = map(object({
    max_concurrent           = number
    vcpu                     = number
    memory_mib               = number
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
    condition = alltrue([for w in values(var.workloads) :
      w.gemini_weight > 0 && w.avg_recording_minutes > 0 &&
      w.idle_fraction >= 0 && w.idle_fraction < 1 &&
      w.segment_seconds >= 10 && w.segment_seconds <= 3600 &&
      w.map_concurrency >= 1 && w.map_concurrency <= 64 && floor(w.map_concurrency) == w.map_concurrency &&
      w.seconds_per_call > 0 && w.overhead_minutes >= 0 && w.tokens_per_call_overhead >= 0 &&
      w.batch_size >= 0 && (w.minutes_per_analysis == null ? true : w.minutes_per_analysis > 0) &&
      (w.tokens_per_second == null ? true : w.tokens_per_second > 0)
    ])
    error_message = "Workload profile out of range: gemini_weight > 0, avg_recording_minutes > 0, 0 <= idle_fraction < 1, 10 <= segment_seconds <= 3600, map_concurrency a whole number 1-64 (the container's limits), seconds_per_call > 0, overhead_minutes >= 0, batch_size >= 0, minutes_per_analysis and tokens_per_second > 0 when set."
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
  description = "The quota value AWS applies now (the data source's value, i.e. what has been granted). null when unknown (offline planning). Used so the request never goes down and the DAG caps never exceed what is granted."
  type        = number
  default     = null
}

variable "headroom_vcpu" {
  description = "vCPUs of the quota kept free for anything else running Fargate in this account and Region (and for tasks still stopping)."
  type        = number
  default     = 0

  validation {
    condition     = var.headroom_vcpu >= 0
    error_message = "headroom_vcpu must be >= 0."
  }
}

variable "gemini_project_rpm" {
  description = "Gemini requests per minute for the whole project (the model's quota tier)."
  type        = number

  validation {
    condition     = var.gemini_project_rpm >= 1
    error_message = "gemini_project_rpm must be >= 1."
  }
}

variable "gemini_project_tpm" {
  description = "Gemini input tokens per minute for the whole project."
  type        = number

  validation {
    condition     = var.gemini_project_tpm >= 1
    error_message = "gemini_project_tpm must be >= 1."
  }
}

variable "gemini_reserved_fraction" {
  description = "Fraction of the Gemini project quota kept back from the containers (other consumers, retries)."
  type        = number
  default     = 0

  validation {
    condition     = var.gemini_reserved_fraction >= 0 && var.gemini_reserved_fraction < 1
    error_message = "gemini_reserved_fraction must be in [0, 1)."
  }
}

variable "min_tpm_budget" {
  description = "Smallest GEMINI_TPM_BUDGET the containers accept (their settings reject anything lower)."
  type        = number
  default     = 1000
}

variable "analysis_timeout_minutes" {
  description = "ANALYSIS_TIMEOUT_MINUTES, the Airflow execution_timeout for one launch; must exceed the predicted minutes per analysis or every run times out."
  type        = number
  default     = 120

  validation {
    condition     = var.analysis_timeout_minutes >= 1
    error_message = "analysis_timeout_minutes must be >= 1."
  }
}
