# Security groups. Inbound, exactly:
#   clients -> load balancer   443/tcp (WebSocket over TLS) and 443/udp (WebTransport), from allowed_client_cidrs
#   load balancer -> edges     client_port/tcp (also its health checks) and client_port/udp
#   (With WebTransport one TCP_UDP listener carries both, passed through: edges.tf.)
#   edges -> cores             mesh_port/udp
#   cores <-> cores            mesh_port/udp
#   other regions' nodes -> cores   mesh_port/udp, from remote_regions[*].node_cidrs only
# The udp client rules exist only with var.webtransport.
# Nothing else: no SSH (use SSM Session Manager), no edge-to-edge, no core-to-edge
# dials (edges dial the cores; QUIC replies ride the same flow).
# Rules are separate aws_vpc_security_group_*_rule resources, never inline blocks,
# so deploy/terraform/terraform_test.go can check them.

resource "aws_security_group" "nlb" {
  name_prefix = "${var.name}-nlb-"
  description = "relaymesh ${var.region}: client-facing load balancer"
  vpc_id      = local.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-nlb" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "edge" {
  name_prefix = "${var.name}-edge-"
  description = "relaymesh ${var.region}: edges"
  vpc_id      = local.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-edge" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "core" {
  name_prefix = "${var.name}-core-"
  description = "relaymesh ${var.region}: cores"
  vpc_id      = local.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-core" })

  lifecycle {
    create_before_destroy = true
  }
}

# --- load balancer ---------------------------------------------------------------

resource "aws_vpc_security_group_ingress_rule" "nlb_wss" {
  for_each = toset(var.allowed_client_cidrs)

  security_group_id = aws_security_group.nlb.id
  description       = "clients: WebSocket over TLS"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "nlb_wt" {
  for_each = local.webtransport ? toset(var.allowed_client_cidrs) : toset([])

  security_group_id = aws_security_group.nlb.id
  description       = "clients: WebTransport (HTTP/3 over QUIC)"
  ip_protocol       = "udp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "nlb_to_edge_client" {
  security_group_id            = aws_security_group.nlb.id
  description                  = "to edges: client traffic and health checks"
  ip_protocol                  = "tcp"
  from_port                    = var.client_port
  to_port                      = var.client_port
  referenced_security_group_id = aws_security_group.edge.id
}

resource "aws_vpc_security_group_egress_rule" "nlb_to_edge_wt" {
  count = local.webtransport ? 1 : 0

  security_group_id            = aws_security_group.nlb.id
  description                  = "to edges: WebTransport"
  ip_protocol                  = "udp"
  from_port                    = var.client_port
  to_port                      = var.client_port
  referenced_security_group_id = aws_security_group.edge.id
}

# --- edges -----------------------------------------------------------------------

resource "aws_vpc_security_group_ingress_rule" "edge_client" {
  security_group_id            = aws_security_group.edge.id
  description                  = "from the load balancer: WebSocket, /v1/route, health checks"
  ip_protocol                  = "tcp"
  from_port                    = var.client_port
  to_port                      = var.client_port
  referenced_security_group_id = aws_security_group.nlb.id
}

resource "aws_vpc_security_group_ingress_rule" "edge_wt" {
  count = local.webtransport ? 1 : 0

  security_group_id            = aws_security_group.edge.id
  description                  = "from the load balancer: WebTransport"
  ip_protocol                  = "udp"
  from_port                    = var.client_port
  to_port                      = var.client_port
  referenced_security_group_id = aws_security_group.nlb.id
}

resource "aws_vpc_security_group_egress_rule" "edge_all" {
  security_group_id = aws_security_group.edge.id
  description       = "mesh to cores, HTTPS to Secrets Manager, SSM and the artifact"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

# --- cores -----------------------------------------------------------------------

resource "aws_vpc_security_group_ingress_rule" "core_mesh_from_edges" {
  security_group_id            = aws_security_group.core.id
  description                  = "QUIC mesh from edges"
  ip_protocol                  = "udp"
  from_port                    = var.mesh_port
  to_port                      = var.mesh_port
  referenced_security_group_id = aws_security_group.edge.id
}

resource "aws_vpc_security_group_ingress_rule" "core_mesh_from_cores" {
  security_group_id            = aws_security_group.core.id
  description                  = "QUIC mesh between cores (raft)"
  ip_protocol                  = "udp"
  from_port                    = var.mesh_port
  to_port                      = var.mesh_port
  referenced_security_group_id = aws_security_group.core.id
}

# Cores of the other regions (remote_regions) dial this region's cores. Security
# groups cannot be referenced across AWS regions, so their nodes' CIDRs are
# (reachable through the VPC peering of examples/global).
resource "aws_vpc_security_group_ingress_rule" "core_mesh_from_remote" {
  for_each = toset(flatten([for r in var.remote_regions : r.node_cidrs]))

  security_group_id = aws_security_group.core.id
  description       = "QUIC mesh from the cores of other regions"
  ip_protocol       = "udp"
  from_port         = var.mesh_port
  to_port           = var.mesh_port
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "core_all" {
  security_group_id = aws_security_group.core.id
  description       = "mesh to cores, HTTPS to Secrets Manager, SSM and the artifact"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}
