# The cluster, the images and one Fargate task definition per container.

resource "aws_ecs_cluster" "this" {
  name = local.cluster_name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_ecs_cluster_capacity_providers" "this" {
  cluster_name       = aws_ecs_cluster.this.name
  capacity_providers = ["FARGATE"]

  default_capacity_provider_strategy {
    capacity_provider = "FARGATE"
    weight            = 1
  }
}

resource "aws_ecr_repository" "this" {
  for_each = local.workloads

  name                 = local.ecr_name[each.key]
  image_tag_mutability = "IMMUTABLE"

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = aws_kms_key.this.arn
  }
}

resource "aws_ecr_lifecycle_policy" "this" {
  for_each = aws_ecr_repository.this

  repository = each.value.name
  policy = jsonencode({
    rules = [
      {
        rulePriority = 1
        description  = "Untagged layers from rebuilt tags expire after a day"
        selection    = { tagStatus = "untagged", countType = "sinceImagePushed", countUnit = "days", countNumber = 1 }
        action       = { type = "expire" }
      },
      {
        rulePriority = 2
        description  = "Keep the newest ${var.ecr_keep_images} images"
        selection    = { tagStatus = "any", countType = "imageCountMoreThan", countNumber = var.ecr_keep_images }
        action       = { type = "expire" }
      },
    ]
  })
}

locals {
  # Per-container environment: everything of the DESIGN contract that is fixed per image.
  # ANALYSIS_ID, INPUT_URI, OUTPUT_URI and ANALYSIS_CONTEXT come per run from the DAG's
  # containerOverrides; GEMINI_API_KEY and GEMINI_BUDGET_URI only through `secrets`.
  # The Gemini budgets are the same fleet-wide values in both task definitions: every
  # container counts against them through the shared store.
  container_environment = { for k, w in local.workloads : k => merge(
    {
      GEMINI_MAP_MODEL        = w.gemini_map_model
      GEMINI_REDUCE_MODEL     = w.gemini_reduce_model
      GEMINI_MAX_ATTEMPTS     = tostring(w.gemini_max_attempts)
      GEMINI_TIMEOUT_SECONDS  = tostring(w.gemini_timeout_seconds)
      GEMINI_RPM_BUDGET       = tostring(module.capacity.gemini_rpm_budget)
      GEMINI_TPM_BUDGET       = tostring(module.capacity.gemini_tpm_budget)
      GEMINI_BUDGET_WEIGHT    = tostring(w.gemini_weight)
      GEMINI_MEDIA_RESOLUTION = w.media_resolution
      SEGMENT_SECONDS         = tostring(w.segment_seconds)
      MAP_CONCURRENCY         = tostring(w.map_concurrency)
      SCRATCH_DIR             = local.scratch_path
      TMPDIR                  = local.scratch_path
      METRICS_NAMESPACE       = var.metrics_namespace
    },
    module.capacity.gemini_model_budgets_json == null ? {} : { GEMINI_MODEL_BUDGETS = module.capacity.gemini_model_budgets_json },
  ) }
  container_secrets = {
    GEMINI_API_KEY    = local.gemini_api_key_arn
    GEMINI_BUDGET_URI = aws_secretsmanager_secret.budget_store_uri.arn
  }
}

resource "aws_ecs_task_definition" "this" {
  for_each = local.workloads

  family                   = local.task_family[each.key]
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = tostring(local.workloads[each.key].vcpu * 1024)
  memory                   = tostring(local.workloads[each.key].memory_mib)
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn
  # The image is checked to be in ECR first (images.tf), also in a targeted apply.
  depends_on = [data.aws_ecr_image.this]

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  # Recordings, segments and the stitched video live here (the root filesystem is read-only).
  ephemeral_storage {
    size_in_gib = local.workloads[each.key].ephemeral_storage_gib
  }

  volume {
    name = "scratch"
  }

  container_definitions = jsonencode([{
    name                   = each.key
    image                  = local.image[each.key]
    essential              = true
    user                   = local.container_user
    readonlyRootFilesystem = true
    privileged             = false
    # Fargate's maximum: the container's SIGTERM handler writes result.json well within it.
    stopTimeout = 120
    linuxParameters = {
      initProcessEnabled = true
      capabilities       = { drop = ["ALL"] }
    }
    environment = [for name, value in local.container_environment[each.key] : { name = name, value = value }]
    secrets     = [for name, arn in local.container_secrets : { name = name, valueFrom = arn }]
    mountPoints = [{ sourceVolume = "scratch", containerPath = local.scratch_path, readOnly = false }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.this[each.key].name
        awslogs-region        = local.region
        awslogs-stream-prefix = local.log_stream_prefix[each.key]
      }
    }
  }])
}
