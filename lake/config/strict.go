package config

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// checkKnown walks the YAML tree against the Go types and reports the first
// unknown key with its full path and line, e.g. "kafka.tls.ca_fil: unknown key (line 7)".
func checkKnown(doc *yaml.Node, cfg *Config) error {
	n := doc
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	return walk(n, reflect.TypeOf(cfg).Elem(), "")
}

var (
	timeType     = reflect.TypeOf(time.Time{})
	durationType = reflect.TypeOf(time.Duration(0))
	byteSizeType = reflect.TypeOf(ByteSize(0))
)

func walk(n *yaml.Node, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch {
	case t == durationType:
		if _, err := time.ParseDuration(n.Value); err != nil {
			return keyErr(orTop(path), "invalid duration %q, want e.g. 30s, 5m, 1h (line %d)", n.Value, n.Line)
		}
	case t == byteSizeType:
		if _, err := ParseByteSize(n.Value); err != nil {
			return keyErr(orTop(path), "%v (line %d)", err, n.Line)
		}
	case t == timeType:
		if _, err := time.Parse(time.RFC3339, n.Value); err != nil {
			return keyErr(orTop(path), "invalid time %q, want RFC 3339 like 2000-01-01T00:00:00Z (line %d)", n.Value, n.Line)
		}
	case t.Kind() == reflect.Bool && n.Kind == yaml.ScalarNode && n.ShortTag() != "!!bool":
		// yaml.v3 still reads YAML 1.1's yes/no/on/off into a bool; anything else names the key here.
		switch strings.ToLower(n.Value) {
		case "yes", "no", "on", "off":
		default:
			return keyErr(orTop(path), "%q is not a boolean, want true or false (line %d)", n.Value, n.Line)
		}
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			if n.Tag == "!!null" {
				return nil
			}
			return keyErr(orTop(path), "must be a mapping (line %d)", n.Line)
		}
		fields := map[string]reflect.Type{}
		collectFields(t, fields)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			key := join(path, k.Value)
			ft, ok := fields[k.Value]
			if !ok {
				return keyErr(key, "unknown key (line %d); known keys here: %s", k.Line, known(fields))
			}
			if err := walk(n.Content[i+1], ft, key); err != nil {
				return err
			}
		}
	case t.Kind() == reflect.Slice && t.Elem().Kind() != reflect.Uint8:
		if n.Kind != yaml.SequenceNode {
			if n.Tag == "!!null" {
				return nil
			}
			return keyErr(orTop(path), "must be a list (line %d)", n.Line)
		}
		for i, c := range n.Content {
			if err := walk(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	default:
		if n.Kind != yaml.ScalarNode {
			return keyErr(orTop(path), "must be a single value, not a %s (line %d)", kindName(n.Kind), n.Line)
		}
	}
	return nil
}

func collectFields(t reflect.Type, into map[string]reflect.Type) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			collectFields(f.Type, into)
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		into[name] = f.Type
	}
}

func known(fields map[string]reflect.Type) string {
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sortStrings(names)
	return strings.Join(names, ", ")
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	}
	return "value"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func orTop(p string) string {
	if p == "" {
		return "(top level)"
	}
	return p
}
