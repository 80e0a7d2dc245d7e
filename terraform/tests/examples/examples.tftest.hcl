# Each example tfvars planned against the mocked provider (variables from the command line):
#   terraform test -test-directory=tests/examples -var-file=examples/<name>.tfvars
# AWS is mocked as applying the decision record's 64 vCPU.

mock_provider "aws" {
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws", dns_suffix = "amazonaws.com" }
  }
  mock_data "aws_servicequotas_service_quota" {
    defaults = { value = 64, adjustable = true }
  }
}

run "example_plans" {
  command = plan

  assert {
    condition     = output.capacity.required_vcpu <= var.fargate_vcpu_quota && output.capacity.quota_to_request == var.fargate_vcpu_quota
    error_message = "The example's caps must fit its quota, and that quota is what is requested."
  }
  assert {
    condition     = output.capacity.pool_vcpu <= 64 && alltrue([for k, c in output.capacity.caps_effective : c >= 1])
    error_message = "The caps written fit what AWS applies now (64 in the mock), never below 1."
  }
}
