# --- what the Airflow deployment needs --------------------------------------------------------

output "airflow_configuration" {
  description = "Set once on every Airflow component (scheduler, dag-processor, workers, triggerer, API server): the SSM secrets backend that serves the settings Variable and the connections, its cache, and the launcher mode. Levers are never copied into the environment (docs/DEPLOY.md)."
  value = {
    ANALYSIS_LAUNCHER                   = "ecs"
    AIRFLOW__SECRETS__BACKEND           = "airflow.providers.amazon.aws.secrets.systems_manager.SystemsManagerParameterStoreBackend"
    AIRFLOW__SECRETS__BACKEND_KWARGS    = jsonencode({ connections_prefix = trimsuffix(local.ssm_connections_prefix, "/"), variables_prefix = trimsuffix(local.ssm_prefix, "/"), region_name = var.aws_region })
    AIRFLOW__SECRETS__USE_CACHE         = "True"
    AIRFLOW__SECRETS__CACHE_TTL_SECONDS = "60"
  }
}

output "airflow_settings" {
  description = "The settings Variable's fields (SSM /airflow/variables/analysis_pipeline_settings, a JSON object): what the DAGs read; make preflight compares Airflow with it."
  value       = local.airflow_settings
}

output "airflow_settings_parameter" {
  description = "Name of the SSM parameter holding the settings Variable."
  value       = aws_ssm_parameter.airflow_settings.name
}

output "airflow_policy_arn" {
  description = "IAM policy for the Airflow role: RunTask/DescribeTasks/StopTask on these task definitions, PassRole for these roles, logs, results, inputs and its SSM parameters."
  value       = aws_iam_policy.airflow.arn
}

# --- ECS --------------------------------------------------------------------------------------

output "cluster_name" {
  description = "ECS cluster the DAGs launch into."
  value       = aws_ecs_cluster.this.name
}

output "task_definitions" {
  description = "Per container: task-definition family, latest ARN, container name, log group and stream prefix."
  value = { for k, td in aws_ecs_task_definition.this : k => {
    family            = td.family
    arn               = td.arn
    container_name    = k
    log_group         = aws_cloudwatch_log_group.this[k].name
    log_stream_prefix = local.log_stream_prefix[k]
  } }
}

output "ecr_repository_urls" {
  description = "Push the images here (tags are immutable)."
  value       = { for k, r in aws_ecr_repository.this : k => r.repository_url }
}

output "security_group_id" {
  description = "Security group for the tasks (egress: HTTPS, and Valkey to the budget store)."
  value       = aws_security_group.tasks.id
}

output "execution_role_arn" {
  description = "Task execution role (image pull, logs, the Gemini key and budget store secrets)."
  value       = aws_iam_role.execution.arn
}

output "task_role_arn" {
  description = "Task role (read recordings prefixes, read/write results prefix)."
  value       = aws_iam_role.task.arn
}

output "results_bucket" {
  description = "Results bucket name."
  value       = aws_s3_bucket.results.id
}

output "results_uri" {
  description = "RESULTS_URI: root of every run's OUTPUT_URI."
  value       = local.results_uri
}

output "results_retention_tags" {
  description = "Object tags the containers set so the lifecycle rules find checkpoints and thumbnails."
  value       = { checkpoint = "retention=checkpoint", thumbnail = "retention=thumbnail" }
}

# --- the levers and the quota ---------------------------------------------------------------

output "fargate_vcpu_quota_granted" {
  description = "Fargate On-Demand vCPU quota AWS applies now (data source). The caps are sized from this."
  value       = local.quota_granted
}

output "fargate_vcpu_quota_requested" {
  description = "The quota resource's value. While a request is PENDING/CASE_OPENED this is the requested figure, not the granted one."
  value       = try(aws_servicequotas_service_quota.fargate_vcpu[0].value, null)
}

output "fargate_vcpu_quota_request_status" {
  description = "Status of the open increase request (PENDING, CASE_OPENED; empty once APPROVED/DENIED/CASE_CLOSED or when none was needed)."
  value       = try(aws_servicequotas_service_quota.fargate_vcpu[0].request_status, null)
}

output "fargate_vcpu_quota_request_id" {
  description = "Id of the open increase request, if any (aws service-quotas get-requested-service-quota-change --request-id ...)."
  value       = try(aws_servicequotas_service_quota.fargate_vcpu[0].request_id, null)
}

output "capacity" {
  description = "The lever arithmetic: vCPU needed, quota to request, the caps written (effective) vs asked for, the fleet-wide Gemini budgets per model, and the predicted drain from the caps written."
  value = {
    required_vcpu         = module.capacity.required_vcpu
    quota_to_request      = module.capacity.quota_to_request
    quota_increase_needed = module.capacity.quota_increase_needed
    caps_requested        = { for k, w in local.workloads : k => w.max_concurrent }
    caps_effective        = module.capacity.effective_caps
    caps_limited_by_quota = module.capacity.caps_limited_by_quota
    quota_warning         = module.capacity.quota_warning
    pool_vcpu             = module.capacity.pool_vcpu
    gemini_rpm_budget     = module.capacity.gemini_rpm_budget
    gemini_tpm_budget     = module.capacity.gemini_tpm_budget
    gemini_model_budgets  = module.capacity.gemini_model_budgets
    per_analysis          = module.capacity.per_analysis
    drain                 = module.capacity.drain
  }
}

output "images" {
  description = "The image each task definition runs (repository:tag or repository@digest), checked at plan to be in its ECR repository."
  value       = local.image
}

# --- metrics, alarms and the backend ----------------------------------------------------------

output "results_reader_role_arn" {
  description = "Role the backend assumes to read results (result.json, report.html, videos, thumbnails) and presign links to them."
  value       = aws_iam_role.results_reader.arn
}

output "alarm_topic_arn" {
  description = "SNS topic every alarm notifies (firing and clearing): subscribe the on-call channel here."
  value       = aws_sns_topic.alarms.arn
}

output "dashboard_name" {
  description = "CloudWatch dashboard: drain progress, throughput against the quota, failures, cost per hour, alarms."
  value       = aws_cloudwatch_dashboard.this.dashboard_name
}
