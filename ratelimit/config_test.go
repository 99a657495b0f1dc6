package ratelimit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLoadConfig(t *testing.T) {
	tests := []struct {
		name  string
		paths []string
		want  []string
	}{
		{"directory: yaml and yml, no dotfiles, no subdirectories", []string{"testdata/config/loaddir"}, []string{"alpha", "beta"}},
		{"file", []string{"testdata/config/loaddir/b.yml"}, []string{"beta"}},
		{"file of any name", []string{"testdata/config/loaddir/sub/c.yaml"}, []string{"gamma"}},
		{"file and its directory load it once", []string{"testdata/config/loaddir/a.yaml", "testdata/config/loaddir/"}, []string{"alpha", "beta"}},
		{"examples", []string{"testdata/config/examples"}, []string{
			"backends", "depth_leaf", "depth_nested", "edge", "kv_store", "mcp",
			"metrics", "notify", "overrides", "rollout", "tools",
		}},
		{"nothing", nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := LoadConfig(tc.paths)
			if err != nil {
				t.Fatalf("LoadConfig: %v", err)
			}
			if diff := cmp.Diff(tc.want, c.Domains()); diff != "" {
				t.Errorf("Domains (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadConfigErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("domain: alpha\ndescriptors: [{key: k, rate_limit: {unit: fortnight}}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.yaml")
	_, err := LoadConfig([]string{"testdata/config/loaddir", bad, missing})
	if err == nil {
		t.Fatal("LoadConfig: no error")
	}
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadConfig error %q does not wrap os.ErrNotExist", err)
	}
	// A missing file stops the load before anything is parsed.
	_, err = LoadConfig([]string{"testdata/config/loaddir", bad})
	want := bad + `: descriptors[0].rate_limit.unit: "fortnight" is not a unit (second, minute, hour, day, week, month, year)` + "\n" +
		bad + `: domain: "alpha" is also the domain of testdata/config/loaddir/a.yaml`
	if err == nil || err.Error() != want {
		t.Errorf("LoadConfig error:\n%v\nwant:\n%s", err, want)
	}
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.File != bad || ce.Path != "descriptors[0].rate_limit.unit" {
		t.Errorf("errors.As(ConfigError) = %+v", ce)
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{
			name:  "syntax error",
			files: map[string]string{"limits.yaml": "domain: mcp\ndescriptors:\n  - key: a\n   value: b\n"},
			want:  []string{"limits.yaml: line 3: did not find expected '-' indicator"},
		},
		{
			name:  "unclosed flow",
			files: map[string]string{"limits.yaml": "domain: mcp\ndescriptors: [{key: a}\n"},
			want:  []string{"limits.yaml: line 2: did not find expected ',' or ']'"},
		},
		{
			name:  "tab indentation",
			files: map[string]string{"limits.yaml": "domain: mcp\ndescriptors:\n\t- key: a\n"},
			want:  []string{"limits.yaml: line 3: found character that cannot start any token"},
		},
		{
			name:  "two documents",
			files: map[string]string{"limits.yaml": "domain: a\n---\ndomain: b\n"},
			want:  []string{"limits.yaml: line 2: a file holds one YAML document"},
		},
		{
			name:  "empty file",
			files: map[string]string{"limits.yaml": ""},
			want:  []string{"limits.yaml: domain: is required"},
		},
		{
			name:  "empty domain",
			files: map[string]string{"limits.yaml": "domain: ''\ndescriptors: []\n"},
			want:  []string{"limits.yaml: domain: is required"},
		},
		{
			name:  "not a mapping",
			files: map[string]string{"limits.yaml": "- domain: mcp\n"},
			want:  []string{"limits.yaml: expected a mapping, got a list"},
		},
		{
			name: "duplicate domain across files",
			files: map[string]string{
				"a.yaml": "domain: mcp\n",
				"b.yaml": "domain: mcp\n",
				"c.yaml": "domain: mcp\n",
			},
			want: []string{
				`b.yaml: domain: "mcp" is also the domain of a.yaml`,
				`c.yaml: domain: "mcp" is also the domain of a.yaml`,
			},
		},
		{
			name: "unknown keys everywhere",
			files: map[string]string{"limits.yaml": `
domian: mcp
domain: mcp
descriptors:
  - key: a
    rate-limit: {unit: second}
    rate_limit:
      unit: second
      requets_per_unit: 5
      replaces: [{name: x, nmae: y}]
    descriptors:
      - key: b
        limits: [{unit: day, requests_per_unit: 1, brust: 3}]
`},
			want: []string{
				"limits.yaml: domian: unknown key",
				"limits.yaml: descriptors[0].rate-limit: unknown key",
				"limits.yaml: descriptors[0].rate_limit.requets_per_unit: unknown key",
				"limits.yaml: descriptors[0].rate_limit.replaces[0].nmae: unknown key",
				"limits.yaml: descriptors[0].descriptors[0].limits[0].brust: unknown key",
			},
		},
		{
			name:  "repeated key",
			files: map[string]string{"limits.yaml": "domain: mcp\ndescriptors:\n  - key: a\n    key: b\n"},
			want:  []string{"limits.yaml: descriptors[0].key: repeated (first at line 3)"},
		},
		{
			name: "duplicate key and value at one level",
			files: map[string]string{"limits.yaml": `
domain: mcp
descriptors:
  - key: a
    value: v
    descriptors:
      - key: b
      - key: b
        value: v
      - key: b
  - key: a
  - key: a
    value: v
  - key: a
    value: "v*"
  - key: a
    value: "v*"
`},
			want: []string{
				`limits.yaml: descriptors[0].descriptors[2]: key "b" value "" is already defined at descriptors[0].descriptors[0]`,
				`limits.yaml: descriptors[2]: key "a" value "v" is already defined at descriptors[0]`,
				`limits.yaml: descriptors[4]: key "a" value "v*" is already defined at descriptors[3]`,
			},
		},
		{
			name:  "missing key",
			files: map[string]string{"limits.yaml": "domain: mcp\ndescriptors:\n  - value: v\n  - key: ''\n  - ~\n"},
			want: []string{
				"limits.yaml: descriptors[0].key: is required",
				"limits.yaml: descriptors[1].key: is required",
				"limits.yaml: descriptors[2].key: is required",
			},
		},
		{
			name: "unlimited with a limit",
			files: map[string]string{"limits.yaml": `
domain: mcp
descriptors:
  - key: a
    rate_limit: {unlimited: true, unit: second}
  - key: b
    rate_limit: {unlimited: true, requests_per_unit: 0}
  - key: c
    rate_limit: {unlimited: true, window: 1m, algorithm: gcra, burst: 2}
`},
			want: []string{
				"limits.yaml: descriptors[0].rate_limit.unit: not allowed with unlimited: true",
				"limits.yaml: descriptors[1].rate_limit.requests_per_unit: not allowed with unlimited: true",
				"limits.yaml: descriptors[2].rate_limit.window: not allowed with unlimited: true",
				"limits.yaml: descriptors[2].rate_limit.algorithm: not allowed with unlimited: true",
				"limits.yaml: descriptors[2].rate_limit.burst: not allowed with unlimited: true",
			},
		},
		{
			name: "replaces",
			files: map[string]string{"limits.yaml": `
domain: mcp
descriptors:
  - key: a
    rate_limit:
      name: mine
      unit: second
      requests_per_unit: 1
      replaces: [{name: other}, {name: mine}, {name: ""}, {}]
`},
			want: []string{
				`limits.yaml: descriptors[0].rate_limit.replaces[1].name: "mine" is the name of this limit: a limit cannot replace itself`,
				"limits.yaml: descriptors[0].rate_limit.replaces[2].name: is required",
				"limits.yaml: descriptors[0].rate_limit.replaces[3].name: is required",
			},
		},
		{
			name: "invalid unit",
			files: map[string]string{"limits.yaml": `
domain: mcp
descriptors:
  - key: a
    descriptors:
      - key: b
        rate_limit: {unit: second, requests_per_unit: 1}
      - key: c
      - key: d
        rate_limit: {unit: fortnight, requests_per_unit: 1}
      - key: e
        rate_limit: {unit: unknown, requests_per_unit: 1}
      - key: f
        rate_limit: {unit: "", requests_per_unit: 1}
`},
			want: []string{
				`limits.yaml: descriptors[0].descriptors[2].rate_limit.unit: "fortnight" is not a unit (second, minute, hour, day, week, month, year)`,
				`limits.yaml: descriptors[0].descriptors[3].rate_limit.unit: "unknown" is not a unit (second, minute, hour, day, week, month, year)`,
				`limits.yaml: descriptors[0].descriptors[4].rate_limit.unit: "" is not a unit (second, minute, hour, day, week, month, year)`,
			},
		},
		{
			name: "no unit, window or unlimited",
			files: map[string]string{"limits.yaml": `
domain: mcp
descriptors:
  - key: a
    rate_limit: {requests_per_unit: 5}
  - key: b
    rate_limit: {}
  - key: c
    rate_limit: {unlimited: false}
`},
			want: []string{
				"limits.yaml: descriptors[0].rate_limit: one of unit, window or unlimited: true is required",
				"limits.yaml: descriptors[1].rate_limit: one of unit, window or unlimited: true is required",
				"limits.yaml: descriptors[2].rate_limit: one of unit, window or unlimited: true is required",
			},
		},
		{
			name: "windows",
			files: map[string]string{"limits.yaml": `
domain: mcp
descriptors:
  - key: a
    rate_limit: {unit: second, window: 1s, requests_per_unit: 1}
  - key: b
    rate_limit: {window: 5x, requests_per_unit: 1}
  - key: c
    rate_limit: {window: 500ms, requests_per_unit: 1}
  - key: d
    rate_limit: {window: 1500ms, requests_per_unit: 1}
  - key: e
    rate_limit: {window: -1m, requests_per_unit: 1}
  - key: f
    rate_limit: {window: [1m], requests_per_unit: 1}
`},
			want: []string{
				"limits.yaml: descriptors[0].rate_limit.window: not allowed with unit",
				`limits.yaml: descriptors[1].rate_limit.window: "5x" is not a duration`,
				`limits.yaml: descriptors[2].rate_limit.window: "500ms" is shorter than 1s`,
				`limits.yaml: descriptors[3].rate_limit.window: "1500ms" is not a whole number of seconds`,
				`limits.yaml: descriptors[4].rate_limit.window: "-1m" is shorter than 1s`,
				"limits.yaml: descriptors[5].rate_limit.window: expected a string, got a list",
			},
		},
		{
			name: "algorithms and burst",
			files: map[string]string{"limits.yaml": `
domain: mcp
descriptors:
  - key: a
    rate_limit: {unit: second, requests_per_unit: 1, burst: 5}
  - key: b
    rate_limit: {unit: second, requests_per_unit: 1, algorithm: sliding_window, burst: 5}
  - key: c
    rate_limit: {unit: second, algorithm: gcra}
  - key: d
    rate_limit: {unit: second, requests_per_unit: 0, algorithm: gcra, burst: 3}
  - key: e
    rate_limit: {unit: second, requests_per_unit: 2, algorithm: gcra, burst: 0}
  - key: f
    rate_limit: {unit: second, requests_per_unit: 2, algorithm: leaky_bucket}
`},
			want: []string{
				"limits.yaml: descriptors[0].rate_limit.burst: only algorithm gcra has a burst",
				"limits.yaml: descriptors[1].rate_limit.burst: only algorithm gcra has a burst",
				"limits.yaml: descriptors[2].rate_limit.requests_per_unit: algorithm gcra needs at least 1",
				"limits.yaml: descriptors[3].rate_limit.requests_per_unit: algorithm gcra needs at least 1",
				"limits.yaml: descriptors[4].rate_limit.burst: must be at least 1",
				`limits.yaml: descriptors[5].rate_limit.algorithm: "leaky_bucket" is not an algorithm (fixed_window, sliding_window, gcra)`,
			},
		},
		{
			name: "rate_limit and limits",
			files: map[string]string{"limits.yaml": `
domain: mcp
descriptors:
  - key: a
    rate_limit: {unit: second, requests_per_unit: 1}
    limits: [{unit: day, requests_per_unit: 100}]
  - key: b
    limits: []
  - key: c
    limits:
      - {unit: second, requests_per_unit: 1}
      - {unlimited: true}
  - key: d
    limits: {unit: second}
`},
			want: []string{
				"limits.yaml: descriptors[0]: rate_limit and limits are mutually exclusive",
				"limits.yaml: descriptors[1].limits: is empty",
				"limits.yaml: descriptors[2].limits[1].unlimited: an unlimited limit must be the only one",
				"limits.yaml: descriptors[3].limits: expected a list, got a mapping",
			},
		},
		{
			name: "types",
			files: map[string]string{"limits.yaml": `
domain: [mcp]
descriptors:
  - key: {a: b}
    value: [v]
    shadow_mode: maybe
    detailed_metric: 1
    rate_limit: {unit: second, requests_per_unit: ten}
  - key: b
    rate_limit: {unit: second, requests_per_unit: -1}
  - key: c
    rate_limit: {unit: second, requests_per_unit: 4294967296}
  - key: d
    rate_limit: {unit: second, requests_per_unit: "5"}
  - key: e
    rate_limit: {unit: second, requests_per_unit: 5.0}
  - key: f
    rate_limit: second
  - key: g
    descriptors: {key: h}
  - key: i
    rate_limit: {unit: second, requests_per_unit: 1, replaces: other}
  - key: j
    value: "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv"
    rate_limit: {unit: "uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu", requests_per_unit: 1}
`},
			want: []string{
				"limits.yaml: domain: expected a string, got a list",
				"limits.yaml: descriptors[0].key: expected a string, got a mapping",
				"limits.yaml: descriptors[0].value: expected a string, got a list",
				`limits.yaml: descriptors[0].shadow_mode: expected true or false, got "maybe"`,
				`limits.yaml: descriptors[0].detailed_metric: expected true or false, got "1"`,
				`limits.yaml: descriptors[0].rate_limit.requests_per_unit: expected an integer from 0 to 4294967295, got "ten"`,
				`limits.yaml: descriptors[1].rate_limit.requests_per_unit: expected an integer from 0 to 4294967295, got "-1"`,
				`limits.yaml: descriptors[2].rate_limit.requests_per_unit: expected an integer from 0 to 4294967295, got "4294967296"`,
				`limits.yaml: descriptors[3].rate_limit.requests_per_unit: expected an integer from 0 to 4294967295, got "5"`,
				`limits.yaml: descriptors[4].rate_limit.requests_per_unit: expected an integer from 0 to 4294967295, got "5.0"`,
				`limits.yaml: descriptors[5].rate_limit: expected a mapping, got "second"`,
				"limits.yaml: descriptors[6].descriptors: expected a list, got a mapping",
				`limits.yaml: descriptors[7].rate_limit.replaces: expected a list, got "other"`,
				`limits.yaml: descriptors[8].rate_limit.unit: "uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu"... is not a unit (second, minute, hour, day, week, month, year)`,
			},
		},
		{
			name: "every problem of every file",
			files: map[string]string{
				"a.yaml": "domain: one\ndescriptors: [{key: k, rate_limit: {unit: minutes, requests_per_unit: 1}}]\n",
				"b.yaml": "domain: two\ndescriptors: [{key: k, rate_limit: {unit: minute}, extra: 1}]\n",
				"c.yaml": "descriptors: [{key: k}]\n",
			},
			want: []string{
				`a.yaml: descriptors[0].rate_limit.unit: "minutes" is not a unit (second, minute, hour, day, week, month, year)`,
				"b.yaml: descriptors[0].extra: unknown key",
				"c.yaml: domain: is required",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string][]byte{}
			for name, data := range tc.files {
				files[name] = []byte(data)
			}
			c, err := ParseConfig(files)
			if err == nil {
				t.Fatalf("ParseConfig: no error, domains %v", c.Domains())
			}
			if diff := cmp.Diff(tc.want, strings.Split(err.Error(), "\n")); diff != "" {
				t.Errorf("ParseConfig errors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseConfigAccepts(t *testing.T) {
	// What the reference accepts loads here too.
	c, err := ParseConfig(map[string][]byte{"ref.yaml": []byte(`
domain: ref
descriptors:
  - key: blocked
    rate_limit: {unit: second, requests_per_unit: 0}
  - key: no_requests
    rate_limit: {unit: hour}
  - key: numeric
    value: 200
    rate_limit: {unit: Day, requests_per_unit: 3}
  - key: yes_no
    shadow_mode: yes
    detailed_metric: off
    rate_limit: {unit: MINUTE, requests_per_unit: 1_000}
  - key: placeholder
  - key: empty_value
    value: ""
    rate_limit: &rl {unit: week, requests_per_unit: 0x10}
  - key: alias
    rate_limit: *rl
  - key: null_blocks
    rate_limit:
    descriptors:
  - key: month
    rate_limit: {unit: month, requests_per_unit: 1}
  - key: year
    rate_limit: {unit: year, requests_per_unit: 1}
`)})
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	tests := []struct {
		desc []Entry
		want *Limit
	}{
		{desc("blocked=x"), &Limit{Key: "blocked", Window: time.Second, Unit: "second", ReportUnit: "second"}},
		{desc("no_requests=x"), &Limit{Key: "no_requests", Window: time.Hour, Unit: "hour", ReportUnit: "hour"}},
		{desc("numeric=200"), &Limit{Key: "numeric_200", Requests: 3, Window: 24 * time.Hour, Unit: "day", ReportUnit: "day", ReportRequests: 3}},
		{desc("yes_no=x"), &Limit{Key: "yes_no", Requests: 1000, Window: time.Minute, Unit: "minute", ReportUnit: "minute", ReportRequests: 1000, ShadowMode: true}},
		{desc("placeholder=x"), nil},
		{desc("empty_value=x"), &Limit{Key: "empty_value", Requests: 16, Window: 7 * 24 * time.Hour, Unit: "week", ReportUnit: "week", ReportRequests: 16}},
		{desc("alias=x"), &Limit{Key: "alias", Requests: 16, Window: 7 * 24 * time.Hour, Unit: "week", ReportUnit: "week", ReportRequests: 16}},
		{desc("null_blocks=x"), nil},
		{desc("month=x"), &Limit{Key: "month", Requests: 1, Window: 30 * 24 * time.Hour, Unit: "month", ReportUnit: "month", ReportRequests: 1}},
		{desc("year=x"), &Limit{Key: "year", Requests: 1, Window: 365 * 24 * time.Hour, Unit: "year", ReportUnit: "year", ReportRequests: 1}},
	}
	for _, tc := range tests {
		var want []*Limit
		if tc.want != nil {
			want = []*Limit{tc.want}
		}
		if diff := cmp.Diff(want, c.Match("ref", tc.desc)); diff != "" {
			t.Errorf("Match(%v) (-want +got):\n%s", tc.desc, diff)
		}
	}
}

func TestConfigLimits(t *testing.T) {
	// Every field of the extensions' limits.
	c := loadExamples(t)
	const day = 24 * time.Hour
	tests := []struct {
		name string
		desc []Entry
		want []*Limit
	}{
		{"sliding window", desc("subject=bob"), []*Limit{{
			Name: "per_subject", Requests: 600, Window: time.Minute, Unit: "minute", ReportUnit: "minute", ReportRequests: 600,
			Algorithm: SlidingWindow, Key: "subject",
		}}},
		{"gcra with burst", desc("subject=bob", "tool=list"), []*Limit{{
			Requests: 60, Window: time.Minute, Unit: "minute", ReportUnit: "minute", ReportRequests: 60,
			Algorithm: GCRA, Burst: 10, Key: "subject.tool",
		}}},
		{"several limits, gcra burst defaults to requests", desc("subject=bob", "tool=search.docs"), []*Limit{
			{
				Name: "search_fast", Requests: 10, Window: time.Second, Unit: "second", ReportUnit: "second", ReportRequests: 10,
				ShadowMode: true, Key: "subject.tool_search.*[0]",
			},
			{
				Requests: 1000, Window: day, ReportUnit: "day", ReportRequests: 1000,
				Algorithm: GCRA, Burst: 1000, ShadowMode: true, Key: "subject.tool_search.*[1]",
			},
		}},
		{"replaces", desc("subject=alice"), []*Limit{{
			Requests: 6000, Window: time.Minute, Unit: "minute", ReportUnit: "minute", ReportRequests: 6000,
			Replaces: []string{"per_subject"}, Key: "subject_alice",
		}}},
		{"unlimited", desc("client_id=ops-console"), []*Limit{{Unlimited: true, Key: "client_id_ops-console"}}},
		{"unit in capitals", desc("client_id=cli"), []*Limit{{
			Requests: 100, Window: time.Second, Unit: "second", ReportUnit: "second", ReportRequests: 100, Key: "client_id",
		}}},
		{"window reported per minute", desc("weighted=x"), []*Limit{{
			Requests: 500, Window: 5 * time.Minute, ReportUnit: "minute", ReportRequests: 100, Key: "weighted",
		}}},
		{"window reported per second, rounded up", desc("odd=x"), []*Limit{{
			Requests: 10, Window: 90 * time.Second, ReportUnit: "second", ReportRequests: 1, Key: "odd",
		}}},
		{"window reported per week, rounded up", desc("fortnight=x"), []*Limit{{
			Requests: 7, Window: 14 * day, ReportUnit: "week", ReportRequests: 4, Key: "fortnight",
		}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, c.Match("mcp", tc.desc)); diff != "" {
				t.Errorf("Match (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReportUnitFor(t *testing.T) {
	const day = 24 * time.Hour
	tests := []struct {
		window   time.Duration
		requests uint64
		unit     string
		report   uint64
	}{
		{time.Second, 5, "second", 5},
		{2 * time.Second, 5, "second", 3},
		{2 * time.Second, 0, "second", 0},
		{time.Minute, 5, "minute", 5},
		{61 * time.Second, 61, "second", 1},
		{2 * time.Hour, 100, "hour", 50},
		{day, 7, "day", 7},
		{7 * day, 7, "week", 7},
		{30 * day, 7, "month", 7},
		{60 * day, 7, "month", 4},
		{365 * day, 1, "year", 1},
		{730 * day, 4294967295, "year", 2147483648},
		{31 * day, 31, "day", 1},
	}
	for _, tc := range tests {
		unit, report := reportUnitFor(tc.window, tc.requests)
		if unit != tc.unit || report != tc.report {
			t.Errorf("reportUnitFor(%v, %d) = %s, %d; want %s, %d", tc.window, tc.requests, unit, report, tc.unit, tc.report)
		}
	}
}

func TestParseConfigBounds(t *testing.T) {
	// Nested aliases expand exponentially, a cyclic alias forever, deep
	// nesting is no real configuration: each stops with one error.
	var bomb strings.Builder
	bomb.WriteString("domain: bomb\ndescriptors:\n  - key: a0\n    descriptors: &a0 [{key: k0}, {key: k1}]\n")
	for i := 1; i < 30; i++ {
		fmt.Fprintf(&bomb, "  - key: a%d\n    descriptors: &a%d [{key: x, descriptors: *a%d}, {key: y, descriptors: *a%d}]\n", i, i, i-1, i-1)
	}
	deep := "domain: deep\ndescriptors: " + strings.Repeat("[{key: k, descriptors: ", 65) + "[]" + strings.Repeat("}]", 65)
	var many strings.Builder
	many.WriteString("domain: many\ndescriptors:\n")
	for range 150 {
		many.WriteString("  - {key: k, rate_limit: {unit: fortnight}}\n")
	}
	var long strings.Builder
	fmt.Fprintf(&long, "domain: long\ndescriptors:\n  - key: &k %s\n    descriptors: &l1 [{key: *k}, {key: *k, value: a}]\n", strings.Repeat("x", 1<<20))
	for i := 2; i <= 10; i++ {
		fmt.Fprintf(&long, "  - key: b%d\n    descriptors: &l%d [{key: *k, descriptors: *l%d}, {key: *k, value: a, descriptors: *l%d}]\n", i, i, i-1, i-1)
	}
	tests := []struct {
		name, data string
		want       string // the last error
		n          int    // errors
	}{
		{"alias bomb", bomb.String(), "more than 100000 descriptors in one file", 1},
		{"cyclic alias", "domain: cycle\ndescriptors: &x [{key: k, descriptors: *x}]\n", "descriptors nested deeper than 64 levels", 1},
		{"cyclic alias, two wide", "domain: cycle\ndescriptors: &x [{key: a, descriptors: *x}, {key: b, descriptors: *x}]\n", "descriptors nested deeper than 64 levels", 1},
		{"deep", deep, "descriptors nested deeper than 64 levels", 1},
		{"long keys", long.String(), "descriptor keys longer than 67108864 bytes in all", 1},
		{"many errors", many.String(), "f.yaml: too many errors", 101},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig(map[string][]byte{"f.yaml": []byte(tc.data)})
			if err == nil {
				t.Fatal("ParseConfig: no error")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != tc.n || !strings.HasSuffix(lines[len(lines)-1], tc.want) {
				t.Errorf("ParseConfig: %d errors, the last %q; want %d, the last ending in %q", len(lines), lines[len(lines)-1], tc.n, tc.want)
			}
		})
	}
}

func ExampleConfig_Match() {
	c, err := ParseConfig(map[string][]byte{"mcp.yaml": []byte(`
domain: mcp
descriptors:
  - key: subject
    rate_limit: {unit: minute, requests_per_unit: 600}
    descriptors:
      - key: tool
        value: "search.*"
        limits:
          - {unit: second, requests_per_unit: 10}
          - {window: 1h, requests_per_unit: 1000, algorithm: gcra, burst: 50}
`)})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, l := range c.Match("mcp", []Entry{{"subject", "alice"}, {"tool", "search.web"}}) {
		fmt.Println(l.Key, l.Requests, l.Window, l.Algorithm, l.Burst)
	}
	fmt.Println(c.Match("mcp", []Entry{{"subject", "alice"}})[0].Requests)
	fmt.Println(c.Match("mcp", []Entry{{"tool", "search.web"}}) == nil)
	// Output:
	// subject.tool_search.*[0] 10 1s fixed_window 0
	// subject.tool_search.*[1] 1000 1h0m0s gcra 50
	// 600
	// true
}

// FuzzParseConfig checks that no input makes ParseConfig panic, and that
// every limit of a configuration it accepts is well-formed.
func FuzzParseConfig(f *testing.F) {
	ents, err := os.ReadDir("testdata/config/examples")
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join("testdata/config/examples", e.Name()))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("domain: a\ndescriptors: [{key: k, value: 'a*b*', rate_limit: {window: 90s, requests_per_unit: 7}}]"))
	f.Add([]byte("domain: a\ndescriptors: [{key: k, limits: [{unit: day}, {unit: second, algorithm: gcra, requests_per_unit: 1}]}]"))
	f.Add([]byte("domain: a\ndescriptors: &x [{key: k, descriptors: *x}]"))
	f.Add([]byte("domain: [\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(map[string][]byte{"f.yaml": data})
		if err != nil {
			if err.Error() == "" {
				t.Error("empty error message")
			}
			return
		}
		for _, name := range c.Domains() {
			checkLevel(t, c.domains[name], 0)
		}
	})
}

func checkLevel(t *testing.T, lv level, depth int) {
	t.Helper()
	if depth > 10000 {
		t.Fatal("descriptor tree deeper than 10000")
	}
	for _, kn := range lv {
		nodes := append([]*node{kn.def}, kn.wildcard...)
		for _, n := range kn.exact {
			nodes = append(nodes, n)
		}
		for _, n := range nodes {
			if n == nil {
				continue
			}
			if n.limits != nil && len(n.limits) == 0 {
				t.Error("empty, non-nil limits")
			}
			for _, l := range n.limits {
				checkLimit(t, l)
			}
			if n.children != nil {
				if len(n.children) == 0 {
					t.Error("empty, non-nil children")
				}
				checkLevel(t, n.children, depth+1)
			}
		}
	}
}

func checkLimit(t *testing.T, l *Limit) {
	t.Helper()
	if l.Key == "" {
		t.Errorf("limit without a Key: %+v", l)
	}
	if l.Unlimited {
		if l.Window != 0 || l.Requests != 0 || l.Burst != 0 || l.Unit != "" || l.ReportUnit != "" {
			t.Errorf("unlimited limit with a limit: %+v", l)
		}
		return
	}
	if l.Window < time.Second || l.Window%time.Second != 0 {
		t.Errorf("window %v is not a positive whole number of seconds: %+v", l.Window, l)
	}
	if _, d, ok := unitDuration(l.ReportUnit); !ok || l.Window%d != 0 {
		t.Errorf("report unit %q does not divide the window: %+v", l.ReportUnit, l)
	}
	if l.Unit != "" && (l.Unit != l.ReportUnit || l.ReportRequests != l.Requests) {
		t.Errorf("unit %q reported as %d per %s: %+v", l.Unit, l.ReportRequests, l.ReportUnit, l)
	}
	if l.ReportRequests > l.Requests || l.Requests > 1<<32-1 {
		t.Errorf("report requests %d out of range: %+v", l.ReportRequests, l)
	}
	if (l.Algorithm == GCRA) != (l.Burst > 0) || l.Algorithm == GCRA && l.Requests == 0 {
		t.Errorf("burst %d with algorithm %v: %+v", l.Burst, l.Algorithm, l)
	}
}
