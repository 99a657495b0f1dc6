package observability_test

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"
)

// dashboard is the part of a Grafana dashboard the test reads.
type dashboard struct {
	UID        string  `json:"uid"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
}

// Labels a Prometheus scrape adds; they are not in /metrics.
var scrapeLabels = map[string]bool{"job": true, "instance": true}

var (
	selectorRE  = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}`)
	matcherRE   = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	groupingRE  = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	identRE     = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	stringRE    = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	rangeRE     = regexp.MustCompile(`\[[^\]]*\]`)
	labelValues = regexp.MustCompile(`^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$`)
	// What else may appear in the dashboard's PromQL.
	promqlWords = []string{"sum", "min", "max", "rate", "increase", "histogram_quantile", "by", "without"}
)

// exported parses the Prometheus text (which checks it is valid) and
// returns the series names a query may use with the labels each has:
// counters and gauges by name, histograms as _bucket, _sum and _count.
func exported(t *testing.T, text string) map[string]map[string]bool {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("/metrics is not valid Prometheus text: %v", err)
	}
	out := map[string]map[string]bool{}
	for name, f := range fams {
		labels := map[string]bool{}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = true
			}
		}
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM:
			out[name+"_sum"], out[name+"_count"] = labels, labels
			bucket := map[string]bool{"le": true}
			for l := range labels {
				bucket[l] = true
			}
			out[name+"_bucket"] = bucket
		default:
			out[name] = labels
		}
	}
	return out
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	data, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestDashboardMetricsExist: after an allow, a deny and an over-limit
// (and the rest of the scenario), every series the dashboard queries is in
// /metrics with every label the queries select or group by.
func TestDashboardMetricsExist(t *testing.T) {
	sc := newScenario(t)
	sc.run(t)
	series := exported(t, sc.scrape(t))
	d := loadDashboard(t)
	if d.UID == "" {
		t.Error("the dashboard has no uid")
	}
	ids := map[int]bool{}
	queries := 0
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q does not use the datasource variable", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			queries++
			checkQuery(t, p.Title, tg.Expr, series)
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(map[string]any)
		expr, _ := q["query"].(string)
		m := labelValues.FindStringSubmatch(expr)
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(metric, label)", v.Name, expr)
			continue
		}
		if _, ok := series[m[1]]; !ok {
			t.Errorf("variable %s: no series %s", v.Name, m[1])
		}
	}
	t.Logf("%d queries over %d exported series checked", queries, len(series))
}

func checkQuery(t *testing.T, title, expr string, series map[string]map[string]bool) {
	t.Helper()
	sels := selectorRE.FindAllStringSubmatch(expr, -1)
	if len(sels) == 0 {
		t.Errorf("%s: %q selects no series (write selectors as name{...})", title, expr)
	}
	var used []map[string]bool
	for _, s := range sels {
		labels, ok := series[s[1]]
		if !ok {
			t.Errorf("%s: %s is not exported (query %q)", title, s[1], expr)
			continue
		}
		used = append(used, labels)
		for _, m := range matcherRE.FindAllStringSubmatch(stringRE.ReplaceAllString(s[2], `""`), -1) {
			if !labels[m[1]] && !scrapeLabels[m[1]] {
				t.Errorf("%s: %s has no label %s", title, s[1], m[1])
			}
		}
	}
	for _, g := range groupingRE.FindAllStringSubmatch(expr, -1) {
		for l := range strings.SplitSeq(g[1], ",") {
			l = strings.TrimSpace(l)
			if l == "" || scrapeLabels[l] {
				continue
			}
			if !slices.ContainsFunc(used, func(labels map[string]bool) bool { return labels[l] }) {
				t.Errorf("%s: no series of %q has the label %s it groups by", title, expr, l)
			}
		}
	}
	// Whatever is left once selectors, strings, ranges and groupings are
	// gone must be PromQL the test knows: a bare metric name would escape
	// the checks above.
	rest := selectorRE.ReplaceAllString(expr, "")
	rest = groupingRE.ReplaceAllString(rest, "")
	rest = rangeRE.ReplaceAllString(stringRE.ReplaceAllString(rest, ""), "")
	for _, w := range identRE.FindAllString(rest, -1) {
		if !slices.Contains(promqlWords, w) {
			t.Errorf("%s: unexpected %q in %q", title, w, expr)
		}
	}
}

// TestCollectorConfig: every pipeline of the example collector uses
// components it defines, and the Prometheus receiver scrapes the admin
// port.
func TestCollectorConfig(t *testing.T) {
	data, err := os.ReadFile("otel-collector.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Receivers  map[string]any `yaml:"receivers"`
		Processors map[string]any `yaml:"processors"`
		Exporters  map[string]any `yaml:"exporters"`
		Extensions map[string]any `yaml:"extensions"`
		Service    struct {
			Extensions []string `yaml:"extensions"`
			Pipelines  map[string]struct {
				Receivers  []string `yaml:"receivers"`
				Processors []string `yaml:"processors"`
				Exporters  []string `yaml:"exporters"`
			} `yaml:"pipelines"`
		} `yaml:"service"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"traces", "metrics"} {
		if _, ok := c.Service.Pipelines[want]; !ok {
			t.Errorf("no %s pipeline", want)
		}
	}
	for name, p := range c.Service.Pipelines {
		for _, ref := range []struct {
			kind    string
			names   []string
			defined map[string]any
		}{{"receiver", p.Receivers, c.Receivers}, {"processor", p.Processors, c.Processors}, {"exporter", p.Exporters, c.Exporters}} {
			if len(ref.names) == 0 && ref.kind != "processor" {
				t.Errorf("pipeline %s has no %s", name, ref.kind)
			}
			for _, n := range ref.names {
				if _, ok := ref.defined[n]; !ok {
					t.Errorf("pipeline %s uses %s %s, which is not defined", name, ref.kind, n)
				}
			}
		}
	}
	for _, e := range c.Service.Extensions {
		if _, ok := c.Extensions[e]; !ok {
			t.Errorf("extension %s is not defined", e)
		}
	}
	if !strings.Contains(string(data), ":9192") {
		t.Error("the Prometheus receiver does not scrape the admin port (9192)")
	}
	if !strings.Contains(string(data), "0.0.0.0:4317") || !strings.Contains(string(data), "0.0.0.0:4318") {
		t.Error("the OTLP receiver does not listen on 4317 (gRPC) and 4318 (HTTP)")
	}
}
