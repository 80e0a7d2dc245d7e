# State lives in S3 with S3-native locking (a lock object next to the state, no DynamoDB
# table): a partial configuration, completed at init time from backend.hcl
# (copy backend.hcl.example; `make plan` passes it as -backend-config).
terraform {
  backend "s3" {}
}
