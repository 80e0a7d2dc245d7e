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
  # Both repositories hold the tag the examples reference (images.tf refuses one they do not).
  mock_data "aws_ecr_image" {
    defaults = { image_tags = ["2026.06.16"], image_digest = "sha256:2f6a1c0e5b9d8a7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a29180f1e2d3c4b5a6978" }
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
