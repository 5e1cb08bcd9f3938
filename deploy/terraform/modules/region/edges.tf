# Edges: a stateless autoscaling group in the private subnets behind a
# network load balancer with ONE listener on port 443, in one of two layouts:
#
# webtransport = false (the default):
#   443  TLS, terminated with the ACM certificate (dns.tf) -> client_port/tcp (WebSocket, /v1/route)
#
# webtransport = true:
#   443  TCP_UDP, passed through -> client_port, TCP and UDP. The edges terminate
#        TLS on both ([edge] tls = true: wss:// and https:// on TCP; WebTransport,
#        HTTP/3 on /wt, on UDP) with wt_cert_pem, the operator's certificate.
#   Browsers derive the WebTransport URL from the WebSocket one (wss://H/ ->
#   https://H/wt, same host and port), hence 443 for both. AWS refuses a UDP
#   listener beside the TLS one on the same port (DuplicateListener) and its
#   TCP_UDP listener, which can serve both, terminates no TLS: so the edges do,
#   and ACM (whose certificates cannot be exported to instances) is not used.
#
# The listener and the target group are the same resources in both layouts
# (protocol, certificate and health check switch with var.webtransport), so
# turning WebTransport on or off modifies the listener in place instead of
# adding a second listener on 443 beside the first, which AWS would refuse.
# All edges share one mesh certificate and one session-token key; each names
# itself edge-<instance id>.

locals {
  regional_dns_name = coalesce(var.regional_dns_name, "${var.region}.${var.dns_name}")
  # What /v1/route answers: the latency-routed name first, this region second.
  public_urls = ["wss://${var.dns_name}/", "wss://${local.regional_dns_name}/"]

  webtransport = var.webtransport

  edge_config = templatefile("${path.module}/templates/relaymesh.toml.tftpl", {
    role           = "edge"
    data_dir       = local.data_dir
    apps           = var.apps
    node_id        = ""
    mesh_addr      = ""
    peers          = {}
    region_number  = var.region_number
    shards         = var.shards
    remote_regions = []
    edge_id        = "edge-@INSTANCE_ID@" # the boot script substitutes the instance id
    listen         = "0.0.0.0:${var.client_port}"
    cores          = [for n in local.core_names : local.core_mesh_addrs[n]]
    public_urls    = local.public_urls
    webtransport   = local.webtransport
    edge_limits    = var.edge_limits
  })
}

resource "aws_lb" "edge" {
  name_prefix                      = "rm-"
  load_balancer_type               = "network"
  internal                         = false
  subnets                          = local.public_subnet_ids
  security_groups                  = [aws_security_group.nlb.id]
  enable_cross_zone_load_balancing = true
  tags                             = merge(local.tags, { Name = "${var.name}-edge" })
}

# The edges' client port. TCP (WebSocket after the TLS listener) or, with
# WebTransport, TCP_UDP (AWS: a TCP_UDP listener forwards only to a TCP_UDP
# target group). A new protocol replaces the group; create_before_destroy
# and name_prefix let the listener switch to the new one first.
#
# Health check: AWS allows TCP, HTTP or HTTPS for these groups (never UDP,
# TLS or TCP_UDP), always over TCP, so UDP is never checked on its own (the
# same process serves both). Without WebTransport: HTTP GET /readyz, as the
# TLS listener forwards plain HTTP. With it: HTTPS GET /readyz, because
# the port now speaks TLS (an HTTP check would fail every edge) and a bare
# TCP check would only prove the port accepts connections, not that the
# edge can serve. /readyz is 503 as soon as the edge drains (so new clients
# go to the other edges while its sessions get goaway) and while any shard
# of the region has no leader (/healthz looks only at the router's shard).
# The load balancer does not verify the target's certificate, and the edge
# serves its one certificate whatever the SNI.
resource "aws_lb_target_group" "ws" {
  name_prefix          = "rmws-"
  port                 = var.client_port
  protocol             = local.webtransport ? "TCP_UDP" : "TCP"
  target_type          = "instance"
  vpc_id               = local.vpc_id
  deregistration_delay = 30 # edges send goaway to every session on shutdown

  health_check {
    protocol = local.webtransport ? "HTTPS" : "HTTP"
    path     = "/readyz"
    port     = "traffic-port"
    matcher  = "200"
  }

  tags = local.tags

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_lb_listener" "wss" {
  load_balancer_arn = aws_lb.edge.arn
  port              = 443
  protocol          = local.webtransport ? "TCP_UDP" : "TLS"
  # TLS terminated here (ACM) only without WebTransport; with it the edges
  # terminate TLS with wt_cert_pem and the listener carries no certificate.
  certificate_arn = local.webtransport ? null : one(aws_acm_certificate_validation.edge[*].certificate_arn)
  ssl_policy      = local.webtransport ? null : "ELBSecurityPolicy-TLS13-1-2-2021-06"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.ws.arn
  }
}

resource "aws_launch_template" "edge" {
  name_prefix            = "${var.name}-edge-"
  image_id               = local.ami_id
  instance_type          = var.edge_instance_type
  vpc_security_group_ids = [aws_security_group.edge.id]
  update_default_version = true

  iam_instance_profile {
    arn = aws_iam_instance_profile.node["edge"].arn
  }

  user_data = base64encode(templatefile("${path.module}/templates/user-data.sh.tftpl", {
    role            = "edge"
    data_dir        = local.data_dir
    aws_region      = var.region
    secret_arn      = aws_secretsmanager_secret.edge.arn
    # A new secret version (config, apps, certificates: a renewed wt_cert_pem)
    # makes a new launch template version, which rolls the edges (instance
    # refresh below): an edge reads its secret only on first boot.
    secret_version  = aws_secretsmanager_secret_version.edge.version_id
    artifact_url    = var.relaymesh_artifact_url
    artifact_sha256 = var.relaymesh_artifact_sha256
    data_volume_id  = ""
  }))

  metadata_options {
    http_tokens = "required"
  }

  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size = 16
      encrypted   = true
    }
  }

  tag_specifications {
    resource_type = "instance"
    tags          = merge(local.tags, { Name = "${var.name}-edge", "relaymesh:role" = "edge" })
  }

  tags = local.tags

  lifecycle {
    precondition {
      condition     = var.relaymesh_artifact_url != "" || var.ami_id != null
      error_message = "Set relaymesh_artifact_url (and relaymesh_artifact_sha256), or an ami_id with relaymesh baked in."
    }
  }
}

resource "aws_autoscaling_group" "edge" {
  name_prefix               = "${var.name}-edge-"
  vpc_zone_identifier       = [for s in local.private_subnets : s.id]
  min_size                  = var.edge_count
  max_size                  = var.edge_count
  desired_capacity          = var.edge_count
  target_group_arns         = [aws_lb_target_group.ws.arn]
  # EC2, not ELB: /readyz is 503 while a shard has no leader, and replacing
  # every edge then would not help. The load balancer still routes by /readyz.
  health_check_type         = "EC2"
  health_check_grace_period = 180

  launch_template {
    id      = aws_launch_template.edge.id
    version = aws_launch_template.edge.latest_version
  }

  # A new launch template (binary, AMI, instance type) rolls the edges; clients
  # of a replaced edge reconnect to another with their session token.
  instance_refresh {
    strategy = "Rolling"
    preferences {
      min_healthy_percentage = 50
    }
  }

  dynamic "tag" {
    for_each = merge(local.tags, { Name = "${var.name}-edge" })
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = false # the launch template tags the instances
    }
  }

  # The edges' config names the cores' addresses and the secret must be
  # readable before an edge boots.
  depends_on = [aws_secretsmanager_secret_version.edge, aws_iam_role_policy.read_secrets, aws_network_interface.core]
}
