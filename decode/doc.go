// Package decode turns Kafka records into rows of a table: the JSON decoder (a
// one-pass reader for the common shape, the full fastjson path for the rest) and the
// Avro decoder for the Confluent wire format with its schema cache, the compiled
// table definition they decode into (Table, Tables), the staged row, Record and the
// rejection reasons.
//
// What a decoder promises: Decode either returns the record's event time with
// exactly one well-formed row staged (Row, in the raw files' row format of
// lake/rawfile), or an error. A record that cannot be written to its table is a
// *Rejection with one of the Reason constants (it goes to the dead-letter topic);
// a decoder panic is a ReasonPanic rejection; only an unreachable schema registry
// is not a rejection (IsTransient: retry, never dead-letter). Package registry is
// the Schema Registry client.
package decode
