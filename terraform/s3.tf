# Results, checkpoints, stitched videos and thumbnails.

resource "aws_s3_bucket" "results" {
  #checkov:skip=CKV_AWS_18:Access logging needs a separate log bucket owned by the platform account; CloudTrail data events cover audit.
  #checkov:skip=CKV_AWS_144:Results are reproducible from the recordings (checkpoints make a rerun cheap); cross-region replication is not worth its cost.
  #checkov:skip=CKV2_AWS_62:Nothing consumes bucket events; Airflow reads result.json after the task stops.
  bucket = var.results_bucket_name
}

resource "aws_s3_bucket_public_access_block" "results" {
  bucket                  = aws_s3_bucket.results.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "results" {
  bucket = aws_s3_bucket.results.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "results" {
  bucket = aws_s3_bucket.results.id
  rule {
    bucket_key_enabled = true
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.this.arn
    }
  }
}

resource "aws_s3_bucket_versioning" "results" {
  bucket = aws_s3_bucket.results.id
  versioning_configuration {
    status = "Enabled"
  }
}

# Checkpoints and thumbnails live under each run's OUTPUT_URI (<prefix><kind>/<id>/...), which a
# prefix filter cannot select, so the containers tag them (retention=checkpoint|thumbnail).
resource "aws_s3_bucket_lifecycle_configuration" "results" {
  bucket = aws_s3_bucket.results.id

  rule {
    id     = "checkpoints"
    status = "Enabled"
    filter {
      tag {
        key   = "retention"
        value = "checkpoint"
      }
    }
    expiration {
      days = var.checkpoint_expiry_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
  }

  rule {
    id     = "thumbnails"
    status = "Enabled"
    filter {
      tag {
        key   = "retention"
        value = "thumbnail"
      }
    }
    expiration {
      days = var.thumbnail_expiry_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 7
    }
  }

  rule {
    id     = "housekeeping"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 2
    }
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
  }

  depends_on = [aws_s3_bucket_versioning.results]
}

resource "aws_s3_bucket_policy" "results" {
  bucket = aws_s3_bucket.results.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "DenyInsecureTransport"
      Effect    = "Deny"
      Principal = "*"
      Action    = "s3:*"
      Resource  = [local.results_bucket_arn, "${local.results_bucket_arn}/*"]
      Condition = { Bool = { "aws:SecureTransport" = "false" } }
    }]
  })
  depends_on = [aws_s3_bucket_public_access_block.results]
}
