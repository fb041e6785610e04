// Package rawfile owns the raw file's format: the byte format the sink's buffers
// hold rows in (RowStore, AppendEntry), their encoding as Parquet (Encoder, with
// the process's zstd and Snappy codecs), the footer keys every raw file carries
// (Meta*, spelled only here), and reading a raw file's coverage back (LastOffset,
// ReadLastOffset, ReadFooter). The sink writes raw files; the compactor, the bench
// and the audit read them.
package rawfile
