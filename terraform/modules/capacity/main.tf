# The lever arithmetic, in one place. devtools/capacity.py implements the same formulas;
# tests/cases.json holds the expected values both are checked against.

locals {
  # Valid Fargate memory (MiB) per whole-vCPU size.
  fargate_memory = {
    "1"  = { min = 2048, max = 8192, step = 1024 }
    "2"  = { min = 4096, max = 16384, step = 1024 }
    "4"  = { min = 8192, max = 30720, step = 1024 }
    "8"  = { min = 16384, max = 61440, step = 4096 }
    "16" = { min = 32768, max = 122880, step = 8192 }
  }
  # Published Gemini video cost: ~300 input tokens per second at default media
  # resolution, ~100 at low.
  published_tokens_per_second = { default = 300, low = 100 }

  vcpu_by_workload = { for k, w in var.workloads : k => w.max_concurrent * w.vcpu }
  caps_vcpu        = sum(values(local.vcpu_by_workload))
  required_vcpu    = local.caps_vcpu + var.headroom_vcpu

  # The quota only goes up: never ask for less than what is applied already (the provider
  # errors on a lower value, and AWS would not lower it anyway).
  quota_to_request = max(
    ceil(local.required_vcpu),
    var.fargate_vcpu_quota == null ? 0 : var.fargate_vcpu_quota,
    var.fargate_vcpu_quota_applied == null ? 0 : var.fargate_vcpu_quota_applied,
  )
  quota_fits = var.fargate_vcpu_quota == null ? true : local.required_vcpu <= var.fargate_vcpu_quota

  # Until an increase is granted, the caps the DAGs read are scaled down to what the applied
  # quota holds (never below 1: a cap of 0 would look like "unset" to the DAG side).
  available_vcpu = var.fargate_vcpu_quota_applied == null ? local.caps_vcpu : max(0, var.fargate_vcpu_quota_applied - var.headroom_vcpu)
  cap_ratio      = local.caps_vcpu <= local.available_vcpu ? 1 : local.available_vcpu / local.caps_vcpu
  effective_caps = { for k, w in var.workloads :
    k => local.cap_ratio >= 1 ? w.max_concurrent : max(1, floor(w.max_concurrent * local.cap_ratio))
  }
  caps_limited_by_quota = anytrue([for k, w in var.workloads : local.effective_caps[k] < w.max_concurrent])
  pool_vcpu             = sum([for k, w in var.workloads : local.effective_caps[k] * w.vcpu])

  # Gemini: split the usable project quota per running container, weighted.
  usable_rpm   = floor(var.gemini_project_rpm * (1 - var.gemini_reserved_fraction))
  usable_tpm   = floor(var.gemini_project_tpm * (1 - var.gemini_reserved_fraction))
  weight_slots = sum([for w in values(var.workloads) : w.max_concurrent * w.gemini_weight])
  rpm_budget   = { for k, w in var.workloads : k => floor(local.usable_rpm * w.gemini_weight / local.weight_slots) }
  tpm_budget   = { for k, w in var.workloads : k => floor(local.usable_tpm * w.gemini_weight / local.weight_slots) }

  # lookup(): an unknown resolution is rejected by validation; don't fail here as well.
  tokens_per_second = { for k, w in var.workloads :
    k => w.tokens_per_second != null ? w.tokens_per_second : lookup(local.published_tokens_per_second, w.media_resolution, 300)
  }

  # Demand of one analysis and its duration.
  demand = { for k, w in var.workloads : k => {
    analysed_seconds = w.avg_recording_minutes * 60 * (1 - w.idle_fraction)
    segments         = max(1, ceil(w.avg_recording_minutes * 60 * (1 - w.idle_fraction) / w.segment_seconds))
    tokens_per_call  = w.segment_seconds * local.tokens_per_second[k] + w.tokens_per_call_overhead
  } }
  per_analysis = { for k, w in var.workloads : k => {
    requests = local.demand[k].segments + 1 # MAP per segment + one REDUCE
    tokens = (local.demand[k].analysed_seconds * local.tokens_per_second[k]
    + (local.demand[k].segments + 1) * w.tokens_per_call_overhead)
    modelled_minutes = w.overhead_minutes + (ceil(local.demand[k].segments / w.map_concurrency) + 1) * w.seconds_per_call / 60
    minutes = (w.minutes_per_analysis != null ? w.minutes_per_analysis
    : w.overhead_minutes + (ceil(local.demand[k].segments / w.map_concurrency) + 1) * w.seconds_per_call / 60)
  } }

  # Analyses per hour each constraint allows; the smallest binds.
  # hours is null when a zero budget means the batch never drains (the budget outputs fail).
  constraint_names = ["Fargate vCPU", "Gemini RPM", "Gemini TPM"]
  throughput = { for k, w in var.workloads : k => [
    w.max_concurrent * 60 / local.per_analysis[k].minutes,
    local.rpm_budget[k] * w.max_concurrent * 60 / local.per_analysis[k].requests,
    local.tpm_budget[k] * w.max_concurrent * 60 / local.per_analysis[k].tokens,
  ] }
  drain = { for k, w in var.workloads : k => {
    analyses_per_hour = min(local.throughput[k]...)
    binding           = local.constraint_names[index(local.throughput[k], min(local.throughput[k]...))]
    hours             = min(local.throughput[k]...) > 0 ? w.batch_size / min(local.throughput[k]...) : null
    fargate_per_hour  = local.throughput[k][0]
    rpm_per_hour      = local.throughput[k][1]
    tpm_per_hour      = local.throughput[k][2]
  } }
}
