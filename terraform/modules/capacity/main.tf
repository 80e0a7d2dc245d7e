# The lever arithmetic, in one place: the root module applies it and devtools/capacity.py
# (`make capacity`) evaluates this same module, so planning and applying cannot disagree.

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

  # --- Fargate vCPU --------------------------------------------------------------------------

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

  # The caps the DAGs read must fit what AWS applies NOW; offline (applied unknown) the
  # planned quota stands in for it.
  quota_now      = coalesce(var.fargate_vcpu_quota_applied, var.fargate_vcpu_quota, local.quota_to_request)
  available_vcpu = max(0, local.quota_now - var.headroom_vcpu)
  cap_ratio      = local.caps_vcpu <= local.available_vcpu ? 1 : local.available_vcpu / local.caps_vcpu
  # Never below 1: a cap of 0 would look like "unset" to the DAG side. When even one task of
  # each does not fit, the plan still goes on (so the increase is requested) and warns.
  effective_caps = { for k, w in var.workloads :
    k => local.cap_ratio >= 1 ? w.max_concurrent : max(1, floor(w.max_concurrent * local.cap_ratio))
  }
  caps_limited_by_quota = anytrue([for k, w in var.workloads : local.effective_caps[k] < w.max_concurrent])
  pool_vcpu             = sum([for k, w in var.workloads : local.effective_caps[k] * w.vcpu])
  quota_warning = local.pool_vcpu <= local.available_vcpu ? null : format(
    "The applied Fargate vCPU quota (%s, less headroom %s) cannot run even one task of every workload (%s vCPU): the caps are written as 1 each and the increase to %s is requested; RunTask refusals queue runs until AWS grants it.",
    local.quota_now, var.headroom_vcpu, local.pool_vcpu, local.quota_to_request,
  )
  # Tasks of each workload the quota could run with the others at their written caps.
  quota_tasks = { for k, w in var.workloads :
    k => local.caps_limited_by_quota ? local.effective_caps[k] : max(0, floor((local.available_vcpu - (local.pool_vcpu - local.effective_caps[k] * w.vcpu)) / w.vcpu))
  }

  # --- Gemini: fleet-wide budgets, per model -------------------------------------------------

  # Every container shares one budget store, so a model's budget is the whole project's
  # quota for that model (less the reserve), not a per-container share.
  keep   = 1 - var.gemini_reserved_fraction
  models = sort(distinct(flatten([for w in values(var.workloads) : [w.gemini_map_model, w.gemini_reduce_model]])))
  model_budgets = { for m in local.models : m => {
    rpm = floor(lookup(var.gemini_model_quotas, m, { rpm = var.gemini_project_rpm, tpm = var.gemini_project_tpm }).rpm * local.keep)
    tpm = floor(lookup(var.gemini_model_quotas, m, { rpm = var.gemini_project_rpm, tpm = var.gemini_project_tpm }).tpm * local.keep)
  } }
  rpm_budget = floor(var.gemini_project_rpm * local.keep)
  tpm_budget = floor(var.gemini_project_tpm * local.keep)
  # GEMINI_MODEL_BUDGETS is only needed when models differ from the plain defaults.
  model_budgets_json = length(local.models) > 1 || length(var.gemini_model_quotas) > 0 ? jsonencode(local.model_budgets) : null

  # lookup(): an unknown resolution is rejected by validation; don't fail here as well.
  tokens_per_second = { for k, w in var.workloads :
    k => w.tokens_per_second != null ? w.tokens_per_second : lookup(local.published_tokens_per_second, w.media_resolution, 300)
  }

  # --- one analysis ----------------------------------------------------------------------

  demand = { for k, w in var.workloads : k => {
    analysed_seconds = w.avg_recording_minutes * 60 * (1 - w.idle_fraction)
    segments         = max(1, ceil(w.avg_recording_minutes * 60 * (1 - w.idle_fraction) / w.segment_seconds))
    tokens_per_call  = w.segment_seconds * local.tokens_per_second[k] + w.tokens_per_call_overhead
  } }
  # MAP calls (one per segment) go to the MAP model, the one REDUCE call to the REDUCE model.
  usage = { for k, w in var.workloads : k => { for m in local.models : m => {
    requests = (w.gemini_map_model == m ? local.demand[k].segments : 0) + (w.gemini_reduce_model == m ? 1 : 0)
    tokens = ((w.gemini_map_model == m ? local.demand[k].analysed_seconds * local.tokens_per_second[k] + local.demand[k].segments * w.tokens_per_call_overhead : 0)
    + (w.gemini_reduce_model == m ? w.tokens_per_call_overhead : 0))
  } } }
  modelled_minutes = { for k, w in var.workloads :
    k => w.overhead_minutes + (ceil(local.demand[k].segments / w.map_concurrency) + 1) * w.seconds_per_call / 60
  }
  per_analysis = { for k, w in var.workloads : k => {
    requests         = local.demand[k].segments + 1
    tokens           = local.demand[k].analysed_seconds * local.tokens_per_second[k] + (local.demand[k].segments + 1) * w.tokens_per_call_overhead
    segments         = local.demand[k].segments
    tokens_per_call  = local.demand[k].tokens_per_call
    modelled_minutes = local.modelled_minutes[k]
    minutes          = w.minutes_per_analysis != null ? w.minutes_per_analysis : local.modelled_minutes[k]
    by_model         = { for m, u in local.usage[k] : m => u if u.requests > 0 }
  } }

  # --- the drain: steady state, every workload running at the caps written ---------------

  concurrency_rate = { for k, w in var.workloads : k => local.effective_caps[k] * 60 / local.per_analysis[k].minutes }
  # What the fleet asks of each model per minute at those rates.
  fleet_tpm = { for m in local.models : m => sum([for k in keys(var.workloads) : local.concurrency_rate[k] / 60 * local.usage[k][m].tokens]) }
  fleet_rpm = { for m in local.models : m => sum([for k in keys(var.workloads) : local.concurrency_rate[k] / 60 * local.usage[k][m].requests]) }
  # A model over budget is shared as the budget's line shares it: by gemini_weight, each
  # workload getting what it asks up to its weighted share, and what one leaves the others
  # (weighted max-min fairness: the budget's start-time fair queueing in steady state).
  # The level is the lambda with sum(min(demand_k, weight_k x lambda)) = budget, found among
  # the thresholds t in {0, demand_k / weight_k}: lambda = max g(t) over those with g(t) > t,
  # g(t) = (budget - demand of workloads with ratio <= t) / weight of the others.
  # A workload may then go at its rate x weight x lambda / its demand (below 1: Gemini
  # binds it). A model within budget leaves every workload budget / fleet demand of room.
  tpm_demand = { for m in local.models : m => { for k in keys(var.workloads) : k => local.concurrency_rate[k] / 60 * local.usage[k][m].tokens } }
  rpm_demand = { for m in local.models : m => { for k in keys(var.workloads) : k => local.concurrency_rate[k] / 60 * local.usage[k][m].requests } }
  tpm_ratio  = { for m in local.models : m => { for k, w in var.workloads : k => local.tpm_demand[m][k] / w.gemini_weight } }
  rpm_ratio  = { for m in local.models : m => { for k, w in var.workloads : k => local.rpm_demand[m][k] / w.gemini_weight } }
  tpm_level = { for m in local.models : m => max(concat([0], [
    for t in concat([0], values(local.tpm_ratio[m])) :
    (local.model_budgets[m].tpm - sum([for k in keys(var.workloads) : local.tpm_ratio[m][k] <= t ? local.tpm_demand[m][k] : 0]))
    / sum([for k, w in var.workloads : local.tpm_ratio[m][k] > t ? w.gemini_weight : 0])
    if sum([for k, w in var.workloads : local.tpm_ratio[m][k] > t ? w.gemini_weight : 0]) > 0
    && (local.model_budgets[m].tpm - sum([for k in keys(var.workloads) : local.tpm_ratio[m][k] <= t ? local.tpm_demand[m][k] : 0]))
    > t * sum([for k, w in var.workloads : local.tpm_ratio[m][k] > t ? w.gemini_weight : 0])
  ])...) }
  rpm_level = { for m in local.models : m => max(concat([0], [
    for t in concat([0], values(local.rpm_ratio[m])) :
    (local.model_budgets[m].rpm - sum([for k in keys(var.workloads) : local.rpm_ratio[m][k] <= t ? local.rpm_demand[m][k] : 0]))
    / sum([for k, w in var.workloads : local.rpm_ratio[m][k] > t ? w.gemini_weight : 0])
    if sum([for k, w in var.workloads : local.rpm_ratio[m][k] > t ? w.gemini_weight : 0]) > 0
    && (local.model_budgets[m].rpm - sum([for k in keys(var.workloads) : local.rpm_ratio[m][k] <= t ? local.rpm_demand[m][k] : 0]))
    > t * sum([for k, w in var.workloads : local.rpm_ratio[m][k] > t ? w.gemini_weight : 0])
  ])...) }
  # Per workload and model: the fraction of its demand the budget admits (>= 1: room).
  tpm_share = { for k, w in var.workloads : k => { for m in local.models : m => (
    local.fleet_tpm[m] <= local.model_budgets[m].tpm ? local.model_budgets[m].tpm / local.fleet_tpm[m] : w.gemini_weight * local.tpm_level[m] / local.tpm_demand[m][k]
  ) if local.usage[k][m].tokens > 0 } }
  rpm_share = { for k, w in var.workloads : k => { for m in local.models : m => (
    local.fleet_rpm[m] <= local.model_budgets[m].rpm ? local.model_budgets[m].rpm / local.fleet_rpm[m] : w.gemini_weight * local.rpm_level[m] / local.rpm_demand[m][k]
  ) if local.usage[k][m].requests > 0 } }
  gemini_tpm_per_hour = { for k in keys(var.workloads) : k => local.concurrency_rate[k] * min(values(local.tpm_share[k])...) }
  gemini_rpm_per_hour = { for k in keys(var.workloads) : k => local.concurrency_rate[k] * min(values(local.rpm_share[k])...) }

  # The four constraints, in the order ties are named: a cap that exactly fills the quota
  # is held by the quota (raising the cap alone would not plan).
  constraint_names = ["Fargate vCPU", "DAG cap", "Gemini TPM", "Gemini RPM"]
  throughput = { for k, w in var.workloads : k => [
    local.quota_tasks[k] * 60 / local.per_analysis[k].minutes,
    w.max_concurrent * 60 / local.per_analysis[k].minutes,
    local.gemini_tpm_per_hour[k],
    local.gemini_rpm_per_hour[k],
  ] }
  drain = { for k, w in var.workloads : k => {
    concurrency       = local.effective_caps[k]
    analyses_per_hour = min(local.throughput[k]...)
    binding           = local.constraint_names[index(local.throughput[k], min(local.throughput[k]...))]
    hours             = w.batch_size / min(local.throughput[k]...)
    fargate_per_hour  = local.throughput[k][0]
    cap_per_hour      = local.throughput[k][1]
    tpm_per_hour      = local.throughput[k][2]
    rpm_per_hour      = local.throughput[k][3]
  } }

  # --- the next lever, in closed form ------------------------------------------------------

  # Raising one workload's cap (others fixed): the largest cap before a Gemini model binds,
  # i.e. its rate r with r x use(m) + others(m) = budget(m) for its tightest model.
  gemini_cap_limit = { for k, w in var.workloads : k => {
    tpm = floor(min([for m, u in local.usage[k] :
      max(0, local.model_budgets[m].tpm - (local.fleet_tpm[m] - local.concurrency_rate[k] / 60 * u.tokens)) / u.tokens
    if u.tokens > 0]...) * local.per_analysis[k].minutes)
    rpm = floor(min([for m, u in local.usage[k] :
      max(0, local.model_budgets[m].rpm - (local.fleet_rpm[m] - local.concurrency_rate[k] / 60 * u.requests)) / u.requests
    if u.requests > 0]...) * local.per_analysis[k].minutes)
  } }
  next_cap = { for k, w in var.workloads : k => {
    cap               = min(local.gemini_cap_limit[k].tpm, local.gemini_cap_limit[k].rpm)
    stops_at          = local.gemini_cap_limit[k].tpm <= local.gemini_cap_limit[k].rpm ? "Gemini TPM" : "Gemini RPM"
    analyses_per_hour = min(local.gemini_cap_limit[k].tpm, local.gemini_cap_limit[k].rpm) * 60 / local.per_analysis[k].minutes
    vcpu_quota        = ceil(local.required_vcpu + (min(local.gemini_cap_limit[k].tpm, local.gemini_cap_limit[k].rpm) - w.max_concurrent) * w.vcpu)
  } }
  # The project quota per model at which no workload waits on Gemini at the caps written.
  gemini_quota_needed = { for m in local.models : m => {
    rpm = ceil(local.fleet_rpm[m] / local.keep)
    tpm = ceil(local.fleet_tpm[m] / local.keep)
  } }
}
