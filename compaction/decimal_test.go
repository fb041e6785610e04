package compaction

import (
	"math/big"
	"testing"

	"github.com/parquet-go/parquet-go"
)

// TestEncodeUnscaled: unscaled decimals move between INT32, INT64 and
// FIXED_LEN_BYTE_ARRAY widths keeping their value and sign; one that does not
// fit the target is an error, not a wrapped-around number.
func TestEncodeUnscaled(t *testing.T) {
	flba := func(n int64, width int) parquet.Value {
		b := big.NewInt(n).FillBytes(make([]byte, width))
		if n < 0 { // two's complement
			m := new(big.Int).Lsh(big.NewInt(1), uint(8*width))
			b = m.Add(m, big.NewInt(n)).FillBytes(make([]byte, width))
		}
		return parquet.FixedLenByteArrayValue(b)
	}
	for _, tc := range []struct {
		name string
		in   parquet.Value
		to   decimalFix
		want parquet.Value
		err  bool
	}{
		{"int32 to int64", parquet.Int32Value(-123), decimalFix{kind: parquet.Int64}, parquet.Int64Value(-123), false},
		{"int64 to flba(9)", parquet.Int64Value(25), decimalFix{kind: parquet.FixedLenByteArray, width: 9}, flba(25, 9), false},
		{"negative int64 to flba(9)", parquet.Int64Value(-25), decimalFix{kind: parquet.FixedLenByteArray, width: 9}, flba(-25, 9), false},
		{"int32 to flba(16)", parquet.Int32Value(-2147483648), decimalFix{kind: parquet.FixedLenByteArray, width: 16}, flba(-2147483648, 16), false},
		{"flba(9) to flba(13)", flba(-1<<62, 9), decimalFix{kind: parquet.FixedLenByteArray, width: 13}, flba(-1<<62, 13), false},
		{"flba(9) to int64 fits", flba(-5, 9), decimalFix{kind: parquet.Int64}, parquet.Int64Value(-5), false},
		{"int64 to int32 overflows", parquet.Int64Value(1 << 40), decimalFix{kind: parquet.Int32}, parquet.Value{}, true},
		{"int64 to int32 sign bit", parquet.Int64Value(1 << 31), decimalFix{kind: parquet.Int32}, parquet.Value{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := encodeUnscaled(unscaledBytes(tc.in), tc.to)
			if tc.err {
				if err == nil {
					t.Fatalf("got %v, want an error", got)
				}
				return
			}
			if err != nil || !parquet.Equal(got, tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}
