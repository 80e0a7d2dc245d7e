terraform {
  # 1.9+: variable validations may refer to other variables; 1.10+: S3 native state locking.
  required_version = ">= 1.10.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # One major version; .terraform.lock.hcl pins the exact release and its checksums.
      version = "~> 5.100"
    }
  }
}

provider "aws" {
  region = var.aws_region

  default_tags {
    tags = merge({ Project = var.project, ManagedBy = "terraform" }, var.tags)
  }
}
