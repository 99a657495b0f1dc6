package extauthz

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protojson"
)

var update = flag.Bool("update", false, "rewrite golden files")

func readCheckRequest(t testing.TB, path string) *authv3.CheckRequest {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var req authv3.CheckRequest
	if err := protojson.Unmarshal(data, &req); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &req
}

// TestInputGolden builds the policy input for each CheckRequest under
// testdata/input and compares it with NAME.golden.json. Run with -update to
// rewrite the golden files after a deliberate change.
func TestInputGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/input/*.json")
	if err != nil {
		t.Fatal(err)
	}
	s := New(denyAll{}, nil)
	n := 0
	for _, f := range files {
		if strings.HasSuffix(f, ".golden.json") {
			continue
		}
		n++
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		t.Run(name, func(t *testing.T) {
			in, err := s.Input(readCheckRequest(t, f))
			if err != nil {
				t.Fatal(err)
			}
			raw, err := json.Marshal(in)
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			if err := json.Indent(&got, raw, "", "  "); err != nil {
				t.Fatal(err)
			}
			got.WriteByte('\n')
			golden := strings.TrimSuffix(f, ".json") + ".golden.json"
			if *update {
				if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(want, got.Bytes()) {
				t.Errorf("input differs from %s (run go test -update after checking the change):\n%s", golden, lineDiff(string(want), got.String()))
			}
		})
	}
	if n < 6 {
		t.Fatalf("found %d request files, want at least 6", n)
	}
}

// lineDiff lists the lines of got that differ from want.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			b.WriteString("-" + wl + "\n+" + gl + "\n")
		}
	}
	return b.String()
}
