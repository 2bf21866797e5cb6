package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
)

// MaxBodyBytes bounds any JSON request body (events are further bounded to
// 65,536 bytes by the room engine).
const MaxBodyBytes = 1 << 20

// MaxJSONDepth bounds the nesting of JSON request bodies.
const MaxJSONDepth = 64

// ReadBody reads the whole request body, refusing more than limit bytes
// with M_TOO_LARGE.
func ReadBody(r *http.Request, limit int64) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	if r.ContentLength > limit {
		return nil, TooLarge("request body exceeds %d bytes", limit)
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, TooLarge("request body too large")
		}
		return nil, BadJSON("could not read request body")
	}
	if int64(len(b)) > limit {
		return nil, TooLarge("request body exceeds %d bytes", limit)
	}
	return b, nil
}

// CheckJSON verifies that b is a single valid JSON value no deeper than
// MaxJSONDepth and without duplicate object keys (which canonical JSON
// forbids). It returns M_NOT_JSON for syntax errors.
func CheckJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	type frame struct {
		obj  bool
		keys map[string]struct{}
		key  bool // next string token in an object is a key
	}
	var stack []frame
	values := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			if len(stack) > 0 || values == 0 {
				return NotJSON("request body is not valid JSON")
			}
			break
		}
		if err != nil {
			return NotJSON("request body is not valid JSON")
		}
		if len(stack) == 0 {
			values++
			if values > 1 {
				return NotJSON("trailing data after JSON body")
			}
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				if len(stack) > 0 && stack[len(stack)-1].obj {
					stack[len(stack)-1].key = true
				}
				if len(stack) >= MaxJSONDepth {
					return BadJSON("JSON nested deeper than %d levels", MaxJSONDepth)
				}
				stack = append(stack, frame{obj: t == '{', keys: map[string]struct{}{}, key: true})
			case '}', ']':
				stack = stack[:len(stack)-1]
				if len(stack) > 0 && stack[len(stack)-1].obj {
					stack[len(stack)-1].key = true
				}
			}
		default:
			if len(stack) > 0 && stack[len(stack)-1].obj {
				f := &stack[len(stack)-1]
				if f.key {
					k, _ := t.(string)
					if _, dup := f.keys[k]; dup {
						return BadJSON("duplicate key %q in JSON object", k)
					}
					f.keys[k] = struct{}{}
					f.key = false
				} else {
					f.key = true
				}
			}
		}
	}
	return nil
}

// DecodeJSON reads the request body (bounded by MaxBodyBytes), checks it
// and unmarshals it into v, which should be a pointer to a struct or map.
// An empty body decodes as {}. Wrong field types give M_BAD_JSON.
func DecodeJSON(r *http.Request, v any) error {
	b, err := ReadBody(r, MaxBodyBytes)
	if err != nil {
		return err
	}
	return DecodeJSONBytes(b, v)
}

// DecodeJSONBytes is DecodeJSON for an already-read body.
func DecodeJSONBytes(b []byte, v any) error {
	if len(bytes.TrimSpace(b)) == 0 {
		b = []byte("{}")
	}
	if err := CheckJSON(b); err != nil {
		return err
	}
	trimmed := bytes.TrimSpace(b)
	if trimmed[0] != '{' {
		return BadJSON("request body must be a JSON object")
	}
	if err := json.Unmarshal(b, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return BadJSON("field %q has the wrong type", te.Field)
		}
		return BadJSON("invalid JSON body: %v", err)
	}
	return nil
}

// QueryInt parses an integer query parameter, returning def when absent and
// M_INVALID_PARAM when malformed.
func QueryInt(r *http.Request, name string, def int64) (int64, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, InvalidParam("query parameter %q must be an integer", name)
	}
	return n, nil
}
