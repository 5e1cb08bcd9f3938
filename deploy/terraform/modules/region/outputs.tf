output "rtm_servers" {
  description = "RTMServers for the apps' SDKs: the global, latency-routed name first, then this region's own."
  value       = local.public_urls
}

output "route_url" {
  description = "LeanCloud router endpoint (GET): the apps' serverURL may point at https://<dns_name>/."
  value       = "https://${var.dns_name}/v1/route"
}

output "regional_dns_name" {
  description = "This region's own client name."
  value       = local.regional_dns_name
}

output "nlb_dns_name" {
  description = "The load balancer's own DNS name (for debugging; clients use dns_name)."
  value       = aws_lb.edge.dns_name
}

output "core_private_ips" {
  description = "Private address of each core (stable: persistent network interfaces)."
  value       = { for n, eni in aws_network_interface.core : n => eni.private_ip }
}

output "core_mesh_addrs" {
  description = "Mesh address (ip:port, UDP) of each core, as in [core] peers and [edge] cores."
  value       = local.core_mesh_addrs
}

output "core_instance_ids" {
  description = "EC2 instance of each core (SSM Session Manager target)."
  value       = { for n, i in aws_instance.core : n => i.id }
}

output "edge_autoscaling_group" {
  description = "Name of the edges' autoscaling group."
  value       = aws_autoscaling_group.edge.name
}

output "security_group_ids" {
  description = "Security groups of the load balancer, the edges and the cores."
  value = {
    nlb  = aws_security_group.nlb.id
    edge = aws_security_group.edge.id
    core = aws_security_group.core.id
  }
}

output "vpc_id" {
  description = "VPC of the region."
  value       = local.vpc_id
}
