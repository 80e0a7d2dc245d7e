# Every secret is a Terraform-managed slot whose VALUE a person sets with one command
# (docs/DEPLOY.md, "Secrets"); Terraform never holds a secret value in its state:
#
# - the Gemini API key: a Secrets Manager secret with no version (the ECS agent injects it
#   as GEMINI_API_KEY through the task definitions' `secrets`). Value: the bare key.
#     aws secretsmanager put-secret-value --secret-id <name> --secret-string "$GEMINI_API_KEY"
# - the Airflow connections (discord_alerts for failure alerts, analysis_backend for the
#   result callback): SecureString parameters under /airflow/connections/, where Airflow's
#   SSM secrets backend reads them. Created with a placeholder (a connection without a
#   host, which the DAG side treats as "not configured") written once through the
#   write-only `value_wo`; a person's `aws ssm put-parameter --overwrite` is never undone.
#     aws ssm put-parameter --name /airflow/connections/<conn_id> --type SecureString \
#       --key-id alias/<project> --overwrite --value '<connection JSON>'

locals {
  manage_gemini_api_key  = var.gemini_api_key_secret_arn == null
  gemini_api_key_arn     = local.manage_gemini_api_key ? aws_secretsmanager_secret.gemini_api_key[0].arn : var.gemini_api_key_secret_arn
  gemini_api_key_kms_arn = local.manage_gemini_api_key ? aws_kms_key.this.arn : var.gemini_api_key_kms_key_arn

  # conn_id => the format its value takes (Airflow's JSON connection format).
  airflow_connections = {
    discord_alerts   = "{\"conn_type\": \"http\", \"host\": \"https://discord.com/api/webhooks/<webhook id>\", \"password\": \"<webhook token>\"}"
    analysis_backend = "{\"conn_type\": \"http\", \"host\": \"https://<backend host>/<callback path>\", \"login\": \"<callback key id>\", \"password\": \"<callback signing secret>\"}"
  }
  connection_parameter_arn = { for c in keys(local.airflow_connections) : c => "arn:${local.partition}:ssm:${local.region}:${local.account}:parameter${local.ssm_connections_prefix}${c}" }
}

resource "aws_secretsmanager_secret" "gemini_api_key" {
  #checkov:skip=CKV2_AWS_57:An API key issued by Google AI Studio: rotated there, then set here with put-secret-value; no rotator can mint one.
  count = local.manage_gemini_api_key ? 1 : 0

  name        = "${var.project}/gemini-api-key"
  description = "Gemini API key of ${var.project} (the bare key, e.g. AIza...). Set with: aws secretsmanager put-secret-value --secret-id ${var.project}/gemini-api-key --secret-string \"$GEMINI_API_KEY\""
  kms_key_id  = aws_kms_key.this.arn
}

resource "aws_ssm_parameter" "airflow_connection" {
  for_each = local.airflow_connections

  name        = "${local.ssm_connections_prefix}${each.key}"
  description = "Airflow connection ${each.key} of ${var.project}. Format: ${each.value}. Set with: aws ssm put-parameter --name ${local.ssm_connections_prefix}${each.key} --type SecureString --key-id alias/${var.project} --overwrite --value '<JSON>'"
  type        = "SecureString"
  key_id      = aws_kms_key.this.arn
  # Write-only: the placeholder is written once and never stored in the state, and the
  # value a person sets later is neither read back nor reverted.
  value_wo         = jsonencode({ conn_type = "http", description = "not set yet: docs/DEPLOY.md, Secrets" })
  value_wo_version = 1
}
