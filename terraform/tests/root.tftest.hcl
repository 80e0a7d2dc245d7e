# The root module applied against a mocked AWS provider (offline): what the containers
# receive, the levers the DAGs read, what each IAM policy grants, the quota request and the
# budget store, all read back from the values Terraform would send to AWS.
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

run "containers_get_image_secrets_logs_and_a_read_only_root" {
  command = apply

  assert {
    condition = alltrue([for k, td in aws_ecs_task_definition.this :
      jsondecode(td.container_definitions)[0].image == "123456789012.dkr.ecr.eu-west-1.amazonaws.com/analysis-pipeline/${k}:2026.06.16"
    ])
    error_message = "Each container runs its own ECR repository's image at the given tag."
  }
  assert {
    condition = alltrue([for k, td in aws_ecs_task_definition.this :
      { for s in jsondecode(td.container_definitions)[0].secrets : s.name => s.valueFrom } == {
        GEMINI_API_KEY    = var.gemini_api_key_secret_arn
        GEMINI_BUDGET_URI = aws_secretsmanager_secret.budget_store_uri.arn
      }
    ])
    error_message = "The Gemini key and the budget store URI reach the containers only as Secrets Manager secrets."
  }
  assert {
    condition = alltrue([for k, td in aws_ecs_task_definition.this : length(setintersection(
      [for e in jsondecode(td.container_definitions)[0].environment : e.name],
      ["GEMINI_API_KEY", "GEMINI_BUDGET_URI"],
    )) == 0])
    error_message = "No secret may be in the plain environment."
  }
  assert {
    condition = alltrue([for k, td in aws_ecs_task_definition.this :
      jsondecode(td.container_definitions)[0].logConfiguration == {
        logDriver = "awslogs"
        options = {
          awslogs-group         = "/ecs/analysis-pipeline/${k}"
          awslogs-region        = "eu-west-1"
          awslogs-stream-prefix = k
        }
      } && aws_cloudwatch_log_group.this[k].name == "/ecs/analysis-pipeline/${k}"
    ])
    error_message = "awslogs to /ecs/<project>/<container> with the container name as stream prefix (what the DAG side reads)."
  }
  assert {
    condition = alltrue([for k, td in aws_ecs_task_definition.this :
      jsondecode(td.container_definitions)[0].readonlyRootFilesystem &&
      !jsondecode(td.container_definitions)[0].privileged &&
      jsondecode(td.container_definitions)[0].user == "10001:10001" &&
      jsondecode(td.container_definitions)[0].linuxParameters.capabilities.drop == ["ALL"] &&
      jsondecode(td.container_definitions)[0].mountPoints == [{ sourceVolume = "scratch", containerPath = "/scratch", readOnly = false }] &&
      contains([for v in td.volume : v.name], "scratch") &&
      { for e in jsondecode(td.container_definitions)[0].environment : e.name => e.value }["TMPDIR"] == "/scratch"
    ])
    error_message = "Read-only root, non-root user, no capabilities, and the scratch volume (declared in the task) mounted where TMPDIR points."
  }
  assert {
    condition     = alltrue([for k, td in aws_ecs_task_definition.this : jsondecode(td.container_definitions)[0].stopTimeout == 120])
    error_message = "stopTimeout 120 s: room for the SIGTERM handler to write result.json."
  }
  assert {
    condition = (aws_ecs_task_definition.this["task-analyzer"].cpu == "4096" && aws_ecs_task_definition.this["task-analyzer"].memory == "8192"
      && aws_ecs_task_definition.this["proctor-video"].cpu == "2048" && aws_ecs_task_definition.this["proctor-video"].ephemeral_storage[0].size_in_gib == 30
    && aws_ecs_task_definition.this["task-analyzer"].ephemeral_storage[0].size_in_gib == 50)
    error_message = "Task sizes and scratch storage come from the workloads (defaults filled by modules/capacity)."
  }
  assert {
    condition = alltrue([for k, td in aws_ecs_task_definition.this :
      { for e in jsondecode(td.container_definitions)[0].environment : e.name => e.value } == {
        GEMINI_MAP_MODEL        = "gemini-2.5-flash"
        GEMINI_REDUCE_MODEL     = "gemini-2.5-flash"
        GEMINI_MAX_ATTEMPTS     = "6"
        GEMINI_TIMEOUT_SECONDS  = "300"
        GEMINI_RPM_BUDGET       = "1000"
        GEMINI_TPM_BUDGET       = "1000000"
        GEMINI_BUDGET_WEIGHT    = "1"
        GEMINI_MEDIA_RESOLUTION = "default"
        SEGMENT_SECONDS         = "120"
        MAP_CONCURRENCY         = "1"
        SCRATCH_DIR             = "/scratch"
        TMPDIR                  = "/scratch"
        METRICS_NAMESPACE       = "AnalysisPipeline"
      }
    ])
    error_message = "Both containers get the same fleet-wide budgets (one model: no GEMINI_MODEL_BUDGETS), their share of them (gemini_weight, default 1) and one segment at a time."
  }
}

run "levers_the_dags_read" {
  command = apply

  assert {
    condition = { for k, v in jsondecode(aws_ssm_parameter.airflow_settings.value) : k => v if contains([
      "MAX_CONCURRENT_ANALYSES", "MAX_CONCURRENT_PROCTOR_VIDEOS", "TASK_ANALYZER_VCPU", "PROCTOR_VIDEO_VCPU",
      "FARGATE_VCPU_POOL_SLOTS", "ANALYSIS_TIMEOUT_MINUTES", "ANALYSIS_LAUNCH_RETRIES", "TASK_ANALYZER_TASK_DEFINITION",
      "PROCTOR_VIDEO_LOG_GROUP", "ANALYSIS_ECS_CLUSTER", "RESULTS_URI", "ALLOWED_INPUT_PREFIXES",
      ], k) } == {
      MAX_CONCURRENT_ANALYSES       = "12"
      MAX_CONCURRENT_PROCTOR_VIDEOS = "8"
      TASK_ANALYZER_VCPU            = "4"
      PROCTOR_VIDEO_VCPU            = "2"
      FARGATE_VCPU_POOL_SLOTS       = "64"
      ANALYSIS_TIMEOUT_MINUTES      = "120"
      ANALYSIS_LAUNCH_RETRIES       = "3"
      TASK_ANALYZER_TASK_DEFINITION = "analysis-pipeline-task-analyzer"
      PROCTOR_VIDEO_LOG_GROUP       = "/ecs/analysis-pipeline/proctor-video"
      ANALYSIS_ECS_CLUSTER          = "analysis-pipeline"
      RESULTS_URI                   = "s3://analysis-pipeline-results/analyses/"
      ALLOWED_INPUT_PREFIXES        = "s3://analysis-pipeline-recordings/tasks/,s3://analysis-pipeline-recordings/proctor/"
    }
    error_message = "SSM /airflow/variables/analysis_pipeline_settings must carry the caps, sizes and names the DAGs read."
  }
  assert {
    condition     = aws_ssm_parameter.airflow_settings.name == "/airflow/variables/analysis_pipeline_settings"
    error_message = "The settings Variable lives where the SSM secrets backend looks for Variable analysis_pipeline_settings."
  }
  assert {
    condition     = length([for k in keys(jsondecode(aws_ssm_parameter.airflow_settings.value)) : k if strcontains(k, "BUDGET")]) == 0
    error_message = "No Gemini budget in the DAGs' settings: the task definitions are their only source."
  }
  assert {
    condition     = jsondecode(aws_ssm_parameter.airflow_settings.value)["ANALYSIS_ECS_SECURITY_GROUPS"] == aws_security_group.tasks.id
    error_message = "The DAGs launch tasks into the tasks' security group."
  }
  assert {
    condition     = aws_ecs_task_definition.this["task-analyzer"].family == jsondecode(aws_ssm_parameter.airflow_settings.value)["TASK_ANALYZER_TASK_DEFINITION"]
    error_message = "The task-definition family the DAGs launch is the one created."
  }
}

run "iam_grants_only_what_each_role_needs" {
  command = apply

  assert {
    # Every S3 action of the task role lands on the recordings prefixes (read) or the
    # results prefix (read/write): no bucket-wide object access, no wildcard resource.
    condition = alltrue([for s in jsondecode(aws_iam_role_policy.task.policy).Statement :
      s.Effect == "Allow" && !contains(flatten([s.Resource]), "*") && (
        s.Sid == "ReadRecordings" ? (s.Action == "s3:GetObject" && s.Resource == [
          "arn:aws:s3:::analysis-pipeline-recordings/tasks/*", "arn:aws:s3:::analysis-pipeline-recordings/proctor/*"
        ]) :
        s.Sid == "WriteResults" ? s.Resource == "arn:aws:s3:::analysis-pipeline-results/analyses/*" :
        s.Sid == "ListResults" ? s.Condition.StringLike["s3:prefix"] == ["analyses/*"] :
        startswith(s.Sid, "ListRecordings") ? s.Condition.StringLike["s3:prefix"] == ["tasks/*", "proctor/*"] :
        s.Sid == "EncryptResultsViaS3" ? s.Condition.StringEquals["kms:ViaService"] == "s3.eu-west-1.amazonaws.com" : false
      )
    ])
    error_message = "The task role reaches only the recordings prefixes and its own results prefix: ${aws_iam_role_policy.task.policy}"
  }
  assert {
    condition = { for s in jsondecode(aws_iam_role_policy.execution.policy).Statement : s.Sid => s.Resource } == {
      EcrLogin                 = "*"
      PullThesePipelinesImages = ["arn:aws:ecr:eu-west-1:123456789012:repository/analysis-pipeline/proctor-video", "arn:aws:ecr:eu-west-1:123456789012:repository/analysis-pipeline/task-analyzer"]
      WriteTheseLogGroups = [
        "arn:aws:logs:eu-west-1:123456789012:log-group:/ecs/analysis-pipeline/proctor-video:*",
        "arn:aws:logs:eu-west-1:123456789012:log-group:/ecs/analysis-pipeline/task-analyzer:*",
      ]
      ReadTheTwoSecrets                  = [var.gemini_api_key_secret_arn, aws_secretsmanager_secret.budget_store_uri.arn]
      DecryptTheSecretsViaSecretsManager = [aws_kms_key.this.arn]
    }
    error_message = "The execution role reaches only its images, its log groups, its two secrets and its key: ${aws_iam_role_policy.execution.policy}"
  }
  assert {
    condition = alltrue([for s in jsondecode(aws_iam_role_policy.execution.policy).Statement :
      s.Sid != "EcrLogin" ? true : s.Action == "ecr:GetAuthorizationToken"
    ]) && !strcontains(aws_iam_role_policy.execution.policy, "DecryptImageLayers")
    error_message = "The only wildcard resource is ecr:GetAuthorizationToken (it has no resource type); no image-layer decrypt grant."
  }
  assert {
    # kms:Decrypt anywhere only through the service that needs it.
    condition = alltrue(flatten([for p in [aws_iam_role_policy.execution.policy, aws_iam_role_policy.task.policy, aws_iam_policy.airflow.policy] : [
      for s in jsondecode(p).Statement : can(s.Condition.StringEquals["kms:ViaService"]) if contains(flatten([s.Action]), "kms:Decrypt")
    ]]))
    error_message = "Every kms:Decrypt grant carries a kms:ViaService condition."
  }
  assert {
    condition = alltrue([for s in jsondecode(aws_iam_policy.airflow.policy).Statement :
      s.Resource != "*" || (s.Action == "ecs:ListTasks" && try(s.Condition.ArnEquals["ecs:cluster"], "") == "arn:aws:ecs:eu-west-1:123456789012:cluster/analysis-pipeline")
    ])
    error_message = "The Airflow policy's only wildcard is ListTasks, pinned to this cluster."
  }
  assert {
    condition = [for s in jsondecode(aws_iam_policy.airflow.policy).Statement : s.Resource if s.Sid == "PassOnlyTheseRoles"][0] == [
      "arn:aws:iam::123456789012:role/analysis-pipeline-execution", "arn:aws:iam::123456789012:role/analysis-pipeline-task"
    ] && aws_iam_role.execution.name == "analysis-pipeline-execution" && aws_iam_role.task.name == "analysis-pipeline-task"
    error_message = "Airflow may pass only these two roles."
  }
  assert {
    condition     = jsondecode(aws_iam_role.task.assume_role_policy).Statement[0].Condition.StringEquals["aws:SourceAccount"] == "123456789012"
    error_message = "Only ECS tasks of this account may assume the roles."
  }
}

run "budget_store_reachable_only_from_the_tasks" {
  command = apply

  assert {
    condition     = nonsensitive(aws_secretsmanager_secret_version.budget_store_uri.secret_string) == "rediss://analysis-pipeline-budget:mocktoken0123456789@analysis-pipeline-budget-abc123.serverless.euw1.cache.amazonaws.com:6379"
    error_message = "The secret holds the whole TLS URI with the user and its token."
  }
  assert {
    condition     = aws_elasticache_serverless_cache.budget.engine == "valkey" && aws_elasticache_serverless_cache.budget.security_group_ids == toset([aws_security_group.budget_store.id]) && aws_elasticache_serverless_cache.budget.subnet_ids == toset(var.subnet_ids)
    error_message = "Valkey in the tasks' subnets behind its own security group."
  }
  assert {
    condition     = aws_vpc_security_group_ingress_rule.budget_store_from_tasks.referenced_security_group_id == aws_security_group.tasks.id && aws_vpc_security_group_ingress_rule.budget_store_from_tasks.from_port == 6379 && aws_vpc_security_group_ingress_rule.budget_store_from_tasks.cidr_ipv4 == null
    error_message = "The store admits the tasks' security group only, on the Valkey port."
  }
  assert {
    condition     = aws_elasticache_user.disabled_default.user_name == "default" && startswith(aws_elasticache_user.disabled_default.access_string, "off") && aws_elasticache_user_group.budget.user_ids == toset([aws_elasticache_user.disabled_default.user_id, aws_elasticache_user.budget.user_id])
    error_message = "Only the budget user can connect (the group's default user is switched off)."
  }
  assert {
    condition     = aws_secretsmanager_secret.budget_store_uri.kms_key_id == aws_kms_key.this.arn && aws_elasticache_serverless_cache.budget.kms_key_id == aws_kms_key.this.arn
    error_message = "The store and its secret are encrypted with the pipeline's key."
  }
}

run "quota_request_and_pool" {
  command = apply

  assert {
    condition     = aws_servicequotas_service_quota.fargate_vcpu[0].service_code == "fargate" && aws_servicequotas_service_quota.fargate_vcpu[0].quota_code == "L-3032A538" && aws_servicequotas_service_quota.fargate_vcpu[0].value == 64
    error_message = "The Fargate On-Demand vCPU quota is requested at what the caps need (64)."
  }
  assert {
    condition     = output.capacity.caps_effective == { "task-analyzer" = 12, "proctor-video" = 8 } && abs(output.capacity.drain["task-analyzer"].hours - 17.0139) < 0.001
    error_message = "The decision record: caps 12/8 in a 64-vCPU quota, 350 analyses in ~17.0 h."
  }
}

run "quota_pending_holds_the_caps_and_warns" {
  command = apply
  variables {
    fargate_vcpu_quota = 128
    workloads = {
      "task-analyzer" = { image_tag = "2026.06.16", max_concurrent = 24, vcpu = 4, memory_mib = 8192, minutes_per_analysis = 35, batch_size = 350 }
      "proctor-video" = { image_tag = "2026.06.16", max_concurrent = 16, vcpu = 2, memory_mib = 4096 }
    }
  }
  assert {
    condition     = aws_servicequotas_service_quota.fargate_vcpu[0].value == 128 && jsondecode(aws_ssm_parameter.airflow_settings.value)["MAX_CONCURRENT_ANALYSES"] == "12" && jsondecode(aws_ssm_parameter.airflow_settings.value)["FARGATE_VCPU_POOL_SLOTS"] == "64"
    error_message = "128 is requested while the caps written fit the granted 64."
  }
  assert {
    condition     = abs(output.capacity.drain["task-analyzer"].hours - 17.0139) < 0.001
    error_message = "The prediction uses the caps written (12), not the 24 asked for."
  }
  expect_failures = [check.fargate_quota_granted]
}

run "applied_quota_below_one_task_of_each_still_requests_the_increase" {
  command = apply
  override_data {
    target = data.aws_servicequotas_service_quota.fargate_vcpu
    values = { value = 4, adjustable = true }
  }
  assert {
    condition     = aws_servicequotas_service_quota.fargate_vcpu[0].value == 64 && jsondecode(aws_ssm_parameter.airflow_settings.value)["MAX_CONCURRENT_ANALYSES"] == "1" && jsondecode(aws_ssm_parameter.airflow_settings.value)["MAX_CONCURRENT_PROCTOR_VIDEOS"] == "1"
    error_message = "The increase is requested and the caps are written as 1 (never 0), not a failed plan."
  }
  expect_failures = [check.fargate_quota_granted, check.fargate_quota_holds_one_task_of_each]
}

run "per_model_budgets_reach_both_containers" {
  command = apply
  variables {
    gemini_model_quotas = { "gemini-2.5-pro" = { rpm = 150, tpm = 2000000 } }
    workloads = {
      "task-analyzer" = { image_tag = "2026.06.16", max_concurrent = 12, vcpu = 4, memory_mib = 8192, gemini_reduce_model = "gemini-2.5-pro" }
      "proctor-video" = { image_tag = "2026.06.16", max_concurrent = 8, vcpu = 2, memory_mib = 4096 }
    }
  }
  assert {
    condition = alltrue([for k, td in aws_ecs_task_definition.this :
      jsondecode({ for e in jsondecode(td.container_definitions)[0].environment : e.name => e.value }["GEMINI_MODEL_BUDGETS"]) == {
        "gemini-2.5-flash" = { rpm = 1000, tpm = 1000000 }
        "gemini-2.5-pro"   = { rpm = 150, tpm = 2000000 }
      }
    ])
    error_message = "When MAP and REDUCE models differ every container gets each model's fleet-wide budget."
  }
}

# --- variables refused before anything is planned -------------------------------------------

run "secret_arn_without_its_suffix" {
  command = plan
  variables {
    gemini_api_key_secret_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:analysis-pipeline/gemini-api-key"
  }
  expect_failures = [var.gemini_api_key_secret_arn]
}

run "kms_alias_instead_of_a_key" {
  command = plan
  variables {
    recordings_kms_key_arns    = ["arn:aws:kms:eu-west-1:123456789012:alias/recordings"]
    gemini_api_key_kms_key_arn = "alias/gemini"
  }
  expect_failures = [var.recordings_kms_key_arns, var.gemini_api_key_kms_key_arn]
}

run "region_and_network_ids_checked" {
  command = plan
  variables {
    aws_region = "Ireland"
    vpc_id     = "my-vpc"
    subnet_ids = ["subnet-1"]
  }
  expect_failures = [var.aws_region, var.vpc_id, var.subnet_ids]
}

run "ecr_keep_images_must_be_positive" {
  command = plan
  variables {
    ecr_keep_images = 0
  }
  expect_failures = [var.ecr_keep_images]
}

run "workloads_need_both_containers_and_tags" {
  command = plan
  variables {
    workloads = {
      "task-analyzer" = { max_concurrent = 12, vcpu = 4, memory_mib = 8192 }
    }
  }
  expect_failures = [var.workloads]
}
