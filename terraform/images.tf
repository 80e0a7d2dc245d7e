# The image each task definition runs: the workload's image_digest (repository@sha256:...)
# when given, else its image_tag (repository:tag; tags are immutable in these repositories).
#
# The image must already be in its ECR repository: `make push TAG=...` comes before the
# apply that references the tag, and the plan refuses an image that is not there, instead of
# an apply whose tasks then fail to pull (CannotPullContainerError) while runs queue up.
# The repositories themselves come first, from `make registry` (a targeted apply of
# aws_ecr_repository.this, which reads no image), so a new account's order is: registry,
# push, plan/apply. Rolling back is an apply with the previous tag or digest.

data "aws_ecr_image" "this" {
  for_each = local.workloads

  # The repository's name, not aws_ecr_repository.this: known at plan time, so the image is
  # looked up during the plan (an unknown reference would defer the read to the apply).
  # Not found: the provider fails the plan (ImageNotFoundException) naming the repository.
  # By tag when there is one (with a digest too, the tag must name that digest); else by digest.
  repository_name = local.ecr_name[each.key]
  image_tag       = each.value.image_tag
  image_digest    = each.value.image_tag == null ? each.value.image_digest : null

  lifecycle {
    postcondition {
      condition = (
        (each.value.image_digest == null || self.image_digest == each.value.image_digest) &&
        (each.value.image_tag == null || contains(coalesce(self.image_tags, []), coalesce(each.value.image_tag, "-")))
      )
      error_message = format(
        "%s is not in the ECR repository %s%s: build and push it first (make images && make push TAG=%s), then plan again.",
        each.value.image_digest == null ? "Image tag ${coalesce(each.value.image_tag, "-")}" : "Image ${coalesce(each.value.image_tag, "(no tag)")}@${each.value.image_digest}",
        local.ecr_name[each.key],
        each.value.image_digest != null && each.value.image_tag != null ? " under that tag" : "",
        coalesce(each.value.image_tag, "<tag>"),
      )
    }
  }
}

locals {
  image = { for k, w in local.workloads :
    k => w.image_digest != null ? "${local.ecr_url[k]}@${w.image_digest}" : "${local.ecr_url[k]}:${w.image_tag}"
  }
}
