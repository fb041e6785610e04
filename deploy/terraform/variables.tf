variable "name" {
  description = "Prefix of every resource name (IAM roles, Athena workgroup)."
  type        = string
  default     = "lakesink"
}

variable "bucket_name" {
  description = "The lake's S3 bucket (raw zone, Iceberg warehouse, Athena results)."
  type        = string
}

variable "prefix" {
  description = "Key prefix of the lake inside the bucket (the config's s3.prefix): \"\" or ending in \"/\"."
  type        = string
  default     = ""
  validation {
    condition     = var.prefix == "" || endswith(var.prefix, "/")
    error_message = "prefix must be empty or end with /."
  }
}

variable "force_destroy" {
  description = "Let terraform destroy delete a non-empty bucket. Keep false for a real lake."
  type        = bool
  default     = false
}

variable "versioning" {
  description = "Keep overwritten and deleted objects as noncurrent versions for noncurrent_days (undo for operator mistakes)."
  type        = bool
  default     = true
}

variable "noncurrent_days" {
  description = "Days noncurrent object versions are kept when versioning is on."
  type        = number
  default     = 7
}

variable "kms_key_arn" {
  description = "KMS key for SSE-KMS (bucket default, Athena results). null: SSE-S3 (AES256)."
  type        = string
  default     = null
}

variable "raw_expiration_days" {
  description = "Safety net: raw files older than this are expired by S3. The compactor deletes them much earlier (compaction.raw_grace) once their rows are in the Iceberg table, so this only removes leftovers. It must exceed the longest compactor outage you could miss: an expired raw file that was never compacted is lost."
  type        = number
  default     = 30
  validation {
    condition     = var.raw_expiration_days >= 7
    error_message = "raw_expiration_days below 7 risks losing data that a stopped compactor has not merged yet."
  }
}

variable "athena_results_expiration_days" {
  description = "Days Athena query results are kept."
  type        = number
  default     = 7
}

variable "athena_bytes_scanned_cutoff" {
  description = "Per-query scan limit of the Athena workgroup, in bytes."
  type        = number
  default     = 107374182400 # 100 GiB
}

variable "glue_database" {
  description = "Glue database (Iceberg namespace) holding the lake's tables: the config's catalog.namespace."
  type        = string
  default     = "lakesink"
}

variable "oidc_provider_arn" {
  description = "ARN of the EKS cluster's IAM OIDC provider (IRSA), e.g. module.eks.oidc_provider_arn."
  type        = string
}

variable "namespace" {
  description = "Kubernetes namespace of lakesink."
  type        = string
  default     = "lakesink"
}

variable "sink_service_account" {
  description = "ServiceAccount of the sink Deployment."
  type        = string
  default     = "lakesink-sink"
}

variable "compact_service_account" {
  description = "ServiceAccount of the compaction CronJob."
  type        = string
  default     = "lakesink-compact"
}

variable "msk_cluster_arn" {
  description = "MSK cluster using IAM auth. null: Kafka is not MSK IAM (SASL/SCRAM or TLS); no kafka-cluster permissions are granted and no KEDA role is made."
  type        = string
  default     = null
}

variable "kafka_topics" {
  description = "Source topics the sink reads (every table's topics)."
  type        = list(string)
  default     = ["events"]
}

variable "kafka_dead_letter_topic" {
  description = "The dead-letter topic the sink writes rejected records to."
  type        = string
  default     = "events-dlq"
}

variable "kafka_group" {
  description = "The sink's consumer group (kafka.group)."
  type        = string
  default     = "lakesink"
}

variable "keda_namespace" {
  description = "Namespace of the KEDA operator, whose ServiceAccount may assume the lag-reader role."
  type        = string
  default     = "keda"
}

variable "keda_service_account" {
  description = "ServiceAccount of the KEDA operator."
  type        = string
  default     = "keda-operator"
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
