# How a Gemini model over budget is shared between the workloads: by gemini_weight, as the
# budget's line shares it (weighted max-min fairness). Both workloads run 9-minute
# analyses of ~572k tokens: at caps 12 and 8 they ask ~763k and ~508k TPM of a 1M project.

variables {
  workloads = {
    "task-analyzer" = { max_concurrent = 12, vcpu = 4, memory_mib = 8192, minutes_per_analysis = 9, batch_size = 350 }
    "proctor-video" = { max_concurrent = 8, vcpu = 2, memory_mib = 4096, minutes_per_analysis = 9, batch_size = 350 }
  }
  fargate_vcpu_quota = 64
  gemini_project_rpm = 1000
  gemini_project_tpm = 1000000
}

run "equal_weights_split_the_budget_in_half_when_both_ask_more" {
  command = plan
  assert {
    condition     = abs(output.gemini_shares["gemini-2.5-flash"]["task-analyzer"] - 500000) < 1 && abs(output.gemini_shares["gemini-2.5-flash"]["proctor-video"] - 500000) < 1
    error_message = "Both ask more than half of 1M: 500k each, got ${jsonencode(output.gemini_shares)}."
  }
  assert {
    # 500k TPM / 572k tokens per analysis x 60 = 52.4 analyses per hour each.
    condition     = abs(output.drain["proctor-video"].tpm_per_hour - 500000 / 572000 * 60) < 0.01 && output.drain["proctor-video"].binding == "Gemini TPM"
    error_message = "The proctor videos go at their share: ${output.drain["proctor-video"].tpm_per_hour}/h."
  }
}

run "a_workload_under_its_share_leaves_the_rest_to_the_other" {
  command = plan
  variables {
    workloads = {
      "task-analyzer" = { max_concurrent = 12, vcpu = 4, memory_mib = 8192, minutes_per_analysis = 6, batch_size = 350 }
      "proctor-video" = { max_concurrent = 2, vcpu = 2, memory_mib = 4096, minutes_per_analysis = 9, batch_size = 350 }
    }
  }
  assert {
    # Tasks ask 12 x 572k / 6 = 1.14M TPM, proctor videos 2 x 572k / 9 = 127k, under half:
    # they get it all, the tasks the rest.
    condition     = abs(output.gemini_shares["gemini-2.5-flash"]["proctor-video"] - 2 * 572000 / 9) < 1 && abs(output.gemini_shares["gemini-2.5-flash"]["task-analyzer"] - (1000000 - 2 * 572000 / 9)) < 1
    error_message = "Max-min: the small demand is met, the rest goes to the other, got ${jsonencode(output.gemini_shares)}."
  }
  assert {
    condition     = output.drain["proctor-video"].binding != "Gemini TPM" && output.drain["task-analyzer"].binding == "Gemini TPM"
    error_message = "Only the task analyses wait on Gemini, got ${output.drain["proctor-video"].binding}."
  }
}

run "weights_set_the_split" {
  command = plan
  variables {
    workloads = {
      "task-analyzer" = { max_concurrent = 12, vcpu = 4, memory_mib = 8192, minutes_per_analysis = 9, batch_size = 350, gemini_weight = 3 }
      "proctor-video" = { max_concurrent = 8, vcpu = 2, memory_mib = 4096, minutes_per_analysis = 9, batch_size = 350 }
    }
  }
  assert {
    # 3:1 would give proctor videos 250k; they ask 508k: 250k, and tasks 750k of their 763k.
    condition     = abs(output.gemini_shares["gemini-2.5-flash"]["proctor-video"] - 250000) < 1 && abs(output.gemini_shares["gemini-2.5-flash"]["task-analyzer"] - 750000) < 1
    error_message = "3:1 weights: 750k and 250k, got ${jsonencode(output.gemini_shares)}."
  }
  assert {
    condition     = abs(output.drain["task-analyzer"].analyses_per_hour + output.drain["proctor-video"].analyses_per_hour - 1000000 * 60 / 572000) < 0.01
    error_message = "Together the workloads use exactly the project TPM."
  }
}

run "a_model_within_budget_has_no_shares" {
  command = plan
  variables {
    gemini_project_tpm = 2000000
  }
  assert {
    condition     = output.gemini_shares["gemini-2.5-flash"] == null && output.drain["task-analyzer"].binding != "Gemini TPM"
    error_message = "1.27M of 2M: nobody waits on Gemini, got ${jsonencode(output.gemini_shares)}."
  }
}

run "a_weight_out_of_range_is_refused" {
  command = plan
  variables {
    workloads = {
      "task-analyzer" = { max_concurrent = 12, vcpu = 4, memory_mib = 8192, gemini_weight = 0 }
      "proctor-video" = { max_concurrent = 8, vcpu = 2, memory_mib = 4096 }
    }
  }
  expect_failures = [var.workloads]
}
