# Alarms on the metrics the containers print (EMF lines in their log groups, namespace
# var.metrics_namespace; containers/analysis_engine/metrics.py and budget_metrics.py), sent
# to one SNS topic when they fire and when they clear. Each alarm's description names what
# it means and its section of docs/RUNBOOK.md (what to check, what to do, when it is over).

locals {
  analysis_kinds = ["task_analysis", "proctor_video"]
  # Every model a container calls (each reports BudgetCeilingPercent under its own name).
  gemini_models = sort(distinct(flatten([
    for w in local.workloads : [w.gemini_map_model, w.gemini_reduce_model]
  ])))
  runbook = coalesce(var.runbook_url, "docs/RUNBOOK.md in the analysis pipeline's repository")
  runbook_sections = {
    failure_rate  = "alarm-failure-rate"
    sentinel      = "alarm-sentinel"
    budget_cap    = "alarm-ceiling-below-the-limit"
    cost_per_hour = "alarm-cost-per-hour"
  }
  runbook_link = { for k, section in local.runbook_sections : k => (
    var.runbook_url == null ? "${local.runbook}, section #${section}" : "${var.runbook_url}#${section}"
  ) }
  alarm_actions = [aws_sns_topic.alarms.arn]
}

# --- where alarms go ------------------------------------------------------------------------

resource "aws_kms_key" "alarms" {
  description             = "${var.project}: the alarms topic (CloudWatch alarms publish to it)"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdministers"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        # An encrypted topic receives alarms only if CloudWatch may use its key.
        Sid       = "CloudWatchAlarmsPublish"
        Effect    = "Allow"
        Principal = { Service = "cloudwatch.amazonaws.com" }
        Action    = ["kms:Decrypt", "kms:GenerateDataKey*"]
        Resource  = "*"
        Condition = { StringEquals = { "aws:SourceAccount" = local.account } }
      },
    ]
  })
}

resource "aws_sns_topic" "alarms" {
  name              = "${var.project}-alarms"
  kms_master_key_id = aws_kms_key.alarms.arn
}

resource "aws_sns_topic_policy" "alarms" {
  arn = aws_sns_topic.alarms.arn
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "ThisPipelinesAlarmsPublish"
      Effect    = "Allow"
      Principal = { Service = "cloudwatch.amazonaws.com" }
      Action    = "sns:Publish"
      Resource  = aws_sns_topic.alarms.arn
      Condition = {
        ArnLike      = { "aws:SourceArn" = "arn:${local.partition}:cloudwatch:${local.region}:${local.account}:alarm:${var.project}-*" }
        StringEquals = { "aws:SourceAccount" = local.account }
      }
    }]
  })
}

resource "aws_sns_topic_subscription" "alarm_email" {
  for_each = toset(var.alarm_email_addresses)

  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = each.value
}

# --- the alarms -----------------------------------------------------------------------------

resource "aws_cloudwatch_metric_alarm" "failure_rate" {
  alarm_name          = "${var.project}-failure-rate"
  alarm_description   = "More than ${var.alarm_failure_rate_percent}% of the analyses that finished in the last 15 minutes failed (at least ${var.alarm_failure_rate_min_analyses} finished). Runbook: ${local.runbook_link.failure_rate}"
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alarm_failure_rate_percent
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "rate"
    label       = "failed, % of finished"
    expression  = "IF(finished >= ${var.alarm_failure_rate_min_analyses}, 100 * failed / finished, 0)"
    return_data = true
  }
  metric_query {
    id         = "failed"
    expression = "FILL(failed_task_analysis, 0) + FILL(failed_proctor_video, 0)"
  }
  metric_query {
    id         = "finished"
    expression = "FILL(all_task_analysis, 0) + FILL(all_proctor_video, 0)"
  }
  dynamic "metric_query" {
    for_each = { for pair in setproduct(["failed", "all"], local.analysis_kinds) : "${pair[0]}_${pair[1]}" => pair }
    content {
      id = metric_query.key
      metric {
        namespace   = var.metrics_namespace
        metric_name = "Analyses"
        period      = 900
        stat        = "Sum"
        dimensions  = metric_query.value[0] == "failed" ? { Kind = metric_query.value[1], Status = "failed" } : { Kind = metric_query.value[1] }
      }
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "sentinel" {
  alarm_name          = "${var.project}-sentinel"
  alarm_description   = "An analysis ended with 'All segments failed analysis': Gemini refused every call (quota). The DAGs hold launches and retry on their own; widen the quota if it repeats. Runbook: ${local.runbook_link.sentinel}"
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "sentinels"
    label       = "analyses that ended with the sentinel"
    expression  = "FILL(sentinel_task_analysis, 0) + FILL(sentinel_proctor_video, 0)"
    return_data = true
  }
  dynamic "metric_query" {
    for_each = toset(local.analysis_kinds)
    content {
      id = "sentinel_${metric_query.key}"
      metric {
        namespace   = var.metrics_namespace
        metric_name = "SentinelFailures"
        period      = 300
        stat        = "Sum"
        dimensions  = { Kind = metric_query.key }
      }
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "budget_ceiling" {
  for_each = toset(local.gemini_models)

  alarm_name          = "${var.project}-ceiling-below-limit-${each.key}"
  alarm_description   = "The Gemini budget for ${each.key} has admitted under ${var.alarm_ceiling_percent}% of its configured limit for ${var.alarm_ceiling_minutes} minutes: 429s taught it the real quota is lower (another client on the key, or a limit above the quota). Runbook: ${local.runbook_link.budget_cap}"
  namespace           = var.metrics_namespace
  metric_name         = "BudgetCeilingPercent"
  dimensions          = { Model = each.key }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = var.alarm_ceiling_minutes / 5
  datapoints_to_alarm = var.alarm_ceiling_minutes / 5
  comparison_operator = "LessThanThreshold"
  threshold           = var.alarm_ceiling_percent
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "cost_per_hour" {
  alarm_name          = "${var.project}-cost-per-hour"
  alarm_description   = "The analyses finished in the last hour cost more than ${var.alarm_cost_per_hour_usd} USD of Gemini (estimated from list prices). Runbook: ${local.runbook_link.cost_per_hour}"
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alarm_cost_per_hour_usd
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "usd"
    label       = "estimated USD per hour"
    expression  = "FILL(usd_task_analysis, 0) + FILL(usd_proctor_video, 0)"
    return_data = true
  }
  dynamic "metric_query" {
    for_each = toset(local.analysis_kinds)
    content {
      id = "usd_${metric_query.key}"
      metric {
        namespace   = var.metrics_namespace
        metric_name = "EstimatedUSD"
        period      = 3600
        stat        = "Sum"
        dimensions  = { Kind = metric_query.key }
      }
    }
  }
}
