# KVS cluster on VMs: the provider-neutral part. Addresses, the coordinator member list and the
# cloud-init user data are computed here; aws_*.tf turn them into AWS resources.
#
#   zone i (i = 0..n-1)
#   ├── private subnet cidrsubnet(vpc_cidr, 4, i)
#   │   ├── coordinator i+1 (i < coordinator_count) at cidrhost(subnet, coordinator_host_number)
#   │   │     kvs-coordinator: node_id i+1, listen IP:7400, raft_listen IP:7500
#   │   └── agent auto scaling group (launch template): kvs-agent, zone = the zone's name
#   └── public subnet cidrsubnet(vpc_cidr, 8, 240 + i): NAT gateway (outbound only)
#
# Boot: every instance runs templates/kvs-bootstrap.sh from its user data: download the release,
# fetch secrets from SSM, run install.sh. Coordinator 1 bootstraps the cluster (with the tokens and
# the probe key Terraform generated) and publishes the CA bundle to SSM; coordinators 2..n wait for
# it and join through coordinator 1; agents wait for it and register with coordinator 1.

locals {
  zone_count = length(var.availability_zones)

  private_subnet_cidrs = [for i in range(local.zone_count) : cidrsubnet(var.vpc_cidr, 4, i)]
  public_subnet_cidrs  = [for i in range(local.zone_count) : cidrsubnet(var.vpc_cidr, 8, 240 + i)]

  # Coordinator node_id = index + 1; fixed private addresses, so every node and agent knows the
  # member list before any instance exists.
  coordinator_ips = [
    for i in range(var.coordinator_count) : cidrhost(local.private_subnet_cidrs[i], var.coordinator_host_number)
  ]
  coordinator_endpoints = [for ip in local.coordinator_ips : "https://${ip}:${local.grpc_port}"]
  coordinator_tls_names = distinct(concat(["localhost"], var.coordinator_tls_names))

  grpc_port        = 7400
  raft_port        = 7500
  front_port_first = 6380
  front_port_last  = 16379

  ssm_prefix       = "/kvs/${var.name}"
  admin_token_name = "${local.ssm_prefix}/admin-token"
  join_token_name  = "${local.ssm_prefix}/join-token"
  ca_pem_name      = "${local.ssm_prefix}/ca-pem"
  probe_key_name   = "${local.ssm_prefix}/probe-key"

  bootstrap_script_b64 = base64encode(file("${path.module}/templates/kvs-bootstrap.sh"))

  # Every variable of templates/user_data.yaml.tftpl; role-specific ones are empty for the other role.
  user_data_common = {
    cluster_id           = var.name
    release_url          = var.release_url
    release_sha256       = var.release_sha256
    aws_region           = data.aws_region.current.name
    admin_token_param    = local.admin_token_name
    join_token_param     = local.join_token_name
    ca_param             = local.ca_pem_name
    probe_key_param      = local.probe_key_name
    bootstrap_script_b64 = local.bootstrap_script_b64
  }

  coordinator_user_data = [
    for i in range(var.coordinator_count) : templatefile("${path.module}/templates/user_data.yaml.tftpl", merge(local.user_data_common, {
      role            = "coordinator"
      node_id         = tostring(i + 1)
      listen_ip       = local.coordinator_ips[i]
      join_url        = i == 0 ? "" : local.coordinator_endpoints[0]
      tls_names       = join(",", local.coordinator_tls_names)
      coordinator_url = ""
      zone            = var.availability_zones[i]
      probe_key       = ""
      probe_from      = ""
    }))
  ]

  agent_user_data = [
    for i in range(local.zone_count) : templatefile("${path.module}/templates/user_data.yaml.tftpl", merge(local.user_data_common, {
      role            = "agent"
      node_id         = ""
      listen_ip       = ""
      join_url        = ""
      tls_names       = ""
      coordinator_url = join(",", local.coordinator_endpoints)
      zone            = var.availability_zones[i]
      probe_key       = trimspace(tls_private_key.probe.public_key_openssh)
      probe_from      = join(",", local.coordinator_ips)
    }))
  ]

  common_tags = merge({ "kvs:cluster" = var.name }, var.tags)
}
