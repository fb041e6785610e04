package athena_test

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// checkBlock checks one blank-line separated block of the output: either a note (every line
// a "--" comment) or a single statement.
func checkBlock(block string) error {
	lines := strings.Split(block, "\n")
	if strings.HasPrefix(lines[0], "--") {
		for _, l := range lines {
			if !strings.HasPrefix(l, "--") {
				return fmt.Errorf("note mixes comments and SQL: %q", l)
			}
		}
		return nil
	}
	for _, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "--") {
			return errors.New("comment inside a statement")
		}
		if strings.TrimSpace(l) == "" {
			return errors.New("blank line inside a statement")
		}
	}
	return checkStatement(block)
}

// scan walks a statement, skipping quoted spans (single, double or backtick quotes, where a
// doubled quote is an escaped one), and calls f for each byte outside them.
func scan(s string, f func(i int, c byte) error) error {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '\'', '"', '`':
			j := i + 1
			for {
				if j >= len(s) {
					return fmt.Errorf("unterminated %c quote at offset %d", c, i)
				}
				if s[j] == c {
					if j+1 < len(s) && s[j+1] == c { // doubled quote: an escaped one
						j += 2
						continue
					}
					break
				}
				j++
			}
			i = j
			continue
		}
		if err := f(i, c); err != nil {
			return err
		}
	}
	return nil
}

func checkStatement(s string) error {
	if !strings.HasSuffix(s, ";") {
		return errors.New("statement does not end with ';'")
	}
	ddl := strings.HasPrefix(s, "CREATE EXTERNAL TABLE") || strings.HasPrefix(s, "CREATE DATABASE")
	depth, angle := 0, 0
	semis := 0
	err := scan(s, func(i int, c byte) error {
		switch c {
		case '(':
			depth++
		case ')':
			depth--
			if depth < 0 {
				return fmt.Errorf("unbalanced ')' at offset %d", i)
			}
		case '<':
			if ddl {
				angle++
			}
		case '>':
			if ddl {
				angle--
				if angle < 0 {
					return fmt.Errorf("unbalanced '>' at offset %d", i)
				}
			}
		case ';':
			semis++
			if i != len(s)-1 {
				return fmt.Errorf("';' inside the statement at offset %d", i)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if depth != 0 || angle != 0 {
		return fmt.Errorf("unbalanced brackets: ( depth %d, < depth %d", depth, angle)
	}
	if semis != 1 {
		return fmt.Errorf("%d semicolons", semis)
	}
	// Athena's DDL quotes identifiers with backticks, its DML with double quotes.
	if ddl && strings.Contains(unquoted(s, '\''), `"`) {
		return errors.New("double quotes in a DDL statement")
	}
	if !ddl && strings.Contains(unquoted(s, '\''), "`") {
		return errors.New("backticks in a DML statement")
	}
	if strings.HasPrefix(s, "CREATE EXTERNAL TABLE") {
		return checkDDLTypes(s)
	}
	return checkCasts(s)
}

// unquoted returns s with the contents of quote-delimited spans removed.
func unquoted(s string, quote byte) string {
	var b strings.Builder
	in := false
	for i := 0; i < len(s); i++ {
		if s[i] == quote {
			in = !in
			continue
		}
		if !in {
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// checkDDLTypes parses the column list and PARTITIONED BY list of CREATE EXTERNAL TABLE.
func checkDDLTypes(s string) error {
	for _, kw := range []string{"TABLE IF NOT EXISTS ", "PARTITIONED BY "} {
		i := strings.Index(s, kw)
		if i < 0 {
			return fmt.Errorf("no %q", kw)
		}
		open := strings.IndexByte(s[i:], '(') + i
		body, err := matching(s, open)
		if err != nil {
			return err
		}
		for _, def := range splitTop(body, ',') {
			def = strings.TrimSpace(def)
			name, typ, ok := strings.Cut(def, " ")
			if !ok || !regexp.MustCompile("^`[a-z_][a-z0-9_]*`$").MatchString(name) {
				return fmt.Errorf("column definition %q: want a backticked lower-case name", def)
			}
			p := &hiveParser{s: typ}
			if err := p.typ(); err != nil {
				return fmt.Errorf("column %s type %q: %w", name, typ, err)
			}
			if p.i != len(p.s) {
				return fmt.Errorf("column %s type %q: trailing %q", name, typ, p.s[p.i:])
			}
		}
	}
	return nil
}

// matching returns the text between the '(' at open and its matching ')'.
func matching(s string, open int) (string, error) {
	depth := 0
	for i := open; i < len(s); i++ {
		switch s[i] {
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return s[open+1 : i], nil
			}
		case '\'', '"', '`':
			j := strings.IndexByte(s[i+1:], s[i])
			if j < 0 {
				return "", errors.New("unterminated quote")
			}
			i += j + 1
		}
	}
	return "", fmt.Errorf("no ')' matches offset %d", open)
}

// splitTop splits s at sep outside brackets and quotes.
func splitTop(s string, sep byte) []string {
	var out []string
	depth, start := 0, 0
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"' || c == '`':
			quote = c
		case c == '(' || c == '<':
			depth++
		case c == ')' || c == '>':
			depth--
		case c == sep && depth == 0:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// hiveParser accepts exactly the Hive DDL types Athena documents for Parquet tables.
// https://docs.aws.amazon.com/athena/latest/ug/data-types.html
type hiveParser struct {
	s string
	i int
}

var hivePrimitive = map[string]bool{
	"string": true, "boolean": true, "int": true, "bigint": true, "float": true, "double": true,
	"date": true, "timestamp": true, "binary": true,
}

func (p *hiveParser) word() string {
	j := p.i
	for p.i < len(p.s) && (p.s[p.i] >= 'a' && p.s[p.i] <= 'z' || p.s[p.i] >= '0' && p.s[p.i] <= '9' || p.s[p.i] == '_') {
		p.i++
	}
	return p.s[j:p.i]
}

func (p *hiveParser) eat(c byte) error {
	if p.i >= len(p.s) || p.s[p.i] != c {
		return fmt.Errorf("want %q at offset %d", c, p.i)
	}
	p.i++
	return nil
}

func (p *hiveParser) typ() error {
	w := p.word()
	switch {
	case hivePrimitive[w]:
		return nil
	case w == "decimal":
		if err := p.eat('('); err != nil {
			return err
		}
		prec, err := strconv.Atoi(p.word())
		if err != nil {
			return err
		}
		if err := p.eat(','); err != nil {
			return err
		}
		scale, err := strconv.Atoi(p.word())
		if err != nil {
			return err
		}
		if prec < 1 || prec > 38 || scale < 0 || scale > prec {
			return fmt.Errorf("decimal(%d,%d) out of Athena's range", prec, scale)
		}
		return p.eat(')')
	case w == "array":
		if err := p.eat('<'); err != nil {
			return err
		}
		if err := p.typ(); err != nil {
			return err
		}
		return p.eat('>')
	case w == "map":
		if err := p.eat('<'); err != nil {
			return err
		}
		if k := p.word(); !hivePrimitive[k] {
			return fmt.Errorf("map key %q is not a primitive", k)
		}
		if err := p.eat(','); err != nil {
			return err
		}
		if err := p.typ(); err != nil {
			return err
		}
		return p.eat('>')
	case w == "struct":
		if err := p.eat('<'); err != nil {
			return err
		}
		for {
			if p.i < len(p.s) && p.s[p.i] == '`' {
				j := strings.IndexByte(p.s[p.i+1:], '`')
				if j < 0 {
					return errors.New("unterminated field name")
				}
				p.i += j + 2
			} else if f := p.word(); f == "" || f[0] < 'a' || f[0] > 'z' {
				return fmt.Errorf("struct field %q must start with a letter or be quoted", f)
			}
			if err := p.eat(':'); err != nil {
				return err
			}
			if err := p.typ(); err != nil {
				return err
			}
			if p.i < len(p.s) && p.s[p.i] == ',' {
				p.i++
				continue
			}
			return p.eat('>')
		}
	}
	return fmt.Errorf("type %q is not an Athena DDL type", w)
}

// checkCasts parses the target type of every CAST in a DML statement.
func checkCasts(s string) error {
	for i := strings.Index(s, "CAST("); i >= 0; i = next(s, i) {
		body, err := matching(s, i+len("CAST"))
		if err != nil {
			return err
		}
		parts := splitTop(body, ' ')
		// Find the last top-level "AS": what follows is the type.
		at := -1
		for j, w := range parts {
			if w == "AS" {
				at = j
			}
		}
		if at < 0 {
			return fmt.Errorf("CAST without AS: %q", body)
		}
		typ := strings.Join(parts[at+1:], " ")
		rest, err := trinoType(typ)
		if err != nil {
			return fmt.Errorf("CAST to %q: %w", typ, err)
		}
		if rest != "" {
			return fmt.Errorf("CAST to %q: trailing %q", typ, rest)
		}
	}
	return nil
}

func next(s string, i int) int {
	j := strings.Index(s[i+1:], "CAST(")
	if j < 0 {
		return -1
	}
	return i + 1 + j
}

var trinoPrimitive = []string{
	"timestamp with time zone", "varchar", "boolean", "integer", "bigint", "real", "double",
	"date", "varbinary",
}

var decimalRE = regexp.MustCompile(`^decimal\((\d+),(\d+)\)`)

// trinoType consumes one Trino type from the front of s and returns the rest.
func trinoType(s string) (string, error) {
	s = strings.TrimLeft(s, " ")
	for _, p := range trinoPrimitive {
		if strings.HasPrefix(s, p) {
			return s[len(p):], nil
		}
	}
	if m := decimalRE.FindStringSubmatch(s); m != nil {
		prec, _ := strconv.Atoi(m[1])
		scale, _ := strconv.Atoi(m[2])
		if prec < 1 || prec > 38 || scale > prec {
			return "", fmt.Errorf("decimal(%d,%d) out of range", prec, scale)
		}
		return s[len(m[0]):], nil
	}
	for _, ctor := range []string{"array(", "map(", "row("} {
		if !strings.HasPrefix(s, ctor) {
			continue
		}
		body, err := matching(s, len(ctor)-1)
		if err != nil {
			return "", err
		}
		args := splitTop(body, ',')
		switch ctor {
		case "array(":
			if len(args) != 1 {
				return "", errors.New("array takes one type")
			}
		case "map(":
			if len(args) != 2 {
				return "", errors.New("map takes two types")
			}
		}
		for _, a := range args {
			a = strings.TrimSpace(a)
			if ctor == "row(" {
				name, typ, ok := strings.Cut(a, " ")
				if !ok || !regexp.MustCompile(`^"[^"]+"$`).MatchString(name) {
					return "", fmt.Errorf("row field %q: want a double-quoted name", a)
				}
				a = typ
			}
			rest, err := trinoType(a)
			if err != nil {
				return "", err
			}
			if strings.TrimSpace(rest) != "" {
				return "", fmt.Errorf("trailing %q", rest)
			}
		}
		return s[len(ctor)+len(body)+1:], nil
	}
	return "", fmt.Errorf("%q is not a Trino type Athena supports", s)
}
