package specschema

import (
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// httpMethods are the operation keys of an OpenAPI path item.
var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// operation is one method of one templated path of the client-server API.
type operation struct {
	id        string // operationId
	method    string // upper case
	template  string // full path template including the server base path
	segs      []segment
	file      string               // spec file, relative to the data directory
	responses map[string]*compiled // status key ("200", "4XX", "default") -> schema; nil schema and err: no JSON body
	request   *compiled            // nil: no JSON request body
}

func (op *operation) String() string {
	return fmt.Sprintf("%s %s (%s in %s)", op.method, op.template, op.id, op.file)
}

// segment is one "/"-separated part of a path template.
type segment struct {
	lit   string         // literal text (when !param && re == nil)
	param bool           // the whole segment is one {parameter}
	re    *regexp.Regexp // segment mixing literal text and parameters
}

// specificity ranks how a segment matches: literal beats mixed beats a bare
// parameter.
func (g segment) specificity() int {
	switch {
	case g.param:
		return 0
	case g.re != nil:
		return 1
	}
	return 2
}

func (g segment) match(s string) bool {
	switch {
	case g.param:
		return true
	case g.re != nil:
		return g.re.MatchString(s)
	}
	return g.lit == s
}

var paramRE = regexp.MustCompile(`\{[^{}/]*\}`)

func parseTemplate(t string) []segment {
	parts := strings.Split(strings.TrimPrefix(t, "/"), "/")
	segs := make([]segment, len(parts))
	for i, p := range parts {
		switch {
		case !strings.Contains(p, "{"):
			segs[i] = segment{lit: p}
		case paramRE.FindString(p) == p:
			segs[i] = segment{param: true}
		default:
			var re strings.Builder
			re.WriteString("^")
			last := 0
			for _, m := range paramRE.FindAllStringIndex(p, -1) {
				re.WriteString(regexp.QuoteMeta(p[last:m[0]]))
				re.WriteString("(.*)")
				last = m[1]
			}
			re.WriteString(regexp.QuoteMeta(p[last:]))
			re.WriteString("$")
			segs[i] = segment{re: regexp.MustCompile(re.String())}
		}
	}
	return segs
}

// splitConcretePath splits a request path (or URL) into unescaped segments,
// so that "%21room%3Alocalhost" becomes one segment "!room:localhost" and an
// encoded "/" (%2F) stays inside its segment.
func splitConcretePath(p string) []string {
	if strings.HasPrefix(p, "http://") || strings.HasPrefix(p, "https://") {
		if u, err := url.Parse(p); err == nil {
			p = u.EscapedPath()
		}
	}
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i, part := range parts {
		if u, err := url.PathUnescape(part); err == nil {
			parts[i] = u
		}
	}
	return parts
}

// findOperations returns the most specific operations for method whose
// template matches path: usually one, several when the spec defines the same
// method and path twice (POST /rooms/{roomId}/invite for user IDs and for
// third-party IDs), none when nothing matches. The second result lists the
// methods defined for the path when the path matches but the method does
// not.
func (s *Spec) findOperations(method, path string) ([]*operation, []string) {
	method = strings.ToUpper(method)
	parts := splitConcretePath(path)
	var best []*operation
	var other []string
	for _, op := range s.ops {
		if len(op.segs) != len(parts) {
			continue
		}
		ok := true
		for i, g := range op.segs {
			if !g.match(parts[i]) {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		if op.method != method {
			if !slices.Contains(other, op.method) {
				other = append(other, op.method)
			}
			continue
		}
		switch {
		case len(best) == 0 || moreSpecific(op, best[0]):
			best = []*operation{op}
		case !moreSpecific(best[0], op):
			best = append(best, op)
		}
	}
	sort.Strings(other)
	return best, other
}

func moreSpecific(a, b *operation) bool {
	for i := range a.segs {
		if x, y := a.segs[i].specificity(), b.segs[i].specificity(); x != y {
			return x > y
		}
	}
	return false
}

// loadAPIFile reads one api/client-server file and compiles the schemas of
// its operations.
func (s *Spec) loadAPIFile(file string) error {
	doc, err := s.docs.get(file)
	if err != nil {
		return err
	}
	root, ok := doc.(map[string]any)
	if !ok {
		return fmt.Errorf("%s: not an OpenAPI document", file)
	}
	fileBases, err := serverBasePaths(root["servers"])
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if fileBases == nil {
		fileBases = []string{"/"}
	}
	paths, _ := root["paths"].(map[string]any)
	templates := make([]string, 0, len(paths))
	for t := range paths {
		templates = append(templates, t)
	}
	sort.Strings(templates)

	s.mu.Lock()
	defer s.mu.Unlock()
	for _, key := range templates {
		// The spec disambiguates some duplicated paths with trailing
		// spaces ("/events " in peeking_events.yaml); servers see none.
		t := strings.TrimSpace(key)
		item, ok := paths[key].(map[string]any)
		if !ok {
			continue
		}
		itemFile, itemPtr := file, "/paths/"+escapeToken(key)
		if ref, ok := item["$ref"].(string); ok {
			var v any
			itemFile, itemPtr, v, err = s.resolveRef(file, ref)
			if err != nil {
				return fmt.Errorf("%s: path %s: %w", file, t, err)
			}
			if item, ok = v.(map[string]any); !ok {
				return fmt.Errorf("%s: path %s: $ref %q is not a path item", file, t, ref)
			}
		}
		itemBases := fileBases
		if b, err := serverBasePaths(item["servers"]); err != nil {
			return fmt.Errorf("%s: path %s: %w", file, t, err)
		} else if b != nil {
			itemBases = b
		}
		for _, m := range httpMethods {
			opObj, ok := item[m].(map[string]any)
			if !ok {
				continue
			}
			bases := itemBases
			if b, err := serverBasePaths(opObj["servers"]); err != nil {
				return fmt.Errorf("%s: %s %s: %w", file, m, t, err)
			} else if b != nil {
				bases = b
			}
			opPtr := itemPtr + "/" + m
			resps, reqBody := s.operationSchemas(itemFile, opPtr, opObj)
			id, _ := opObj["operationId"].(string)
			templates := []string{t}
			if short, ok := s.optionalTrailingParam(itemFile, t, item, opObj); ok {
				templates = append(templates, short)
			}
			for _, base := range bases {
				for _, tt := range templates {
					full := strings.TrimSuffix(base, "/") + "/" + strings.TrimPrefix(tt, "/")
					s.ops = append(s.ops, &operation{
						id:        id,
						method:    strings.ToUpper(m),
						template:  full,
						segs:      parseTemplate(full),
						file:      s.rel(file),
						responses: resps,
						request:   reqBody,
					})
				}
			}
		}
	}
	return nil
}

// optionalTrailingParam handles paths such as
// /rooms/{roomId}/state/{eventType}/{stateKey}, whose last parameter the
// spec documents as "Defaults to an empty string. When an empty string, the
// trailing slash on this endpoint is optional": it returns the template
// without that last segment, so that requests omitting it match too.
func (s *Spec) optionalTrailingParam(file, tmpl string, item, op map[string]any) (string, bool) {
	i := strings.LastIndex(tmpl, "/")
	last := tmpl[i+1:]
	if i <= 0 || last == "" || paramRE.FindString(last) != last {
		return "", false
	}
	name := last[1 : len(last)-1]
	params, _ := item["parameters"].([]any)
	opParams, _ := op["parameters"].([]any)
	for _, p := range append(slices.Clip(params), opParams...) {
		pf := file
		pm, _ := p.(map[string]any)
		if ref, ok := pm["$ref"].(string); ok {
			_, _, v, err := s.resolveRef(pf, ref)
			if err != nil {
				continue
			}
			pm, _ = v.(map[string]any)
		}
		if pm["in"] != "path" || pm["name"] != name {
			continue
		}
		desc, _ := pm["description"].(string)
		desc = strings.Join(strings.Fields(desc), " ")
		if strings.Contains(desc, "trailing slash on this endpoint is optional") {
			return tmpl[:i], true
		}
	}
	return "", false
}

// operationSchemas compiles the JSON response and request body schemas of
// the operation object op found at file#ptr; s.mu must be held.
func (s *Spec) operationSchemas(file, ptr string, op map[string]any) (map[string]*compiled, *compiled) {
	resps := map[string]*compiled{}
	responses, _ := op["responses"].(map[string]any)
	for status, r := range responses {
		resps[status] = s.mediaSchema(file, ptr+"/responses/"+escapeToken(status), r)
	}
	var req *compiled
	if rb, ok := op["requestBody"]; ok {
		req = s.mediaSchema(file, ptr+"/requestBody", rb)
	}
	return resps, req
}

// mediaSchema compiles the application/json schema of a response or request
// body object obj found at file#ptr, following $refs to components. It
// returns a compiled without schema nor error when obj has no JSON schema.
func (s *Spec) mediaSchema(file, ptr string, obj any) *compiled {
	for i := 0; ; i++ {
		m, ok := obj.(map[string]any)
		if !ok {
			break
		}
		ref, ok := m["$ref"].(string)
		if !ok {
			break
		}
		if i >= 32 {
			return s.problem(&compiled{loc: s.rel(file) + "#" + ptr, err: fmt.Errorf("$ref chain too long at %s#%s", s.rel(file), ptr)})
		}
		f, p, v, err := s.resolveRef(file, ref)
		if err != nil {
			return s.problem(&compiled{loc: s.rel(file) + "#" + ptr, err: err})
		}
		file, ptr, obj = f, p, v
	}
	m, _ := obj.(map[string]any)
	content, _ := m["content"].(map[string]any)
	for _, ct := range []string{"application/json", "application/json; charset=utf-8"} {
		media, ok := content[ct].(map[string]any)
		if !ok {
			continue
		}
		if _, ok := media["schema"]; !ok {
			continue
		}
		return s.problem(s.compile(file, ptr+"/content/"+escapeToken(ct)+"/schema"))
	}
	return &compiled{loc: s.rel(file) + "#" + ptr}
}

// problem records c's compile error, if any, and returns c.
func (s *Spec) problem(c *compiled) *compiled {
	if c.err != nil {
		s.problems = append(s.problems, c.err)
	}
	return c
}

// resolveRef resolves an OpenAPI $ref (relative file and/or JSON pointer
// fragment) found in file, returning the target's file, pointer and value.
func (s *Spec) resolveRef(file, ref string) (string, string, any, error) {
	target, frag, _ := strings.Cut(ref, "#")
	if target != "" {
		t, err := url.PathUnescape(target)
		if err != nil {
			return "", "", nil, fmt.Errorf("bad $ref %q: %w", ref, err)
		}
		file = filepath.Join(filepath.Dir(file), filepath.FromSlash(t))
	}
	ptr, err := url.PathUnescape(frag)
	if err != nil {
		return "", "", nil, fmt.Errorf("bad $ref %q: %w", ref, err)
	}
	doc, err := s.docs.get(file)
	if err != nil {
		return "", "", nil, fmt.Errorf("$ref %q: %w", ref, err)
	}
	v, err := lookupPointer(doc, ptr)
	if err != nil {
		return "", "", nil, fmt.Errorf("$ref %q in %s: %w", ref, s.rel(file), err)
	}
	return file, ptr, v, nil
}

// lookupPointer returns the value at the JSON pointer ptr in doc.
func lookupPointer(doc any, ptr string) (any, error) {
	if ptr == "" {
		return doc, nil
	}
	if !strings.HasPrefix(ptr, "/") {
		return nil, fmt.Errorf("unsupported JSON pointer %q", ptr)
	}
	v := doc
	for _, tok := range strings.Split(ptr[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch c := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = c[tok]; !ok {
				return nil, fmt.Errorf("JSON pointer %q: no member %q", ptr, tok)
			}
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(c) {
				return nil, fmt.Errorf("JSON pointer %q: bad index %q", ptr, tok)
			}
			v = c[i]
		default:
			return nil, fmt.Errorf("JSON pointer %q: cannot descend into %T", ptr, v)
		}
	}
	return v, nil
}

// escapeToken escapes one JSON pointer reference token.
func escapeToken(t string) string {
	return strings.ReplaceAll(strings.ReplaceAll(t, "~", "~0"), "/", "~1")
}

// escapeFragment percent-encodes a JSON pointer for use as a URL fragment.
func escapeFragment(ptr string) string {
	toks := strings.Split(ptr, "/")
	for i, t := range toks {
		toks[i] = url.PathEscape(t)
	}
	return strings.Join(toks, "/")
}

// serverBasePaths returns the path part of each entry of an OpenAPI
// `servers` list, with {variables} replaced by their defaults, e.g.
// "/_matrix/client/v3" for
//
//	servers:
//	  - url: "{protocol}://{hostname}{basePath}"
//	    variables: {basePath: {default: /_matrix/client/v3}, ...}
//
// It returns nil when v is absent.
func serverBasePaths(v any) ([]string, error) {
	if v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("servers is not a list")
	}
	var bases []string
	for _, e := range list {
		srv, ok := e.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("servers entry is not an object")
		}
		raw, _ := srv["url"].(string)
		vars, _ := srv["variables"].(map[string]any)
		var err error
		expanded := paramRE.ReplaceAllStringFunc(raw, func(p string) string {
			name := p[1 : len(p)-1]
			vv, _ := vars[name].(map[string]any)
			d, ok := vv["default"].(string)
			if !ok {
				err = fmt.Errorf("server url %q: variable %s has no default", raw, name)
			}
			return d
		})
		if err != nil {
			return nil, err
		}
		base := expanded
		if i := strings.Index(expanded, "://"); i >= 0 {
			rest := expanded[i+3:]
			if j := strings.Index(rest, "/"); j >= 0 {
				base = rest[j:]
			} else {
				base = "/"
			}
		}
		if !strings.HasPrefix(base, "/") {
			base = "/" + base
		}
		bases = append(bases, base)
	}
	if len(bases) == 0 {
		return []string{"/"}, nil
	}
	return bases, nil
}
