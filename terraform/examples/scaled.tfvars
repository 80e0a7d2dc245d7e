# Scaled setting: the three levers moved together (decision record §07: "Fargate vCPU 64 → 128").
#
# Task sizes are MEASURED (bench/RESULTS.md): a whole task-analyzer run on a 60-minute
# 720p30 recording used 16 CPU-s and 237 MB peak RSS (ffmpeg stream-copy cuts; the rest is
# waiting on Gemini), and a 30-minute proctor session 72 CPU-s and 182 MB; neither uses more
# than one core. So 1 vCPU / 2 GiB each: the same vCPU quota runs 4x the containers of the
# decision record's 4-vCPU setting. At these caps the DAG caps bind (1.6 h / 4.7 h for 350
# each); raising them, the shared Gemini TPM binds next, not Fargate (`make capacity`).
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

# Lever 3: a higher Gemini tier (set to your project's granted quota): the whole fleet's limits
# per model, shared through the budget store. `make capacity` names the TPM the caps below
# need before Gemini stops binding.
gemini_project_rpm = 2000
gemini_project_tpm = 4000000

# Lever 1: the DAG caps.
workloads = {
  "task-analyzer" = {
    image_tag             = "2026.06.16"
    max_concurrent        = 32
    vcpu                  = 1
    memory_mib            = 2048
    ephemeral_storage_gib = 50
    map_concurrency       = 8
    avg_recording_minutes = 30
    batch_size            = 350
  }
  "proctor-video" = {
    image_tag             = "2026.06.16"
    max_concurrent        = 16
    vcpu                  = 1
    memory_mib            = 2048
    ephemeral_storage_gib = 30
    # Webcam frames need little detail: low media resolution costs ~100 tokens/s, not 300.
    media_resolution      = "low"
    avg_recording_minutes = 30
    batch_size            = 350
  }
}
