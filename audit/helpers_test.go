package audit_test

import "github.com/lakesink/lakesink/lake/layout"

func layoutPeriod(p int64) layout.Period { return layout.Period(p) }
