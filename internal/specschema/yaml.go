package specschema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

// docCache parses spec files (YAML or JSON) into JSON-compatible values
// (map[string]any, []any, string, bool, nil and json.Number) and keeps them,
// so each file is read once. It doubles as the jsonschema URL loader, so that
// relative $refs between spec files resolve to the same parsed documents.
type docCache struct {
	mu   sync.Mutex
	docs map[string]any // absolute path -> document
}

func newDocCache() *docCache { return &docCache{docs: map[string]any{}} }

// Load implements jsonschema.URLLoader for file:// URLs.
func (c *docCache) Load(rawURL string) (any, error) {
	p, err := fileURLToPath(rawURL)
	if err != nil {
		return nil, err
	}
	return c.get(p)
}

// get returns the parsed document at the absolute path p.
func (c *docCache) get(p string) (any, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if doc, ok := c.docs[p]; ok {
		return doc, nil
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var doc any
	switch strings.ToLower(filepath.Ext(p)) {
	case ".json":
		doc, err = jsonschema.UnmarshalJSON(bytes.NewReader(data))
	default:
		doc, err = yamlToJSON(data)
	}
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", p, err)
	}
	c.docs[p] = doc
	return doc, nil
}

// fileURL returns the file:// URL of the absolute path p.
func fileURL(p string) string {
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(p)}).String()
}

func fileURLToPath(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", err
	}
	if u.Scheme != "file" {
		return "", fmt.Errorf("only file:// references are supported, got %q", rawURL)
	}
	return filepath.FromSlash(u.Path), nil
}

// yamlToJSON parses a single YAML document into the value encoding/json
// would produce for the equivalent JSON text (numbers as json.Number, which
// is what jsonschema expects).
func yamlToJSON(data []byte) (any, error) {
	var n yaml.Node
	if err := yaml.Unmarshal(data, &n); err != nil {
		return nil, err
	}
	if n.Kind == 0 { // empty document
		return nil, nil
	}
	return nodeToJSON(&n, 0)
}

func nodeToJSON(n *yaml.Node, depth int) (any, error) {
	if depth > 1000 {
		return nil, fmt.Errorf("line %d: YAML nested too deeply (alias cycle?)", n.Line)
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return nodeToJSON(n.Content[0], depth+1)
	case yaml.AliasNode:
		return nodeToJSON(n.Alias, depth+1)
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := nodeToJSON(c, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case yaml.MappingNode:
		out := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind == yaml.AliasNode {
				k = k.Alias
			}
			if k.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("line %d: non-scalar mapping key", k.Line)
			}
			if k.Tag == "!!merge" {
				return nil, fmt.Errorf("line %d: YAML merge keys are not supported", k.Line)
			}
			val, err := nodeToJSON(v, depth+1)
			if err != nil {
				return nil, err
			}
			out[k.Value] = val
		}
		return out, nil
	case yaml.ScalarNode:
		return scalarToJSON(n)
	}
	return nil, fmt.Errorf("line %d: unsupported YAML node kind %v", n.Line, n.Kind)
}

func scalarToJSON(n *yaml.Node) (any, error) {
	switch n.ShortTag() {
	case "!!null":
		return nil, nil
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return nil, fmt.Errorf("line %d: %w", n.Line, err)
		}
		return b, nil
	case "!!int":
		// Normalise 0x/0o/_ forms through the YAML decoder.
		var i int64
		if err := n.Decode(&i); err == nil {
			return json.Number(strconv.FormatInt(i, 10)), nil
		}
		var u uint64
		if err := n.Decode(&u); err == nil {
			return json.Number(strconv.FormatUint(u, 10)), nil
		}
		// Too big for 64 bits: keep the literal if it is plain decimal.
		if _, err := strconv.ParseFloat(n.Value, 64); err == nil {
			return json.Number(n.Value), nil
		}
		return nil, fmt.Errorf("line %d: invalid integer %q", n.Line, n.Value)
	case "!!float":
		var f float64
		if err := n.Decode(&f); err != nil {
			return nil, fmt.Errorf("line %d: %w", n.Line, err)
		}
		if math.IsInf(f, 0) || math.IsNaN(f) {
			return nil, fmt.Errorf("line %d: %q has no JSON representation", n.Line, n.Value)
		}
		return json.Number(strconv.FormatFloat(f, 'g', -1, 64)), nil
	default:
		// !!str, !!timestamp, !!binary and custom tags: keep the text as written.
		return n.Value, nil
	}
}
