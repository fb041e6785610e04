package deploy_test

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// The Terraform module is checked without Terraform or OpenTofu (neither installs here
// without building from source): every file must be what `terraform fmt` would write
// (hclwrite.Format, the formatter both tools use), parse cleanly, and its IAM policy
// documents are evaluated with HCL and compared with the API calls lakesink's code makes.

func tfDir(t testing.TB) string { return filepath.Join(deployDir(t), "terraform") }

func tfFiles(t *testing.T) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(tfDir(t), "*.tf"))
	must(t, err)
	if len(paths) == 0 {
		t.Fatal("no .tf files")
	}
	out := map[string][]byte{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		must(t, err)
		out[filepath.Base(p)] = data
	}
	return out
}

// TestTerraformFmt is `terraform fmt -check` (and uses `tofu fmt -check` too when one of
// them is installed) plus a syntax check of every file.
func TestTerraformFmt(t *testing.T) {
	for name, src := range tfFiles(t) {
		if got := hclwrite.Format(src); string(got) != string(src) {
			t.Errorf("%s is not formatted (terraform fmt would rewrite it)", name)
		}
		if _, diags := hclsyntax.ParseConfig(src, name, hcl.InitialPos); diags.HasErrors() {
			t.Errorf("%s: %s", name, diags.Error())
		}
	}
	for _, tool := range []string{"tofu", "terraform"} {
		if path, err := exec.LookPath(tool); err == nil {
			cmd := exec.Command(path, "fmt", "-check", "-recursive", tfDir(t))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s fmt -check: %v\n%s", tool, err, out)
			}
		}
	}
}

// tfModule is the parsed module: its blocks by type.
type tfModule struct {
	blocks []*hclsyntax.Block
}

func parseModule(t *testing.T) tfModule {
	t.Helper()
	var m tfModule
	names := slices.Sorted(maps.Keys(tfFiles(t)))
	files := tfFiles(t)
	for _, name := range names {
		f, diags := hclsyntax.ParseConfig(files[name], name, hcl.InitialPos)
		if diags.HasErrors() {
			t.Fatal(diags.Error())
		}
		m.blocks = append(m.blocks, f.Body.(*hclsyntax.Body).Blocks...)
	}
	return m
}

func (m tfModule) find(typ string, labels ...string) []*hclsyntax.Block {
	var out []*hclsyntax.Block
	for _, b := range m.blocks {
		if b.Type == typ && (len(labels) == 0 || slices.Equal(b.Labels[:min(len(labels), len(b.Labels))], labels)) {
			out = append(out, b)
		}
	}
	return out
}

// tfScenario is what the module is evaluated with: variable values over the defaults.
type tfScenario struct {
	name string
	vars map[string]cty.Value
}

var tfFuncs = map[string]function.Function{
	"element": stdlib.ElementFunc, "split": stdlib.SplitFunc, "replace": stdlib.ReplaceFunc,
	"trimsuffix": stdlib.TrimSuffixFunc, "join": stdlib.JoinFunc, "concat": stdlib.ConcatFunc,
	"length": stdlib.LengthFunc, "format": stdlib.FormatFunc, "jsonencode": stdlib.JSONEncodeFunc,
	"lower": stdlib.LowerFunc, "coalesce": stdlib.CoalesceFunc,
}

// evalContext evaluates variables (defaults, then the scenario's), stand-ins for the
// resources' and data sources' computed attributes, and the locals.
func (m tfModule) evalContext(t *testing.T, sc tfScenario) *hcl.EvalContext {
	t.Helper()
	vars := map[string]cty.Value{}
	for _, b := range m.find("variable") {
		if a, ok := b.Body.Attributes["default"]; ok {
			v, diags := a.Expr.Value(nil)
			if diags.HasErrors() {
				t.Fatalf("variable %s default: %s", b.Labels[0], diags.Error())
			}
			vars[b.Labels[0]] = v
		} else {
			vars[b.Labels[0]] = cty.NullVal(cty.DynamicPseudoType)
		}
	}
	maps.Copy(vars, sc.vars)
	str := cty.StringVal
	acct, region := "111122223333", "eu-west-1"
	bucket := vars["bucket_name"].AsString()
	role := func(n string) cty.Value {
		return cty.ObjectVal(map[string]cty.Value{"arn": str("arn:aws:iam::" + acct + ":role/" + n), "id": str(n)})
	}
	ctx := &hcl.EvalContext{
		Functions: tfFuncs,
		Variables: map[string]cty.Value{
			"var": cty.ObjectVal(vars),
			"data": cty.ObjectVal(map[string]cty.Value{
				"aws_caller_identity": cty.ObjectVal(map[string]cty.Value{"current": cty.ObjectVal(map[string]cty.Value{"account_id": str(acct)})}),
				"aws_partition":       cty.ObjectVal(map[string]cty.Value{"current": cty.ObjectVal(map[string]cty.Value{"partition": str("aws")})}),
				"aws_region":          cty.ObjectVal(map[string]cty.Value{"current": cty.ObjectVal(map[string]cty.Value{"region": str(region)})}),
			}),
			"aws_s3_bucket": cty.ObjectVal(map[string]cty.Value{"lake": cty.ObjectVal(map[string]cty.Value{
				"bucket": str(bucket), "id": str(bucket), "arn": str("arn:aws:s3:::" + bucket)})}),
			"aws_glue_catalog_database": cty.ObjectVal(map[string]cty.Value{"lake": cty.ObjectVal(map[string]cty.Value{"name": vars["glue_database"]})}),
			"aws_athena_workgroup": cty.ObjectVal(map[string]cty.Value{"lake": cty.ObjectVal(map[string]cty.Value{
				"name": str("lakesink"), "arn": str("arn:aws:athena:" + region + ":" + acct + ":workgroup/lakesink")})}),
			"aws_iam_role": cty.ObjectVal(map[string]cty.Value{
				"sink": role("lakesink-sink"), "compact": role("lakesink-compact"), "keda": cty.TupleVal([]cty.Value{role("lakesink-keda")}),
			}),
		},
	}
	// Locals refer to each other: evaluate until nothing changes.
	var attrs []*hclsyntax.Attribute
	for _, b := range m.find("locals") {
		for _, a := range b.Body.Attributes {
			attrs = append(attrs, a)
		}
	}
	locals := map[string]cty.Value{}
	for pending := attrs; len(pending) > 0; {
		var next []*hclsyntax.Attribute
		var lastErr string
		for _, a := range pending {
			ctx.Variables["local"] = cty.ObjectVal(locals)
			v, diags := a.Expr.Value(ctx)
			if diags.HasErrors() {
				next, lastErr = append(next, a), a.Name+": "+diags.Error()
				continue
			}
			locals[a.Name] = v
		}
		if len(next) == len(pending) {
			t.Fatalf("scenario %s: cannot evaluate locals: %s", sc.name, lastErr)
		}
		pending = next
	}
	ctx.Variables["local"] = cty.ObjectVal(locals)
	return ctx
}

func strList(t *testing.T, v cty.Value, what string) []string {
	t.Helper()
	if v.IsNull() {
		return nil
	}
	var out []string
	if !v.CanIterateElements() {
		t.Fatalf("%s: not a list", what)
	}
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		out = append(out, e.AsString())
	}
	return out
}

// iamStatement is one evaluated statement of an aws_iam_policy_document.
type iamStatement struct {
	Sid       string
	Effect    string
	Actions   []string
	Resources []string
}

// policy evaluates data.aws_iam_policy_document.NAME, expanding dynamic statements.
func (m tfModule) policy(t *testing.T, ctx *hcl.EvalContext, name string) []iamStatement {
	t.Helper()
	docs := m.find("data", "aws_iam_policy_document", name)
	if len(docs) != 1 {
		t.Fatalf("want one aws_iam_policy_document %q, found %d", name, len(docs))
	}
	if c, ok := docs[0].Body.Attributes["count"]; ok {
		n, diags := c.Expr.Value(ctx)
		if diags.HasErrors() {
			t.Fatalf("policy %s: count: %s", name, diags.Error())
		}
		if n.Equals(cty.Zero).True() {
			return nil
		}
	}
	var out []iamStatement
	stmt := func(body *hclsyntax.Body, ctx *hcl.EvalContext) {
		s := iamStatement{Effect: "Allow"}
		for an, a := range body.Attributes {
			v, diags := a.Expr.Value(ctx)
			if diags.HasErrors() {
				t.Fatalf("policy %s: %s: %s", name, an, diags.Error())
			}
			switch an {
			case "sid":
				s.Sid = v.AsString()
			case "effect":
				s.Effect = v.AsString()
			case "actions":
				s.Actions = strList(t, v, name+" actions")
			case "resources":
				s.Resources = strList(t, v, name+" resources")
			default:
				t.Errorf("policy %s: statement attribute %q is not allowed here (not_actions, not_resources widen a grant)", name, an)
			}
		}
		out = append(out, s)
	}
	for _, b := range docs[0].Body.Blocks {
		switch {
		case b.Type == "statement":
			stmt(b.Body, ctx)
		case b.Type == "dynamic" && b.Labels[0] == "statement":
			fe, diags := b.Body.Attributes["for_each"].Expr.Value(ctx)
			if diags.HasErrors() {
				t.Fatalf("policy %s: for_each: %s", name, diags.Error())
			}
			for it := fe.ElementIterator(); it.Next(); {
				for _, c := range b.Body.Blocks {
					if c.Type == "content" {
						stmt(c.Body, ctx)
					}
				}
			}
		}
	}
	return out
}

func actionSet(stmts []iamStatement, prefix string) []string {
	set := map[string]bool{}
	for _, s := range stmts {
		for _, a := range s.Actions {
			if strings.HasPrefix(a, prefix) {
				set[a] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// resourcesFor lists the resources every statement granting action names.
func resourcesFor(stmts []iamStatement, action string) []string {
	var out []string
	for _, s := range stmts {
		if slices.Contains(s.Actions, action) {
			out = append(out, s.Resources...)
		}
	}
	return out
}

// s3IAMAction maps the S3 API operations to the IAM action that authorizes them.
var s3IAMAction = map[string]string{
	"PutObject": "s3:PutObject", "CreateMultipartUpload": "s3:PutObject", "UploadPart": "s3:PutObject",
	"CompleteMultipartUpload": "s3:PutObject", "AbortMultipartUpload": "s3:AbortMultipartUpload",
	"GetObject": "s3:GetObject", "HeadObject": "s3:GetObject", "CopyObject": "s3:GetObject+s3:PutObject",
	"ListObjectsV2": "s3:ListBucket", "ListObjects": "s3:ListBucket", "HeadBucket": "s3:ListBucket",
	"DeleteObject": "s3:DeleteObject", "DeleteObjects": "s3:DeleteObject",
}

func iamActions(t *testing.T, ops []string) []string {
	t.Helper()
	set := map[string]bool{}
	for _, op := range ops {
		a, ok := s3IAMAction[op]
		if !ok {
			t.Errorf("S3 operation %s has no IAM action in s3IAMAction: add it, then grant it in deploy/terraform/iam.tf", op)
			continue
		}
		for _, x := range strings.Split(a, "+") {
			set[x] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// s3CallGraph reads lake/store/s3.go and returns, for each function or method name, the
// S3 API operations it calls directly and the functions of the file it calls.
type s3CallGraph struct {
	ops     map[string][]string // func name -> S3 operations
	calls   map[string][]string // func name -> callees in the file
	methods map[string][]string // receiver type -> method names
}

func readS3CallGraph(t *testing.T) s3CallGraph {
	t.Helper()
	path := filepath.Join(repoRoot(t), "lake", "store", "s3.go")
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	must(t, err)
	g := s3CallGraph{ops: map[string][]string{}, calls: map[string][]string{}, methods: map[string][]string{}}
	funcs := map[string]bool{}
	for _, d := range f.Decls {
		if fd, ok := d.(*ast.FuncDecl); ok {
			funcs[fd.Name.Name] = true
		}
	}
	paginator := regexp.MustCompile(`^New(\w+)Paginator$`)
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok || fd.Body == nil {
			continue
		}
		name := fd.Name.Name
		if fd.Recv != nil {
			typ := fd.Recv.List[0].Type
			if st, ok := typ.(*ast.StarExpr); ok {
				typ = st.X
			}
			if id, ok := typ.(*ast.Ident); ok {
				g.methods[id.Name] = append(g.methods[id.Name], name)
			}
		}
		ast.Inspect(fd.Body, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			switch fn := call.Fun.(type) {
			case *ast.SelectorExpr:
				if inner, ok := fn.X.(*ast.SelectorExpr); ok && inner.Sel.Name == "api" {
					g.ops[name] = append(g.ops[name], fn.Sel.Name) // s.api.PutObject(...)
				} else if pkg, ok := fn.X.(*ast.Ident); ok && pkg.Name == "s3" {
					if m := paginator.FindStringSubmatch(fn.Sel.Name); m != nil {
						g.ops[name] = append(g.ops[name], m[1]) // s3.NewListObjectsV2Paginator(s.api, ...)
					}
				} else if funcs[fn.Sel.Name] {
					g.calls[name] = append(g.calls[name], fn.Sel.Name)
				}
			case *ast.Ident:
				if funcs[fn.Name] {
					g.calls[name] = append(g.calls[name], fn.Name)
				}
			}
			return true
		})
	}
	return g
}

// reachableOps returns the S3 operations reachable from the entry functions.
func (g s3CallGraph) reachableOps(entries []string) []string {
	seen, ops := map[string]bool{}, map[string]bool{}
	var visit func(string)
	visit = func(n string) {
		if seen[n] {
			return
		}
		seen[n] = true
		for _, op := range g.ops[n] {
			ops[op] = true
		}
		for _, c := range g.calls[n] {
			visit(c)
		}
	}
	for _, e := range entries {
		visit(e)
	}
	return slices.Sorted(maps.Keys(ops))
}

// storeCalls returns the Store methods the non-test Go files of dir call on a field named st.
func storeCalls(t *testing.T, dirs ...string) []string {
	t.Helper()
	re := regexp.MustCompile(`\bst\.([A-Z]\w*)\(`)
	var paths []string
	for _, dir := range dirs {
		p, err := filepath.Glob(filepath.Join(repoRoot(t), dir, "*.go"))
		must(t, err)
		paths = append(paths, p...)
	}
	set := map[string]bool{}
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		data, err := os.ReadFile(p)
		must(t, err)
		for _, m := range re.FindAllStringSubmatch(string(data), -1) {
			set[m[1]] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// moduleDir returns the source directory of a module the root go.mod requires,
// downloading it if needed.
func moduleDir(t *testing.T, path string) string {
	t.Helper()
	cmd := exec.Command("go", "mod", "download", "-json", path)
	cmd.Dir = repoRoot(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go mod download %s: %v", path, err)
	}
	var info struct{ Dir string }
	must(t, json.Unmarshal(out, &info))
	return info.Dir
}

// icebergS3Ops returns the S3 operations of iceberg-go's S3 file IO (gocloud.dev's s3blob):
// its client calls, plus the transfer manager's PutObject/multipart family for uploads.
func icebergS3Ops(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(moduleDir(t, "gocloud.dev"), "blob", "s3blob", "s3blob.go"))
	must(t, err)
	set := map[string]bool{}
	for _, m := range regexp.MustCompile(`client\.([A-Z]\w+)\(`).FindAllStringSubmatch(string(data), -1) {
		set[m[1]] = true
	}
	if strings.Contains(string(data), "transfermanager.New(") {
		for _, op := range []string{"PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "AbortMultipartUpload"} {
			set[op] = true
		}
	}
	if len(set) < 4 {
		t.Fatalf("found only %v in s3blob.go: the scan is broken", set)
	}
	return slices.Sorted(maps.Keys(set))
}

// compactorGlueOps are the Glue calls of iceberg-go's Glue catalog that lakesink compact
// makes (namespace check/creation, table load/list/create, commit). Each is checked to be
// a method of iceberg-go's glueAPI interface.
var compactorGlueOps = []string{"GetDatabase", "GetDatabases", "CreateDatabase", "GetTable", "GetTables", "CreateTable", "UpdateTable"}

func TestTerraformIAMLeastPrivilege(t *testing.T) {
	m := parseModule(t)
	g := readS3CallGraph(t)

	// The sink: the Store methods the sink package calls, itself or through
	// lake/rawfile (reading a raw file's footer back), through lake/store/s3.go; an
	// opened object's reads (s3Object methods) count with Open.
	sinkEntries := storeCalls(t, "sink", "lake/rawfile")
	if len(sinkEntries) == 0 {
		t.Fatal("found no store calls in sink/: the scan is broken")
	}
	if slices.Contains(sinkEntries, "Open") {
		sinkEntries = append(sinkEntries, g.methods["s3Object"]...)
	}
	sinkOps := g.reachableOps(sinkEntries)
	// The compactor: every Store method (it lists, reads, writes and deletes) plus
	// iceberg-go's own S3 IO for the warehouse.
	compactOps := append(g.reachableOps(append(g.methods["S3"], g.methods["s3Object"]...)), icebergS3Ops(t)...)
	t.Logf("sink calls Store.%v -> S3 %v", sinkEntries, sinkOps)
	t.Logf("compactor S3 operations: %v", compactOps)

	glueSrc, err := os.ReadFile(filepath.Join(moduleDir(t, "github.com/apache/iceberg-go"), "catalog", "glue", "glue.go"))
	must(t, err)
	for _, op := range compactorGlueOps {
		if !regexp.MustCompile(`(?m)^\s+` + op + `\(ctx context\.Context`).Match(glueSrc) {
			t.Errorf("glue:%s is granted to the compactor but iceberg-go's glueAPI has no %s", op, op)
		}
	}
	var wantGlue []string
	for _, op := range compactorGlueOps {
		wantGlue = append(wantGlue, "glue:"+op)
	}
	sort.Strings(wantGlue)

	// Kafka (MSK IAM) actions follow from what sink/kafka.go does with the client
	// options of internal/kafkaopt.
	var ks string
	for _, f := range []string{filepath.Join("sink", "kafka.go"), filepath.Join("internal", "kafkaopt", "kafkaopt.go")} {
		src, err := os.ReadFile(filepath.Join(repoRoot(t), f))
		must(t, err)
		ks += string(src)
	}
	wantKafka := []string{"kafka-cluster:Connect", "kafka-cluster:DescribeTopic"} // every client; Metadata
	if strings.Contains(ks, "kgo.ConsumeTopics(") {
		wantKafka = append(wantKafka, "kafka-cluster:ReadData")
	}
	if strings.Contains(ks, "kgo.ConsumerGroup(") {
		wantKafka = append(wantKafka, "kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup")
	}
	if strings.Contains(ks, "ProduceSync(") {
		wantKafka = append(wantKafka, "kafka-cluster:WriteData")
		if !strings.Contains(ks, "DisableIdempotentWrite") {
			wantKafka = append(wantKafka, "kafka-cluster:WriteDataIdempotently")
		}
	}
	if !strings.Contains(ks, "aws-msk-iam") {
		wantKafka = nil
	}
	sort.Strings(wantKafka)

	scenarios := []tfScenario{
		{name: "SSE-S3, no MSK", vars: map[string]cty.Value{
			"bucket_name":       cty.StringVal("acme-lake"),
			"oidc_provider_arn": cty.StringVal("arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC"),
		}},
		{name: "SSE-KMS, MSK IAM, prefix", vars: map[string]cty.Value{
			"bucket_name":       cty.StringVal("acme-lake"),
			"prefix":            cty.StringVal("lake/"),
			"oidc_provider_arn": cty.StringVal("arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC"),
			"kms_key_arn":       cty.StringVal("arn:aws:kms:eu-west-1:111122223333:key/k"),
			"msk_cluster_arn":   cty.StringVal("arn:aws:kafka:eu-west-1:111122223333:cluster/lake/uuid-1"),
		}},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			ctx := m.evalContext(t, sc)
			kms, msk := !sc.vars["kms_key_arn"].IsNull(), !sc.vars["msk_cluster_arn"].IsNull()
			prefix := "arn:aws:s3:::acme-lake/"
			if p, ok := sc.vars["prefix"]; ok {
				prefix += p.AsString()
			}
			check := func(role string, stmts []iamStatement, service string, want []string) {
				t.Helper()
				if got := actionSet(stmts, service); !slices.Equal(got, want) {
					t.Errorf("%s role grants %s %v; the code uses %v", role, service, got, want)
				}
			}
			wantKMS := []string(nil)
			if kms {
				wantKMS = []string{"kms:Decrypt", "kms:GenerateDataKey"}
			}

			sink := m.policy(t, ctx, "sink")
			check("sink", sink, "s3:", iamActions(t, sinkOps))
			check("sink", sink, "glue:", nil)
			check("sink", sink, "kms:", wantKMS)
			if msk {
				check("sink", sink, "kafka-cluster:", wantKafka)
			} else {
				check("sink", sink, "kafka-cluster:", nil)
			}
			compact := m.policy(t, ctx, "compact")
			check("compactor", compact, "s3:", iamActions(t, compactOps))
			check("compactor", compact, "glue:", wantGlue)
			check("compactor", compact, "kms:", wantKMS)
			check("compactor", compact, "kafka-cluster:", nil)
			keda := m.policy(t, ctx, "keda")
			if msk {
				check("keda", keda, "kafka-cluster:", []string{"kafka-cluster:Connect", "kafka-cluster:DescribeGroup", "kafka-cluster:DescribeTopic"})
			} else if keda != nil {
				t.Error("the KEDA policy exists without MSK")
			}

			// Every grant names its resources; no wildcard services or actions.
			for role, stmts := range map[string][]iamStatement{"sink": sink, "compactor": compact, "keda": keda} {
				for _, s := range stmts {
					if s.Effect != "Allow" {
						t.Errorf("%s: statement %s has effect %s", role, s.Sid, s.Effect)
					}
					for _, a := range s.Actions {
						if strings.Contains(a, "*") {
							t.Errorf("%s: wildcard action %s", role, a)
						}
					}
					for _, r := range s.Resources {
						if r == "*" || r == "" {
							t.Errorf("%s: statement %s grants on resource %q", role, s.Sid, r)
						}
					}
				}
			}
			// Object permissions stay inside their zone.
			scope := func(role string, stmts []iamStatement, action string, allowed ...string) {
				t.Helper()
				for _, r := range resourcesFor(stmts, action) {
					if !slices.Contains(allowed, r) {
						t.Errorf("%s: %s on %s, want only %v", role, action, r, allowed)
					}
				}
			}
			raw, wh, cp, wm := prefix+"raw/*", prefix+"warehouse/*", prefix+"checkpoints/*", prefix+"watermarks/*"
			scope("sink", sink, "s3:PutObject", raw, cp, wm)
			scope("sink", sink, "s3:GetObject", raw, cp, wm)
			scope("sink", sink, "s3:DeleteObject", cp) // stale offset checkpoints only, never a raw file
			scope("sink", sink, "s3:ListBucket", "arn:aws:s3:::acme-lake")
			scope("compactor", compact, "s3:PutObject", wh)
			scope("compactor", compact, "s3:DeleteObject", raw, wh)
			scope("compactor", compact, "s3:GetObject", raw, wh, wm)
			for _, r := range resourcesFor(compact, "glue:UpdateTable") {
				if strings.Contains(r, ":database/*") || strings.HasSuffix(r, ":table/*") {
					t.Errorf("compactor: Glue grant on every database (%s)", r)
				}
			}
		})
	}
}

// TestTerraformOutputsFeedKubernetes evaluates the outputs the EKS overlay and the config
// are made from: values.env must have the overlay's keys, and the config sections merged
// into the overlay's config must pass `lakesink check`.
func TestTerraformOutputsFeedKubernetes(t *testing.T) {
	m := parseModule(t)
	for _, sc := range []tfScenario{
		{name: "SSE-S3", vars: map[string]cty.Value{
			"bucket_name":       cty.StringVal("acme-lake"),
			"oidc_provider_arn": cty.StringVal("arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC"),
		}},
		{name: "SSE-KMS + MSK", vars: map[string]cty.Value{
			"bucket_name":       cty.StringVal("acme-lake"),
			"prefix":            cty.StringVal("lake/"),
			"oidc_provider_arn": cty.StringVal("arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC"),
			"kms_key_arn":       cty.StringVal("arn:aws:kms:eu-west-1:111122223333:key/k"),
			"msk_cluster_arn":   cty.StringVal("arn:aws:kafka:eu-west-1:111122223333:cluster/lake/uuid-1"),
		}},
	} {
		t.Run(sc.name, func(t *testing.T) {
			ctx := m.evalContext(t, sc)
			output := func(name string) string {
				t.Helper()
				bs := m.find("output", name)
				if len(bs) != 1 {
					t.Fatalf("no output %q", name)
				}
				v, diags := bs[0].Body.Attributes["value"].Expr.Value(ctx)
				if diags.HasErrors() {
					t.Fatalf("output %s: %s", name, diags.Error())
				}
				return v.AsString()
			}
			envPath := filepath.Join(t.TempDir(), "values.env")
			must(t, os.WriteFile(envPath, []byte(output("kustomize_values_env")), 0o600))
			got := readDotenv(t, envPath)
			want := readDotenv(t, filepath.Join(deployDir(t), "kubernetes", "overlays", "eks", "values.env"))
			if !slices.Equal(slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want))) {
				t.Errorf("terraform's values.env has keys %v, the overlay's %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
			}
			// The overlay's config with the s3 and catalog sections replaced by the output.
			lake := output("lakesink_config_lake")
			base, err := os.ReadFile(filepath.Join(deployDir(t), "kubernetes", "overlays", "eks", "lakesink.yaml"))
			must(t, err)
			cfg := replaceTopLevel(string(base), []string{"s3", "catalog"}, lake)
			checkConfig(t, "overlay config with terraform's lakesink_config_lake", []byte(cfg))
			c := parseLakesinkConfig(t, []byte(cfg))
			if c.S3 == nil || c.S3.Bucket != "acme-lake" || c.Catalog.Type != "glue" || c.Catalog.Namespace != "lakesink" {
				t.Errorf("config from terraform: s3 %+v, catalog %+v", c.S3, c.Catalog)
			}
		})
	}
	// The defaults must match the names the Kubernetes manifests and config use.
	defaults := map[string]string{}
	for _, b := range m.find("variable") {
		if a, ok := b.Body.Attributes["default"]; ok {
			if v, diags := a.Expr.Value(nil); !diags.HasErrors() && v.Type() == cty.String {
				defaults[b.Labels[0]] = v.AsString()
			}
		}
	}
	r := render(t, "overlays/eks")
	dep := one[appsDeployment](t, r, "lakesink-sink")
	cj := one[batchCronJob](t, r, "lakesink-compact")
	cfg, _ := configOf(t, r, dep.Spec.Template.Spec, dep.Spec.Template.Spec.Containers[0].Args)
	for k, want := range map[string]string{
		"namespace":               dep.Namespace,
		"sink_service_account":    dep.Spec.Template.Spec.ServiceAccountName,
		"compact_service_account": cj.Spec.JobTemplate.Spec.Template.Spec.ServiceAccountName,
		"kafka_group":             cfg.Kafka.Group,
		"glue_database":           cfg.Catalog.Namespace,
	} {
		if defaults[k] != want {
			t.Errorf("terraform variable %s defaults to %q, the EKS overlay uses %q", k, defaults[k], want)
		}
	}
}

// replaceTopLevel replaces the named top-level sections of a YAML document with repl.
func replaceTopLevel(doc string, keys []string, repl string) string {
	var out []string
	skip := false
	for _, line := range strings.Split(doc, "\n") {
		top := line != "" && line[0] != ' ' && line[0] != '#' && line[0] != '-'
		if top {
			key, _, _ := strings.Cut(line, ":")
			skip = slices.Contains(keys, key)
		}
		if !skip {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n") + "\n" + repl
}

func TestTerraformVariablesDocumented(t *testing.T) {
	m := parseModule(t)
	for _, kind := range []string{"variable", "output"} {
		for _, b := range m.find(kind) {
			if _, ok := b.Body.Attributes["description"]; !ok {
				t.Errorf("%s %q has no description", kind, b.Labels[0])
			}
		}
	}
	for _, b := range m.find("variable") {
		if _, ok := b.Body.Attributes["type"]; !ok {
			t.Errorf("variable %q has no type", b.Labels[0])
		}
	}
	_ = fmt.Sprint
}
