# Inputs of one relaymesh region. Everything AWS-specific lives in this module;
# a port to another cloud keeps these inputs and the two templates and swaps
# the resources.

# --- where ---------------------------------------------------------------------

variable "region" {
  description = "AWS region of this relaymesh region (e.g. eu-central-1). Must equal the aws provider's region; it is also the Route 53 latency region and set_identifier."
  type        = string
}

variable "name" {
  description = "Prefix of every resource name and tag."
  type        = string
  default     = "relaymesh"
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

variable "vpc_id" {
  description = "Existing VPC to use. null creates a VPC with three public and three private subnets and one NAT gateway."
  type        = string
  default     = null
}

variable "public_subnet_ids" {
  description = "With vpc_id: public subnets for the load balancer (one per AZ)."
  type        = list(string)
  default     = []
}

variable "private_subnet_ids" {
  description = "With vpc_id: private subnets (with a route to the internet through NAT) for edges and cores, ideally three in three AZs; core i goes to subnet i mod n."
  type        = list(string)
  default     = []
}

variable "vpc_cidr" {
  description = "CIDR of the VPC this module creates when vpc_id is null."
  type        = string
  default     = "10.42.0.0/16"
}

# --- machines ------------------------------------------------------------------

variable "architecture" {
  description = "CPU architecture of the instances and of the relaymesh binary: x86_64 or arm64."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "ami_id" {
  description = "AMI for every node. null uses the latest Amazon Linux 2023 of var.architecture. With a custom AMI that has /usr/local/bin/relaymesh baked in, relaymesh_artifact_url may be empty."
  type        = string
  default     = null
}

variable "relaymesh_artifact_url" {
  description = "HTTPS URL of the linux relaymesh binary (output of `make build` for the target architecture) that each node downloads on first boot. Empty: the AMI already has /usr/local/bin/relaymesh."
  type        = string
  default     = ""

  validation {
    # It is pasted into a shell script between single quotes.
    condition     = can(regex("^(https://[^\\s'\"$`\\\\]+)?$", var.relaymesh_artifact_url))
    error_message = "relaymesh_artifact_url must be empty or an https:// URL without quotes, spaces, $, ` or backslashes."
  }
}

variable "relaymesh_artifact_sha256" {
  description = "SHA-256 (hex) of the binary at relaymesh_artifact_url; the boot script refuses any other file."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^([0-9a-f]{64})?$", var.relaymesh_artifact_sha256))
    error_message = "relaymesh_artifact_sha256 must be empty or 64 lowercase hex digits."
  }
}

variable "edge_instance_type" {
  description = "Instance type of the edges."
  type        = string
  default     = "c7i.large"
}

variable "core_instance_type" {
  description = "Instance type of the cores."
  type        = string
  default     = "m7i.large"
}

variable "edge_count" {
  description = "Number of edges (the autoscaling group's min, max and desired size)."
  type        = number
  default     = 2

  validation {
    condition     = var.edge_count >= 1 && floor(var.edge_count) == var.edge_count
    error_message = "edge_count must be a whole number >= 1."
  }
}

variable "core_count" {
  description = "Number of cores: the voters of the region's shard. Odd, so that a majority survives the loss of a minority; spread over the private subnets' AZs."
  type        = number
  default     = 3

  validation {
    condition     = var.core_count >= 3 && var.core_count % 2 == 1
    error_message = "core_count must be odd and at least 3 (3, 5, 7, ...): Raft needs a majority of the cores."
  }
}

variable "core_volume_size_gb" {
  description = "Size of each core's persistent EBS data volume (Pebble: raft log and state machine), GiB."
  type        = number
  default     = 100

  validation {
    condition     = var.core_volume_size_gb >= 8
    error_message = "core_volume_size_gb must be at least 8."
  }
}

variable "core_volume_type" {
  description = "EBS volume type of the core data volumes."
  type        = string
  default     = "gp3"
}

# --- ports ---------------------------------------------------------------------

variable "client_port" {
  description = "TCP port the edges listen on for clients (WebSocket, /v1/route, /healthz). The load balancer terminates TLS on 443 and forwards here."
  type        = number
  default     = 8080
}

variable "quic_port" {
  description = "UDP port for QUIC/WebTransport clients, on the load balancer and the edges (reserved: relaymesh does not serve it yet)."
  type        = number
  default     = 4433
}

variable "mesh_port" {
  description = "UDP port of the cores' QUIC mesh (edges -> cores, cores <-> cores)."
  type        = number
  default     = 7100
}

variable "allowed_client_cidrs" {
  description = "Client networks allowed to reach the load balancer."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

# --- DNS -----------------------------------------------------------------------

variable "dns_zone_name" {
  description = "Public Route 53 hosted zone holding the client names, e.g. example.com."
  type        = string
}

variable "dns_name" {
  description = "Global client name, e.g. im.example.com. Each region adds a latency record for it, so clients resolve the nearest region's edges. Apps use wss://<dns_name>/ as RTMServers."
  type        = string
}

variable "regional_dns_name" {
  description = "Name of this region alone (simple record). null: <region>.<dns_name>."
  type        = string
  default     = null
}

# --- apps and edge limits ------------------------------------------------------

variable "apps" {
  description = "The LeanCloud apps this region serves; any other appId gets 4100. master_key signs logins."
  type = list(object({
    id                 = string
    key                = string
    master_key         = string
    signature_required = optional(bool, true)
  }))
  sensitive = true

  validation {
    condition     = length(var.apps) > 0 && length(distinct([for a in var.apps : a.id])) == length(var.apps)
    error_message = "apps must list at least one app, each id once."
  }

  validation {
    condition     = alltrue([for a in var.apps : length(a.id) <= 64 && a.master_key != ""])
    error_message = "every app id must be at most 64 characters, and every app needs a master_key (relaymesh refuses an [[apps]] entry without one)."
  }
}

variable "edge_limits" {
  description = "Overrides of the edges' limits ([edge.limits]); null keeps LeanCloud's default, -1 disables a rate limit."
  type = object({
    max_frame_bytes       = optional(number)
    max_message_bytes     = optional(number)
    sends_per_minute      = optional(number)
    logs_per_minute       = optional(number)
    ops_per_minute        = optional(number)
    idle_timeout          = optional(string)
    session_token_ttl     = optional(string)
    max_sessions_per_conn = optional(number)
  })
  default = {}
}

# --- mesh identity (from `relaymesh pki init` / `relaymesh pki issue`) -------------

variable "ca_cert_pem" {
  description = "Cluster CA certificate: pki/ca.crt of `relaymesh pki init`. Keep ca.key off Terraform."
  type        = string
  sensitive   = true
}

variable "core_certs" {
  description = "Certificate and key of each core, keyed core-1 .. core-N (`relaymesh pki issue --name core-i`)."
  type = map(object({
    cert_pem = string
    key_pem  = string
  }))
  sensitive = true
}

variable "edge_cert_pem" {
  description = "Certificate shared by the edges of the autoscaling group (`relaymesh pki issue --name edge-<region>`)."
  type        = string
  sensitive   = true
}

variable "edge_key_pem" {
  description = "Key of edge_cert_pem."
  type        = string
  sensitive   = true
}

variable "session_token_key_base64" {
  description = "Base64 of the session-token key every edge shares (filebase64(\"pki/session-token.key\")); at least 32 bytes."
  type        = string
  sensitive   = true

  validation {
    condition     = can(regex("^[A-Za-z0-9+/]{43,}=?=?$", var.session_token_key_base64)) # not base64decode: it rejects non-UTF-8 bytes
    error_message = "session_token_key_base64 must be the base64 of at least 32 bytes."
  }
}
