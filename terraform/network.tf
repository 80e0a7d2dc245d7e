# The tasks' security group (attached at RunTask time by Airflow) and the budget store's.

resource "aws_security_group" "tasks" {
  #checkov:skip=CKV2_AWS_5:Attached at RunTask time: Airflow passes it in the awsvpc network configuration.
  name        = "${var.project}-tasks"
  description = "Analysis tasks: no inbound; HTTPS out to AWS APIs and Gemini, Valkey to the budget store"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_egress_rule" "https" {
  security_group_id = aws_security_group.tasks.id
  description       = "HTTPS to AWS APIs and the Gemini API"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "budget_store" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "Valkey (TLS) to the shared Gemini budget store"
  referenced_security_group_id = aws_security_group.budget_store.id
  ip_protocol                  = "tcp"
  from_port                    = local.budget_store_port
  to_port                      = local.budget_store_port
}

resource "aws_security_group" "budget_store" {
  name        = "${var.project}-budget-store"
  description = "Gemini budget store: Valkey (TLS) from the analysis tasks only"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "budget_store_from_tasks" {
  security_group_id            = aws_security_group.budget_store.id
  description                  = "Valkey (TLS) from the analysis tasks' security group only"
  referenced_security_group_id = aws_security_group.tasks.id
  ip_protocol                  = "tcp"
  from_port                    = local.budget_store_port
  to_port                      = local.budget_store_port
}
