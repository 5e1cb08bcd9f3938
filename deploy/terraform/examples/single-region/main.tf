# One relaymesh region in eu-central-1, with a new VPC.
#
#   relaymesh pki init  --dir pki
#   for i in 1 2 3; do relaymesh pki issue --dir pki --name core-$i; done
#   relaymesh pki issue --dir pki --name edge-eu-central-1
#   export TF_VAR_apps='[{id="AbCd1234-gzGzoHsz", key="...", master_key="..."}]'
#   terraform init && terraform plan -out plan && terraform apply plan
#
# pki/ca.key never leaves the operator's machine; everything else under pki/
# goes into Secrets Manager through the module.

terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
  }

  # The state holds the node keys and app master keys: keep it in an encrypted,
  # access-controlled backend, e.g.
  # backend "s3" {
  #   bucket  = "my-terraform-state"
  #   key     = "relaymesh/eu-central-1.tfstate"
  #   region  = "eu-central-1"
  #   encrypt = true
  # }
}

variable "apps" {
  description = "The apps to serve: [{ id, key, master_key, signature_required }]."
  type = list(object({
    id                 = string
    key                = string
    master_key         = string
    signature_required = optional(bool, true)
  }))
  sensitive = true
}

variable "relaymesh_artifact_url" {
  description = "HTTPS URL of the linux/amd64 relaymesh binary."
  type        = string
}

variable "relaymesh_artifact_sha256" {
  description = "Its SHA-256."
  type        = string
}

locals {
  region = "eu-central-1"
  pki    = "${path.module}/pki"
}

provider "aws" {
  region = local.region
}

module "region" {
  source = "../../modules/region"

  region        = local.region
  region_number = 1 # the first region of a mesh (README "A second region")
  dns_zone_name = "example.com"
  dns_name      = "im.example.com" # RTMServers: wss://im.example.com/

  relaymesh_artifact_url    = var.relaymesh_artifact_url
  relaymesh_artifact_sha256 = var.relaymesh_artifact_sha256

  edge_count          = 2
  core_count          = 3
  core_volume_size_gb = 100

  apps = var.apps
  edge_limits = {
    sends_per_minute = 60
    idle_timeout     = "400s"
  }

  ca_cert_pem = file("${local.pki}/ca.crt")
  core_certs = {
    for i in range(3) : "core-${i + 1}" => {
      cert_pem = file("${local.pki}/core-${i + 1}.crt")
      key_pem  = file("${local.pki}/core-${i + 1}.key")
    }
  }
  edge_cert_pem            = file("${local.pki}/edge-${local.region}.crt")
  edge_key_pem             = file("${local.pki}/edge-${local.region}.key")
  session_token_key_base64 = filebase64("${local.pki}/session-token.key")

  tags = { project = "relaymesh" }
}

output "rtm_servers" {
  value = module.region.rtm_servers
}

output "route_url" {
  value = module.region.route_url
}

output "core_private_ips" {
  value = module.region.core_private_ips
}
