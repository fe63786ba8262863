# AWS security groups: only what KVS needs, by source.
#
#   to coordinators  7400/tcp  gRPC (admin, agent, config)  from agents, coordinators, admin_cidrs
#                    7500/tcp  Raft (mTLS, peers only)      from coordinators
#   to agents        6380-16379/tcp  client TLS fronts      from client_cidrs; agents (replication)
#                    22/tcp    SSH probes                   from coordinators (and admin_cidrs
#                                                           with admin_ssh)
#   egress           443/tcp and 80/tcp anywhere (apt, the release, SSM, S3: through NAT), and the
#                    ports above between the groups. Amazon DNS, NTP and the metadata service are
#                    not filtered by security groups.

resource "aws_security_group" "coordinator" {
  name_prefix = "${var.name}-coordinator-"
  description = "KVS ${var.name} coordinators: gRPC 7400 from agents and admins, Raft 7500 from peers"
  vpc_id      = aws_vpc.this.id
  tags        = merge(local.common_tags, { Name = "${var.name}-coordinator" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "agent" {
  name_prefix = "${var.name}-agent-"
  description = "KVS ${var.name} agent hosts: client TLS fronts 6380-16379, SSH probes from coordinators"
  vpc_id      = aws_vpc.this.id
  tags        = merge(local.common_tags, { Name = "${var.name}-agent" })

  lifecycle {
    create_before_destroy = true
  }
}

# --- coordinators: ingress

resource "aws_vpc_security_group_ingress_rule" "coordinator_grpc_from_agents" {
  security_group_id            = aws_security_group.coordinator.id
  description                  = "gRPC agent stream from agents"
  ip_protocol                  = "tcp"
  from_port                    = local.grpc_port
  to_port                      = local.grpc_port
  referenced_security_group_id = aws_security_group.agent.id
}

resource "aws_vpc_security_group_ingress_rule" "coordinator_grpc_from_peers" {
  security_group_id            = aws_security_group.coordinator.id
  description                  = "gRPC forwarding between coordinators"
  ip_protocol                  = "tcp"
  from_port                    = local.grpc_port
  to_port                      = local.grpc_port
  referenced_security_group_id = aws_security_group.coordinator.id
}

resource "aws_vpc_security_group_ingress_rule" "coordinator_raft" {
  security_group_id            = aws_security_group.coordinator.id
  description                  = "Raft between coordinators only"
  ip_protocol                  = "tcp"
  from_port                    = local.raft_port
  to_port                      = local.raft_port
  referenced_security_group_id = aws_security_group.coordinator.id
}

resource "aws_vpc_security_group_ingress_rule" "coordinator_grpc_from_admins" {
  for_each          = toset(var.admin_cidrs)
  security_group_id = aws_security_group.coordinator.id
  description       = "gRPC admin API (kvs CLI) from operators"
  ip_protocol       = "tcp"
  from_port         = local.grpc_port
  to_port           = local.grpc_port
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "coordinator_ssh_from_admins" {
  for_each          = var.admin_ssh ? toset(var.admin_cidrs) : toset([])
  security_group_id = aws_security_group.coordinator.id
  description       = "SSH from operators"
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
  cidr_ipv4         = each.value
}

# --- coordinators: egress

resource "aws_vpc_security_group_egress_rule" "coordinator_https" {
  security_group_id = aws_security_group.coordinator.id
  description       = "HTTPS out: apt, release download, SSM, S3 (through NAT)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "coordinator_http" {
  security_group_id = aws_security_group.coordinator.id
  description       = "HTTP out: Debian/Ubuntu apt mirrors (packages are signed)"
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "coordinator_to_peers_grpc" {
  security_group_id            = aws_security_group.coordinator.id
  description                  = "gRPC forwarding to coordinators"
  ip_protocol                  = "tcp"
  from_port                    = local.grpc_port
  to_port                      = local.grpc_port
  referenced_security_group_id = aws_security_group.coordinator.id
}

resource "aws_vpc_security_group_egress_rule" "coordinator_to_peers_raft" {
  security_group_id            = aws_security_group.coordinator.id
  description                  = "Raft to coordinators"
  ip_protocol                  = "tcp"
  from_port                    = local.raft_port
  to_port                      = local.raft_port
  referenced_security_group_id = aws_security_group.coordinator.id
}

resource "aws_vpc_security_group_egress_rule" "coordinator_probe_ssh" {
  security_group_id            = aws_security_group.coordinator.id
  description                  = "SSH probes to agent hosts"
  ip_protocol                  = "tcp"
  from_port                    = 22
  to_port                      = 22
  referenced_security_group_id = aws_security_group.agent.id
}

# --- agents: ingress

resource "aws_vpc_security_group_ingress_rule" "agent_fronts_from_clients" {
  for_each          = toset(var.client_cidrs)
  security_group_id = aws_security_group.agent.id
  description       = "Client TLS fronts (rediss://) from applications"
  ip_protocol       = "tcp"
  from_port         = local.front_port_first
  to_port           = local.front_port_last
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "agent_fronts_from_agents" {
  security_group_id            = aws_security_group.agent.id
  description                  = "Replication tunnels (TLS) from standby hosts"
  ip_protocol                  = "tcp"
  from_port                    = local.front_port_first
  to_port                      = local.front_port_last
  referenced_security_group_id = aws_security_group.agent.id
}

resource "aws_vpc_security_group_ingress_rule" "agent_probe_ssh" {
  #checkov:skip=CKV_AWS_24:False positive: the source is the coordinators' security group (referenced_security_group_id), not 0.0.0.0/0; the probes need SSH.
  security_group_id            = aws_security_group.agent.id
  description                  = "SSH probes from coordinators"
  ip_protocol                  = "tcp"
  from_port                    = 22
  to_port                      = 22
  referenced_security_group_id = aws_security_group.coordinator.id
}

resource "aws_vpc_security_group_ingress_rule" "agent_ssh_from_admins" {
  for_each          = var.admin_ssh ? toset(var.admin_cidrs) : toset([])
  security_group_id = aws_security_group.agent.id
  description       = "SSH from operators"
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
  cidr_ipv4         = each.value
}

# --- agents: egress

resource "aws_vpc_security_group_egress_rule" "agent_https" {
  security_group_id = aws_security_group.agent.id
  description       = "HTTPS out: apt, release download, SSM, S3 (through NAT)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "agent_http" {
  security_group_id = aws_security_group.agent.id
  description       = "HTTP out: Debian/Ubuntu apt mirrors (packages are signed)"
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "agent_to_coordinators" {
  security_group_id            = aws_security_group.agent.id
  description                  = "gRPC agent stream to coordinators"
  ip_protocol                  = "tcp"
  from_port                    = local.grpc_port
  to_port                      = local.grpc_port
  referenced_security_group_id = aws_security_group.coordinator.id
}

resource "aws_vpc_security_group_egress_rule" "agent_to_agents" {
  security_group_id            = aws_security_group.agent.id
  description                  = "Replication tunnels (TLS) to primary hosts"
  ip_protocol                  = "tcp"
  from_port                    = local.front_port_first
  to_port                      = local.front_port_last
  referenced_security_group_id = aws_security_group.agent.id
}
