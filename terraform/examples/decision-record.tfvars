# The capacity decision record's setting (16 Jun 2026): task analyses capped at 12 at once on
# 4-vCPU Fargate tasks, ~35 min each with the segments analysed one after another
# (MAP_CONCURRENCY=1, as measured then), Fargate On-Demand vCPU quota 64 (ceiling 16 = 64 ÷ 4).
# The 16 vCPU of headroom the record kept above the 12 task analyses now runs the proctor
# videos (8 × 2 vCPU), so the pool and the quota are both 64.
#
#   make capacity SUBMISSIONS=350 CONCURRENCY=12 MINUTES_PER_ANALYSIS=35   # ≈ 17.0 h
#   make plan TFVARS=terraform/examples/decision-record.tfvars
#
# Placeholders (replace before a real plan): Region, VPC, subnets, bucket names, secret ARN.

aws_region                = "eu-west-1"
vpc_id                    = "vpc-0123456789abcdef0"
subnet_ids                = ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]
recordings_uri_prefixes   = ["s3://analysis-pipeline-recordings/"]
results_bucket_name       = "analysis-pipeline-results"
gemini_api_key_secret_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:analysis-pipeline/gemini-api-key-AbCdEf"

# Lever 2: the Fargate vCPU quota.
fargate_vcpu_quota = 64
headroom_vcpu      = 0

# Lever 3: the Gemini project quota (a Tier-1 Flash project: 1k RPM, 1M TPM). With the shared
# budget store these are the whole fleet's limits for the model: every container counts
# against the same 1000 RPM / 1M TPM (the record's 20 containers ask ~330k TPM of it).
gemini_project_rpm = 1000
gemini_project_tpm = 1000000

# Lever 1: the DAG caps (MAX_CONCURRENT_ANALYSES, MAX_CONCURRENT_PROCTOR_VIDEOS).
workloads = {
  "task-analyzer" = {
    image_tag             = "2026.06.16"
    max_concurrent        = 12
    vcpu                  = 4
    memory_mib            = 8192
    ephemeral_storage_gib = 50
    # Measured then, one segment after another: ~35 min per analysis of a ~30 min recording
    # (the model agrees: 3 min + (15 segments + REDUCE) x 2 min).
    map_concurrency       = 1
    minutes_per_analysis  = 35
    avg_recording_minutes = 30
    batch_size            = 350
  }
  "proctor-video" = {
    image_tag             = "2026.06.16"
    max_concurrent        = 8
    vcpu                  = 2
    memory_mib            = 4096
    ephemeral_storage_gib = 30
    # ~30 min proctored test, one segment after another like the record's task analyses;
    # duration modelled: 3 min stitch/signals + 15 MAP calls + REDUCE at 2 min each = 35 min.
    map_concurrency       = 1
    avg_recording_minutes = 30
    batch_size            = 350
  }
}
