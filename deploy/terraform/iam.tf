# One IRSA role per workload, each granted only the API calls its code makes
# (deploy/terraform_test.go derives them from lake/store/s3.go and checks these policies).

# --- trust: the workload's Kubernetes ServiceAccount, through the cluster's OIDC provider ---

data "aws_iam_policy_document" "trust_sink" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:sub"
      values   = ["system:serviceaccount:${var.namespace}:${var.sink_service_account}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "trust_compact" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:sub"
      values   = ["system:serviceaccount:${var.namespace}:${var.compact_service_account}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "trust_keda" {
  count = local.msk ? 1 : 0
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:sub"
      values   = ["system:serviceaccount:${var.keda_namespace}:${var.keda_service_account}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

# --- sink: writes raw files, reads one back after a replay, checks the bucket ---

data "aws_iam_policy_document" "sink" {
  # PutObject, multipart (Create/UploadPart/Complete are s3:PutObject), abort on failure;
  # GetObject/HeadObject read the footer of a raw file found already written after a crash.
  statement {
    sid       = "RawZoneWrite"
    actions   = ["s3:PutObject", "s3:AbortMultipartUpload", "s3:GetObject"]
    resources = [local.raw_arn]
  }
  # Offset checkpoints: the durable ranges that do not fit in the 4 KiB commit metadata,
  # written (conditional PUT) before the commit naming them, read back at assignment,
  # deleted once a later commit no longer names them; orphans (listed through
  # BucketCheck's s3:ListBucket) deleted at assignment.
  statement {
    sid       = "OffsetCheckpoints"
    actions   = ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"]
    resources = [local.checkpoints_arn]
  }
  # Event-time watermarks: read, merged and written back by compare-and-swap (GET, then
  # PUT with If-Match) after each commit interval; never deleted.
  statement {
    sid       = "Watermarks"
    actions   = ["s3:PutObject", "s3:GetObject"]
    resources = [local.watermarks_arn]
  }
  # HeadBucket (/readyz) needs s3:ListBucket; so does a HeadObject that must answer 404
  # rather than 403 for a missing key (the 409-conflict check).
  statement {
    sid       = "BucketCheck"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arn]
  }
  dynamic "statement" {
    for_each = local.kms ? [1] : []
    content {
      sid       = "LakeKey"
      actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
      resources = [var.kms_key_arn]
    }
  }
  # MSK IAM: franz-go's producer is idempotent by default (dead letters), hence
  # WriteDataIdempotently; the consumer group needs Describe/AlterGroup.
  dynamic "statement" {
    for_each = local.msk ? [1] : []
    content {
      sid       = "KafkaConnect"
      actions   = ["kafka-cluster:Connect", "kafka-cluster:WriteDataIdempotently"]
      resources = [local.msk_cluster]
    }
  }
  dynamic "statement" {
    for_each = local.msk ? [1] : []
    content {
      sid       = "KafkaRead"
      actions   = ["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"]
      resources = local.msk_topics
    }
  }
  dynamic "statement" {
    for_each = local.msk ? [1] : []
    content {
      sid       = "KafkaDeadLetter"
      actions   = ["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"]
      resources = [local.msk_dlq]
    }
  }
  dynamic "statement" {
    for_each = local.msk ? [1] : []
    content {
      sid       = "KafkaGroup"
      actions   = ["kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"]
      resources = [local.msk_group]
    }
  }
}

# --- compactor: reads and deletes raw files, owns the warehouse, commits through Glue ---

data "aws_iam_policy_document" "compact" {
  statement {
    sid       = "RawZoneReadDelete"
    actions   = ["s3:GetObject", "s3:DeleteObject"]
    resources = [local.raw_arn]
  }
  # The sink's watermarks decide which hours are closed (docs/watermarks.md).
  statement {
    sid       = "WatermarksRead"
    actions   = ["s3:GetObject"]
    resources = [local.watermarks_arn]
  }
  # Data and metadata files of the Iceberg tables: written once, read, and deleted by
  # snapshot expiry and orphan removal.
  statement {
    sid       = "WarehouseReadWrite"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = [local.warehouse_arn]
  }
  statement {
    sid       = "BucketList"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arn]
  }
  # iceberg-go's Glue catalog: namespace checks and creation, table load/create/commit
  # (UpdateTable with the version id is the compare-and-swap).
  statement {
    sid = "GlueCatalog"
    actions = [
      "glue:GetDatabase",
      "glue:GetDatabases",
      "glue:CreateDatabase",
      "glue:GetTable",
      "glue:GetTables",
      "glue:CreateTable",
      "glue:UpdateTable",
    ]
    resources = [local.glue_catalog_arn, local.glue_database_arn, local.glue_tables_arn]
  }
  dynamic "statement" {
    for_each = local.kms ? [1] : []
    content {
      sid       = "LakeKey"
      actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
      resources = [var.kms_key_arn]
    }
  }
}

# --- KEDA: reads the group's committed offsets and the topics' end offsets ---

data "aws_iam_policy_document" "keda" {
  count = local.msk ? 1 : 0
  statement {
    sid       = "KafkaConnect"
    actions   = ["kafka-cluster:Connect"]
    resources = [local.msk_cluster]
  }
  statement {
    sid       = "KafkaLag"
    actions   = ["kafka-cluster:DescribeTopic"]
    resources = local.msk_topics
  }
  statement {
    sid       = "KafkaGroup"
    actions   = ["kafka-cluster:DescribeGroup"]
    resources = [local.msk_group]
  }
}

resource "aws_iam_role" "sink" {
  name               = "${var.name}-sink"
  description        = "lakesink sink (IRSA ${var.namespace}/${var.sink_service_account})"
  assume_role_policy = data.aws_iam_policy_document.trust_sink.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "sink" {
  name   = "${var.name}-sink"
  role   = aws_iam_role.sink.id
  policy = data.aws_iam_policy_document.sink.json
}

resource "aws_iam_role" "compact" {
  name               = "${var.name}-compact"
  description        = "lakesink compactor (IRSA ${var.namespace}/${var.compact_service_account})"
  assume_role_policy = data.aws_iam_policy_document.trust_compact.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "compact" {
  name   = "${var.name}-compact"
  role   = aws_iam_role.compact.id
  policy = data.aws_iam_policy_document.compact.json
}

resource "aws_iam_role" "keda" {
  count              = local.msk ? 1 : 0
  name               = "${var.name}-keda"
  description        = "KEDA reading the lag of the lakesink consumer group on MSK"
  assume_role_policy = data.aws_iam_policy_document.trust_keda[0].json
  tags               = var.tags
}

resource "aws_iam_role_policy" "keda" {
  count  = local.msk ? 1 : 0
  name   = "${var.name}-keda"
  role   = aws_iam_role.keda[0].id
  policy = data.aws_iam_policy_document.keda[0].json
}

# --- people and tools querying with Athena (attach to their roles or groups) ---

data "aws_iam_policy_document" "athena_query" {
  statement {
    sid = "Workgroup"
    actions = [
      "athena:StartQueryExecution",
      "athena:StopQueryExecution",
      "athena:GetQueryExecution",
      "athena:GetQueryResults",
      "athena:GetQueryResultsStream",
      "athena:GetWorkGroup",
    ]
    resources = [aws_athena_workgroup.lake.arn]
  }
  statement {
    sid       = "Catalog"
    actions   = ["glue:GetDatabase", "glue:GetDatabases", "glue:GetTable", "glue:GetTables", "glue:GetPartition", "glue:GetPartitions"]
    resources = [local.glue_catalog_arn, local.glue_database_arn, local.glue_tables_arn]
  }
  statement {
    sid       = "ReadTables"
    actions   = ["s3:GetObject"]
    resources = [local.warehouse_arn]
  }
  statement {
    sid       = "Results"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"]
    resources = [local.results_arn]
  }
  statement {
    sid       = "Bucket"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [local.bucket_arn]
  }
  dynamic "statement" {
    for_each = local.kms ? [1] : []
    content {
      sid       = "LakeKey"
      actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
      resources = [var.kms_key_arn]
    }
  }
}

resource "aws_iam_policy" "athena_query" {
  name        = "${var.name}-athena-query"
  description = "Query the lakesink tables through the ${var.name} Athena workgroup"
  policy      = data.aws_iam_policy_document.athena_query.json
  tags        = var.tags
}
