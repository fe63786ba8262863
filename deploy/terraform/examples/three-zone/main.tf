# Minimal use of the KVS module: three zones, three coordinators, one agent host per zone.
#
#   terraform init && terraform apply -var release_url=s3://my-bucket/kvs-0.1.0-linux-amd64.tar.gz
#
# Then follow deploy/README.md ("From zero to an instance").

terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.30, < 7.0"
    }
  }
}

variable "release_url" {
  description = "s3:// or https:// URL of the release tarball made by deploy/release.sh."
  type        = string
}

variable "release_sha256" {
  description = "SHA-256 that deploy/release.sh printed for the tarball."
  type        = string
  default     = ""
}

provider "aws" {
  region = "us-east-1"
}

module "kvs" {
  source = "../.."

  name               = "kvs-demo"
  availability_zones = ["us-east-1a", "us-east-1b", "us-east-1c"]
  release_url        = var.release_url
  release_sha256     = var.release_sha256
  client_cidrs       = ["10.42.0.0/16"] # applications inside the cluster's VPC; add peered VPCs
  admin_cidrs        = []               # none: operators use SSM port forwarding
  agents_per_zone    = 1
}

output "coordinator_endpoints" {
  description = "Coordinator gRPC endpoints."
  value       = module.kvs.coordinator_endpoints
}

output "admin_token_command" {
  description = "Command that prints the admin token."
  value       = module.kvs.admin_token_command
}

output "ca_command" {
  description = "Command that prints the cluster CA bundle."
  value       = module.kvs.ca_command
}

output "ssm_port_forward_command" {
  description = "Command that forwards localhost:7400 to coordinator 1."
  value       = module.kvs.ssm_port_forward_command
}
