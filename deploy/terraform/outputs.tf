output "coordinator_endpoints" {
  description = "gRPC endpoints of the coordinators (kvs --endpoint, kvs-agent's coordinator). Private addresses: reach them from admin_cidrs or through SSM port forwarding (ssm_port_forward_command)."
  value       = local.coordinator_endpoints
}

output "coordinator_private_ips" {
  description = "Fixed private addresses of coordinators 1..n (node_id = position + 1)."
  value       = local.coordinator_ips
}

output "coordinator_instance_ids" {
  description = "EC2 instance ids of coordinators 1..n."
  value       = aws_instance.coordinator[*].id
}

output "admin_token_command" {
  description = "Prints the admin token (kvs --token / KVS_TOKEN)."
  value       = "aws ssm get-parameter --region ${data.aws_region.current.name} --name ${local.admin_token_name} --with-decryption --query Parameter.Value --output text"
}

output "join_token_command" {
  description = "Prints the join token (install.sh --join-token-file for agents you add by hand)."
  value       = "aws ssm get-parameter --region ${data.aws_region.current.name} --name ${local.join_token_name} --with-decryption --query Parameter.Value --output text"
}

output "ca_command" {
  description = "Prints the cluster CA bundle (kvs --ca-file); it appears a few minutes after apply, once coordinator 1 has bootstrapped."
  value       = "aws ssm get-parameter --region ${data.aws_region.current.name} --name ${local.ca_pem_name} --query Parameter.Value --output text"
}

output "ssm_port_forward_command" {
  description = "Forwards localhost:7400 to coordinator 1's gRPC port through SSM Session Manager (needs ssm_session_manager and the session-manager-plugin); then use --endpoint https://localhost:7400."
  value       = "aws ssm start-session --region ${data.aws_region.current.name} --target ${aws_instance.coordinator[0].id} --document-name AWS-StartPortForwardingSession --parameters portNumber=${local.grpc_port},localPortNumber=${local.grpc_port}"
}

output "vpc_id" {
  description = "The cluster's VPC (peer your application VPCs with it)."
  value       = aws_vpc.this.id
}

output "private_subnet_ids" {
  description = "Private subnet per zone, in availability_zones order."
  value       = aws_subnet.private[*].id
}

output "agent_security_group_id" {
  description = "Security group of the agent hosts (allow it as a source where applications need it)."
  value       = aws_security_group.agent.id
}

output "coordinator_security_group_id" {
  description = "Security group of the coordinators."
  value       = aws_security_group.coordinator.id
}

output "agent_autoscaling_groups" {
  description = "Agent auto scaling group per zone, keyed by zone name."
  value       = { for i, zone in var.availability_zones : zone => aws_autoscaling_group.agent[i].name }
}
