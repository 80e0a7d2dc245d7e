# Scaled setting: the three levers moved together (decision record §07: "Fargate vCPU 64 → 128").
#
# ASSUMPTION (not yet measured): bench/RESULTS.md does not hold the containers' measured
# vCPU/memory needs yet. The task analyzer is sized at 2 vCPU / 4 GiB on the argument that
# with MAP_CONCURRENCY=8 it mostly waits on Gemini (ffmpeg segments by stream copy); the
# proctor video at 2 vCPU / 4 GiB for stitching plus blackdetect/freezedetect decoding.
# Replace both with the measured figures (and minutes_per_analysis with measured durations)
# before applying; `make capacity TFVARS=terraform/examples/scaled.tfvars` shows the effect.
#
# Placeholders (replace before a real plan): Region, VPC, subnets, bucket names, secret ARN.

aws_region                = "eu-west-1"
vpc_id                    = "vpc-0123456789abcdef0"
subnet_ids                = ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]
recordings_uri_prefixes   = ["s3://analysis-pipeline-recordings/"]
results_bucket_name       = "analysis-pipeline-results"
gemini_api_key_secret_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:analysis-pipeline/gemini-api-key-AbCdEf"

# Lever 2: 64 → 128 vCPU; 8 kept free for other Fargate users and tasks still stopping.
fargate_vcpu_quota = 128
headroom_vcpu      = 8

# Lever 3: a higher Gemini tier (set to your project's granted quota). With 48 containers a
# 1M TPM project would leave each ~20k TPM, less than one 2-minute segment costs: the plan
# refuses that combination.
gemini_project_rpm = 2000
gemini_project_tpm = 4000000

# Lever 1: the DAG caps.
workloads = {
  "task-analyzer" = {
    image_tag             = "2026.06.16"
    max_concurrent        = 32
    vcpu                  = 2
    memory_mib            = 4096
    ephemeral_storage_gib = 50
    map_concurrency       = 8
    avg_recording_minutes = 30
    batch_size            = 350
  }
  "proctor-video" = {
    image_tag             = "2026.06.16"
    max_concurrent        = 16
    vcpu                  = 2
    memory_mib            = 4096
    ephemeral_storage_gib = 30
    # Webcam frames need little detail: low media resolution costs ~100 tokens/s, not 300.
    media_resolution      = "low"
    avg_recording_minutes = 30
    batch_size            = 350
  }
}
