package capability

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"

	yamlv3 "gopkg.in/yaml.v3"
	"sigs.k8s.io/yaml"
)

// manifestFields maps each top-level manifest key to its field, from the
// json tags of Set.
var manifestFields = func() map[string]bool {
	m := map[string]bool{}
	t := reflect.TypeOf(Set{})
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			m[name] = true
		}
	}
	return m
}()

// renamedKeys maps each manifest key an earlier version accepted to the
// key that replaced it. A manifest that uses an old key is refused with an
// error naming the new one: the old keys are not aliases (one name per
// concept), and accepting them silently could hide a policy written
// against other semantics.
var renamedKeys = map[string]string{
	"connect":              "egress",
	"connect_allow_ranges": "egress_allow",
}

// ParseManifest parses a policy manifest: one JSON object or one YAML
// mapping whose keys are the json names of Set's fields ("read_files",
// "max_output", ...). JSON is parsed as YAML, of which it is a subset.
//
// Parsing is strict so that a typo can never silently drop a grant's
// restriction or a limit: unknown keys (matched exactly, including case),
// duplicate keys at any level, multiple YAML documents, aliases, an empty
// document and values of the wrong type are all errors. Scalars whose YAML
// type would silently change their meaning are refused too: base must be
// true or false (not yes/no), name and env values must be strings (quote
// 0755 or true), and integer sizes and pids must be plain decimal.
//
// ParseManifest does not call Validate: a manifest describes a policy, and
// whether its paths exist is a question about the host it runs on. Callers
// must Validate the result before using it (sandbox.Run does).
func ParseManifest(data []byte) (*Set, error) {
	if err := checkManifestShape(data); err != nil {
		return nil, err
	}
	s := &Set{}
	if err := yaml.UnmarshalStrict(data, s); err != nil {
		return nil, &manifestError{msg: "decoding", err: errors.New(strings.TrimPrefix(err.Error(), "error unmarshaling JSON: while decoding JSON: "))}
	}
	return s, nil
}

// LoadManifest reads and parses the manifest in the file at path (see
// ParseManifest). Errors name the file. Like ParseManifest, it does not
// call Validate.
func LoadManifest(path string) (*Set, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("capability: manifest: %w", err)
	}
	s, err := ParseManifest(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// checkManifestShape parses data as YAML nodes and checks what the decoder
// into Set would accept or silently reinterpret.
func checkManifestShape(data []byte) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return &manifestError{msg: "empty manifest"}
	}
	dec := yamlv3.NewDecoder(bytes.NewReader(data))
	var docs []*yamlv3.Node
	for {
		n := new(yamlv3.Node)
		err := dec.Decode(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			return &manifestError{msg: "syntax", err: err}
		}
		docs = append(docs, n)
	}
	if len(docs) == 0 {
		return &manifestError{msg: "empty manifest"}
	}
	if len(docs) != 1 {
		return &manifestError{msg: fmt.Sprintf("holds %d YAML documents, want exactly one", len(docs))}
	}
	root := docs[0]
	if root.Kind == yamlv3.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yamlv3.ScalarNode && root.Tag == "!!null" {
		return &manifestError{msg: "empty manifest"}
	}
	if root.Kind != yamlv3.MappingNode {
		return &manifestError{msg: fmt.Sprintf("line %d: want a mapping of policy fields at the top level", root.Line)}
	}
	if err := checkNodes(root); err != nil {
		return err
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind == yamlv3.ScalarNode && renamedKeys[k.Value] != "" {
			return &manifestError{msg: fmt.Sprintf("line %d: unknown field %q: renamed to %q", k.Line, k.Value, renamedKeys[k.Value])}
		}
		if k.Kind != yamlv3.ScalarNode || !manifestFields[k.Value] {
			return &manifestError{msg: fmt.Sprintf("unknown field %q", k.Value)}
		}
		if err := checkFieldNode(k.Value, v); err != nil {
			return err
		}
	}
	return nil
}

// checkNodes refuses aliases, anchors and duplicate mapping keys anywhere
// under n.
func checkNodes(n *yamlv3.Node) error {
	if n.Kind == yamlv3.AliasNode || n.Anchor != "" {
		return &manifestError{msg: fmt.Sprintf("line %d: YAML anchors and aliases are not allowed", n.Line)}
	}
	if n.Kind == yamlv3.MappingNode {
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if line, dup := seen[k.Value]; dup && k.Kind == yamlv3.ScalarNode {
				return &manifestError{msg: fmt.Sprintf("duplicate key %q (lines %d and %d)", k.Value, line, k.Line)}
			}
			seen[k.Value] = k.Line
		}
	}
	for _, c := range n.Content {
		if err := checkNodes(c); err != nil {
			return err
		}
	}
	return nil
}

// checkFieldNode refuses scalars whose YAML type would change their
// meaning on the way into Set.
func checkFieldNode(field string, v *yamlv3.Node) error {
	bad := func(want string) error {
		return &manifestError{msg: fmt.Sprintf("line %d: %s %q: %s", v.Line, field, v.Value, want)}
	}
	switch field {
	case "base":
		if v.Kind != yamlv3.ScalarNode || v.Tag != "!!bool" || (v.Value != "true" && v.Value != "false") {
			return bad("want true or false")
		}
	case "name":
		if v.Kind != yamlv3.ScalarNode || v.Tag != "!!str" {
			return bad("want a string (quote it)")
		}
	case "env":
		if v.Kind != yamlv3.MappingNode {
			return &manifestError{msg: fmt.Sprintf("line %d: env: want a mapping of names to string values", v.Line)}
		}
		for i := 0; i+1 < len(v.Content); i += 2 {
			k, val := v.Content[i], v.Content[i+1]
			if k.Kind != yamlv3.ScalarNode || k.Tag != "!!str" {
				return &manifestError{msg: fmt.Sprintf("line %d: env: variable name %q: want a string", k.Line, k.Value)}
			}
			if val.Kind != yamlv3.ScalarNode || val.Tag != "!!str" {
				// The value is not shown: it may be a secret.
				return &manifestError{msg: fmt.Sprintf("line %d: env[%q]: value must be a string (quote it)", val.Line, k.Value)}
			}
		}
	case "memory", "tmp", "max_output", "max_file_size", "pids", "inotify_instances", "inotify_watches":
		if v.Kind == yamlv3.ScalarNode && v.Tag == "!!int" && !plainDecimal(v.Value) {
			if strings.HasPrefix(v.Value, "-") {
				return bad("must not be negative")
			}
			return bad("want a plain decimal integer")
		}
	}
	return nil
}

// plainDecimal reports whether s is decimal digits without a leading zero
// (YAML 1.1 reads 0755 as octal).
func plainDecimal(s string) bool {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return false
	}
	return s == "0" || s[0] != '0'
}
