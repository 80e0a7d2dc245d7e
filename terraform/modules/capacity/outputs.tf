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
      "The DAG caps need %s vCPU (%s + headroom %s) but fargate_vcpu_quota is %s: raise fargate_vcpu_quota or lower the caps (the three levers move together).",
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
  description = "The caps written for the DAGs: max_concurrent, scaled down to what the applied (granted) quota holds until an increase is approved."
  value       = local.effective_caps
}

output "caps_limited_by_quota" {
  description = "True while the applied quota is below what the caps need (a request pending or denied): the DAGs run at effective_caps."
  value       = local.caps_limited_by_quota
}

output "pool_vcpu" {
  description = "Size of the Airflow pool in vCPUs: sum of effective cap x vcpu (never more than the applied quota allows)."
  value       = local.pool_vcpu

  precondition {
    # Caps never drop below 1, so a tiny applied quota could still be oversubscribed.
    condition     = local.pool_vcpu <= local.available_vcpu
    error_message = "The applied Fargate vCPU quota (less headroom_vcpu) cannot run even one task of every workload: ${local.pool_vcpu} vCPU needed, ${local.available_vcpu} available. Wait for the quota increase or lower headroom_vcpu."
  }
}

output "gemini_rpm_budget" {
  description = "GEMINI_RPM_BUDGET per running container of each workload."
  value       = local.rpm_budget

  precondition {
    condition = alltrue([for v in values(local.rpm_budget) : v >= 1])
    error_message = format(
      "A Gemini RPM budget rounds to zero (%s): %s usable RPM cannot be split across %s weighted container slots. Raise gemini_project_rpm or lower the caps.",
      jsonencode(local.rpm_budget), local.usable_rpm, local.weight_slots,
    )
  }
}

output "gemini_tpm_budget" {
  description = "GEMINI_TPM_BUDGET per running container of each workload."
  value       = local.tpm_budget

  precondition {
    condition = alltrue([for v in values(local.tpm_budget) : v >= var.min_tpm_budget])
    error_message = format(
      "A Gemini TPM budget rounds below the containers' minimum of %s (%s): raise gemini_project_tpm or lower the caps.",
      var.min_tpm_budget, jsonencode(local.tpm_budget),
    )
  }
  precondition {
    condition = alltrue([for k, v in local.tpm_budget : v >= local.demand[k].tokens_per_call])
    error_message = format(
      "One MAP call needs more tokens than a container may spend in a minute (needs %s, budgets %s): the budget would never admit it. Shorten segment_seconds, use media_resolution = \"low\", raise gemini_project_tpm or lower the caps.",
      jsonencode({ for k, d in local.demand : k => d.tokens_per_call }), jsonencode(local.tpm_budget),
    )
  }
}

output "per_analysis" {
  description = "Per workload: Gemini requests and tokens one analysis spends, and its duration in minutes (measured when given, else modelled)."
  value       = local.per_analysis

  precondition {
    condition = alltrue([for p in values(local.per_analysis) : p.minutes < var.analysis_timeout_minutes])
    error_message = format(
      "analysis_timeout_minutes (%s) is shorter than a predicted analysis (%s): every launch would time out.",
      var.analysis_timeout_minutes, jsonencode({ for k, p in local.per_analysis : k => p.minutes }),
    )
  }
}

output "drain" {
  description = "Per workload: analyses per hour allowed by each constraint, the binding one, and hours to drain batch_size."
  value       = local.drain
}
