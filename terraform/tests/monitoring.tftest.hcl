# The monitoring side applied against a mocked AWS provider (offline): the dashboard's
# figures, the alarms (what they watch, their runbook sections, where they notify) and the
# backend's read role, read back from the values Terraform would send to AWS.
#   cd terraform && terraform init -backend=false -plugin-dir=<provider dir> && terraform test

mock_provider "aws" {
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws", dns_suffix = "amazonaws.com" }
  }
  # AWS applies 64 vCPU now (the decision record's quota).
  mock_data "aws_servicequotas_service_quota" {
    defaults = { value = 64, adjustable = true }
  }
  # Both repositories hold the tag the examples reference (images.tf refuses one they do not).
  mock_data "aws_ecr_image" {
    defaults = { image_tags = ["2026.06.16"], image_digest = "sha256:2f6a1c0e5b9d8a7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a29180f1e2d3c4b5a6978" }
  }
  mock_data "aws_secretsmanager_random_password" {
    defaults = { random_password = "mocktoken0123456789" }
  }
  mock_resource "aws_kms_key" {
    defaults = { arn = "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555" }
  }
  mock_resource "aws_secretsmanager_secret" {
    defaults = { arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:analysis-pipeline/gemini-budget-uri-Zx81Qp" }
  }
  # Alarms notify it: their actions must be ARNs.
  mock_resource "aws_sns_topic" {
    defaults = { arn = "arn:aws:sns:eu-west-1:123456789012:analysis-pipeline-alarms" }
  }
  mock_resource "aws_elasticache_serverless_cache" {
    defaults = { endpoint = [{ address = "analysis-pipeline-budget-abc123.serverless.euw1.cache.amazonaws.com", port = 6379 }] }
  }
}

# ARNs the provider validates (and the policies name) must look like real ones.
override_resource {
  target = aws_iam_role.execution
  values = { arn = "arn:aws:iam::123456789012:role/analysis-pipeline-execution" }
}
override_resource {
  target = aws_iam_role.task
  values = { arn = "arn:aws:iam::123456789012:role/analysis-pipeline-task" }
}

variables {
  aws_region                = "eu-west-1"
  vpc_id                    = "vpc-0123456789abcdef0"
  subnet_ids                = ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]
  recordings_uri_prefixes   = ["s3://analysis-pipeline-recordings/tasks/", "s3://analysis-pipeline-recordings/proctor/"]
  results_bucket_name       = "analysis-pipeline-results"
  gemini_api_key_secret_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:analysis-pipeline/gemini-api-key-AbCdEf"
  fargate_vcpu_quota        = 64
  gemini_project_rpm        = 1000
  gemini_project_tpm        = 1000000
  workloads = {
    "task-analyzer" = { image_tag = "2026.06.16", max_concurrent = 12, vcpu = 4, memory_mib = 8192, map_concurrency = 1, minutes_per_analysis = 35, batch_size = 350 }
    "proctor-video" = { image_tag = "2026.06.16", max_concurrent = 8, vcpu = 2, memory_mib = 4096, ephemeral_storage_gib = 30, map_concurrency = 1, batch_size = 350 }
  }
}

run "dashboard_shows_drain_throughput_failures_and_cost" {
  command = apply

  assert {
    condition = toset([for w in jsondecode(aws_cloudwatch_dashboard.this.dashboard_body).widgets : w.properties.title if w.type != "text"]) == toset([
      "Drain progress: analyses started, finished and in flight",
      "Gemini budget line: containers waiting, per model",
      "Throughput against the quota: tokens in the budget's window, its ceiling and limit",
      "Input tokens per minute, by kind (at each analysis' end)",
      "Failures: analyses failed or refused, sentinels, Gemini 429s",
      "Cost per hour (estimated USD, Gemini list prices)",
      "Analysis duration and time waiting for the Gemini budget",
      "Alarms (runbook sections in their descriptions)",
    ])
    error_message = "The dashboard has the drain, throughput, failures, cost, duration and alarm widgets."
  }
  assert {
    # Every row is a metric of the containers' namespace or an expression (a flattened row
    # would be a bare string here).
    condition = alltrue(flatten([for w in jsondecode(aws_cloudwatch_dashboard.this.dashboard_body).widgets : [
      for row in w.properties.metrics : !can(tostring(row)) && (try(row[0] == "AnalysisPipeline", false) || can(row[0].expression))
    ] if w.type == "metric"]))
    error_message = "Every dashboard metric is in the namespace the containers print."
  }
  assert {
    condition = contains(flatten([for w in jsondecode(aws_cloudwatch_dashboard.this.dashboard_body).widgets : [
      for row in w.properties.metrics : try(row[0].expression, "")
    ] if w.type == "metric"]), "started - finished")
    error_message = "Drain progress shows the analyses in flight."
  }
  assert {
    condition = [for w in jsondecode(aws_cloudwatch_dashboard.this.dashboard_body).widgets : w.properties.period
    if try(w.properties.title, "") == "Cost per hour (estimated USD, Gemini list prices)"] == [3600]
    error_message = "Cost is summed per hour."
  }
  assert {
    condition     = length([for w in jsondecode(aws_cloudwatch_dashboard.this.dashboard_body).widgets : w if w.type == "alarm"][0].properties.alarms) == 4
    error_message = "The alarm widget shows the four alarms (one ceiling alarm for the one model in use)."
  }
}

run "alarms_watch_the_metrics_and_name_their_runbook_section" {
  command = apply

  variables {
    runbook_url           = "https://runbooks.example.com/analysis-pipeline/RUNBOOK.md"
    alarm_email_addresses = ["oncall@example.com"]
  }

  assert {
    condition = alltrue([for a in concat(
      [aws_cloudwatch_metric_alarm.failure_rate, aws_cloudwatch_metric_alarm.sentinel, aws_cloudwatch_metric_alarm.cost_per_hour],
      values(aws_cloudwatch_metric_alarm.budget_ceiling),
      ) : a.alarm_actions == toset(["arn:aws:sns:eu-west-1:123456789012:analysis-pipeline-alarms"]) && a.ok_actions == a.alarm_actions
    ])
    error_message = "Every alarm notifies the topic when it fires and when it clears."
  }
  assert {
    condition = alltrue([for pair in [
      [aws_cloudwatch_metric_alarm.failure_rate.alarm_description, "#alarm-failure-rate"],
      [aws_cloudwatch_metric_alarm.sentinel.alarm_description, "#alarm-sentinel"],
      [aws_cloudwatch_metric_alarm.cost_per_hour.alarm_description, "#alarm-cost-per-hour"],
      [aws_cloudwatch_metric_alarm.budget_ceiling["gemini-2.5-flash"].alarm_description, "#alarm-ceiling-below-the-limit"],
    ] : strcontains(pair[0], "Runbook: https://runbooks.example.com/analysis-pipeline/RUNBOOK.md${pair[1]}")])
    error_message = "Each alarm links its own runbook section."
  }
  assert {
    condition = (
      [for q in aws_cloudwatch_metric_alarm.failure_rate.metric_query : q.expression if q.id == "rate"][0] == "IF(finished >= 5, 100 * failed / finished, 0)" &&
      toset(flatten([for q in aws_cloudwatch_metric_alarm.failure_rate.metric_query : [for m in q.metric : "${m.metric_name}|${m.period}|${jsonencode(m.dimensions)}"]])) == toset([
        "Analyses|900|{\"Kind\":\"proctor_video\"}", "Analyses|900|{\"Kind\":\"task_analysis\"}",
        "Analyses|900|{\"Kind\":\"proctor_video\",\"Status\":\"failed\"}", "Analyses|900|{\"Kind\":\"task_analysis\",\"Status\":\"failed\"}",
      ]) && aws_cloudwatch_metric_alarm.failure_rate.threshold == 20
    )
    error_message = "The failure rate is failed / finished of both kinds over 15 minutes, judged from 5 analyses."
  }
  assert {
    condition = (
      aws_cloudwatch_metric_alarm.budget_ceiling["gemini-2.5-flash"].metric_name == "BudgetCeilingPercent" &&
      aws_cloudwatch_metric_alarm.budget_ceiling["gemini-2.5-flash"].dimensions == tomap({ Model = "gemini-2.5-flash" }) &&
      aws_cloudwatch_metric_alarm.budget_ceiling["gemini-2.5-flash"].comparison_operator == "LessThanThreshold" &&
      aws_cloudwatch_metric_alarm.budget_ceiling["gemini-2.5-flash"].evaluation_periods == 6 &&
      aws_cloudwatch_metric_alarm.budget_ceiling["gemini-2.5-flash"].datapoints_to_alarm == 6
    )
    error_message = "The ceiling alarm fires when the learnt ceiling stays under 80% of the limit for 30 minutes."
  }
  assert {
    condition = (
      one([for q in aws_cloudwatch_metric_alarm.sentinel.metric_query : q.expression if q.return_data == true]) == "FILL(sentinel_task_analysis, 0) + FILL(sentinel_proctor_video, 0)" &&
      toset(flatten([for q in aws_cloudwatch_metric_alarm.cost_per_hour.metric_query : [for m in q.metric : "${m.metric_name}|${m.period}|${m.stat}"]])) == toset(["EstimatedUSD|3600|Sum"]) &&
      aws_cloudwatch_metric_alarm.cost_per_hour.threshold == 20
    )
    error_message = "The sentinel alarm counts both kinds; the cost alarm sums estimated USD per hour."
  }
  assert {
    condition     = [for s in aws_sns_topic_subscription.alarm_email : s.endpoint] == ["oncall@example.com"] && aws_sns_topic.alarms.kms_master_key_id != null
    error_message = "The encrypted alarms topic has the on-call subscription."
  }
  assert {
    condition     = jsondecode(aws_sns_topic_policy.alarms.policy).Statement[0].Condition.ArnLike["aws:SourceArn"] == "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:analysis-pipeline-*"
    error_message = "Only this pipeline's alarms may publish to the topic."
  }
}

run "containers_print_metrics_in_the_namespace_the_alarms_read" {
  command = apply

  variables {
    metrics_namespace = "Assessments/Analysis"
  }

  assert {
    condition = alltrue([for k, td in aws_ecs_task_definition.this :
      { for e in jsondecode(td.container_definitions)[0].environment : e.name => e.value }["METRICS_NAMESPACE"] == "Assessments/Analysis"
    ]) && aws_cloudwatch_metric_alarm.budget_ceiling["gemini-2.5-flash"].namespace == "Assessments/Analysis"
    error_message = "The containers print where the dashboard and alarms look."
  }
}

run "the_backend_reads_the_results_prefix_only" {
  command = apply

  variables {
    results_reader_principals = ["arn:aws:iam::210987654321:role/backend-web"]
  }

  assert {
    condition     = output.results_reader_role_arn == aws_iam_role.results_reader.arn
    error_message = "The read role is an output."
  }
  assert {
    condition     = jsondecode(aws_iam_role.results_reader.assume_role_policy).Statement[0].Principal.AWS == ["arn:aws:iam::210987654321:role/backend-web"]
    error_message = "Only the backend's principal may assume the read role."
  }
  assert {
    condition = { for s in jsondecode(aws_iam_role_policy.results_reader.policy).Statement : s.Sid => [s.Action, s.Resource] } == {
      ReadResults         = ["s3:GetObject", "arn:aws:s3:::analysis-pipeline-results/analyses/*"]
      ListResults         = ["s3:ListBucket", "arn:aws:s3:::analysis-pipeline-results"]
      DecryptResultsViaS3 = ["kms:Decrypt", "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"]
    }
    error_message = "The backend reads (and lists) the results prefix and decrypts through S3 only: no write, no delete."
  }
  assert {
    condition = alltrue([for s in jsondecode(aws_iam_role_policy.results_reader.policy).Statement :
      s.Sid == "DecryptResultsViaS3" ? s.Condition.StringEquals["kms:ViaService"] == "s3.eu-west-1.amazonaws.com" : true
    ])
    error_message = "Its kms:Decrypt holds only through S3."
  }
}

run "monitoring_settings_are_checked" {
  command = plan

  variables {
    metrics_namespace         = "AWS/ECS"
    runbook_url               = "http://wiki/RUNBOOK.md#top"
    alarm_ceiling_minutes     = 7
    results_reader_principals = ["backend"]
  }

  expect_failures = [var.metrics_namespace, var.runbook_url, var.alarm_ceiling_minutes, var.results_reader_principals]
}

run "without_a_runbook_url_alarms_name_the_file" {
  command = apply

  assert {
    condition     = strcontains(aws_cloudwatch_metric_alarm.sentinel.alarm_description, "Runbook: docs/RUNBOOK.md in the analysis pipeline's repository, section #alarm-sentinel")
    error_message = "With no published runbook the alarm still names its section."
  }
}
