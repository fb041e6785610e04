output "bucket" {
  description = "The lake bucket (the config's s3.bucket)."
  value       = aws_s3_bucket.lake.bucket
}

output "glue_database" {
  description = "The Glue database (the config's catalog.namespace)."
  value       = aws_glue_catalog_database.lake.name
}

output "athena_workgroup" {
  description = "The Athena workgroup to query the tables with."
  value       = aws_athena_workgroup.lake.name
}

output "athena_query_policy_arn" {
  description = "Managed policy to attach to people and tools that query the lake with Athena."
  value       = aws_iam_policy.athena_query.arn
}

output "sink_role_arn" {
  description = "IRSA role of the sink's ServiceAccount."
  value       = aws_iam_role.sink.arn
}

output "compact_role_arn" {
  description = "IRSA role of the compactor's ServiceAccount."
  value       = aws_iam_role.compact.arn
}

output "keda_role_arn" {
  description = "Role KEDA assumes to read the consumer lag from MSK (null without MSK IAM)."
  value       = local.msk ? aws_iam_role.keda[0].arn : null
}

# terraform output -raw kustomize_values_env > deploy/kubernetes/overlays/eks/values.env
output "kustomize_values_env" {
  description = "values.env of the EKS kustomize overlay: the IRSA role annotations and KEDA's role and region."
  value       = <<-EOT
    AWS_REGION=${local.region}
    SINK_ROLE_ARN=${aws_iam_role.sink.arn}
    COMPACT_ROLE_ARN=${aws_iam_role.compact.arn}
    KEDA_ROLE_ARN=${local.msk ? aws_iam_role.keda[0].arn : "none"}
  EOT
}

# terraform output -raw lakesink_config_lake: the s3 and catalog sections of lakesink.yaml.
output "lakesink_config_lake" {
  description = "The s3 and catalog sections of the lakesink config for this infrastructure."
  value       = <<-EOT
    s3:
      bucket: ${aws_s3_bucket.lake.bucket}
      prefix: "${var.prefix}"
      region: ${local.region}
      sse: ${local.sse_settings}${local.kms_key_line}
    catalog:
      type: glue
      namespace: ${aws_glue_catalog_database.lake.name}
      warehouse: s3://${aws_s3_bucket.lake.bucket}/${trimsuffix(local.warehouse_prefix, "/")}
      glue: {region: ${local.region}}
  EOT
}
