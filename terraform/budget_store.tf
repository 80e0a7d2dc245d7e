# The shared Gemini budget store: every container of both kinds counts its Gemini calls
# against the same fleet-wide, per-model limits here (GEMINI_BUDGET_URI). ElastiCache
# Serverless for Valkey in the tasks' subnets, TLS only (serverless caches always encrypt
# in transit), reachable only from the tasks' security group, password auth through a
# user group; the whole connection URI lives in Secrets Manager and reaches the
# containers only through the task definitions' `secrets`.

locals {
  budget_store_port = 6379
  budget_store_user = "${var.project}-budget"
}

# The token is drawn once and kept: the data source draws a new one on every read, the
# terraform_data below remembers the first (rotate: terraform apply -replace=terraform_data.budget_store_token).
data "aws_secretsmanager_random_password" "budget_store" {
  password_length     = 64
  exclude_punctuation = true
}

resource "terraform_data" "budget_store_token" {
  input = sensitive(data.aws_secretsmanager_random_password.budget_store.random_password)

  lifecycle {
    ignore_changes = [input]
  }
}

resource "aws_elasticache_user" "budget" {
  user_id   = local.budget_store_user
  user_name = local.budget_store_user
  engine    = "valkey"
  # Only the budget's keys (they share the hash tag {gemini-budget}; the containers' code
  # names the pattern ACL_KEY_PATTERN), only data, script and connection commands, plus
  # CLUSTER and COMMAND for cluster-aware clients; no pub/sub, nothing dangerous. The
  # budget's tests create this user from this line on a local redis-server.
  access_string = "on ~{gemini-budget}:* -@all +@connection +@read +@write +@scripting +cluster +command -@dangerous"

  authentication_mode {
    type      = "password"
    passwords = [terraform_data.budget_store_token.output]
  }
}

# A user group must name a "default" user; this one is switched off, so only the budget
# user above can connect.
resource "aws_elasticache_user" "disabled_default" {
  user_id       = "${var.project}-off"
  user_name     = "default"
  engine        = "valkey"
  access_string = "off -@all"

  authentication_mode {
    type      = "password"
    passwords = [terraform_data.budget_store_token.output]
  }
}

resource "aws_elasticache_user_group" "budget" {
  user_group_id = "${var.project}-budget"
  engine        = "valkey"
  user_ids      = [aws_elasticache_user.disabled_default.user_id, aws_elasticache_user.budget.user_id]
}

resource "aws_elasticache_serverless_cache" "budget" {
  name                 = "${var.project}-budget"
  description          = "Fleet-wide Gemini request/token budgets (GEMINI_BUDGET_URI)"
  engine               = "valkey"
  major_engine_version = "8"
  kms_key_id           = aws_kms_key.this.arn
  security_group_ids   = [aws_security_group.budget_store.id]
  # A serverless cache takes at most three subnets (one per Availability Zone).
  subnet_ids    = slice(var.subnet_ids, 0, min(3, length(var.subnet_ids)))
  user_group_id = aws_elasticache_user_group.budget.user_group_id

  # Counters for a minute's window: tiny. The limits cap the bill, not the pipeline.
  cache_usage_limits {
    data_storage {
      maximum = 1
      unit    = "GB"
    }
    ecpu_per_second {
      maximum = 5000
    }
  }
}

resource "aws_secretsmanager_secret" "budget_store_uri" {
  #checkov:skip=CKV2_AWS_57:Rotation is a replace of terraform_data.budget_store_token plus an apply (the ElastiCache user and this secret move together); a Lambda rotator would be a second writer.
  name                    = "${var.project}/gemini-budget-uri"
  description             = "GEMINI_BUDGET_URI for the analysis containers: rediss://<user>:<token>@<budget store endpoint>:<port>"
  kms_key_id              = aws_kms_key.this.arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "budget_store_uri" {
  secret_id = aws_secretsmanager_secret.budget_store_uri.id
  secret_string = format("rediss://%s:%s@%s:%d",
    local.budget_store_user,
    terraform_data.budget_store_token.output,
    aws_elasticache_serverless_cache.budget.endpoint[0].address,
    aws_elasticache_serverless_cache.budget.endpoint[0].port,
  )
}
