# The VPC: either the caller's (vpc_id + subnet ids) or a new one with three
# public subnets (load balancer, NAT) and three private subnets (edges, cores).

data "aws_availability_zones" "available" {
  state = "available"
}

locals {
  create_vpc = var.vpc_id == null
  azs        = slice(data.aws_availability_zones.available.names, 0, 3)
  tags       = merge({ "relaymesh:region" = var.region }, var.tags)
}

resource "aws_vpc" "this" {
  count = local.create_vpc ? 1 : 0

  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true
  tags                 = merge(local.tags, { Name = var.name })
}

resource "aws_subnet" "public" {
  count = local.create_vpc ? length(local.azs) : 0

  vpc_id            = aws_vpc.this[0].id
  availability_zone = local.azs[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 8, 240 + count.index)
  tags              = merge(local.tags, { Name = "${var.name}-public-${local.azs[count.index]}" })
}

resource "aws_subnet" "private" {
  count = local.create_vpc ? length(local.azs) : 0

  vpc_id            = aws_vpc.this[0].id
  availability_zone = local.azs[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 4, count.index)
  tags              = merge(local.tags, { Name = "${var.name}-private-${local.azs[count.index]}" })
}

resource "aws_internet_gateway" "this" {
  count = local.create_vpc ? 1 : 0

  vpc_id = aws_vpc.this[0].id
  tags   = merge(local.tags, { Name = var.name })
}

resource "aws_route_table" "public" {
  count = local.create_vpc ? 1 : 0

  vpc_id = aws_vpc.this[0].id
  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.this[0].id
  }
  tags = merge(local.tags, { Name = "${var.name}-public" })
}

resource "aws_route_table_association" "public" {
  count = local.create_vpc ? length(local.azs) : 0

  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public[0].id
}

# One NAT gateway: nodes need outbound HTTPS only (binary download, Secrets
# Manager, SSM). Use one per AZ, or VPC endpoints, where that matters.
resource "aws_eip" "nat" {
  count = local.create_vpc ? 1 : 0

  domain = "vpc"
  tags   = merge(local.tags, { Name = "${var.name}-nat" })
}

resource "aws_nat_gateway" "this" {
  count = local.create_vpc ? 1 : 0

  allocation_id = aws_eip.nat[0].id
  subnet_id     = aws_subnet.public[0].id
  tags          = merge(local.tags, { Name = var.name })

  depends_on = [aws_internet_gateway.this]
}

resource "aws_route_table" "private" {
  count = local.create_vpc ? 1 : 0

  vpc_id = aws_vpc.this[0].id
  route {
    cidr_block     = "0.0.0.0/0"
    nat_gateway_id = aws_nat_gateway.this[0].id
  }
  tags = merge(local.tags, { Name = "${var.name}-private" })
}

resource "aws_route_table_association" "private" {
  count = local.create_vpc ? length(local.azs) : 0

  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private[0].id
}

data "aws_subnet" "private" {
  count = local.create_vpc ? 0 : length(var.private_subnet_ids)

  id = var.private_subnet_ids[count.index]
}

locals {
  vpc_id            = local.create_vpc ? aws_vpc.this[0].id : var.vpc_id
  public_subnet_ids = local.create_vpc ? aws_subnet.public[*].id : var.public_subnet_ids
  # id and AZ of each private subnet, in order; core i lives in private_subnets[i % n].
  private_subnets = local.create_vpc ? [
    for s in aws_subnet.private : { id = s.id, az = s.availability_zone }
    ] : [
    for s in data.aws_subnet.private : { id = s.id, az = s.availability_zone }
  ]
  # Where this region's nodes live: what other regions open their mesh port to.
  node_cidrs = local.create_vpc ? aws_subnet.private[*].cidr_block : data.aws_subnet.private[*].cidr_block
  # Route tables of the private subnets, for routes to other regions (peering);
  # with vpc_id the caller routes.
  private_route_table_ids = local.create_vpc ? aws_route_table.private[*].id : []
}
