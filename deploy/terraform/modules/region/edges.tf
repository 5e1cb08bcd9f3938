# Edges: a stateless autoscaling group in the private subnets behind a
# network load balancer that terminates TLS for WebSocket clients (443/tcp ->
# client_port) and passes UDP through (quic_port/udp -> quic_port) for QUIC /
# WebTransport. (An NLB cannot have a TLS and a UDP listener on one port; once
# edges terminate TLS themselves, a TCP_UDP passthrough listener on 443 can
# replace both.) All edges share one mesh certificate and one session-token key;
# each names itself edge-<instance id>.

locals {
  regional_dns_name = coalesce(var.regional_dns_name, "${var.region}.${var.dns_name}")
  # What /v1/route answers: the latency-routed name first, this region second.
  public_urls = ["wss://${var.dns_name}/", "wss://${local.regional_dns_name}/"]

  edge_config = templatefile("${path.module}/templates/relaymesh.toml.tftpl", {
    role        = "edge"
    data_dir    = local.data_dir
    apps        = var.apps
    node_id     = ""
    mesh_addr   = ""
    peers       = {}
    edge_id     = "edge-@INSTANCE_ID@" # the boot script substitutes the instance id
    listen      = "0.0.0.0:${var.client_port}"
    cores       = [for n in local.core_names : local.core_mesh_addrs[n]]
    public_urls = local.public_urls
    edge_limits = var.edge_limits
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

resource "aws_lb_target_group" "quic" {
  name_prefix          = "rmqu-"
  port                 = var.quic_port
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

resource "aws_lb_listener" "quic" {
  load_balancer_arn = aws_lb.edge.arn
  port              = var.quic_port
  protocol          = "UDP"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.quic.arn
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
  target_group_arns         = [aws_lb_target_group.ws.arn, aws_lb_target_group.quic.arn]
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
