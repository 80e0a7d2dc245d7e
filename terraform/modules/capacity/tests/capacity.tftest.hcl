# Offline tests of the lever arithmetic (`terraform init -backend=false && terraform test`).
# Baseline: the decision record (task analyses 12 x 4 vCPU, ~35 min one segment after
# another, proctor videos 8 x 2 vCPU, quota 64, a 1k RPM / 1M TPM Gemini project).

variables {
  workloads = {
    "task-analyzer" = { max_concurrent = 12, vcpu = 4, memory_mib = 8192, map_concurrency = 1, minutes_per_analysis = 35, batch_size = 350 }
    "proctor-video" = { max_concurrent = 8, vcpu = 2, memory_mib = 4096, map_concurrency = 1, batch_size = 350 }
  }
  fargate_vcpu_quota = 64
  gemini_project_rpm = 1000
  gemini_project_tpm = 1000000
}

run "decision_record_drains_350_in_about_17_hours" {
  command = plan

  assert {
    condition     = output.required_vcpu == 64 && output.quota_to_request == 64 && output.pool_vcpu == 64
    error_message = "12 x 4 + 8 x 2 vCPU must need exactly the 64-vCPU quota, got ${output.required_vcpu}."
  }
  assert {
    condition     = abs(output.drain["task-analyzer"].hours - 350 / 12 * 35 / 60) < 0.001
    error_message = "350 / 12 x 35 min must drain in ~17.0 h, got ${output.drain["task-analyzer"].hours} h."
  }
  assert {
    condition     = output.per_analysis["proctor-video"].minutes == 35 && output.per_analysis["task-analyzer"].modelled_minutes == 35
    error_message = "One segment after another, a 30-minute recording models to the record's measured 35 min."
  }
  assert {
    condition     = output.per_analysis["task-analyzer"].requests == 16 && output.per_analysis["task-analyzer"].tokens == 572000
    error_message = "15 MAP calls + 1 REDUCE, 1800 s x 300 tokens + 16 x 2000."
  }
  assert {
    # The caps exactly fill the quota: raising the cap alone would not plan.
    condition     = output.drain["task-analyzer"].binding == "Fargate vCPU"
    error_message = "At cap 12 filling the 64-vCPU quota the binding constraint is Fargate vCPU, got ${output.drain["task-analyzer"].binding}."
  }
  assert {
    condition     = output.gemini_rpm_budget == 1000 && output.gemini_tpm_budget == 1000000 && output.gemini_model_budgets_json == null
    error_message = "With one shared store the budgets are the whole project's quota for the fleet; one model needs no per-model JSON."
  }
  assert {
    condition     = output.effective_caps["task-analyzer"] == 12 && !output.caps_limited_by_quota && output.quota_warning == null
    error_message = "Caps that fit the planned quota are written as asked."
  }
}

run "a_raised_quota_leaves_the_dag_cap_binding" {
  command = plan
  variables {
    fargate_vcpu_quota = 128
  }
  assert {
    condition     = output.drain["task-analyzer"].binding == "DAG cap" && output.drain["task-analyzer"].fargate_per_hour > output.drain["task-analyzer"].cap_per_hour
    error_message = "With 128 vCPU the quota holds 28 task analyses: the cap of 12 binds, got ${output.drain["task-analyzer"].binding}."
  }
  assert {
    condition     = output.next_cap["task-analyzer"].cap > 12 && output.next_cap["task-analyzer"].stops_at == "Gemini TPM"
    error_message = "Raising the cap stops where the shared Gemini TPM binds, got ${jsonencode(output.next_cap["task-analyzer"])}."
  }
}

run "gemini_tpm_binds_when_analyses_are_short" {
  command = plan
  variables {
    workloads = {
      "task-analyzer" = { max_concurrent = 12, vcpu = 4, memory_mib = 8192, minutes_per_analysis = 9, batch_size = 350 }
      "proctor-video" = { max_concurrent = 8, vcpu = 2, memory_mib = 4096, minutes_per_analysis = 9, batch_size = 350 }
    }
  }
  assert {
    # 20 containers x 572k tokens every 9 min = 1.27M TPM > 1M.
    condition     = output.drain["task-analyzer"].binding == "Gemini TPM" && output.drain["proctor-video"].binding == "Gemini TPM"
    error_message = "The fleet asks 1.27M TPM of a 1M project: Gemini TPM binds, got ${output.drain["task-analyzer"].binding}."
  }
  assert {
    condition     = abs(output.drain["task-analyzer"].analyses_per_hour + output.drain["proctor-video"].analyses_per_hour - 1000000 * 60 / 572000) < 0.01
    error_message = "Together the workloads must use exactly the project TPM."
  }
  assert {
    condition     = output.gemini_quota_needed["gemini-2.5-flash"].tpm == ceil(20 * 572000 / 9)
    error_message = "The TPM at which Gemini stops binding is the fleet's demand, got ${output.gemini_quota_needed["gemini-2.5-flash"].tpm}."
  }
  assert {
    condition     = output.next_cap["task-analyzer"].cap < 12
    error_message = "Gemini already binds: no higher cap helps."
  }
}

run "gemini_rpm_binds_when_calls_are_many" {
  command = plan
  variables {
    workloads = {
      "task-analyzer" = { max_concurrent = 12, vcpu = 4, memory_mib = 8192, segment_seconds = 10, map_concurrency = 64, seconds_per_call = 10, batch_size = 350 }
      "proctor-video" = { max_concurrent = 8, vcpu = 2, memory_mib = 4096, segment_seconds = 10, map_concurrency = 64, seconds_per_call = 10, batch_size = 350 }
    }
    gemini_project_rpm = 150
  }
  assert {
    condition     = output.drain["task-analyzer"].binding == "Gemini RPM"
    error_message = "181 calls per analysis every ~3.6 min from 20 containers exceed 150 RPM, got ${output.drain["task-analyzer"].binding}."
  }
}

run "per_model_budgets_when_map_and_reduce_differ" {
  command = plan
  variables {
    workloads = {
      "task-analyzer" = { max_concurrent = 12, vcpu = 4, memory_mib = 8192, gemini_reduce_model = "gemini-2.5-pro", minutes_per_analysis = 35, batch_size = 350 }
      "proctor-video" = { max_concurrent = 8, vcpu = 2, memory_mib = 4096, batch_size = 350 }
    }
    gemini_model_quotas      = { "gemini-2.5-pro" = { rpm = 150, tpm = 2000000 } }
    gemini_reserved_fraction = 0.1
  }
  assert {
    condition = jsondecode(output.gemini_model_budgets_json) == {
      "gemini-2.5-flash" = { rpm = 900, tpm = 900000 }
      "gemini-2.5-pro"   = { rpm = 135, tpm = 1800000 }
    }
    error_message = "Each model gets its own quota less the reserve, got ${output.gemini_model_budgets_json}."
  }
  assert {
    condition     = output.per_analysis["task-analyzer"].by_model["gemini-2.5-pro"].requests == 1 && output.per_analysis["task-analyzer"].by_model["gemini-2.5-flash"].requests == 15
    error_message = "MAP calls go to the MAP model, the REDUCE call to the REDUCE model."
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
      "task-analyzer" = { max_concurrent = 24, vcpu = 4, memory_mib = 8192, minutes_per_analysis = 35, batch_size = 350 }
      "proctor-video" = { max_concurrent = 16, vcpu = 2, memory_mib = 4096, batch_size = 350 }
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
  assert {
    # Predicted from the caps written (12), not the caps asked for (24, which says 8.5 h).
    condition     = abs(output.drain["task-analyzer"].hours - 350 / 12 * 35 / 60) < 0.001 && output.drain["task-analyzer"].binding == "Fargate vCPU"
    error_message = "While the request is pending the drain runs at the written cap 12: ~17.0 h, got ${output.drain["task-analyzer"].hours} h."
  }
}

run "applied_quota_too_small_for_one_of_each_still_plans_and_warns" {
  command = plan
  variables {
    fargate_vcpu_quota         = 80
    fargate_vcpu_quota_applied = 6
    headroom_vcpu              = 2
  }
  assert {
    condition     = output.quota_to_request == 80 && output.quota_increase_needed
    error_message = "The increase that fixes it must still be requested."
  }
  assert {
    condition     = output.effective_caps["task-analyzer"] == 1 && output.effective_caps["proctor-video"] == 1
    error_message = "Caps never drop below 1, got ${jsonencode(output.effective_caps)}."
  }
  assert {
    condition     = strcontains(output.quota_warning, "cannot run even one task of every workload")
    error_message = "The shortfall must be reported as a warning."
  }
}

# --- combinations that must fail `plan` --------------------------------------------------

run "caps_exceed_quota" {
  command = plan
  variables {
    workloads = {
      "task-analyzer" = { max_concurrent = 17, vcpu = 4, memory_mib = 8192 }
      "proctor-video" = { max_concurrent = 8, vcpu = 2, memory_mib = 4096 }
    }
  }
  expect_failures = [output.required_vcpu]
}

run "rpm_budget_rounds_to_zero" {
  command = plan
  variables {
    gemini_project_rpm       = 1
    gemini_reserved_fraction = 0.5
  }
  expect_failures = [output.gemini_model_budgets]
}

run "tpm_budget_below_minimum" {
  command = plan
  variables {
    gemini_project_tpm = 999
  }
  expect_failures = [output.gemini_model_budgets]
}

run "segment_exceeds_tpm_budget" {
  command = plan
  variables {
    gemini_project_tpm = 30000
  }
  expect_failures = [output.gemini_model_budgets]
}

run "timeout_shorter_than_analysis" {
  command = plan
  variables {
    analysis_timeout_minutes = 30
  }
  expect_failures = [output.per_analysis]
}

run "vcpu_not_a_fargate_size" {
  command = plan
  variables {
    workloads = { "task-analyzer" = { max_concurrent = 12, vcpu = 3, memory_mib = 8192 } }
  }
  expect_failures = [var.workloads]
}

run "memory_not_valid_for_vcpu" {
  command = plan
  variables {
    workloads = { "task-analyzer" = { max_concurrent = 12, vcpu = 4, memory_mib = 4096 } }
  }
  expect_failures = [var.workloads]
}

run "cap_of_zero" {
  command = plan
  variables {
    workloads = { "task-analyzer" = { max_concurrent = 0, vcpu = 4, memory_mib = 8192 } }
  }
  expect_failures = [var.workloads]
}

run "unknown_media_resolution" {
  command = plan
  variables {
    workloads = { "task-analyzer" = { max_concurrent = 12, vcpu = 4, memory_mib = 8192, media_resolution = "high" } }
  }
  expect_failures = [var.workloads]
}

run "ephemeral_storage_out_of_range" {
  command = plan
  variables {
    workloads = { "task-analyzer" = { max_concurrent = 12, vcpu = 4, memory_mib = 8192, ephemeral_storage_gib = 20 } }
  }
  expect_failures = [var.workloads]
}

run "whole_gemini_quota_reserved" {
  command = plan
  variables {
    gemini_reserved_fraction = 1
  }
  expect_failures = [var.gemini_reserved_fraction]
}
