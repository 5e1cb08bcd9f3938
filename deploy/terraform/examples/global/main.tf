# Three relaymesh regions in one mesh: eu-central-1 (region 1), us-east-1 (2)
# and ap-southeast-1 (3). Each region is the `region` module with its own
# provider; each lists the other regions (number, seed mesh addresses, CA,
# node CIDRs: the `mesh` output of their module) as remote_regions, rendered
# into its cores' [[core.remote_regions]]. VPC peering joins the three VPCs;
# the cores' mesh port is open only to the other regions' node CIDRs. One
# client name, im.example.com, has one latency record per region.
#
# One cluster CA for the whole mesh (README "First region"):
#   relaymesh pki init --dir pki
#   for r in eu us ap; do for i in 1 2 3; do
#     relaymesh pki issue --dir pki --name $r-core-$i --role core; done; done
#   for r in eu-central-1 us-east-1 ap-southeast-1; do
#     relaymesh pki issue --dir pki --name edge-$r; done
#   terraform init && terraform plan -out plan && terraform apply plan

terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
  }

  # The state holds node keys and app master keys: use an encrypted backend.
  # backend "s3" { bucket = "my-terraform-state", key = "relaymesh/global.tfstate", region = "eu-central-1", encrypt = true }
}

variable "apps" {
  description = "The apps every region serves: [{ id, key, master_key, signature_required }]."
  type = list(object({
    id                 = string
    key                = string
    master_key         = string
    signature_required = optional(bool, true)
  }))
  sensitive = true
}

variable "relaymesh_artifact_url" {
  description = "HTTPS URL of the linux/amd64 relaymesh binary every node downloads."
  type        = string
}

variable "relaymesh_artifact_sha256" {
  description = "SHA-256 (hex) of the binary."
  type        = string
}

variable "webtransport" {
  description = "Serve WebTransport (one TCP_UDP listener on 443 per load balancer, TLS on the edges): needs pki/wt.crt and pki/wt.key, a publicly trusted certificate for im.example.com and the regional names, served for wss:// too."
  type        = bool
  default     = false
}

provider "aws" {
  alias  = "eu"
  region = "eu-central-1"
}

provider "aws" {
  alias  = "us"
  region = "us-east-1"
}

provider "aws" {
  alias  = "ap"
  region = "ap-southeast-1"
}

locals {
  pki           = "${path.module}/pki"
  dns_zone_name = "example.com"
  dns_name      = "im.example.com" # RTMServers: wss://im.example.com/

  core_certs = {
    for r in ["eu", "us", "ap"] : r => {
      for i in range(3) : "${r}-core-${i + 1}" => {
        cert_pem = file("${local.pki}/${r}-core-${i + 1}.crt")
        key_pem  = file("${local.pki}/${r}-core-${i + 1}.key")
      }
    }
  }
  wt_cert_pem = var.webtransport ? file("${local.pki}/wt.crt") : null
  wt_key_pem  = var.webtransport ? file("${local.pki}/wt.key") : null

  # The catalog's voters: one core per region (docs/MESH.md "Catalog"). Not
  # rendered into any config: relaymesh runs no catalog group yet and its
  # config parser refuses unknown keys. Kept here, and as an output, for the
  # day `relaymesh admin` or [core] learns them.
  catalog_voters = ["eu-core-1", "us-core-1", "ap-core-1"]

  regions = {
    "eu-central-1"   = { nlb_dns_name = module.eu.nlb_dns_name, nlb_zone_id = module.eu.nlb_zone_id }
    "us-east-1"      = { nlb_dns_name = module.us.nlb_dns_name, nlb_zone_id = module.us.nlb_zone_id }
    "ap-southeast-1" = { nlb_dns_name = module.ap.nlb_dns_name, nlb_zone_id = module.ap.nlb_zone_id }
  }
}

# --- the regions -------------------------------------------------------------

module "eu" {
  source    = "../../modules/region"
  providers = { aws = aws.eu }

  region           = "eu-central-1"
  region_number    = 1
  node_name_prefix = "eu-"
  vpc_cidr         = "10.42.0.0/16"
  remote_regions   = [module.us.mesh, module.ap.mesh]

  dns_zone_name  = local.dns_zone_name
  dns_name       = local.dns_name
  latency_record = false # below, one per region

  relaymesh_artifact_url    = var.relaymesh_artifact_url
  relaymesh_artifact_sha256 = var.relaymesh_artifact_sha256
  apps                      = var.apps

  ca_cert_pem              = file("${local.pki}/ca.crt")
  core_certs               = local.core_certs["eu"]
  edge_cert_pem            = file("${local.pki}/edge-eu-central-1.crt")
  edge_key_pem             = file("${local.pki}/edge-eu-central-1.key")
  session_token_key_base64 = filebase64("${local.pki}/session-token.key")
  webtransport             = var.webtransport
  wt_cert_pem              = local.wt_cert_pem
  wt_key_pem               = local.wt_key_pem
}

module "us" {
  source    = "../../modules/region"
  providers = { aws = aws.us }

  region           = "us-east-1"
  region_number    = 2
  node_name_prefix = "us-"
  vpc_cidr         = "10.43.0.0/16"
  remote_regions   = [module.eu.mesh, module.ap.mesh]

  dns_zone_name  = local.dns_zone_name
  dns_name       = local.dns_name
  latency_record = false

  relaymesh_artifact_url    = var.relaymesh_artifact_url
  relaymesh_artifact_sha256 = var.relaymesh_artifact_sha256
  apps                      = var.apps

  ca_cert_pem              = file("${local.pki}/ca.crt")
  core_certs               = local.core_certs["us"]
  edge_cert_pem            = file("${local.pki}/edge-us-east-1.crt")
  edge_key_pem             = file("${local.pki}/edge-us-east-1.key")
  session_token_key_base64 = filebase64("${local.pki}/session-token.key")
  webtransport             = var.webtransport
  wt_cert_pem              = local.wt_cert_pem
  wt_key_pem               = local.wt_key_pem
}

module "ap" {
  source    = "../../modules/region"
  providers = { aws = aws.ap }

  region           = "ap-southeast-1"
  region_number    = 3
  node_name_prefix = "ap-"
  vpc_cidr         = "10.44.0.0/16"
  remote_regions   = [module.eu.mesh, module.us.mesh]

  dns_zone_name  = local.dns_zone_name
  dns_name       = local.dns_name
  latency_record = false

  relaymesh_artifact_url    = var.relaymesh_artifact_url
  relaymesh_artifact_sha256 = var.relaymesh_artifact_sha256
  apps                      = var.apps

  ca_cert_pem              = file("${local.pki}/ca.crt")
  core_certs               = local.core_certs["ap"]
  edge_cert_pem            = file("${local.pki}/edge-ap-southeast-1.crt")
  edge_key_pem             = file("${local.pki}/edge-ap-southeast-1.key")
  session_token_key_base64 = filebase64("${local.pki}/session-token.key")
  webtransport             = var.webtransport
  wt_cert_pem              = local.wt_cert_pem
  wt_key_pem               = local.wt_key_pem
}

# --- the network between them ------------------------------------------------

module "peering_eu_us" {
  source    = "../../modules/peering"
  providers = { aws.requester = aws.eu, aws.accepter = aws.us }

  name                      = "relaymesh-eu-us"
  requester_vpc_id          = module.eu.vpc_id
  requester_route_table_ids = module.eu.private_route_table_ids
  requester_cidrs           = module.eu.node_cidrs
  accepter_vpc_id           = module.us.vpc_id
  accepter_region           = "us-east-1"
  accepter_route_table_ids  = module.us.private_route_table_ids
  accepter_cidrs            = module.us.node_cidrs
}

module "peering_eu_ap" {
  source    = "../../modules/peering"
  providers = { aws.requester = aws.eu, aws.accepter = aws.ap }

  name                      = "relaymesh-eu-ap"
  requester_vpc_id          = module.eu.vpc_id
  requester_route_table_ids = module.eu.private_route_table_ids
  requester_cidrs           = module.eu.node_cidrs
  accepter_vpc_id           = module.ap.vpc_id
  accepter_region           = "ap-southeast-1"
  accepter_route_table_ids  = module.ap.private_route_table_ids
  accepter_cidrs            = module.ap.node_cidrs
}

module "peering_us_ap" {
  source    = "../../modules/peering"
  providers = { aws.requester = aws.us, aws.accepter = aws.ap }

  name                      = "relaymesh-us-ap"
  requester_vpc_id          = module.us.vpc_id
  requester_route_table_ids = module.us.private_route_table_ids
  requester_cidrs           = module.us.node_cidrs
  accepter_vpc_id           = module.ap.vpc_id
  accepter_region           = "ap-southeast-1"
  accepter_route_table_ids  = module.ap.private_route_table_ids
  accepter_cidrs            = module.ap.node_cidrs
}

# --- one client name, the nearest region -------------------------------------

data "aws_route53_zone" "public" {
  provider = aws.eu

  name         = local.dns_zone_name
  private_zone = false
}

resource "aws_route53_record" "edge" {
  provider = aws.eu
  for_each = local.regions

  zone_id        = data.aws_route53_zone.public.zone_id
  name           = local.dns_name
  type           = "A"
  set_identifier = each.key

  latency_routing_policy {
    region = each.key
  }

  alias {
    name                   = each.value.nlb_dns_name
    zone_id                = each.value.nlb_zone_id
    evaluate_target_health = true
  }
}

# --- outputs -----------------------------------------------------------------

output "rtm_servers" {
  description = "RTMServers for the apps: the latency-routed name, then each region's own."
  value       = distinct(concat(module.eu.rtm_servers, module.us.rtm_servers, module.ap.rtm_servers))
}

output "seed_addrs" {
  description = "Each region's core mesh addresses."
  value = {
    "eu-central-1"   = module.eu.seed_addrs
    "us-east-1"      = module.us.seed_addrs
    "ap-southeast-1" = module.ap.seed_addrs
  }
}

output "catalog_voters" {
  description = "The cores meant to be the catalog's voters, one per region. Not rendered into any config: relaymesh runs no catalog group yet (docs/MESH.md)."
  value       = local.catalog_voters
}

output "peering_connections" {
  description = "The VPC peering connections between the regions."
  value       = [module.peering_eu_us.peering_connection_id, module.peering_eu_ap.peering_connection_id, module.peering_us_ap.peering_connection_id]
}
