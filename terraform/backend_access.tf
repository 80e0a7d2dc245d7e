# The backend's read access to the results: a role it assumes to read result.json,
# report.html, the stitched videos and thumbnails, and to presign links to them (a presigned
# URL carries the signer's rights, so this role is what a recruiter's link can reach: the
# results prefix, read only). docs/API.md "Opening a report".

locals {
  results_reader_principals = length(var.results_reader_principals) > 0 ? var.results_reader_principals : ["arn:${local.partition}:iam::${local.account}:root"]

  results_reader_policy = {
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "ReadResults"
        Effect   = "Allow"
        Action   = "s3:GetObject"
        Resource = local.results_objects
      },
      {
        # Without it a missing object answers 403, not 404: the backend could not tell
        # "not written yet" from "not allowed".
        Sid       = "ListResults"
        Effect    = "Allow"
        Action    = "s3:ListBucket"
        Resource  = local.results_bucket_arn
        Condition = { StringLike = { "s3:prefix" = ["${var.results_prefix}*"] } }
      },
      {
        Sid       = "DecryptResultsViaS3"
        Effect    = "Allow"
        Action    = "kms:Decrypt"
        Resource  = aws_kms_key.this.arn
        Condition = local.via_s3
      },
    ]
  }
}

resource "aws_iam_role" "results_reader" {
  name        = "${var.project}-results-reader"
  description = "The backend: read the analysis results (result.json, report.html, videos, thumbnails) and presign links to them"
  # Presigned links live at most as long as the session that signed them.
  max_session_duration = 12 * 3600
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { AWS = local.results_reader_principals }
      Action    = "sts:AssumeRole"
    }]
  })
}

resource "aws_iam_role_policy" "results_reader" {
  name   = "results-read"
  role   = aws_iam_role.results_reader.id
  policy = jsonencode(local.results_reader_policy)
}
