# AWS compute: coordinators as fixed instances (one per zone, fixed private address, termination
# protection), agents as one auto scaling group per zone (launch template, scale-in protection so a
# host with instances is drained before it goes). Both get an instance role with exactly the SSM,
# KMS and S3 rights their bootstrap needs, IMDSv2 only, encrypted gp3 volumes, no public address.

data "aws_ami" "this" {
  most_recent = true
  owners      = [var.ami_owner]

  filter {
    name   = "name"
    values = [var.ami_name_pattern]
  }

  filter {
    name   = "architecture"
    values = ["x86_64"]
  }

  filter {
    name   = "virtualization-type"
    values = ["hvm"]
  }
}

locals {
  release_object_arn = startswith(var.release_url, "s3://") ? "arn:aws:s3:::${trimprefix(var.release_url, "s3://")}" : ""
}

# --- IAM: one role per role

data "aws_iam_policy_document" "ec2_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "coordinator" {
  statement {
    sid       = "ReadTokensAndProbeKey"
    actions   = ["ssm:GetParameter"]
    resources = [aws_ssm_parameter.admin_token.arn, aws_ssm_parameter.join_token.arn, aws_ssm_parameter.probe_key.arn]
  }
  statement {
    sid       = "PublishCa"
    actions   = ["ssm:GetParameter", "ssm:PutParameter"]
    resources = [aws_ssm_parameter.ca_pem.arn]
  }
  statement {
    sid       = "DecryptSecrets"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.this.arn]
  }
  dynamic "statement" {
    for_each = local.release_object_arn == "" ? [] : [local.release_object_arn]
    content {
      sid       = "DownloadRelease"
      actions   = ["s3:GetObject"]
      resources = [statement.value]
    }
  }
}

data "aws_iam_policy_document" "agent" {
  statement {
    sid       = "ReadJoinTokenAndCa"
    actions   = ["ssm:GetParameter"]
    resources = [aws_ssm_parameter.join_token.arn, aws_ssm_parameter.ca_pem.arn]
  }
  statement {
    sid       = "DecryptJoinToken"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.this.arn]
  }
  dynamic "statement" {
    for_each = local.release_object_arn == "" ? [] : [local.release_object_arn]
    content {
      sid       = "DownloadRelease"
      actions   = ["s3:GetObject"]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_role" "coordinator" {
  name_prefix        = "${var.name}-coordinator-"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
  tags               = local.common_tags
}

resource "aws_iam_role_policy" "coordinator" {
  name   = "kvs-coordinator"
  role   = aws_iam_role.coordinator.id
  policy = data.aws_iam_policy_document.coordinator.json
}

resource "aws_iam_instance_profile" "coordinator" {
  name_prefix = "${var.name}-coordinator-"
  role        = aws_iam_role.coordinator.name
  tags        = local.common_tags
}

resource "aws_iam_role" "agent" {
  name_prefix        = "${var.name}-agent-"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
  tags               = local.common_tags
}

resource "aws_iam_role_policy" "agent" {
  name   = "kvs-agent"
  role   = aws_iam_role.agent.id
  policy = data.aws_iam_policy_document.agent.json
}

resource "aws_iam_instance_profile" "agent" {
  name_prefix = "${var.name}-agent-"
  role        = aws_iam_role.agent.name
  tags        = local.common_tags
}

resource "aws_iam_role_policy_attachment" "ssm_core" {
  for_each   = var.ssm_session_manager ? { coordinator = aws_iam_role.coordinator.name, agent = aws_iam_role.agent.name } : {}
  role       = each.value
  policy_arn = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

# --- coordinators

resource "aws_instance" "coordinator" {
  count                       = var.coordinator_count
  ami                         = data.aws_ami.this.id
  instance_type               = var.coordinator_instance_type
  subnet_id                   = aws_subnet.private[count.index].id
  private_ip                  = local.coordinator_ips[count.index]
  associate_public_ip_address = false
  vpc_security_group_ids      = [aws_security_group.coordinator.id]
  iam_instance_profile        = aws_iam_instance_profile.coordinator.name
  key_name                    = var.key_name
  user_data                   = local.coordinator_user_data[count.index]
  monitoring                  = true
  ebs_optimized               = true
  disable_api_termination     = true

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type = "gp3"
    volume_size = var.coordinator_volume_gb
    encrypted   = true
  }

  tags        = merge(local.common_tags, { Name = "${var.name}-coordinator-${count.index + 1}", "kvs:role" = "coordinator", "kvs:node-id" = tostring(count.index + 1) })
  volume_tags = merge(local.common_tags, { Name = "${var.name}-coordinator-${count.index + 1}" })

  lifecycle {
    # A coordinator holds Raft state on its volume: a newer AMI or an edited bootstrap must never
    # replace it. Replace one deliberately (deploy/README.md, "Replace a coordinator").
    ignore_changes = [ami, user_data]
  }

  depends_on = [aws_route.private_nat, aws_route_table_association.private]
}

# --- agents: one launch template and auto scaling group per zone

resource "aws_launch_template" "agent" {
  count                  = local.zone_count
  name_prefix            = "${var.name}-agent-${var.availability_zones[count.index]}-"
  description            = "KVS ${var.name} agent host in ${var.availability_zones[count.index]}"
  image_id               = data.aws_ami.this.id
  instance_type          = var.agent_instance_type
  key_name               = var.key_name
  user_data              = base64encode(local.agent_user_data[count.index])
  vpc_security_group_ids = [aws_security_group.agent.id]
  ebs_optimized          = true
  update_default_version = true

  iam_instance_profile {
    arn = aws_iam_instance_profile.agent.arn
  }

  monitoring {
    enabled = true
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  block_device_mappings {
    device_name = data.aws_ami.this.root_device_name
    ebs {
      volume_type           = "gp3"
      volume_size           = var.agent_volume_gb
      encrypted             = true
      delete_on_termination = true
    }
  }

  tag_specifications {
    resource_type = "instance"
    tags          = merge(local.common_tags, { Name = "${var.name}-agent-${var.availability_zones[count.index]}", "kvs:role" = "agent" })
  }

  tag_specifications {
    resource_type = "volume"
    tags          = merge(local.common_tags, { Name = "${var.name}-agent-${var.availability_zones[count.index]}" })
  }

  tags = local.common_tags
}

resource "aws_autoscaling_group" "agent" {
  count               = local.zone_count
  name_prefix         = "${var.name}-agent-${var.availability_zones[count.index]}-"
  vpc_zone_identifier = [aws_subnet.private[count.index].id]
  min_size            = 0
  max_size            = var.agents_max_per_zone
  desired_capacity    = var.agents_per_zone
  health_check_type   = "EC2"
  # A host may hold primaries and standbys: the ASG never picks one to terminate by itself.
  # Retire a host by draining it first (deploy/README.md), then terminating it through the ASG.
  protect_from_scale_in = true
  termination_policies  = ["OldestLaunchTemplate", "OldestInstance"]

  launch_template {
    id      = aws_launch_template.agent[count.index].id
    version = aws_launch_template.agent[count.index].latest_version
  }

  dynamic "tag" {
    for_each = merge(local.common_tags, { Name = "${var.name}-agent-${var.availability_zones[count.index]}", "kvs:role" = "agent" })
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }

  depends_on = [aws_instance.coordinator, aws_route.private_nat, aws_route_table_association.private]
}
