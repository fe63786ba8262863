# Inputs of the KVS module. Provider-neutral ones first, then the AWS ones (AMI, instance types).

variable "name" {
  description = "Cluster id (the coordinators' cluster_id) and the prefix of every resource name, SSM parameter path (/kvs/<name>/...) and tag. Letters, digits and dashes."
  type        = string
  default     = "kvs"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name))
    error_message = "name must be 2-31 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "availability_zones" {
  description = "Zones to spread the cluster over, in order: at least three. Coordinator i+1 goes into zone i (for i < coordinator_count); every zone gets a private subnet and an agent group. Append a zone to grow; never reorder or remove one (that renumbers subnets and coordinators)."
  type        = list(string)

  validation {
    condition     = length(var.availability_zones) >= 3 && length(var.availability_zones) <= 6 && length(distinct(var.availability_zones)) == length(var.availability_zones)
    error_message = "availability_zones must list 3 to 6 distinct zones."
  }
}

variable "vpc_cidr" {
  description = "CIDR of the new VPC. Zone i gets the private subnet cidrsubnet(vpc_cidr, 4, i) (coordinators and agents) and the public subnet cidrsubnet(vpc_cidr, 8, 240 + i) (the NAT gateway only)."
  type        = string
  default     = "10.42.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && tonumber(split("/", var.vpc_cidr)[1]) <= 20
    error_message = "vpc_cidr must be an IPv4 CIDR of size /20 or larger."
  }
}

variable "coordinator_count" {
  description = "Coordinator nodes, one per zone from the first zone on: 3 (or 5) for a highly available Raft quorum. Coordinator 1 bootstraps the cluster; the others join it through coordinator 1 on first boot."
  type        = number
  default     = 3

  validation {
    condition     = contains([1, 3, 5], var.coordinator_count)
    error_message = "coordinator_count must be 1, 3 or 5 (a Raft quorum needs an odd number of voters)."
  }
}

variable "coordinator_host_number" {
  description = "Host number of each coordinator inside its zone's private subnet: coordinator i+1 gets the fixed address cidrhost(subnet_i, coordinator_host_number), so the member list is known before any instance exists."
  type        = number
  default     = 10

  validation {
    condition     = var.coordinator_host_number >= 4 && var.coordinator_host_number <= 250
    error_message = "coordinator_host_number must be between 4 and 250 (AWS reserves the first four addresses)."
  }
}

variable "coordinator_tls_names" {
  description = "Extra DNS names for the coordinators' server certificates (tls_names), e.g. a private Route 53 name the CLI uses. localhost is always included (for SSM port forwarding)."
  type        = list(string)
  default     = []
}

variable "agents_per_zone" {
  description = "Desired number of agent hosts in each zone's auto scaling group."
  type        = number
  default     = 1

  validation {
    condition     = var.agents_per_zone >= 0 && var.agents_per_zone <= 100
    error_message = "agents_per_zone must be between 0 and 100."
  }
}

variable "agents_max_per_zone" {
  description = "Upper bound of each zone's agent auto scaling group (headroom for replacing a host before retiring the old one)."
  type        = number
  default     = 10
}

variable "release_url" {
  description = "Where instances download the KVS release tarball made by deploy/release.sh (kvs-<version>-linux-amd64.tar.gz: install.sh, bin/, systemd/, config/): an s3://bucket/key URL (instances get s3:GetObject on exactly that object) or an https:// URL."
  type        = string

  validation {
    condition     = can(regex("^(s3://[a-z0-9.-]+/.+|https://.+)$", var.release_url))
    error_message = "release_url must be s3://BUCKET/KEY or https://...."
  }
}

variable "release_sha256" {
  description = "SHA-256 of the release tarball (deploy/release.sh prints it). Instances refuse a download that does not match. Empty: not checked."
  type        = string
  default     = ""

  validation {
    condition     = var.release_sha256 == "" || can(regex("^[0-9a-f]{64}$", var.release_sha256))
    error_message = "release_sha256 must be empty or 64 lowercase hex digits."
  }
}

variable "client_cidrs" {
  description = "CIDRs of the applications that connect to instances: they may reach the agents' TLS front ports 6380-16379 and nothing else. Usually your application VPCs or subnets."
  type        = list(string)
  default     = []
}

variable "admin_cidrs" {
  description = "CIDRs of operators' networks (VPN, bastion) that may reach the coordinators' gRPC port 7400 with the kvs CLI. Empty: use SSM Session Manager port forwarding instead (see outputs)."
  type        = list(string)
  default     = []
}

variable "admin_ssh" {
  description = "Also open SSH (22) on every instance to admin_cidrs. The coordinators' SSH probes to agents are always allowed."
  type        = bool
  default     = false
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all zones (cheaper) instead of one per zone (outbound access survives a zone outage). Instances need outbound HTTPS only at boot and for upgrades."
  type        = bool
  default     = false
}

variable "flow_log_retention_days" {
  description = "Retention of the VPC flow log in CloudWatch Logs, in days."
  type        = number
  default     = 365
}

variable "ssm_session_manager" {
  description = "Attach AmazonSSMManagedInstanceCore to the instances' role, so operators reach coordinators without opening ports (aws ssm start-session port forwarding). Needs the SSM agent in the AMI."
  type        = bool
  default     = true
}

variable "ami_owner" {
  description = "AWS account that publishes the AMI. Default: Debian's (136693071363). For Ubuntu 22.04 use Canonical's (099720109477) with a matching ami_name_pattern."
  type        = string
  default     = "136693071363"
}

variable "ami_name_pattern" {
  description = "Name pattern of the AMI; the newest match is used at creation (coordinators keep theirs afterwards). The image must be Debian or Ubuntu with cloud-init, and apt must offer awscli and redis-server (or valkey-server). Default: Debian 12 (bookworm) amd64."
  type        = string
  default     = "debian-12-amd64-*"
}

variable "coordinator_instance_type" {
  description = "EC2 instance type of the coordinators (small: the Raft state is metadata only)."
  type        = string
  default     = "t3.medium"
}

variable "agent_instance_type" {
  description = "EC2 instance type of the agent hosts (memory-optimized: instances' maxmemory is reserved against it)."
  type        = string
  default     = "r6i.large"
}

variable "coordinator_volume_gb" {
  description = "Root volume size of each coordinator, in GiB (encrypted gp3)."
  type        = number
  default     = 20
}

variable "agent_volume_gb" {
  description = "Root volume size of each agent host, in GiB (encrypted gp3; holds AOF files of persistent plans)."
  type        = number
  default     = 100
}

variable "key_name" {
  description = "EC2 key pair for the default OS user (admin access over SSH with admin_ssh). Null: none."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
