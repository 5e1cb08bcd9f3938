# Edges: a stateless autoscaling group in the private subnets behind a
# network load balancer with two listeners on port 443:
#   443/tcp  TLS, terminated with the ACM certificate -> client_port/tcp (WebSocket, /v1/route)
#   443/udp  passed through                           -> client_port/udp (WebTransport: HTTP/3, /wt;
#            the edges terminate its TLS with wt_cert_pem; only with var.webtransport)
# Browsers derive the WebTransport URL from the WebSocket one (wss://H/ ->
# https://H/wt, same host and port), hence 443 on both.
# NOT VERIFIED against AWS (no terraform or AWS account where this was written):
# AWS documents TCP_UDP as the listener for TCP and UDP on one port, and may
# refuse a UDP listener beside the TLS one on 443 (DuplicateListener). Then
# set webtransport = false (no UDP listener; browsers use WebSocket) until edges
# terminate TLS on TCP too and one TCP_UDP passthrough listener replaces both
# (README, "WebTransport").
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

resource "aws_lb_target_group" "ws" {
  name_prefix          = "rmws-"
  port                 = var.client_port
  protocol             = "TCP"
  target_type          = "instance"
  vpc_id               = local.vpc_id
  deregistration_delay = 30 # edges send goaway to every session on shutdown

  health_check {
    protocol = "HTTP"
    path     = "/healthz"
    port     = "traffic-port"
    matcher  = "200"
  }

  tags = local.tags

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_lb_target_group" "wt" {
  count = local.webtransport ? 1 : 0

  name_prefix          = "rmwt-"
  port                 = var.client_port
  protocol             = "UDP"
  target_type          = "instance"
  vpc_id               = local.vpc_id
  deregistration_delay = 30

  health_check {
    protocol = "HTTP"
    path     = "/healthz"
    port     = tostring(var.client_port)
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
  protocol          = "TLS"
  certificate_arn   = aws_acm_certificate_validation.edge.certificate_arn
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.ws.arn
  }
}

resource "aws_lb_listener" "wt" {
  count = local.webtransport ? 1 : 0

  load_balancer_arn = aws_lb.edge.arn
  port              = 443
  protocol          = "UDP"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.wt[0].arn
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
  target_group_arns         = concat([aws_lb_target_group.ws.arn], aws_lb_target_group.wt[*].arn)
  # EC2, not ELB: /healthz is 503 while the shard has no leader, and replacing
  # every edge then would not help. The load balancer still routes by /healthz.
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
