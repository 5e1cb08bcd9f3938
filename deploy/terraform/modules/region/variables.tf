# Inputs of one relaymesh region. Everything AWS-specific lives in this module;
# a port to another cloud keeps these inputs and the two templates and swaps
# the resources.

# --- where ---------------------------------------------------------------------

variable "region" {
  description = "AWS region of this relaymesh region (e.g. eu-central-1). Must equal the aws provider's region; it is also the Route 53 latency region and set_identifier."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as eu-central-1."
  }
}

variable "name" {
  description = "Prefix of every resource name and tag."
  type        = string
  default     = "relaymesh"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,20}$", var.name))
    error_message = "name must be 1..21 of a-z, 0-9 and -, starting with a letter (it prefixes AWS names with length limits)."
  }
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
  description = "CIDR of the VPC this module creates when vpc_id is null. Regions joined by VPC peering need CIDRs that do not overlap (examples/global: 10.42, 10.43, 10.44)."
  type        = string
  default     = "10.42.0.0/16"

  validation {
    condition     = can(regex("^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}/(3[0-2]|[12]?[0-9])$", var.vpc_cidr)) && tonumber(split("/", var.vpc_cidr)[1]) <= 18
    error_message = "vpc_cidr must be an IPv4 CIDR of /18 or larger (the module cuts /+4 private and /+8 public subnets)."
  }
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

  validation {
    condition     = contains(["gp3", "gp2", "io1", "io2"], var.core_volume_type)
    error_message = "core_volume_type must be gp3, gp2, io1 or io2 (SSD: raft fsyncs every commit)."
  }
}

# --- the mesh: this region among the others -----------------------------------

variable "region_number" {
  description = "This region's number in the mesh, 1..255 ([core] region): named in the ids of the conversations created here, so it never changes and is never reused. The first region is 1."
  type        = number
  default     = 1

  validation {
    condition     = var.region_number >= 1 && var.region_number <= 255 && floor(var.region_number) == var.region_number
    error_message = "region_number must be a whole number in 1..255."
  }
}

variable "node_name_prefix" {
  description = "Prefix of the cores' node ids (<prefix>core-1 ..), which are also their certificates' names and core_certs' keys. Node ids must be unique across the mesh: give each region its own, e.g. \"eu-\" (certificates: relaymesh pki issue --name eu-core-1 --role core). Never change it on a running region: raft knows its voters by id."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^([a-z0-9][a-z0-9-]{0,30}-)?$", var.node_name_prefix))
    error_message = "node_name_prefix must be empty or 2..32 of a-z, 0-9 and -, ending in -."
  }
}

variable "shards" {
  description = "Shards (raft groups) of this region ([core] shards): every core hosts a replica of each. May grow between applies, never shrink."
  type        = number
  default     = 1

  validation {
    condition     = var.shards >= 1 && var.shards <= 256 && floor(var.shards) == var.shards
    error_message = "shards must be a whole number in 1..256 (cluster.MaxShards)."
  }
}

variable "remote_regions" {
  description = "The other regions of the mesh, each as the `mesh` output of its own module: number, name, seeds (its cores' mesh addresses, ip:port), ca_cert_pem (its cluster CA, appended to this region's CA bundle) and node_cidrs (networks its nodes dial from, allowed to this region's cores on mesh_port/udp). Rendered as [[core.remote_regions]]."
  type = list(object({
    number      = number
    name        = string
    seeds       = list(string)
    ca_cert_pem = string
    node_cidrs  = list(string)
  }))
  default = []

  validation {
    condition = alltrue([for r in var.remote_regions :
      r.number >= 1 && r.number <= 255 && floor(r.number) == r.number
    ]) && length(distinct([for r in var.remote_regions : r.number])) == length(var.remote_regions)
    error_message = "remote_regions: each number must be a whole number in 1..255, each once."
  }

  validation {
    condition = alltrue([for r in var.remote_regions :
      length(r.seeds) > 0 && alltrue([for a in r.seeds : can(regex("^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}:[0-9]{1,5}$", a))])
    ])
    error_message = "remote_regions: every region needs at least one seed, each an IPv4 ip:port mesh address."
  }

  validation {
    condition = alltrue([for r in var.remote_regions :
      length(r.node_cidrs) > 0 && alltrue([for c in r.node_cidrs : can(regex("^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}/(3[0-2]|[12]?[0-9])$", c)) && c != "0.0.0.0/0"])
    ])
    error_message = "remote_regions: every region needs node_cidrs, IPv4 CIDRs of its nodes (not 0.0.0.0/0: the mesh is open only to relaymesh nodes)."
  }

  validation {
    condition     = alltrue([for r in var.remote_regions : can(regex("^-----BEGIN CERTIFICATE-----", trimspace(r.ca_cert_pem))) && can(regex("^[a-z0-9-]{1,32}$", r.name))])
    error_message = "remote_regions: ca_cert_pem must be a PEM certificate, name 1..32 of a-z, 0-9 and -."
  }
}

# --- ports ---------------------------------------------------------------------

variable "client_port" {
  description = "Port the edges listen on for clients: TCP for WebSocket, /v1/route, /healthz and /readyz, UDP for WebTransport (HTTP/3, /wt). Without webtransport the load balancer terminates TLS on 443 and forwards plain TCP here; with it, its one TCP_UDP listener passes 443 (TCP and UDP) through and the edges terminate TLS ([edge] tls)."
  type        = number
  default     = 8080

  validation {
    condition     = var.client_port >= 1024 && var.client_port <= 65535 && floor(var.client_port) == var.client_port
    error_message = "client_port must be a whole number in 1024..65535 (the edges run unprivileged)."
  }
}

variable "mesh_port" {
  description = "UDP port of the cores' QUIC mesh (edges -> cores, cores <-> cores, cores of other regions -> cores). Every region of the mesh must use the same."
  type        = number
  default     = 7100

  validation {
    condition     = var.mesh_port >= 1024 && var.mesh_port <= 65535 && floor(var.mesh_port) == var.mesh_port
    error_message = "mesh_port must be a whole number in 1024..65535."
  }
}

variable "allowed_client_cidrs" {
  description = "Client networks (IPv4 CIDRs) allowed to reach the load balancer on 443/tcp and 443/udp."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = length(var.allowed_client_cidrs) > 0 && alltrue([for c in var.allowed_client_cidrs : can(regex("^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}/(3[0-2]|[12]?[0-9])$", c))])
    error_message = "allowed_client_cidrs must list at least one IPv4 CIDR (a.b.c.d/n)."
  }
}

# --- DNS -----------------------------------------------------------------------

variable "dns_zone_name" {
  description = "Public Route 53 hosted zone holding the client names, e.g. example.com."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9-]+\\.)+[a-z]+$", var.dns_zone_name))
    error_message = "dns_zone_name must be a DNS name such as example.com (no trailing dot)."
  }
}

variable "dns_name" {
  description = "Global client name, e.g. im.example.com. Each region adds a latency record for it, so clients resolve the nearest region's edges. Apps use wss://<dns_name>/ as RTMServers."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9-]+\\.)+[a-z]+$", var.dns_name))
    error_message = "dns_name must be a DNS name such as im.example.com (no trailing dot)."
  }
}

variable "latency_record" {
  description = "Whether this module adds the latency record of dns_name for its region. false: the caller does (examples/global declares one per region from the nlb_dns_name and nlb_zone_id outputs)."
  type        = bool
  default     = true
}

variable "regional_dns_name" {
  description = "Name of this region alone (simple record). null: <region>.<dns_name>."
  type        = string
  default     = null

  validation {
    condition     = var.regional_dns_name == null || can(regex("^([a-z0-9-]+\\.)+[a-z]+$", coalesce(var.regional_dns_name, "x")))
    error_message = "regional_dns_name must be null or a DNS name."
  }
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
  description = "Cluster CA certificate: pki/ca.crt of `relaymesh pki init`. Keep ca.key off Terraform. Regions may share one CA (simplest) or have one each: a core trusts this CA and those of remote_regions."
  type        = string
  sensitive   = true

  validation {
    condition     = can(regex("^-----BEGIN CERTIFICATE-----", trimspace(var.ca_cert_pem)))
    error_message = "ca_cert_pem must be a PEM certificate (pki/ca.crt)."
  }
}

variable "core_certs" {
  description = "Certificate and key of each core, keyed <node_name_prefix>core-1 .. core-N (`relaymesh pki issue --name core-i`, with a prefix also `--role core`)."
  type = map(object({
    cert_pem = string
    key_pem  = string
  }))
  sensitive = true

  validation {
    condition     = alltrue([for k, c in var.core_certs : can(regex("^-----BEGIN CERTIFICATE-----", trimspace(c.cert_pem))) && can(regex("^-----BEGIN [A-Z ]*PRIVATE KEY-----", trimspace(c.key_pem)))])
    error_message = "core_certs: every entry needs a PEM cert_pem and a PEM key_pem."
  }
}

variable "edge_cert_pem" {
  description = "Certificate shared by the edges of the autoscaling group (`relaymesh pki issue --name edge-<region>`)."
  type        = string
  sensitive   = true

  validation {
    condition     = can(regex("^-----BEGIN CERTIFICATE-----", trimspace(var.edge_cert_pem)))
    error_message = "edge_cert_pem must be a PEM certificate (relaymesh pki issue)."
  }
}

variable "edge_key_pem" {
  description = "Key of edge_cert_pem."
  type        = string
  sensitive   = true

  validation {
    condition     = can(regex("^-----BEGIN [A-Z ]*PRIVATE KEY-----", trimspace(var.edge_key_pem)))
    error_message = "edge_key_pem must be a PEM private key."
  }
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

variable "webtransport" {
  description = "Serve WebTransport: the load balancer's one listener on 443 becomes TCP_UDP, passed through to the edges' client_port (TCP and UDP), and the edges terminate TLS for both ([edge] tls = true, wt_cert/wt_key from wt_cert_pem/wt_key_pem); no ACM certificate then. false: a TLS listener with an ACM certificate, WebSocket only. (A plain bool, not derived from the sensitive certificate: Terraform refuses sensitive values in count and for_each.)"
  type        = bool
  default     = false
}

variable "wt_cert_pem" {
  description = "With webtransport: the certificate chain (PEM) the edges serve on 443 for WebSocket (wss://) and WebTransport alike ([edge] wt_cert, [edge] tls), publicly trusted for dns_name and the regional name. The load balancer passes TLS through, and ACM cannot export a certificate to instances, so bring one (e.g. from an ACME CA); renew it by setting the new one here and applying (the edges are replaced with it)."
  type        = string
  default     = null
  sensitive   = true

  validation {
    condition     = var.wt_cert_pem == null || can(regex("^-----BEGIN CERTIFICATE-----", trimspace(coalesce(var.wt_cert_pem, "x"))))
    error_message = "wt_cert_pem must be null or a PEM certificate chain."
  }
}

variable "wt_key_pem" {
  description = "With webtransport: the key of wt_cert_pem ([edge] wt_key)."
  type        = string
  default     = null
  sensitive   = true

  validation {
    condition     = var.wt_key_pem == null || can(regex("^-----BEGIN [A-Z ]*PRIVATE KEY-----", trimspace(coalesce(var.wt_key_pem, "x"))))
    error_message = "wt_key_pem must be null or a PEM private key."
  }
}
