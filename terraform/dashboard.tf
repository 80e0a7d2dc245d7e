# One CloudWatch dashboard for the operator's night: drain progress, throughput against the
# Gemini quota, failures, cost per hour, and the alarms. Every figure comes from the metrics
# the containers print as EMF lines (namespace var.metrics_namespace); devtools/emf.py
# computes the same figures from a drain's lines (bench/bench_drain.py prints them).

locals {
  ns = var.metrics_namespace

  # ["ns", metric, dim, value, ..., {options}] as the dashboard's JSON wants it.
  by_kind = { for k in local.analysis_kinds : k => { Kind = k } }

  dashboard_widgets = [
    {
      type = "text", x = 0, y = 0, width = 24, height = 2
      properties = {
        markdown = "## ${var.project}: the analysis fleet\nEvery alarm's runbook: ${local.runbook}. Metrics: namespace `${local.ns}` (EMF lines in the containers' log groups); Gemini budget figures come from one container of the fleet every few seconds while analyses run."
      }
    },
    {
      type = "metric", x = 0, y = 2, width = 12, height = 7
      properties = {
        title  = "Drain progress: analyses started, finished and in flight"
        region = local.region
        view   = "timeSeries"
        stat   = "Sum"
        period = 300
        metrics = concat(
          [for k in local.analysis_kinds : [local.ns, "AnalysesStarted", "Kind", k, { id = "s_${k}", visible = false }]],
          [for k in local.analysis_kinds : [local.ns, "Analyses", "Kind", k, { id = "f_${k}", visible = false }]],
          [
            [{ id = "started", expression = "RUNNING_SUM(${join(" + ", [for k in local.analysis_kinds : "FILL(s_${k}, 0)"])})", label = "started (running total)" }],
            [{ id = "finished", expression = "RUNNING_SUM(${join(" + ", [for k in local.analysis_kinds : "FILL(f_${k}, 0)"])})", label = "finished (running total)" }],
            [{ id = "in_flight", expression = "started - finished", label = "in flight" }],
          ],
        )
      }
    },
    {
      type = "metric", x = 12, y = 2, width = 12, height = 7
      properties = {
        title  = "Gemini budget line: containers waiting, per model"
        region = local.region
        view   = "timeSeries"
        stat   = "Maximum"
        period = 60
        metrics = concat(
          [for m in local.gemini_models : [local.ns, "BudgetQueueDepth", "Model", m, { label = "waiting: ${m}" }]],
          [for m in local.gemini_models : [local.ns, "BudgetPaused", "Model", m, { label = "paused after a 429: ${m}", yAxis = "right" }]],
        )
      }
    },
    {
      type = "metric", x = 0, y = 9, width = 12, height = 7
      properties = {
        title  = "Throughput against the quota: tokens in the budget's window, its ceiling and limit"
        region = local.region
        view   = "timeSeries"
        period = 60
        # concat, not flatten: flatten would also flatten each row.
        metrics = concat(
          [for m in local.gemini_models : [local.ns, "BudgetWindowTokens", "Model", m, { stat = "Maximum", label = "in window: ${m}" }]],
          [for m in local.gemini_models : [local.ns, "BudgetCeilingTokens", "Model", m, { stat = "Minimum", label = "ceiling (learnt): ${m}" }]],
          [for m in local.gemini_models : [local.ns, "BudgetLimitTokens", "Model", m, { stat = "Maximum", label = "limit (configured): ${m}" }]],
        )
      }
    },
    {
      type = "metric", x = 12, y = 9, width = 12, height = 7
      properties = {
        title   = "Input tokens per minute, by kind (at each analysis' end)"
        region  = local.region
        view    = "timeSeries"
        stat    = "Sum"
        period  = 60
        metrics = [for k in local.analysis_kinds : [local.ns, "InputTokens", "Kind", k]]
      }
    },
    {
      type = "metric", x = 0, y = 16, width = 12, height = 7
      properties = {
        title  = "Failures: analyses failed or refused, sentinels, Gemini 429s"
        region = local.region
        view   = "timeSeries"
        stat   = "Sum"
        period = 300
        metrics = concat(
          [for pair in setproduct(local.analysis_kinds, ["failed", "invalid_input", "partial"]) :
          [local.ns, "Analyses", "Kind", pair[0], "Status", pair[1], { label = "${replace(pair[1], "_", " ")}: ${pair[0]}" }]],
          [for k in local.analysis_kinds : [local.ns, "SentinelFailures", "Kind", k, { label = "sentinel: ${k}" }]],
          [for k in local.analysis_kinds : [local.ns, "Gemini429s", "Kind", k, { label = "429s: ${k}", yAxis = "right" }]],
        )
      }
    },
    {
      type = "metric", x = 12, y = 16, width = 12, height = 7
      properties = {
        title  = "Cost per hour (estimated USD, Gemini list prices)"
        region = local.region
        view   = "timeSeries"
        stat   = "Sum"
        period = 3600
        metrics = concat(
          [for k in local.analysis_kinds : [local.ns, "EstimatedUSD", "Kind", k, { id = "usd_${k}", label = k }]],
          [[{ id = "usd_total", expression = join(" + ", [for k in local.analysis_kinds : "FILL(usd_${k}, 0)"]), label = "total" }]],
        )
        annotations = { horizontal = [{ label = "cost alarm", value = var.alarm_cost_per_hour_usd }] }
      }
    },
    {
      type = "metric", x = 0, y = 23, width = 12, height = 7
      properties = {
        title  = "Analysis duration and time waiting for the Gemini budget"
        region = local.region
        view   = "timeSeries"
        period = 300
        metrics = concat(
          [for pair in setproduct(local.analysis_kinds, ["p50", "p90"]) :
          [local.ns, "DurationSeconds", "Kind", pair[0], { stat = pair[1], label = "duration ${pair[1]}: ${pair[0]}" }]],
          [for k in local.analysis_kinds : [local.ns, "BudgetWaitSeconds", "Kind", k, { stat = "Average", label = "budget wait (mean): ${k}" }]],
        )
      }
    },
    {
      type = "alarm", x = 12, y = 23, width = 12, height = 7
      properties = {
        title = "Alarms (runbook sections in their descriptions)"
        alarms = concat(
          [aws_cloudwatch_metric_alarm.failure_rate.arn, aws_cloudwatch_metric_alarm.sentinel.arn, aws_cloudwatch_metric_alarm.cost_per_hour.arn],
          [for m in local.gemini_models : aws_cloudwatch_metric_alarm.budget_ceiling[m].arn],
        )
      }
    },
  ]
}

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = var.project
  dashboard_body = jsonencode({ widgets = local.dashboard_widgets })
}
