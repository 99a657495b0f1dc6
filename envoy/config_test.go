package envoy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	ratelimitfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/proto"

	"github.com/portcullis-mcp/portcullis/extauthz"
	"github.com/portcullis-mcp/portcullis/internal/config"
	"github.com/portcullis-mcp/portcullis/policy"
	"github.com/portcullis-mcp/portcullis/ratelimit"
	"github.com/portcullis-mcp/portcullis/rego"
)

const bootstrapFile = "envoy.yaml"

func loadShipped(t *testing.T) *bootstrapv3.Bootstrap {
	t.Helper()
	b, err := LoadBootstrap(bootstrapFile)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// hcm returns the HTTP connection manager of the bootstrap's only listener.
func hcm(t *testing.T, b *bootstrapv3.Bootstrap) *hcmv3.HttpConnectionManager {
	t.Helper()
	ls := b.GetStaticResources().GetListeners()
	if len(ls) != 1 || len(ls[0].GetFilterChains()) != 1 || len(ls[0].GetFilterChains()[0].GetFilters()) != 1 {
		t.Fatalf("want one listener with one filter chain and one filter, got %d listeners", len(ls))
	}
	m := &hcmv3.HttpConnectionManager{}
	if err := ls[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(m); err != nil {
		t.Fatal(err)
	}
	return m
}

func httpFilter(t *testing.T, h *hcmv3.HttpConnectionManager, name string, m proto.Message) {
	t.Helper()
	for _, f := range h.GetHttpFilters() {
		if f.GetName() == name {
			if err := f.GetTypedConfig().UnmarshalTo(m); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			return
		}
	}
	t.Fatalf("no http filter %s", name)
}

// clusterPorts maps each static cluster to the port of its one endpoint.
func clusterPorts(t *testing.T, cs []*clusterv3.Cluster) map[string]int {
	t.Helper()
	ports := map[string]int{}
	for _, c := range cs {
		eps := c.GetLoadAssignment().GetEndpoints()
		if len(eps) != 1 || len(eps[0].GetLbEndpoints()) != 1 {
			t.Fatalf("cluster %s: want one endpoint", c.GetName())
		}
		ports[c.GetName()] = int(eps[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetPortValue())
	}
	return ports
}

// TestBootstrap decodes envoy.yaml strictly and checks the settings the
// README and Portcullis depend on.
func TestBootstrap(t *testing.T) {
	b := loadShipped(t)
	h := hcm(t, b)

	var names []string
	for _, f := range h.GetHttpFilters() {
		names = append(names, f.GetName())
	}
	want := []string{"envoy.filters.http.mcp", "envoy.filters.http.ext_authz", "envoy.filters.http.ratelimit", "envoy.filters.http.router"}
	if !slices.Equal(names, want) {
		t.Errorf("http filters %v, want %v", names, want)
	}
	if !h.GetNormalizePath().GetValue() || !h.GetMergeSlashes() || h.GetPathWithEscapedSlashesAction() != hcmv3.HttpConnectionManager_REJECT_REQUEST {
		t.Error("path normalization: want normalize_path, merge_slashes, REJECT_REQUEST")
	}

	az := &extauthzv3.ExtAuthz{}
	httpFilter(t, h, "envoy.filters.http.ext_authz", az)
	if got := az.GetGrpcService().GetEnvoyGrpc().GetClusterName(); got != "portcullis" {
		t.Errorf("ext_authz cluster %q", got)
	}
	if az.GetFailureModeAllow() {
		t.Error("ext_authz fails open")
	}
	if got := az.GetGrpcService().GetTimeout().AsDuration(); got != 250*time.Millisecond {
		t.Errorf("ext_authz timeout %v", got)
	}
	if got := int(az.GetWithRequestBody().GetMaxRequestBytes()); got != config.Default().ExtAuthz.MaxBodyBytes {
		t.Errorf("with_request_body.max_request_bytes %d, want extauthz.max_body_bytes %d", got, config.Default().ExtAuthz.MaxBodyBytes)
	}
	if !az.GetWithRequestBody().GetAllowPartialMessage() || !az.GetWithRequestBody().GetPackAsBytes() {
		t.Error("with_request_body: want allow_partial_message and pack_as_bytes")
	}
	if !slices.Equal(az.GetMetadataContextNamespaces(), []string{"envoy.filters.http.mcp"}) {
		t.Errorf("metadata_context_namespaces %v", az.GetMetadataContextNamespaces())
	}

	rl := &ratelimitfilterv3.RateLimit{}
	httpFilter(t, h, "envoy.filters.http.ratelimit", rl)
	if got := rl.GetRateLimitService().GetGrpcService().GetEnvoyGrpc().GetClusterName(); got != "portcullis" {
		t.Errorf("ratelimit cluster %q", got)
	}
	if rl.GetDomain() != "mcp" || rl.GetFailureModeDeny() || rl.GetEnableXRatelimitHeaders() != ratelimitfilterv3.RateLimit_DRAFT_VERSION_03 {
		t.Errorf("ratelimit filter: domain %q, failure_mode_deny %v, headers %v", rl.GetDomain(), rl.GetFailureModeDeny(), rl.GetEnableXRatelimitHeaders())
	}

	ports := clusterPorts(t, b.GetStaticResources().GetClusters())
	if ports["portcullis"] != portOf(t, config.Default().GRPC.Listen) || ports["mcp_server"] != portOf(t, config.Default().MCP.Listen) {
		t.Errorf("cluster ports %v, want portcullis = grpc.listen, mcp_server = mcp.listen", ports)
	}
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() != "portcullis" {
			continue
		}
		if _, ok := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]; !ok {
			t.Error("portcullis cluster: no HTTP/2 protocol options")
		}
		hc := c.GetHealthChecks()
		if len(hc) != 1 || hc[0].GetGrpcHealthCheck().GetServiceName() != "envoy.service.auth.v3.Authorization" {
			t.Error("portcullis cluster: want a gRPC health check of envoy.service.auth.v3.Authorization")
		}
	}

	routes := h.GetRouteConfig().GetVirtualHosts()[0].GetRoutes()
	var mcp *routev3.Route
	for _, r := range routes {
		if r.GetMatch().GetPath() == "/mcp" {
			mcp = r
		}
		if c := r.GetRoute().GetCluster(); c != "mcp_server" {
			t.Errorf("route %s goes to %q", r.GetName(), c)
		}
	}
	if mcp == nil {
		t.Fatal("no /mcp route")
	}
	if d := mcp.GetRoute().GetTimeout(); d == nil || d.AsDuration() != 0 {
		t.Errorf("/mcp route timeout %v: want 0s (no deadline on SSE)", d)
	}
	checkRateLimits(t, mcp.GetRoute().GetRateLimits())
}

// checkRateLimits checks the descriptor actions against the metadata keys
// ext_authz emits and the descriptor keys of the shipped limits.
func checkRateLimits(t *testing.T, rls []*routev3.RateLimit) {
	t.Helper()
	emitted := []string{extauthz.MetaSubject, extauthz.MetaClientID, extauthz.MetaMCPName, extauthz.MetaCost}
	limits, err := os.ReadFile("../examples/ratelimit.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, rl := range rls {
		for _, a := range rl.GetActions() {
			md := a.GetMetadata()
			if md == nil {
				t.Errorf("action %v: want metadata", a)
				continue
			}
			if md.GetMetadataKey().GetKey() != "envoy.filters.http.ext_authz" || md.GetSource() != routev3.RateLimit_Action_MetaData_DYNAMIC {
				t.Errorf("action %s reads %s", md.GetDescriptorKey(), md.GetMetadataKey().GetKey())
			}
			if p := md.GetMetadataKey().GetPath(); len(p) != 1 || !slices.Contains(emitted, p[0].GetKey()) {
				t.Errorf("action %s reads a key ext_authz does not emit: %v", md.GetDescriptorKey(), p)
			}
			keys = append(keys, md.GetDescriptorKey())
		}
		if f := rl.GetHitsAddend().GetFormat(); f != "" && f != "%DYNAMIC_METADATA(envoy.filters.http.ext_authz:"+extauthz.MetaCost+")%" {
			t.Errorf("hits_addend %q", f)
		}
	}
	for _, k := range []string{"subject", "tool", "client_id", "weighted_subject"} {
		if !slices.Contains(keys, k) {
			t.Errorf("no descriptor key %s", k)
		}
		if !bytes.Contains(limits, []byte("key: "+k)) {
			t.Errorf("examples/ratelimit.yaml has no limit for %s", k)
		}
	}
	if !slices.ContainsFunc(rls, func(r *routev3.RateLimit) bool { return r.GetHitsAddend().GetFormat() != "" }) {
		t.Error("no rate limit weighted by cost")
	}
}

func portOf(t *testing.T, listen string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(listen)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestBootstrapBroken checks that validation can fail: each case breaks a
// copy of envoy.yaml in one place.
func TestBootstrapBroken(t *testing.T) {
	shipped, err := os.ReadFile(bootstrapFile)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, old, new, want string
	}{
		{"unknown field", "merge_slashes: true", "merge_slashe: true", "unknown field"},
		{"unknown field in a typed_config", "allow_partial_message: true", "allow_partial_messages: true", "unknown field"},
		{"bad enum", "enable_x_ratelimit_headers: DRAFT_VERSION_03", "enable_x_ratelimit_headers: DRAFT_VERSION_04", "invalid value"},
		{"wrong @type", "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz\n", "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuth\n", "unable to resolve"},
		{"missing required field in a typed_config", "domain: mcp", "domain: \"\"", "Domain"},
		{"missing required cluster name", "envoy_grpc: { cluster_name: portcullis }\n                        timeout", "envoy_grpc: { cluster_name: \"\" }\n                        timeout", "ClusterName"},
		{"invalid value", "port_value: 9191", "port_value: 70000", "PortValue"},
		{"health check without interval", "interval: 5s\n          unhealthy_threshold: 2\n          healthy_threshold: 1\n          tcp_health_check", "unhealthy_threshold: 2\n          healthy_threshold: 1\n          tcp_health_check", "Interval"},
		{"bad YAML", "static_resources:", "static_resources: [", "parse YAML"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if bytes.Count(shipped, []byte(tc.old)) != 1 {
				t.Fatalf("%q does not occur exactly once in %s", tc.old, bootstrapFile)
			}
			_, err := ParseBootstrap(bytes.Replace(shipped, []byte(tc.old), []byte(tc.new), 1))
			if err == nil {
				t.Fatal("the broken bootstrap passed validation")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

// documents decodes every YAML document in a file generically.
func documents(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var docs []map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if d == nil {
			continue
		}
		if d["apiVersion"] == nil || d["kind"] == nil || get(d, "metadata", "name") == nil {
			t.Fatalf("%s: a document without apiVersion, kind or metadata.name", path)
		}
		docs = append(docs, d)
	}
	return docs
}

// find returns the document of kind and name.
func find(t *testing.T, docs []map[string]any, kind, name string) map[string]any {
	t.Helper()
	for _, d := range docs {
		if d["kind"] == kind && get(d, "metadata", "name") == name {
			return d
		}
	}
	t.Fatalf("no %s %s", kind, name)
	return nil
}

// get walks maps by key and lists by int index; nil when a step is missing.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any) string { s, _ := v.(string); return s }

// servicePorts maps a Service's port names to their numbers.
func servicePorts(svc map[string]any) map[string]int {
	ports := map[string]int{}
	for _, p := range get(svc, "spec", "ports").([]any) {
		n, _ := get(p, "port").(int)
		ports[str(get(p, "name"))] = n
	}
	return ports
}

// container returns the only container of a Deployment.
func container(t *testing.T, d map[string]any) map[string]any {
	t.Helper()
	cs, _ := get(d, "spec", "template", "spec", "containers").([]any)
	if len(cs) != 1 {
		t.Fatalf("deployment %s: want one container", get(d, "metadata", "name"))
	}
	return cs[0].(map[string]any)
}

func TestKubernetes(t *testing.T) {
	b := loadShipped(t)
	envoyPorts := clusterPorts(t, b.GetStaticResources().GetClusters())
	docs := documents(t, "kubernetes/portcullis.yaml")
	docs = append(docs, documents(t, "kubernetes/mcp-server.yaml")...)
	docs = append(docs, documents(t, "kubernetes/redis.yaml")...)
	for _, d := range docs {
		if d["kind"] != "Namespace" && get(d, "metadata", "namespace") != "portcullis" {
			t.Errorf("%s %s is not in namespace portcullis", d["kind"], get(d, "metadata", "name"))
		}
	}

	// The configuration in the ConfigMap loads as it would in the pod, with
	// its files next to it.
	cm := find(t, docs, "ConfigMap", "portcullis")
	data, _ := get(cm, "data").(map[string]any)
	dir := t.TempDir()
	for name, v := range data {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(str(v)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.Parse([]byte(str(data["portcullis.yaml"])), dir, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	rl, err := ratelimit.ParseConfig(map[string][]byte{"ratelimit.yaml": []byte(str(data["ratelimit.yaml"]))})
	if err != nil {
		t.Fatal(err)
	}
	if rl == nil {
		t.Fatal("no rate limits")
	}
	if !strings.Contains(str(data["ratelimit.yaml"]), "domain: mcp\n") {
		t.Error("ratelimit.yaml: want domain mcp, the domain of envoy.yaml's ratelimit filter")
	}
	for _, name := range []string{"policy.rego", "data.rego"} {
		want, err := rego.Default.ReadFile("default/" + name)
		if err != nil {
			t.Fatal(err)
		}
		if str(data[name]) != string(want) {
			t.Errorf("ConfigMap %s differs from rego/default/%s", name, name)
		}
	}
	paths := make([]string, len(cfg.Policy.Paths))
	for i, p := range cfg.Policy.Paths {
		paths[i] = cfg.Path(p)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := policy.New(ctx, &policy.Options{Paths: paths, Decision: cfg.Policy.Decision}); err != nil {
		t.Fatalf("the ConfigMap's policy: %v", err)
	}

	grpcPort, adminPort, mcpPort := portOf(t, cfg.GRPC.Listen), portOf(t, cfg.Admin.Listen), portOf(t, cfg.MCP.Listen)
	if grpcPort != envoyPorts["portcullis"] || mcpPort != envoyPorts["mcp_server"] {
		t.Errorf("ConfigMap listens on gRPC %d and MCP %d; envoy.yaml's clusters %v", grpcPort, mcpPort, envoyPorts)
	}
	if grpcPort != portOf(t, config.Default().GRPC.Listen) || adminPort != portOf(t, config.Default().Admin.Listen) {
		t.Error("ConfigMap: ports differ from the defaults of portcullis serve")
	}
	if !cfg.MCP.BehindProxy {
		t.Error("mcp.behind_proxy: want true")
	}
	if cfg.ExtAuthz.MaxBodyBytes != 1048576 {
		t.Errorf("extauthz.max_body_bytes %d, want envoy.yaml's max_request_bytes", cfg.ExtAuthz.MaxBodyBytes)
	}
	if cfg.RateLimit.Backend != "redis" || !strings.Contains(cfg.RateLimit.Redis.URL, "redis.portcullis.svc.cluster.local:"+strconv.Itoa(servicePorts(find(t, docs, "Service", "redis"))["tcp-redis"])) {
		t.Errorf("ratelimit.redis.url %q does not name the redis Service", cfg.RateLimit.Redis.URL)
	}
	if want := "http://portcullis.portcullis.svc.cluster.local:" + strconv.Itoa(adminPort) + "/identity/jwks.json"; cfg.MCP.IdentityJWKSURL != want {
		t.Errorf("mcp.identity_jwks_url %q, want %q", cfg.MCP.IdentityJWKSURL, want)
	}

	// Portcullis: Service ports, probes, hardening.
	if got := servicePorts(find(t, docs, "Service", "portcullis")); got["grpc"] != grpcPort || got["http-admin"] != adminPort {
		t.Errorf("Service portcullis ports %v", got)
	}
	pc := container(t, find(t, docs, "Deployment", "portcullis"))
	if !slices.Equal(toStrings(pc["args"]), []string{"serve", "--config", "/etc/portcullis/portcullis.yaml"}) {
		t.Errorf("portcullis args %v", pc["args"])
	}
	probes := map[string]string{"startupProbe": "/healthz", "readinessProbe": "/readyz"}
	for probe, path := range probes {
		if get(pc, probe, "httpGet", "path") != path || get(pc, probe, "httpGet", "port") != adminPort {
			t.Errorf("%s: want GET %s on %d", probe, path, adminPort)
		}
	}
	if get(pc, "livenessProbe", "grpc", "port") != grpcPort {
		t.Errorf("livenessProbe: want gRPC health on %d", grpcPort)
	}
	if get(pc, "resources", "requests") == nil || get(pc, "resources", "limits") == nil {
		t.Error("portcullis: no resource requests and limits")
	}

	// The MCP server: same image and ConfigMap, port 8080.
	mc := container(t, find(t, docs, "Deployment", "mcp-server"))
	if mc["image"] != pc["image"] {
		t.Errorf("images differ: %v, %v", mc["image"], pc["image"])
	}
	if !slices.Equal(toStrings(mc["args"]), []string{"mcp", "--config", "/etc/portcullis/portcullis.yaml"}) {
		t.Errorf("mcp-server args %v", mc["args"])
	}
	if got := servicePorts(find(t, docs, "Service", "mcp-server")); got["http"] != mcpPort {
		t.Errorf("Service mcp-server ports %v", got)
	}
	for _, c := range []map[string]any{pc, mc, container(t, find(t, docs, "Deployment", "redis"))} {
		if get(c, "securityContext", "readOnlyRootFilesystem") != true || get(c, "securityContext", "allowPrivilegeEscalation") != false {
			t.Errorf("container %s: want a read-only root and no privilege escalation", c["name"])
		}
	}
	for _, name := range []string{"portcullis", "mcp-server", "redis"} {
		if get(find(t, docs, "Deployment", name), "spec", "template", "spec", "securityContext", "runAsNonRoot") != true {
			t.Errorf("deployment %s: want runAsNonRoot", name)
		}
	}
	if got := toStrings(get(container(t, find(t, docs, "Deployment", "redis")), "args")); !slices.Equal(got, []string{"--save", "", "--appendonly", "no"}) {
		t.Errorf("redis args %q", got)
	}
}

func toStrings(v any) []string {
	l, _ := v.([]any)
	out := make([]string, len(l))
	for i, e := range l {
		out[i] = str(e)
	}
	return out
}

func TestIstio(t *testing.T) {
	b := loadShipped(t)
	h := hcm(t, b)
	k8s := documents(t, "kubernetes/portcullis.yaml")
	svc := find(t, k8s, "Service", "portcullis")
	host := str(get(svc, "metadata", "name")) + "." + str(get(svc, "metadata", "namespace")) + ".svc.cluster.local"
	grpcPort := servicePorts(svc)["grpc"]
	mcpDeploy := find(t, documents(t, "kubernetes/mcp-server.yaml"), "Deployment", "mcp-server")
	mcpLabels := get(mcpDeploy, "spec", "template", "metadata", "labels").(map[string]any)

	// The extension provider names Portcullis's Service and gRPC port.
	op := find(t, documents(t, "istio/extension-providers.yaml"), "IstioOperator", "portcullis")
	prov := get(op, "spec", "meshConfig", "extensionProviders", 0)
	az := &extauthzv3.ExtAuthz{}
	httpFilter(t, h, "envoy.filters.http.ext_authz", az)
	switch {
	case get(prov, "name") != "portcullis":
		t.Errorf("provider name %v", get(prov, "name"))
	case get(prov, "envoyExtAuthzGrpc", "service") != host || get(prov, "envoyExtAuthzGrpc", "port") != grpcPort:
		t.Errorf("provider service %v:%v, want %s:%d", get(prov, "envoyExtAuthzGrpc", "service"), get(prov, "envoyExtAuthzGrpc", "port"), host, grpcPort)
	case get(prov, "envoyExtAuthzGrpc", "includeRequestBodyInCheck", "maxRequestBytes") != int(az.GetWithRequestBody().GetMaxRequestBytes()):
		t.Error("provider maxRequestBytes differs from envoy.yaml")
	case get(prov, "envoyExtAuthzGrpc", "failOpen") != false:
		t.Error("provider fails open")
	}

	// The AuthorizationPolicy sends the MCP server's requests to it.
	ap := find(t, documents(t, "istio/authorization-policy.yaml"), "AuthorizationPolicy", "mcp-server-portcullis")
	if get(ap, "spec", "action") != "CUSTOM" || get(ap, "spec", "provider", "name") != get(prov, "name") {
		t.Error("AuthorizationPolicy: want action CUSTOM with provider portcullis")
	}
	checkSelects(t, "AuthorizationPolicy", get(ap, "spec", "selector", "matchLabels"), mcpLabels)
	// Its one rule exempts exactly the routes envoy.yaml exempts from
	// ext_authz (the public metadata document), as Istio path prefixes.
	var public []any
	for _, vh := range h.GetRouteConfig().GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			per := &extauthzv3.ExtAuthzPerRoute{}
			if a, ok := r.GetTypedPerFilterConfig()["envoy.filters.http.ext_authz"]; ok && a.UnmarshalTo(per) == nil && per.GetDisabled() {
				public = append(public, r.GetMatch().GetPrefix()+"*")
			}
		}
	}
	rules, _ := get(ap, "spec", "rules").([]any)
	if len(public) == 0 || len(rules) != 1 || !slices.Equal(public, get(rules[0], "to", 0, "operation", "notPaths").([]any)) {
		t.Errorf("AuthorizationPolicy rules %v, want one rule with notPaths %v", rules, public)
	}

	// The EnvoyFilter's patches are Envoy configuration: decode and
	// validate them like the bootstrap, and compare with it.
	ef := find(t, documents(t, "istio/ratelimit-envoyfilter.yaml"), "EnvoyFilter", "mcp-server-ratelimit")
	checkSelects(t, "EnvoyFilter", get(ef, "spec", "workloadSelector", "labels"), mcpLabels)
	patches, _ := get(ef, "spec", "configPatches").([]any)
	var filter *hcmv3.HttpFilter
	var cluster *clusterv3.Cluster
	var vh *routev3.VirtualHost
	for i, p := range patches {
		value := get(p, "patch", "value")
		switch get(p, "applyTo") {
		case "HTTP_FILTER":
			filter = &hcmv3.HttpFilter{}
			decodePatch(t, i, value, filter)
		case "CLUSTER":
			cluster = &clusterv3.Cluster{}
			decodePatch(t, i, value, cluster)
		case "VIRTUAL_HOST":
			// A MERGE: only rate_limits, so the virtual host is not whole;
			// validate its rate limits one by one.
			vh = &routev3.VirtualHost{}
			if err := DecodeValue(value, vh); err != nil {
				t.Fatalf("patch %d: %v", i, err)
			}
			for _, rl := range vh.GetRateLimits() {
				if err := Validate(rl); err != nil {
					t.Errorf("patch %d: %v", i, err)
				}
			}
		default:
			t.Errorf("patch %d: unexpected applyTo %v", i, get(p, "applyTo"))
		}
	}
	if filter == nil || cluster == nil || vh == nil {
		t.Fatal("want an HTTP_FILTER, a CLUSTER and a VIRTUAL_HOST patch")
	}

	rl := &ratelimitfilterv3.RateLimit{}
	if err := filter.GetTypedConfig().UnmarshalTo(rl); err != nil {
		t.Fatal(err)
	}
	want := &ratelimitfilterv3.RateLimit{}
	httpFilter(t, h, "envoy.filters.http.ratelimit", want)
	if !proto.Equal(rl, want) {
		t.Errorf("the EnvoyFilter's ratelimit filter differs from envoy.yaml's:\n%v\n%v", rl, want)
	}
	if cluster.GetName() != rl.GetRateLimitService().GetGrpcService().GetEnvoyGrpc().GetClusterName() {
		t.Errorf("cluster %q is not the filter's", cluster.GetName())
	}
	sa := cluster.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	if sa.GetAddress() != host || int(sa.GetPortValue()) != grpcPort {
		t.Errorf("cluster address %s:%d, want %s:%d", sa.GetAddress(), sa.GetPortValue(), host, grpcPort)
	}
	var mcpRoute *routev3.Route
	for _, r := range h.GetRouteConfig().GetVirtualHosts()[0].GetRoutes() {
		if r.GetMatch().GetPath() == "/mcp" {
			mcpRoute = r
		}
	}
	if len(vh.GetRateLimits()) != len(mcpRoute.GetRoute().GetRateLimits()) {
		t.Fatal("the EnvoyFilter's rate_limits differ from envoy.yaml's")
	}
	for i, r := range vh.GetRateLimits() {
		if !proto.Equal(r, mcpRoute.GetRoute().GetRateLimits()[i]) {
			t.Errorf("rate_limits[%d] differs from envoy.yaml's", i)
		}
	}
	if get(patches[2], "match", "routeConfiguration", "portNumber") != envoyPortOf(t, b, "mcp_server") {
		t.Error("the VIRTUAL_HOST patch does not match the MCP port")
	}
}

func envoyPortOf(t *testing.T, b *bootstrapv3.Bootstrap, cluster string) int {
	return clusterPorts(t, b.GetStaticResources().GetClusters())[cluster]
}

func decodePatch(t *testing.T, i int, value any, m proto.Message) {
	t.Helper()
	if err := DecodeValue(value, m); err != nil {
		t.Fatalf("patch %d: %v", i, err)
	}
	if err := Validate(m); err != nil {
		t.Fatalf("patch %d: %v", i, err)
	}
}

// checkSelects checks that selector labels all appear in labels.
func checkSelects(t *testing.T, what string, selector any, labels map[string]any) {
	t.Helper()
	sel, _ := selector.(map[string]any)
	if len(sel) == 0 {
		t.Errorf("%s selects every workload", what)
	}
	for k, v := range sel {
		if labels[k] != v {
			t.Errorf("%s selects %s=%v, which the MCP server's pods do not have", what, k, v)
		}
	}
}

// TestEnvoyFilterBroken checks that a typo in a patch value fails.
func TestEnvoyFilterBroken(t *testing.T) {
	docs := documents(t, "istio/ratelimit-envoyfilter.yaml")
	value := get(docs[0], "spec", "configPatches", 0, "patch", "value", "typed_config").(map[string]any)
	value["domian"] = "mcp"
	f := &hcmv3.HttpFilter{}
	if err := DecodeValue(get(docs[0], "spec", "configPatches", 0, "patch", "value"), f); err == nil || !strings.Contains(err.Error(), "unknown field") {
		t.Errorf("an unknown field in the patch: err = %v", err)
	}
	delete(value, "domian")
	value["domain"] = ""
	f = &hcmv3.HttpFilter{}
	if err := DecodeValue(get(docs[0], "spec", "configPatches", 0, "patch", "value"), f); err != nil {
		t.Fatal(err)
	}
	if err := Validate(f); err == nil {
		t.Error("an empty domain passed validation")
	}
}

// TestCompose checks compose.yaml: Envoy runs the shipped envoy.yaml, the
// containers share one network namespace so that its 127.0.0.1 clusters
// reach Portcullis and the MCP server, and compose/portcullis.yaml loads
// and agrees with the bootstrap on every address.
func TestCompose(t *testing.T) {
	b := loadShipped(t)
	ports := clusterPorts(t, b.GetStaticResources().GetClusters())
	listener := int(b.GetStaticResources().GetListeners()[0].GetAddress().GetSocketAddress().GetPortValue())
	raw, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	services := get(doc, "services").(map[string]any)
	envoySvc := services["envoy"]
	if !slices.Contains(get(envoySvc, "volumes").([]any), any("./"+bootstrapFile+":/etc/envoy/envoy.yaml:ro")) ||
		!slices.Contains(get(envoySvc, "command").([]any), any("/etc/envoy/envoy.yaml")) {
		t.Error("the envoy service does not run the shipped envoy.yaml")
	}
	if img := str(get(envoySvc, "image")); !strings.HasPrefix(img, "envoyproxy/envoy:v1.") {
		t.Errorf("envoy image %q: want the official image at a pinned minor version", img)
	}
	if p := get(envoySvc, "ports", 0); p != strconv.Itoa(listener)+":"+strconv.Itoa(listener) {
		t.Errorf("envoy publishes %v, want the listener port %d", p, listener)
	}
	for _, name := range []string{"portcullis", "mcp-server", "redis"} {
		if get(services[name], "network_mode") != "service:envoy" {
			t.Errorf("service %s: want network_mode service:envoy (envoy.yaml reaches it on 127.0.0.1)", name)
		}
	}

	// The Portcullis configuration, with the mounts of compose.yaml
	// recreated as symbolic links.
	dir := t.TempDir()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"examples", "rego"} {
		if err := os.Symlink(filepath.Join(root, l), filepath.Join(dir, l)); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile("compose/portcullis.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "portcullis.yaml"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(filepath.Join(dir, "portcullis.yaml"), func(string) string { return "" })
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		t.Fatalf("compose/portcullis.yaml: %v", err)
	}
	port := func(hostport string) int {
		_, p, err := net.SplitHostPort(hostport)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(p)
		return n
	}
	if port(cfg.GRPC.Listen) != ports["portcullis"] || port(cfg.MCP.Listen) != ports["mcp_server"] {
		t.Errorf("grpc.listen %s, mcp.listen %s; envoy.yaml's clusters want ports %d and %d",
			cfg.GRPC.Listen, cfg.MCP.Listen, ports["portcullis"], ports["mcp_server"])
	}
	if !strings.Contains(cfg.MCP.IdentityJWKSURL, cfg.Admin.Listen) {
		t.Errorf("mcp.identity_jwks_url %s is not on admin.listen %s", cfg.MCP.IdentityJWKSURL, cfg.Admin.Listen)
	}
	redisCmd := get(services["redis"], "command").([]any)
	if i := slices.Index(redisCmd, any("--port")); i < 0 || !strings.Contains(cfg.RateLimit.Redis.URL, ":"+str(redisCmd[i+1])+"/") ||
		cfg.RateLimit.Backend != "redis" {
		t.Errorf("ratelimit %s at %s; redis runs %v", cfg.RateLimit.Backend, cfg.RateLimit.Redis.URL, redisCmd)
	}
	if !strings.Contains(cfg.Authn.Resource, ":"+strconv.Itoa(listener)+"/") {
		t.Errorf("authn.resource %s is not on the published port %d", cfg.Authn.Resource, listener)
	}
}
