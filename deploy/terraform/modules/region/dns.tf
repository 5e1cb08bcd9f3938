# DNS and the TLS certificate. dns_name gets one latency record per region
# (set_identifier = region), so a client resolves the region nearest to it;
# regional_dns_name always points here. Without WebTransport both are on the
# ACM certificate that the load balancer's TLS listener serves. With it the
# edges terminate TLS themselves with wt_cert_pem (edges.tf): ACM cannot
# export a certificate to instances, so there is no ACM certificate then.

# Adding count moved the existing certificate to index 0 (Terraform does so
# by itself; the moved blocks say it): webtransport = false keeps it.
moved {
  from = aws_acm_certificate.edge
  to   = aws_acm_certificate.edge[0]
}

moved {
  from = aws_acm_certificate_validation.edge
  to   = aws_acm_certificate_validation.edge[0]
}

data "aws_route53_zone" "public" {
  name         = var.dns_zone_name
  private_zone = false
}

resource "aws_acm_certificate" "edge" {
  count = local.webtransport ? 0 : 1

  domain_name               = var.dns_name
  subject_alternative_names = [local.regional_dns_name]
  validation_method         = "DNS"
  tags                      = local.tags

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_route53_record" "acm_validation" {
  for_each = {
    for o in flatten(aws_acm_certificate.edge[*].domain_validation_options) : o.domain_name => o
  }

  zone_id         = data.aws_route53_zone.public.zone_id
  name            = each.value.resource_record_name
  type            = each.value.resource_record_type
  records         = [each.value.resource_record_value]
  ttl             = 300
  allow_overwrite = true # every region validates the same global name
}

resource "aws_acm_certificate_validation" "edge" {
  count = local.webtransport ? 0 : 1

  certificate_arn         = aws_acm_certificate.edge[0].arn
  validation_record_fqdns = [for r in aws_route53_record.acm_validation : r.fqdn]
}

resource "aws_route53_record" "latency" {
  count = var.latency_record ? 1 : 0

  zone_id        = data.aws_route53_zone.public.zone_id
  name           = var.dns_name
  type           = "A"
  set_identifier = var.region

  latency_routing_policy {
    region = var.region
  }

  alias {
    name                   = aws_lb.edge.dns_name
    zone_id                = aws_lb.edge.zone_id
    evaluate_target_health = true
  }
}

resource "aws_route53_record" "regional" {
  zone_id = data.aws_route53_zone.public.zone_id
  name    = local.regional_dns_name
  type    = "A"

  alias {
    name                   = aws_lb.edge.dns_name
    zone_id                = aws_lb.edge.zone_id
    evaluate_target_health = false
  }
}

# The module must run with a provider of the same region.
data "aws_region" "current" {}

check "provider_region" {
  assert {
    condition     = data.aws_region.current.name == var.region
    error_message = "var.region (${var.region}) differs from the aws provider's region (${data.aws_region.current.name})."
  }
}
