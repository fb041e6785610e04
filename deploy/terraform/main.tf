# lakesink on AWS: the lake bucket, the Glue database Athena reads, one least-privilege IRSA
# role per workload, and an Athena workgroup. Outputs feed deploy/kubernetes/overlays/eks.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account   = data.aws_caller_identity.current.account_id
  partition = data.aws_partition.current.partition
  region    = data.aws_region.current.region

  # Key prefixes inside the bucket (lake/layout: <prefix>raw/<table>/..., catalog.warehouse).
  raw_prefix       = "${var.prefix}raw/"
  warehouse_prefix = "${var.prefix}warehouse/"
  results_prefix   = "${var.prefix}athena-results/"
  # The sink's offset checkpoints (sink/checkpoint.go): <prefix>checkpoints/<group>/<topic>/<partition>/.
  checkpoints_prefix = "${var.prefix}checkpoints/"
  # The sink's event-time watermarks (lake/watermark): <prefix>watermarks/<group>/<topic>.json.
  watermarks_prefix = "${var.prefix}watermarks/"

  bucket_arn      = aws_s3_bucket.lake.arn
  raw_arn         = "${aws_s3_bucket.lake.arn}/${local.raw_prefix}*"
  warehouse_arn   = "${aws_s3_bucket.lake.arn}/${local.warehouse_prefix}*"
  results_arn     = "${aws_s3_bucket.lake.arn}/${local.results_prefix}*"
  checkpoints_arn = "${aws_s3_bucket.lake.arn}/${local.checkpoints_prefix}*"
  watermarks_arn  = "${aws_s3_bucket.lake.arn}/${local.watermarks_prefix}*"

  kms = var.kms_key_arn != null

  # IRSA: the OIDC issuer (host/path) is the part of the provider ARN after "oidc-provider/".
  oidc_issuer = element(split("oidc-provider/", var.oidc_provider_arn), 1)

  glue_catalog_arn  = "arn:${local.partition}:glue:${local.region}:${local.account}:catalog"
  glue_database_arn = "arn:${local.partition}:glue:${local.region}:${local.account}:database/${var.glue_database}"
  glue_tables_arn   = "arn:${local.partition}:glue:${local.region}:${local.account}:table/${var.glue_database}/*"

  # MSK IAM resource ARNs: cluster/NAME/UUID -> topic/NAME/UUID/TOPIC, group/NAME/UUID/GROUP.
  msk          = var.msk_cluster_arn != null
  msk_cluster  = local.msk ? var.msk_cluster_arn : ""
  msk_topics   = [for t in var.kafka_topics : "${replace(local.msk_cluster, ":cluster/", ":topic/")}/${t}"]
  msk_dlq      = "${replace(local.msk_cluster, ":cluster/", ":topic/")}/${var.kafka_dead_letter_topic}"
  msk_group    = "${replace(local.msk_cluster, ":cluster/", ":group/")}/${var.kafka_group}"
  sse_settings = local.kms ? "aws:kms" : "AES256"
  kms_key_line = local.kms ? "\n  kms_key_id: ${var.kms_key_arn}" : ""
}

resource "aws_glue_catalog_database" "lake" {
  name        = var.glue_database
  description = "lakesink Iceberg tables (registered by lakesink compact)"
  # Table locations are set per table by the compactor (catalog.warehouse).
  location_uri = "s3://${aws_s3_bucket.lake.bucket}/${local.warehouse_prefix}${var.glue_database}.db"
  tags         = var.tags
}

resource "aws_athena_workgroup" "lake" {
  name          = var.name
  description   = "Queries over the lakesink Iceberg tables"
  force_destroy = false
  state         = "ENABLED"
  tags          = var.tags

  configuration {
    enforce_workgroup_configuration    = true
    publish_cloudwatch_metrics_enabled = true
    bytes_scanned_cutoff_per_query     = var.athena_bytes_scanned_cutoff

    engine_version {
      selected_engine_version = "Athena engine version 3"
    }

    result_configuration {
      output_location = "s3://${aws_s3_bucket.lake.bucket}/${local.results_prefix}"
      encryption_configuration {
        encryption_option = local.kms ? "SSE_KMS" : "SSE_S3"
        kms_key_arn       = var.kms_key_arn
      }
    }
  }
}
