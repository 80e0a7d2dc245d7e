output "workloads" {
  description = "The workloads with every optional field filled in (the root module builds the task definitions from this)."
  value       = var.workloads
}

output "vcpu_by_workload" {
  description = "max_concurrent x vcpu for each workload."
  value       = local.vcpu_by_workload
}

output "required_vcpu" {
  description = "vCPUs the caps need at once: sum of max_concurrent x vcpu, plus headroom."
  value       = local.required_vcpu

  precondition {
    condition = local.quota_fits
    error_message = format(
      "The DAG caps need %s vCPU (%s + headroom %s) but fargate_vcpu_quota is %s: raise fargate_vcpu_quota or lower the caps (the levers move together).",
      local.required_vcpu,
      join(" + ", [for k, w in var.workloads : "${k} ${w.max_concurrent}x${w.vcpu}"]),
      var.headroom_vcpu,
      var.fargate_vcpu_quota == null ? "unset" : var.fargate_vcpu_quota,
    )
  }
}

output "quota_to_request" {
  description = "The value for aws_servicequotas_service_quota: max(required, planned quota, applied quota), so the request never goes down."
  value       = local.quota_to_request
}

output "quota_increase_needed" {
  description = "True when quota_to_request exceeds the applied value (an increase request will be filed)."
  value       = var.fargate_vcpu_quota_applied == null ? true : local.quota_to_request > var.fargate_vcpu_quota_applied
}

output "effective_caps" {
  description = "The caps written for the DAGs: max_concurrent, scaled down to what the applied (granted) quota holds until an increase is approved, never below 1."
  value       = local.effective_caps
}

output "caps_limited_by_quota" {
  description = "True while the applied quota is below what the caps need (a request pending or denied): the DAGs run at effective_caps."
  value       = local.caps_limited_by_quota
}

output "pool_vcpu" {
  description = "Size of the Airflow pool in vCPUs: sum of effective cap x vcpu."
  value       = local.pool_vcpu
}

output "quota_warning" {
  description = "null, or why the applied quota cannot run even one task of each workload (the plan goes on so the increase is requested; the root module reports it as a check warning)."
  value       = local.quota_warning
}

output "gemini_rpm_budget" {
  description = "GEMINI_RPM_BUDGET: requests per minute for the whole fleet, per model (every model without its own entry in gemini_model_budgets)."
  value       = local.rpm_budget
}

output "gemini_tpm_budget" {
  description = "GEMINI_TPM_BUDGET: input tokens per minute for the whole fleet, per model."
  value       = local.tpm_budget
}

output "gemini_model_budgets" {
  description = "Fleet-wide budget of every model the workloads call: model => { rpm, tpm }."
  value       = local.model_budgets

  precondition {
    condition = alltrue([for b in values(local.model_budgets) : b.rpm >= 1])
    error_message = format(
      "A Gemini RPM budget rounds to zero (%s): raise the model's quota or lower gemini_reserved_fraction.",
      jsonencode(local.model_budgets),
    )
  }
  precondition {
    condition = alltrue([for b in values(local.model_budgets) : b.tpm >= var.min_tpm_budget])
    error_message = format(
      "A Gemini TPM budget is below the containers' minimum of %s (%s): raise the model's quota or lower gemini_reserved_fraction.",
      var.min_tpm_budget, jsonencode(local.model_budgets),
    )
  }
  precondition {
    condition = alltrue([for k, w in var.workloads : local.demand[k].tokens_per_call <= local.model_budgets[w.gemini_map_model].tpm])
    error_message = format(
      "One MAP call needs more tokens than the fleet may spend on its model in a minute (needs %s, budgets %s): the budget would never admit it. Shorten segment_seconds, use media_resolution = \"low\" or raise the model's TPM quota.",
      jsonencode({ for k, d in local.demand : k => d.tokens_per_call }), jsonencode(local.model_budgets),
    )
  }
}

output "gemini_model_budgets_json" {
  description = "GEMINI_MODEL_BUDGETS for the containers when the workloads call more than one model or a model has its own quota; null otherwise (GEMINI_RPM_BUDGET/GEMINI_TPM_BUDGET suffice)."
  value       = local.model_budgets_json
}

output "per_analysis" {
  description = "Per workload: Gemini requests and tokens one analysis spends (total and by model), segments, tokens of one MAP call, and its duration in minutes (measured when given, else modelled)."
  value       = local.per_analysis

  precondition {
    condition = alltrue([for p in values(local.per_analysis) : p.minutes < var.analysis_timeout_minutes])
    error_message = format(
      "analysis_timeout_minutes (%s) is shorter than a predicted analysis (%s): every launch would time out.",
      var.analysis_timeout_minutes, jsonencode({ for k, p in local.per_analysis : k => p.minutes }),
    )
  }
}

output "analysis_timeout_minutes" {
  description = "ANALYSIS_TIMEOUT_MINUTES (after defaults)."
  value       = var.analysis_timeout_minutes
}

output "drain" {
  description = "Per workload, every workload running at its written cap: analyses per hour allowed by each constraint (Fargate vCPU quota, DAG cap, Gemini TPM, Gemini RPM), the binding one, and hours to drain batch_size."
  value       = local.drain
}

output "next_cap" {
  description = "Per workload, the others fixed: the largest cap before a Gemini quota binds, the constraint that stops it there, its rate, and the Fargate vCPU quota that cap needs."
  value       = local.next_cap
}

output "gemini_quota_needed" {
  description = "Per model: the project RPM/TPM at which no workload waits on Gemini at the caps written."
  value       = local.gemini_quota_needed
}

output "gemini_shares" {
  description = "Per model, while the fleet asks more than the budget: each workload's tokens per minute as the budget's line shares them by gemini_weight (its demand when that is less than its share); null for a model within budget."
  value = { for m in local.models : m => local.fleet_tpm[m] <= local.model_budgets[m].tpm ? null : {
    for k, w in var.workloads : k => min(local.tpm_demand[m][k], w.gemini_weight * local.tpm_level[m]) if local.usage[k][m].tokens > 0
  } }
}

output "gemini_fleet_demand" {
  description = "Per model: requests and tokens per minute the fleet asks for at the caps written."
  value       = { for m in local.models : m => { rpm = local.fleet_rpm[m], tpm = local.fleet_tpm[m] } }
}
