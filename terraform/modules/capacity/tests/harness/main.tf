# Runs modules/capacity once per case in ../cases.json and lists every output that differs
# from the expected value (relative tolerance 1e-3). devtools/capacity.py is checked against
# the same file by tests/test_capacity.py, so the two implementations cannot drift apart.

terraform {
  required_version = ">= 1.9.0"
}

locals {
  doc   = jsondecode(file("${path.module}/../cases.json"))
  cases = { for k, c in local.doc.cases : k => merge(local.doc.baseline, c.inputs) }

  actual = { for k, c in local.cases : k => {
    required_vcpu         = module.capacity[k].required_vcpu
    quota_to_request      = module.capacity[k].quota_to_request
    quota_increase_needed = module.capacity[k].quota_increase_needed
    caps_limited_by_quota = module.capacity[k].caps_limited_by_quota
    pool_vcpu             = module.capacity[k].pool_vcpu
    workloads = { for w in keys(c.workloads) : w => {
      effective_cap     = module.capacity[k].effective_caps[w]
      rpm_budget        = module.capacity[k].gemini_rpm_budget[w]
      tpm_budget        = module.capacity[k].gemini_tpm_budget[w]
      minutes           = module.capacity[k].per_analysis[w].minutes
      requests          = module.capacity[k].per_analysis[w].requests
      tokens            = module.capacity[k].per_analysis[w].tokens
      analyses_per_hour = module.capacity[k].drain[w].analyses_per_hour
      drain_hours       = module.capacity[k].drain[w].hours
      binding           = module.capacity[k].drain[w].binding
    } }
  } }

  numbers          = ["required_vcpu", "quota_to_request", "pool_vcpu"]
  flags            = ["quota_increase_needed", "caps_limited_by_quota"]
  workload_numbers = ["effective_cap", "rpm_budget", "tpm_budget", "minutes", "requests", "tokens", "analyses_per_hour", "drain_hours"]

  mismatches = concat(
    flatten([for k, c in local.doc.cases : [for f in local.numbers :
      "${k}.${f}: terraform ${local.actual[k][f]}, expected ${c.expected[f]}"
      if abs(local.actual[k][f] - c.expected[f]) > 0.001 * max(1, abs(c.expected[f]))
    ]]),
    flatten([for k, c in local.doc.cases : [for f in local.flags :
      "${k}.${f}: terraform ${local.actual[k][f]}, expected ${c.expected[f]}"
      if local.actual[k][f] != c.expected[f]
    ]]),
    flatten([for k, c in local.doc.cases : [for w, e in c.expected.workloads : [for f in local.workload_numbers :
      "${k}.${w}.${f}: terraform ${local.actual[k].workloads[w][f]}, expected ${e[f]}"
      if abs(local.actual[k].workloads[w][f] - e[f]) > 0.001 * max(1, abs(e[f]))
    ]]]),
    flatten([for k, c in local.doc.cases : [for w, e in c.expected.workloads :
      "${k}.${w}.binding: terraform ${local.actual[k].workloads[w].binding}, expected ${e.binding}"
      if local.actual[k].workloads[w].binding != e.binding
    ]]),
  )
}

module "capacity" {
  source   = "../.."
  for_each = local.cases

  workloads                  = each.value.workloads
  fargate_vcpu_quota         = try(each.value.fargate_vcpu_quota, null)
  fargate_vcpu_quota_applied = try(each.value.fargate_vcpu_quota_applied, null)
  headroom_vcpu              = try(each.value.headroom_vcpu, 0)
  gemini_project_rpm         = each.value.gemini_project_rpm
  gemini_project_tpm         = each.value.gemini_project_tpm
  gemini_reserved_fraction   = try(each.value.gemini_reserved_fraction, 0)
  analysis_timeout_minutes   = try(each.value.analysis_timeout_minutes, 120)
}

output "case_count" {
  value = length(local.cases)
}

output "mismatches" {
  value = local.mismatches
}
