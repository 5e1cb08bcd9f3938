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
  description = "Security groups of the load balancer, the edges and the cores (usable only inside this AWS region; other regions open to node_cidrs)."
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

output "nlb_zone_id" {
  description = "Route 53 zone of the load balancer's DNS name, for an alias record (examples/global's latency records)."
  value       = aws_lb.edge.zone_id
}

output "edge_dns_name" {
  description = "Name clients of this region use: the regional name (the load balancer's own is nlb_dns_name)."
  value       = local.regional_dns_name
}

output "region_number" {
  description = "This region's number in the mesh ([core] region)."
  value       = var.region_number
}

output "seed_addrs" {
  description = "Mesh addresses (ip:port, UDP) of this region's cores, in core order: the seeds another region lists in [[core.remote_regions]]."
  value       = [for n in local.core_names : local.core_mesh_addrs[n]]
}

output "node_cidrs" {
  description = "CIDRs of this region's node subnets: other regions open mesh_port/udp on their cores to these, and route them through peering."
  value       = local.node_cidrs
}

output "private_route_table_ids" {
  description = "Route tables of the node subnets (empty with vpc_id): where routes to other regions go."
  value       = local.private_route_table_ids
}

output "ca_bundle_pem" {
  description = "CA certificates this region's cores trust: its own and those of remote_regions."
  value       = local.ca_bundle
  sensitive   = true
}

output "mesh" {
  description = "This region as the next region's remote_regions entry: number, name, seeds, ca_cert_pem, node_cidrs."
  value = {
    number      = var.region_number
    name        = var.region
    seeds       = [for n in local.core_names : local.core_mesh_addrs[n]]
    # A CA certificate is public; unmarked so that the next region can use
    # node_cidrs in for_each (Terraform refuses sensitive values there).
    ca_cert_pem = nonsensitive(var.ca_cert_pem)
    node_cidrs  = local.node_cidrs
  }
}
