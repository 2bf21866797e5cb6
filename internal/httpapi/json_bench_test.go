package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
)

// Micro-benchmarks of request and response JSON handling, which every
// request pays: go test -run '^$' -bench . -benchmem ./internal/httpapi

var benchMessageBody = []byte(`{"msgtype":"m.text","body":"A benchmark message of ordinary length, about one line of chat.","m.mentions":{}}`)

// benchLargeBody is a ~60 KiB event content with many keys, close to the
// 65,536-byte event limit.
func benchLargeBody() []byte {
	var sb strings.Builder
	sb.WriteString(`{"msgtype":"m.text","body":"big","items":{`)
	for i := 0; i < 1200; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `"key%04d":{"n":%d,"s":"value number %d","l":[1,2,3]}`, i, i, i)
	}
	sb.WriteString(`}}`)
	return []byte(sb.String())
}

// BenchmarkCheckJSON is the validity, depth and duplicate-key check run on
// every request body.
func BenchmarkCheckJSON(b *testing.B) {
	for _, c := range []struct {
		name string
		body []byte
	}{{"message", benchMessageBody}, {"60KiB", benchLargeBody()}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.body)))
			for b.Loop() {
				if err := CheckJSON(c.body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeJSONBytes is CheckJSON plus unmarshalling into a value.
func BenchmarkDecodeJSONBytes(b *testing.B) {
	b.SetBytes(int64(len(benchMessageBody)))
	for b.Loop() {
		var v map[string]any
		if err := DecodeJSONBytes(benchMessageBody, &v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteJSON is encoding a sync-sized response (100 rooms of 10
// timeline events) and writing it.
func BenchmarkWriteJSON(b *testing.B) {
	type event struct {
		Content        json.RawMessage `json:"content"`
		EventID        string          `json:"event_id"`
		OriginServerTS int64           `json:"origin_server_ts"`
		Sender         string          `json:"sender"`
		Type           string          `json:"type"`
		Unsigned       map[string]any  `json:"unsigned,omitempty"`
	}
	rooms := map[string]any{}
	for r := 0; r < 100; r++ {
		evs := make([]event, 10)
		for i := range evs {
			evs[i] = event{Content: benchMessageBody, EventID: fmt.Sprintf("$event%d_%d_abcdefghijklmnopqrstuvwxyz", r, i),
				OriginServerTS: 1700000000000 + int64(i), Sender: "@someone:example.org", Type: "m.room.message",
				Unsigned: map[string]any{"age": 1234}}
		}
		rooms[fmt.Sprintf("!room%d:example.org", r)] = map[string]any{"timeline": map[string]any{"events": evs, "limited": true}}
	}
	resp := map[string]any{"next_batch": "s1_2_3_4_5_6", "rooms": map[string]any{"join": rooms}}
	for b.Loop() {
		w := httptest.NewRecorder()
		WriteJSON(w, 200, resp)
	}
}
