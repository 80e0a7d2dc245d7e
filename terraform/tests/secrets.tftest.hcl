# Secrets: every one is a Terraform-managed slot whose value a person sets (secrets.tf), and
# the Airflow role reads exactly the settings and connections the DAG side reads. The mocked
# provider and variables repeat the root suite's (tests/test_terraform.py checks they do).
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

run "every_secret_is_a_managed_slot_without_a_value_in_state" {
  command = apply

  variables {
    gemini_api_key_secret_arn = null
  }

  assert {
    condition     = length(aws_secretsmanager_secret.gemini_api_key) == 1 && aws_secretsmanager_secret.gemini_api_key[0].name == "analysis-pipeline/gemini-api-key" && aws_secretsmanager_secret.gemini_api_key[0].kms_key_id == aws_kms_key.this.arn
    error_message = "Without gemini_api_key_secret_arn, Terraform creates the key's secret (no version: the value is set with put-secret-value)."
  }
  assert {
    condition = alltrue([for c in jsondecode(aws_ecs_task_definition.this["task-analyzer"].container_definitions)[0].secrets :
    c.valueFrom == aws_secretsmanager_secret.gemini_api_key[0].arn if c.name == "GEMINI_API_KEY"])
    error_message = "The containers get GEMINI_API_KEY from the managed secret."
  }
  assert {
    condition     = toset([for p in aws_ssm_parameter.airflow_connection : p.name]) == toset(["/airflow/connections/discord_alerts", "/airflow/connections/analysis_backend"])
    error_message = "The two Airflow connections live where the SSM secrets backend reads connections."
  }
  assert {
    condition     = alltrue([for p in aws_ssm_parameter.airflow_connection : p.type == "SecureString" && p.key_id == aws_kms_key.this.arn && p.value_wo_version == 1])
    error_message = "Connections are SecureString on the pipeline's key; the placeholder is write-only (never in state)."
  }
  assert {
    condition     = alltrue([for k, p in aws_ssm_parameter.airflow_connection : strcontains(p.description, "aws ssm put-parameter --name /airflow/connections/${k} --type SecureString")])
    error_message = "Each connection's description states the command that sets its value."
  }
}

run "the_airflow_role_reads_exactly_its_settings_and_connections" {
  command = apply

  variables {
    gemini_api_key_secret_arn = null
  }

  assert {
    condition = [for s in jsondecode(aws_iam_policy.airflow.policy).Statement : s.Resource if s.Sid == "ReadItsSettingsAndConnections"][0] == [
      "arn:aws:ssm:eu-west-1:123456789012:parameter/airflow/variables/analysis_pipeline_settings",
      "arn:aws:ssm:eu-west-1:123456789012:parameter/airflow/connections/analysis_backend",
      "arn:aws:ssm:eu-west-1:123456789012:parameter/airflow/connections/discord_alerts",
    ]
    error_message = "The Airflow role reads the settings Variable and its two connections, nothing else in SSM."
  }
  assert {
    condition = one([for s in jsondecode(aws_iam_policy.airflow.policy).Statement : s if s.Sid == "DecryptItsConnectionsViaSsm"]) == {
      Sid       = "DecryptItsConnectionsViaSsm"
      Effect    = "Allow"
      Action    = "kms:Decrypt"
      Resource  = aws_kms_key.this.arn
      Condition = { StringEquals = { "kms:ViaService" = "ssm.eu-west-1.amazonaws.com" } }
    }
    error_message = "The Airflow role decrypts the SecureString connections through SSM only."
  }
  assert {
    condition     = !strcontains(aws_iam_policy.airflow.policy, "secretsmanager")
    error_message = "The Airflow role never reads the Gemini key or the budget store's secret."
  }
}

run "an_existing_gemini_key_secret_is_used_instead" {
  command = apply

  variables {
    gemini_api_key_secret_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:elsewhere/gemini-AbCdEf"
  }

  assert {
    condition     = length(aws_secretsmanager_secret.gemini_api_key) == 0 && contains([for s in jsondecode(aws_iam_role_policy.execution.policy).Statement : s.Resource if s.Sid == "ReadTheTwoSecrets"][0], var.gemini_api_key_secret_arn)
    error_message = "An existing secret is read by the execution role, and none is created."
  }
}
