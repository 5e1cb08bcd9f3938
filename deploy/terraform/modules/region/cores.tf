# Cores: core-1 .. core-N, each an instance with a persistent network interface
# (a stable private address: raft remembers peers by address) and a persistent
# encrypted EBS data volume in the same AZ. Core i goes to private subnet i mod n,
# so three cores over three subnets sit in three AZs. Replacing an instance
# (new AMI, new type) keeps its address and its data.

data "aws_ssm_parameter" "al2023" {
  count = var.ami_id == null ? 1 : 0

  name = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-${var.architecture}"
}

locals {
  ami_id     = var.ami_id != null ? var.ami_id : data.aws_ssm_parameter.al2023[0].insecure_value
  data_dir   = "/var/lib/relaymesh"
  core_names = [for i in range(var.core_count) : "${var.node_name_prefix}core-${i + 1}"]
  core_subnet = {
    for i, n in local.core_names : n => local.private_subnets[i % length(local.private_subnets)]
  }
  core_mesh_addrs = {
    for n in local.core_names : n => "${aws_network_interface.core[n].private_ip}:${var.mesh_port}"
  }

  # The CA bundle a core trusts: this region's CA and every remote region's
  # (the same PEM once when regions share a CA).
  ca_bundle = join("", distinct([for pem in concat([var.ca_cert_pem], [for r in var.remote_regions : r.ca_cert_pem]) : "${trimspace(pem)}\n"]))

  core_config = {
    for n in local.core_names : n => templatefile("${path.module}/templates/relaymesh.toml.tftpl", {
      role           = "core"
      data_dir       = local.data_dir
      apps           = var.apps
      node_id        = n
      mesh_addr      = local.core_mesh_addrs[n]
      peers          = local.core_mesh_addrs
      region_number  = var.region_number
      shards         = var.shards
      remote_regions = var.remote_regions
      edge_id        = ""
      listen         = ""
      cores          = []
      public_urls    = []
      webtransport   = false
      edge_limits    = {}
    })
  }
}

resource "aws_network_interface" "core" {
  for_each = local.core_subnet

  subnet_id       = each.value.id
  security_groups = [aws_security_group.core.id]
  description     = "relaymesh ${var.region} ${each.key} (mesh address)"
  tags            = merge(local.tags, { Name = "${var.name}-${each.key}" })
}

resource "aws_ebs_volume" "core" {
  for_each = local.core_subnet

  availability_zone = each.value.az
  size              = var.core_volume_size_gb
  type              = var.core_volume_type
  encrypted         = true
  final_snapshot    = true
  tags              = merge(local.tags, { Name = "${var.name}-${each.key}-data" })
}

resource "aws_instance" "core" {
  for_each = local.core_subnet

  ami                  = local.ami_id
  instance_type        = var.core_instance_type
  iam_instance_profile = aws_iam_instance_profile.node["core"].name

  network_interface {
    network_interface_id = aws_network_interface.core[each.key].id
    device_index         = 0
  }

  user_data = templatefile("${path.module}/templates/user-data.sh.tftpl", {
    role            = "core"
    data_dir        = local.data_dir
    aws_region      = var.region
    secret_arn      = aws_secretsmanager_secret.core[each.key].arn
    secret_version  = aws_secretsmanager_secret_version.core[each.key].version_id # ignored: see ignore_changes
    artifact_url    = var.relaymesh_artifact_url
    artifact_sha256 = var.relaymesh_artifact_sha256
    data_volume_id  = aws_ebs_volume.core[each.key].id
  })

  metadata_options {
    http_tokens = "required"
  }

  root_block_device {
    volume_size = 16
    encrypted   = true
  }

  tags = merge(local.tags, { Name = "${var.name}-${each.key}", "relaymesh:role" = "core" })

  lifecycle {
    # A new AL2023 release or binary must not restart every core at once: roll
    # the cores one at a time with `terraform apply -replace=...` (README).
    ignore_changes = [ami, user_data]

    precondition {
      condition     = var.relaymesh_artifact_url != "" || var.ami_id != null
      error_message = "Set relaymesh_artifact_url (and relaymesh_artifact_sha256), or an ami_id with relaymesh baked in."
    }
  }

  depends_on = [aws_secretsmanager_secret_version.core, aws_iam_role_policy.read_secrets]
}

resource "aws_volume_attachment" "core" {
  for_each = local.core_subnet

  device_name = "/dev/sdf"
  volume_id   = aws_ebs_volume.core[each.key].id
  instance_id = aws_instance.core[each.key].id
}
