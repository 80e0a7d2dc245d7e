# Deliberately provider-free: the lever arithmetic must plan and test offline.
terraform {
  required_version = ">= 1.9.0"
}
