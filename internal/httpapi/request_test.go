package httpapi

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func TestCheckJSON(t *testing.T) {
	deep := strings.Repeat("[", MaxJSONDepth+1) + strings.Repeat("]", MaxJSONDepth+1)
	ok := strings.Repeat("[", MaxJSONDepth-1) + strings.Repeat("]", MaxJSONDepth-1)
	cases := []struct {
		in   string
		code string
	}{
		{`{"a":1}`, ""},
		{`{"a":{"b":[1,2,{"c":null}]}}`, ""},
		{`{"a":1,"a":2}`, "M_BAD_JSON"},
		{`{"a":{"x":1,"x":1}}`, "M_BAD_JSON"},
		{`[{"k":1},{"k":2}]`, ""},
		{`{"a":1`, "M_NOT_JSON"},
		{`{"a":1} {}`, "M_NOT_JSON"},
		{`nope`, "M_NOT_JSON"},
		{deep, "M_BAD_JSON"},
		{ok, ""},
	}
	for _, tc := range cases {
		err := CheckJSON([]byte(tc.in))
		switch {
		case tc.code == "" && err != nil:
			t.Errorf("%.40q: unexpected %v", tc.in, err)
		case tc.code != "" && !ErrIs(err, tc.code):
			t.Errorf("%.40q: got %v, want %s", tc.in, err, tc.code)
		}
	}
}

func TestDecodeJSON(t *testing.T) {
	var v struct {
		N int `json:"n"`
	}
	if err := DecodeJSONBytes([]byte(`{"n":"x"}`), &v); !ErrIs(err, "M_BAD_JSON") {
		t.Fatalf("wrong type: %v", err)
	}
	if err := DecodeJSONBytes([]byte(`[1]`), &v); !ErrIs(err, "M_BAD_JSON") {
		t.Fatalf("array body: %v", err)
	}
	if err := DecodeJSONBytes(nil, &v); err != nil {
		t.Fatalf("empty body: %v", err)
	}
	r := httptest.NewRequest("POST", "/", strings.NewReader(strings.Repeat(" ", MaxBodyBytes+1)))
	if err := DecodeJSON(r, &v); !ErrIs(err, "M_TOO_LARGE") {
		t.Fatalf("oversized body: %v", err)
	}
}
