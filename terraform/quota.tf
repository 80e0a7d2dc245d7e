# The Fargate On-Demand vCPU quota (lever 2).

locals {
  fargate_quota = { service_code = "fargate", quota_code = "L-3032A538" }
  # What AWS applies now. A pending request does not change it (the resource's `value`
  # reports the requested figure instead; both are outputs).
  quota_granted = data.aws_servicequotas_service_quota.fargate_vcpu.value
}

data "aws_servicequotas_service_quota" "fargate_vcpu" {
  service_code = local.fargate_quota.service_code
  quota_code   = local.fargate_quota.quota_code
}

# Traps handled: (1) the quota only goes up and the provider refuses a value below the
# applied one, so the value is max(applied, needed) via the module; (2) while a request is
# PENDING/CASE_OPENED this resource's `value` is the requested figure, not the granted one,
# so the caps are sized from the data source (granted) and both are outputs; (3) a
# non-adjustable quota fails the plan below instead of failing at apply; (4) an applied
# quota too small for even one task of each workload does NOT fail the plan (that would
# block the very request that fixes it): caps are written as 1 and a check warns.
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

check "fargate_quota_holds_one_task_of_each" {
  assert {
    condition     = module.capacity.quota_warning == null
    error_message = coalesce(module.capacity.quota_warning, "ok")
  }
}
