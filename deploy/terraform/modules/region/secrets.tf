# Node secrets: one Secrets Manager secret per core and one shared by the edges,
# each a JSON document {config, ca_crt, node_crt, node_key[, session_token_key_b64, wt_crt, wt_key]}
# that the boot script (templates/user-data.sh.tftpl) writes to /etc/relaymesh.
# The PEMs come in as sensitive variables (from `relaymesh pki`); they are kept
# out of user-data, but they are in the Terraform state: keep the state in an
# encrypted backend with restricted access.

resource "aws_secretsmanager_secret" "core" {
  for_each = toset(local.core_names)

  name_prefix             = "${var.name}/${var.region}/${each.key}-"
  description             = "relaymesh ${var.region} ${each.key}: config and mesh identity"
  recovery_window_in_days = 7
  tags                    = local.tags
}

resource "aws_secretsmanager_secret_version" "core" {
  for_each = toset(local.core_names)

  secret_id = aws_secretsmanager_secret.core[each.key].id
  secret_string = jsonencode({
    config   = local.core_config[each.key]
    ca_crt   = local.ca_bundle
    node_crt = var.core_certs[each.key].cert_pem
    node_key = var.core_certs[each.key].key_pem
  })

  lifecycle {
    precondition {
      condition     = !contains([for r in var.remote_regions : r.number], var.region_number)
      error_message = "remote_regions lists region ${var.region_number}, this region's own number."
    }

    precondition {
      condition     = alltrue([for n in local.core_names : contains(keys(var.core_certs), n)])
      error_message = "core_certs needs an entry for each of ${join(", ", local.core_names)} (relaymesh pki issue --name <node id> --role core)."
    }
  }
}

resource "aws_secretsmanager_secret" "edge" {
  name_prefix             = "${var.name}/${var.region}/edge-"
  description             = "relaymesh ${var.region} edges: config, mesh identity, session-token key"
  recovery_window_in_days = 7
  tags                    = local.tags
}

resource "aws_secretsmanager_secret_version" "edge" {
  secret_id = aws_secretsmanager_secret.edge.id
  secret_string = jsonencode({
    config                = local.edge_config
    ca_crt                = var.ca_cert_pem
    node_crt              = var.edge_cert_pem
    node_key              = var.edge_key_pem
    session_token_key_b64 = var.session_token_key_base64
    wt_crt                = local.webtransport ? var.wt_cert_pem : ""
    wt_key                = local.webtransport ? var.wt_key_pem : ""
  })

  lifecycle {
    precondition {
      condition     = var.webtransport == (var.wt_cert_pem != null) && var.webtransport == (var.wt_key_pem != null)
      error_message = "webtransport = true needs wt_cert_pem and wt_key_pem (relaymesh refuses [edge] wt_cert without wt_key); without it, leave both null."
    }
  }
}

# --- instance roles: read own secrets, SSM Session Manager (instead of SSH) ------

data "aws_iam_policy_document" "assume_ec2" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "node" {
  for_each = toset(["core", "edge"])

  name_prefix        = "${var.name}-${each.key}-"
  assume_role_policy = data.aws_iam_policy_document.assume_ec2.json
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "ssm" {
  for_each = aws_iam_role.node

  role       = each.value.name
  policy_arn = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

data "aws_iam_policy_document" "read_secrets" {
  for_each = {
    core = [for s in aws_secretsmanager_secret.core : s.arn]
    edge = [aws_secretsmanager_secret.edge.arn]
  }

  statement {
    actions   = ["secretsmanager:GetSecretValue"]
    resources = each.value
  }
}

resource "aws_iam_role_policy" "read_secrets" {
  for_each = aws_iam_role.node

  name   = "read-relaymesh-secrets"
  role   = each.value.id
  policy = data.aws_iam_policy_document.read_secrets[each.key].json
}

resource "aws_iam_instance_profile" "node" {
  for_each = aws_iam_role.node

  name_prefix = "${var.name}-${each.key}-"
  role        = each.value.name
}
