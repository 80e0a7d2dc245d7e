# The images the task definitions run must be in ECR at plan time (images.tf), by tag or by
# digest, and the ECR repositories can be created before any image exists (`make registry`).
#   cd terraform && terraform init -backend=false -plugin-dir=<provider dir> && terraform test
#
# The mocked aws_ecr_image answers for an image in each repository tagged 2026.06.16 with
# the digest below, whatever is asked. The real provider fails the plan outright when ECR has
# no such tag or digest (ImageNotFoundException); the mock cannot, so these runs exercise the
# postcondition that also refuses an answer without the requested tag, or whose tag names
# another digest. (A digest alone is looked up by digest: only the provider can refuse it.)

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
  mock_data "aws_ecr_image" {
    defaults = { image_tags = ["2026.06.16"], image_digest = "sha256:2f6a1c0e5b9d8a7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a29180f1e2d3c4b5a6978" }
  }
}

variables {
  aws_region                = "eu-west-1"
  vpc_id                    = "vpc-0123456789abcdef0"
  subnet_ids                = ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]
  recordings_uri_prefixes   = ["s3://analysis-pipeline-recordings/"]
  results_bucket_name       = "analysis-pipeline-results"
  gemini_api_key_secret_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:analysis-pipeline/gemini-api-key-AbCdEf"
  fargate_vcpu_quota        = 64
  gemini_project_rpm        = 1000
  gemini_project_tpm        = 1000000
  workloads = {
    "task-analyzer" = { image_tag = "2026.06.16", max_concurrent = 12, vcpu = 4, memory_mib = 8192 }
    "proctor-video" = { image_tag = "2026.06.16", max_concurrent = 8, vcpu = 2, memory_mib = 4096 }
  }
}

run "a_pushed_tag_is_what_the_task_definitions_run" {
  command = plan

  assert {
    condition = output.images == {
      "task-analyzer" = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/analysis-pipeline/task-analyzer:2026.06.16"
      "proctor-video" = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/analysis-pipeline/proctor-video:2026.06.16"
    }
    error_message = "By tag: each task definition runs <its ECR repository>:<image_tag>."
  }
  assert {
    condition     = data.aws_ecr_image.this["proctor-video"].repository_name == "analysis-pipeline/proctor-video" && data.aws_ecr_image.this["proctor-video"].image_tag == "2026.06.16"
    error_message = "The plan looks the tag up in the workload's own repository."
  }
}

run "a_tag_that_was_never_pushed_refuses_the_plan" {
  command = plan

  variables {
    workloads = {
      "task-analyzer" = { image_tag = "2026.06.16", max_concurrent = 12, vcpu = 4, memory_mib = 8192 }
      "proctor-video" = { image_tag = "2026.07.01", max_concurrent = 8, vcpu = 2, memory_mib = 4096 }
    }
  }
  expect_failures = [data.aws_ecr_image.this]
}

run "an_image_by_digest_is_pinned_by_digest" {
  command = plan

  variables {
    workloads = {
      "task-analyzer" = { image_digest = "sha256:2f6a1c0e5b9d8a7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a29180f1e2d3c4b5a6978", max_concurrent = 12, vcpu = 4, memory_mib = 8192 }
      # Tag and digest: the tag must name that digest.
      "proctor-video" = { image_tag = "2026.06.16", image_digest = "sha256:2f6a1c0e5b9d8a7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a29180f1e2d3c4b5a6978", max_concurrent = 8, vcpu = 2, memory_mib = 4096 }
    }
  }

  assert {
    condition = output.images == {
      "task-analyzer" = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/analysis-pipeline/task-analyzer@sha256:2f6a1c0e5b9d8a7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a29180f1e2d3c4b5a6978"
      "proctor-video" = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/analysis-pipeline/proctor-video@sha256:2f6a1c0e5b9d8a7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a29180f1e2d3c4b5a6978"
    }
    error_message = "By digest: the task definitions run <repository>@<digest>, whatever the tag."
  }
  assert {
    condition = (data.aws_ecr_image.this["task-analyzer"].image_tag == null
    && data.aws_ecr_image.this["proctor-video"].image_tag == "2026.06.16")
    error_message = "A digest alone is looked up by digest; with a tag, the tag is looked up and must name it."
  }
}

run "a_tag_that_names_another_image_than_the_digest_refuses_the_plan" {
  command = plan

  variables {
    workloads = {
      "task-analyzer" = { image_tag = "2026.06.16", max_concurrent = 12, vcpu = 4, memory_mib = 8192 }
      "proctor-video" = { image_tag = "2026.07.01", image_digest = "sha256:2f6a1c0e5b9d8a7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a29180f1e2d3c4b5a6978", max_concurrent = 8, vcpu = 2, memory_mib = 4096 }
    }
  }
  expect_failures = [data.aws_ecr_image.this]
}

run "an_image_must_be_named_by_a_valid_tag_or_digest" {
  command = plan

  variables {
    workloads = {
      "task-analyzer" = { image_digest = "sha256:ABC", max_concurrent = 12, vcpu = 4, memory_mib = 8192 }
      "proctor-video" = { max_concurrent = 8, vcpu = 2, memory_mib = 4096 }
    }
  }
  expect_failures = [var.workloads]
}

# `make registry` on a new account: the repositories (and their KMS key) before any image is
# pushed; the image check is not part of that targeted plan.
run "the_repositories_are_created_before_any_image_exists" {
  command = apply

  plan_options {
    target = [aws_ecr_repository.this, aws_ecr_lifecycle_policy.this]
  }
  variables {
    workloads = {
      "task-analyzer" = { image_tag = "2026.07.01", max_concurrent = 12, vcpu = 4, memory_mib = 8192 }
      "proctor-video" = { image_tag = "2026.07.01", max_concurrent = 8, vcpu = 2, memory_mib = 4096 }
    }
  }

  assert {
    condition     = toset([for r in aws_ecr_repository.this : r.name]) == toset(["analysis-pipeline/task-analyzer", "analysis-pipeline/proctor-video"]) && alltrue([for r in aws_ecr_repository.this : r.image_tag_mutability == "IMMUTABLE"])
    error_message = "The targeted apply creates both repositories, tags immutable (a tag names one image for good)."
  }
}
