# Offline tests of the lever arithmetic (`terraform init -backend=false && terraform test`).
# Baseline: the decision record (task analyses 12 x 4 vCPU, ~35 min, proctor videos 8 x 2
# vCPU, quota 64, a 1k RPM / 1M TPM Gemini project), read from cases.json like every case.

variables {
  workloads          = jsondecode(file("tests/cases.json")).baseline.workloads
  fargate_vcpu_quota = jsondecode(file("tests/cases.json")).baseline.fargate_vcpu_quota
  gemini_project_rpm = jsondecode(file("tests/cases.json")).baseline.gemini_project_rpm
  gemini_project_tpm = jsondecode(file("tests/cases.json")).baseline.gemini_project_tpm
}

run "decision_record_drains_350_in_about_17_hours" {
  command = plan

  assert {
    condition     = output.required_vcpu == 64 && output.quota_to_request == 64
    error_message = "12 x 4 + 8 x 2 vCPU must need exactly the 64-vCPU quota, got ${output.required_vcpu}."
  }
  assert {
    condition     = abs(output.drain["task-analyzer"].hours - 350 / 12 * 35 / 60) < 0.01
    error_message = "350 / 12 x 35 min must drain in ~17.0 h, got ${output.drain["task-analyzer"].hours} h."
  }
  assert {
    condition     = output.drain["task-analyzer"].binding == "Fargate vCPU"
    error_message = "At cap 12 the record's binding constraint is Fargate vCPU, got ${output.drain["task-analyzer"].binding}."
  }
  assert {
    condition     = output.gemini_rpm_budget["task-analyzer"] == 50 && output.gemini_tpm_budget["task-analyzer"] == 50000
    error_message = "1k RPM / 1M TPM over 20 running containers must give 50 RPM / 50k TPM each."
  }
  assert {
    condition     = output.effective_caps["task-analyzer"] == 12 && !output.caps_limited_by_quota
    error_message = "With no applied quota known the caps are written as asked."
  }
}

run "quota_only_goes_up" {
  command = plan
  variables {
    fargate_vcpu_quota_applied = 200
  }
  assert {
    condition     = output.quota_to_request == 200 && !output.quota_increase_needed
    error_message = "An applied quota above the plan must be kept (the provider refuses a lower value)."
  }
}

run "caps_held_to_the_granted_quota_while_a_request_is_pending" {
  command = plan
  variables {
    workloads = {
      "task-analyzer" = { max_concurrent = 24, vcpu = 4, memory_mib = 8192, minutes_per_analysis = 35 }
      "proctor-video" = { max_concurrent = 16, vcpu = 2, memory_mib = 4096 }
    }
    fargate_vcpu_quota         = 128
    fargate_vcpu_quota_applied = 64
    gemini_project_tpm         = 2000000
  }
  assert {
    condition     = output.quota_to_request == 128 && output.quota_increase_needed
    error_message = "The request must be for the planned 128 vCPU."
  }
  assert {
    condition     = output.caps_limited_by_quota && output.effective_caps["task-analyzer"] == 12 && output.effective_caps["proctor-video"] == 8
    error_message = "Until 128 is granted the caps must fit the applied 64 vCPU, got ${jsonencode(output.effective_caps)}."
  }
  assert {
    condition     = output.pool_vcpu <= 64
    error_message = "The Airflow pool must not exceed the granted quota, got ${output.pool_vcpu}."
  }
}

run "shared_cases_match_the_planner" {
  command = plan
  module {
    source = "./tests/harness"
  }
  assert {
    condition     = output.case_count >= 5
    error_message = "cases.json should hold the shared cases."
  }
  assert {
    condition     = length(output.mismatches) == 0
    error_message = "Terraform disagrees with cases.json (and so with devtools/capacity.py): ${join("; ", output.mismatches)}"
  }
}

# --- combinations that must fail `plan` (names and inputs also in cases.json "rejections") ---

run "caps_exceed_quota" {
  command = plan
  variables {
    workloads = jsondecode(file("tests/cases.json")).rejections.caps_exceed_quota.inputs.workloads
  }
  expect_failures = [output.required_vcpu]
}

run "rpm_budget_rounds_to_zero" {
  command = plan
  variables {
    gemini_project_rpm = jsondecode(file("tests/cases.json")).rejections.rpm_budget_rounds_to_zero.inputs.gemini_project_rpm
  }
  expect_failures = [output.gemini_rpm_budget]
}

run "tpm_budget_below_minimum" {
  command = plan
  variables {
    gemini_project_tpm = jsondecode(file("tests/cases.json")).rejections.tpm_budget_below_minimum.inputs.gemini_project_tpm
  }
  expect_failures = [output.gemini_tpm_budget]
}

run "segment_exceeds_tpm_budget" {
  command = plan
  variables {
    gemini_project_tpm = jsondecode(file("tests/cases.json")).rejections.segment_exceeds_tpm_budget.inputs.gemini_project_tpm
  }
  expect_failures = [output.gemini_tpm_budget]
}

run "timeout_shorter_than_analysis" {
  command = plan
  variables {
    analysis_timeout_minutes = jsondecode(file("tests/cases.json")).rejections.timeout_shorter_than_analysis.inputs.analysis_timeout_minutes
  }
  expect_failures = [output.per_analysis]
}

run "vcpu_not_a_fargate_size" {
  command = plan
  variables {
    workloads = jsondecode(file("tests/cases.json")).rejections.vcpu_not_a_fargate_size.inputs.workloads
  }
  expect_failures = [var.workloads]
}

run "memory_not_valid_for_vcpu" {
  command = plan
  variables {
    workloads = jsondecode(file("tests/cases.json")).rejections.memory_not_valid_for_vcpu.inputs.workloads
  }
  expect_failures = [var.workloads]
}

run "cap_of_zero" {
  command = plan
  variables {
    workloads = jsondecode(file("tests/cases.json")).rejections.cap_of_zero.inputs.workloads
  }
  expect_failures = [var.workloads]
}

run "unknown_media_resolution" {
  command = plan
  variables {
    workloads = jsondecode(file("tests/cases.json")).rejections.unknown_media_resolution.inputs.workloads
  }
  expect_failures = [var.workloads]
}

run "whole_gemini_quota_reserved" {
  command = plan
  variables {
    gemini_reserved_fraction = jsondecode(file("tests/cases.json")).rejections.whole_gemini_quota_reserved.inputs.gemini_reserved_fraction
  }
  expect_failures = [var.gemini_reserved_fraction]
}

run "applied_quota_cannot_hold_one_task_of_each" {
  command = plan
  variables {
    workloads = {
      "task-analyzer" = { max_concurrent = 12, vcpu = 4, memory_mib = 8192, minutes_per_analysis = 35 }
      "proctor-video" = { max_concurrent = 8, vcpu = 2, memory_mib = 4096 }
    }
    fargate_vcpu_quota         = 80
    fargate_vcpu_quota_applied = 6
    headroom_vcpu              = 2
  }
  expect_failures = [output.pool_vcpu]
}
