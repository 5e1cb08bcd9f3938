# VPC peering between two relaymesh regions in two AWS regions, and the routes
# between their node subnets, so that the cores of one reach the other's on
# mesh_port/udp at their private addresses (the seeds). The security groups
# (module region, core_mesh_from_remote) still open the mesh port only to the
# other region's node CIDRs.

terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source                = "hashicorp/aws"
      version               = "~> 5.0"
      configuration_aliases = [aws.requester, aws.accepter]
    }
  }
}

variable "requester_vpc_id" {
  description = "VPC of the first region (the region module's vpc_id output)."
  type        = string
}

variable "requester_route_table_ids" {
  description = "Route tables of the first region's node subnets (private_route_table_ids output)."
  type        = list(string)
}

variable "requester_cidrs" {
  description = "Node CIDRs of the first region (node_cidrs output)."
  type        = list(string)

  validation {
    condition     = length(var.requester_cidrs) > 0
    error_message = "requester_cidrs must not be empty."
  }
}

variable "accepter_vpc_id" {
  description = "VPC of the second region."
  type        = string
}

variable "accepter_region" {
  description = "AWS region of the second region (its provider's)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.accepter_region))
    error_message = "accepter_region must be an AWS region name such as us-east-1."
  }
}

variable "accepter_route_table_ids" {
  description = "Route tables of the second region's node subnets."
  type        = list(string)
}

variable "accepter_cidrs" {
  description = "Node CIDRs of the second region."
  type        = list(string)

  validation {
    condition     = length(var.accepter_cidrs) > 0
    error_message = "accepter_cidrs must not be empty."
  }
}

variable "name" {
  description = "Name tag of the peering connection."
  type        = string
  default     = "relaymesh"

  validation {
    condition     = length(var.name) >= 1 && length(var.name) <= 255
    error_message = "name must be 1..255 characters (an AWS tag value)."
  }
}

resource "aws_vpc_peering_connection" "this" {
  provider = aws.requester

  vpc_id      = var.requester_vpc_id
  peer_vpc_id = var.accepter_vpc_id
  peer_region = var.accepter_region
  tags        = { Name = var.name }
}

resource "aws_vpc_peering_connection_accepter" "this" {
  provider = aws.accepter

  vpc_peering_connection_id = aws_vpc_peering_connection.this.id
  auto_accept               = true
  tags                      = { Name = var.name }
}

# count, not for_each: route table ids are unknown until apply, their number is not.
resource "aws_route" "to_accepter" {
  provider = aws.requester
  count    = length(var.requester_route_table_ids) * length(var.accepter_cidrs)

  route_table_id            = var.requester_route_table_ids[floor(count.index / length(var.accepter_cidrs))]
  destination_cidr_block    = var.accepter_cidrs[count.index % length(var.accepter_cidrs)]
  vpc_peering_connection_id = aws_vpc_peering_connection_accepter.this.id
}

resource "aws_route" "to_requester" {
  provider = aws.accepter
  count    = length(var.accepter_route_table_ids) * length(var.requester_cidrs)

  route_table_id            = var.accepter_route_table_ids[floor(count.index / length(var.requester_cidrs))]
  destination_cidr_block    = var.requester_cidrs[count.index % length(var.requester_cidrs)]
  vpc_peering_connection_id = aws_vpc_peering_connection_accepter.this.id
}

output "peering_connection_id" {
  description = "The VPC peering connection."
  value       = aws_vpc_peering_connection.this.id
}
