package envoy

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	mcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/mcp/v3"
	ratelimitfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// implemented lists, per message type, the fields the front door reads and
// applies. A field set in the bootstrap that is not listed here makes New
// fail: the front door never silently ignores configuration that would
// change what Envoy does with a request.
//
// A few fields are accepted without effect because they cannot change an
// answer here, each for the reason given: the admin interface (the front
// door has none), stat prefixes (no statistics), and a cluster's
// connection and balancing settings (one endpoint on loopback: no
// balancing, no health-based ejection, no circuit breaking).
var implemented = map[protoreflect.FullName][]protoreflect.Name{
	"envoy.config.bootstrap.v3.Bootstrap":                 {"admin", "static_resources"},
	"envoy.config.bootstrap.v3.Bootstrap.StaticResources": {"listeners", "clusters"},
	"envoy.config.listener.v3.Listener":                   {"name", "address", "filter_chains"},
	"envoy.config.listener.v3.FilterChain":                {"filters"},
	"envoy.config.listener.v3.Filter":                     {"name", "typed_config"},
	"envoy.config.core.v3.Address":                        {"socket_address"},
	"envoy.config.core.v3.SocketAddress":                  {"address", "port_value"},

	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager": {
		"stat_prefix", "codec_type", "use_remote_address", "normalize_path", "merge_slashes",
		"path_with_escaped_slashes_action", "common_http_protocol_options", "request_headers_timeout",
		"stream_idle_timeout", "route_config", "http_filters", "generate_request_id",
	},
	"envoy.config.core.v3.HttpProtocolOptions":                               {"headers_with_underscores_action", "idle_timeout"},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter": {"name", "typed_config"},

	"envoy.config.route.v3.RouteConfiguration":   {"name", "virtual_hosts"},
	"envoy.config.route.v3.VirtualHost":          {"name", "domains", "routes"},
	"envoy.config.route.v3.Route":                {"name", "match", "route", "typed_per_filter_config"},
	"envoy.config.route.v3.RouteMatch":           {"path", "prefix"},
	"envoy.config.route.v3.RouteAction":          {"cluster", "timeout", "idle_timeout", "rate_limits"},
	"envoy.config.route.v3.RateLimit":            {"stage", "actions", "hits_addend"},
	"envoy.config.route.v3.RateLimit.HitsAddend": {"number", "format"},
	"envoy.config.route.v3.RateLimit.Action": {
		"request_headers", "remote_address", "generic_key", "header_value_match", "metadata",
	},
	"envoy.config.route.v3.RateLimit.Action.RequestHeaders":   {"header_name", "descriptor_key", "skip_if_absent"},
	"envoy.config.route.v3.RateLimit.Action.RemoteAddress":    {},
	"envoy.config.route.v3.RateLimit.Action.GenericKey":       {"descriptor_value", "descriptor_key"},
	"envoy.config.route.v3.RateLimit.Action.HeaderValueMatch": {"descriptor_key", "descriptor_value", "expect_match", "headers"},
	"envoy.config.route.v3.RateLimit.Action.MetaData":         {"descriptor_key", "metadata_key", "default_value", "source", "skip_if_absent"},
	"envoy.type.metadata.v3.MetadataKey":                      {"key", "path"},
	"envoy.type.metadata.v3.MetadataKey.PathSegment":          {"key"},
	"envoy.config.route.v3.HeaderMatcher":                     {"name", "string_match", "present_match", "invert_match"},
	"envoy.type.matcher.v3.StringMatcher":                     {"exact", "prefix", "suffix", "contains", "ignore_case"},

	"envoy.extensions.filters.http.mcp.v3.Mcp": {"traffic_mode", "max_request_body_size"},
	"envoy.extensions.filters.http.ext_authz.v3.ExtAuthz": {
		"transport_api_version", "grpc_service", "failure_mode_allow", "failure_mode_allow_header_add",
		"status_on_error", "with_request_body", "metadata_context_namespaces", "include_peer_certificate",
	},
	"envoy.extensions.filters.http.ext_authz.v3.BufferSettings":   {"max_request_bytes", "allow_partial_message", "pack_as_bytes"},
	"envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute": {"disabled", "check_settings"},
	"envoy.extensions.filters.http.ext_authz.v3.CheckSettings":    {"context_extensions"},
	"envoy.type.v3.HttpStatus":                                    {"code"},
	"envoy.config.core.v3.GrpcService":                            {"envoy_grpc", "timeout"},
	"envoy.config.core.v3.GrpcService.EnvoyGrpc":                  {"cluster_name"},
	"envoy.extensions.filters.http.ratelimit.v3.RateLimit": {
		"domain", "stage", "timeout", "failure_mode_deny", "enable_x_ratelimit_headers", "rate_limit_service",
		"rate_limited_status", "disable_x_envoy_ratelimited_header", "status_on_error",
	},
	"envoy.config.ratelimit.v3.RateLimitServiceConfig": {"grpc_service", "transport_api_version"},
	"envoy.extensions.filters.http.router.v3.Router":   {},

	"envoy.config.cluster.v3.Cluster": {
		"name", "type", "connect_timeout", "lb_policy", "load_assignment", "typed_extension_protocol_options",
		"circuit_breakers", "health_checks",
	},
	"envoy.config.endpoint.v3.ClusterLoadAssignment":                            {"cluster_name", "endpoints"},
	"envoy.config.endpoint.v3.LocalityLbEndpoints":                              {"lb_endpoints"},
	"envoy.config.endpoint.v3.LbEndpoint":                                       {"endpoint"},
	"envoy.config.endpoint.v3.Endpoint":                                         {"address"},
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions":                    {"explicit_http_config"},
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions.ExplicitHttpConfig": {"http2_protocol_options", "http_protocol_options"},
}

// opaque messages are accepted whole: values (durations, wrappers,
// structs) or settings documented above as having no effect here.
var opaque = map[protoreflect.FullName]bool{
	"google.protobuf.Duration":                  true,
	"google.protobuf.UInt32Value":               true,
	"google.protobuf.UInt64Value":               true,
	"google.protobuf.BoolValue":                 true,
	"google.protobuf.StringValue":               true,
	"envoy.config.bootstrap.v3.Admin":           true,
	"envoy.config.cluster.v3.CircuitBreakers":   true,
	"envoy.config.core.v3.HealthCheck":          true,
	"envoy.config.core.v3.Http2ProtocolOptions": true,
	"envoy.config.core.v3.Http1ProtocolOptions": true,
}

// checkImplemented reports every field set under m that the front door
// does not implement, with its path.
func checkImplemented(m protoreflect.Message, path string, errs *[]error) {
	name := m.Descriptor().FullName()
	if opaque[name] {
		return
	}
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := anypb.UnmarshalNew(a, proto.UnmarshalOptions{})
		if err != nil {
			*errs = append(*errs, fmt.Errorf("%s: %w", path, err))
			return
		}
		checkImplemented(inner.ProtoReflect(), path, errs)
		return
	}
	fields, known := implemented[name]
	if !known {
		*errs = append(*errs, fmt.Errorf("%s: %s is not implemented by the front door", path, name))
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := path + "." + string(fd.Name())
		if !slices.Contains(fields, fd.Name()) {
			*errs = append(*errs, fmt.Errorf("%s: not implemented by the front door", p))
			return true
		}
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := range l.Len() {
				checkImplemented(l.Get(i).Message(), fmt.Sprintf("%s[%d]", p, i), errs)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(k protoreflect.MapKey, e protoreflect.Value) bool {
				checkImplemented(e.Message(), fmt.Sprintf("%s[%q]", p, k.String()), errs)
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			checkImplemented(v.Message(), p, errs)
		}
		return true
	})
}

// Filter names as Envoy knows them.
const (
	filterMCP       = "envoy.filters.http.mcp"
	filterExtAuthz  = "envoy.filters.http.ext_authz"
	filterRateLimit = "envoy.filters.http.ratelimit"
	filterRouter    = "envoy.filters.http.router"
)

// settings is what the front door runs, read from a bootstrap.
type settings struct {
	listen     string // the listener's address
	hcm        *hcmv3.HttpConnectionManager
	vhosts     []*routev3.VirtualHost
	filters    []filterConfig
	clusters   map[string]string // cluster name → "host:port" of its one endpoint
	escapedRej bool              // path_with_escaped_slashes_action: REJECT_REQUEST
}

// filterConfig is one HTTP filter, in the order Envoy runs them.
type filterConfig struct {
	name      string
	mcp       *mcpv3.Mcp
	extAuthz  *extauthzv3.ExtAuthz
	rateLimit *ratelimitfilterv3.RateLimit
}

// readSettings reads what the front door needs from b and refuses what it
// cannot do as Envoy would.
func readSettings(b *bootstrapv3.Bootstrap) (*settings, error) {
	var errs []error
	checkImplemented(b.ProtoReflect(), "Bootstrap", &errs)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	s := &settings{clusters: map[string]string{}}
	for _, c := range b.GetStaticResources().GetClusters() {
		eps := c.GetLoadAssignment().GetEndpoints()
		if len(eps) != 1 || len(eps[0].GetLbEndpoints()) != 1 {
			errs = append(errs, fmt.Errorf("cluster %s: the front door needs exactly one endpoint", c.GetName()))
			continue
		}
		s.clusters[c.GetName()] = socketAddress(eps[0].GetLbEndpoints()[0].GetEndpoint().GetAddress())
	}
	ls := b.GetStaticResources().GetListeners()
	if len(ls) != 1 || len(ls[0].GetFilterChains()) != 1 || len(ls[0].GetFilterChains()[0].GetFilters()) != 1 {
		return nil, errors.Join(append(errs, errors.New("the front door needs one listener with one filter chain holding one filter"))...)
	}
	s.listen = socketAddress(ls[0].GetAddress())
	h := &hcmv3.HttpConnectionManager{}
	if err := ls[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(h); err != nil {
		return nil, errors.Join(append(errs, fmt.Errorf("listener %s: want an http_connection_manager: %w", ls[0].GetName(), err))...)
	}
	s.hcm = h
	s.vhosts = h.GetRouteConfig().GetVirtualHosts()
	if h.GetRouteConfig() == nil {
		errs = append(errs, errors.New("http_connection_manager: the front door needs an inline route_config"))
	}
	switch h.GetPathWithEscapedSlashesAction() {
	case hcmv3.HttpConnectionManager_IMPLEMENTATION_SPECIFIC_DEFAULT, hcmv3.HttpConnectionManager_KEEP_UNCHANGED:
	case hcmv3.HttpConnectionManager_REJECT_REQUEST:
		s.escapedRej = true
	default:
		errs = append(errs, fmt.Errorf("path_with_escaped_slashes_action %s: not implemented by the front door", h.GetPathWithEscapedSlashesAction()))
	}
	if a := h.GetCommonHttpProtocolOptions().GetHeadersWithUnderscoresAction(); a == corev3.HttpProtocolOptions_DROP_HEADER {
		errs = append(errs, errors.New("headers_with_underscores_action DROP_HEADER: not implemented by the front door"))
	}
	for i, f := range h.GetHttpFilters() {
		fc := filterConfig{name: f.GetName()}
		var err error
		switch f.GetName() {
		case filterMCP:
			fc.mcp = &mcpv3.Mcp{}
			err = f.GetTypedConfig().UnmarshalTo(fc.mcp)
		case filterExtAuthz:
			fc.extAuthz = &extauthzv3.ExtAuthz{}
			if err = f.GetTypedConfig().UnmarshalTo(fc.extAuthz); err == nil {
				err = s.checkCluster(fc.extAuthz.GetGrpcService())
			}
		case filterRateLimit:
			fc.rateLimit = &ratelimitfilterv3.RateLimit{}
			if err = f.GetTypedConfig().UnmarshalTo(fc.rateLimit); err == nil {
				err = s.checkCluster(fc.rateLimit.GetRateLimitService().GetGrpcService())
			}
		case filterRouter:
			err = f.GetTypedConfig().UnmarshalTo(&routerv3.Router{})
			if i != len(h.GetHttpFilters())-1 {
				err = errors.New("the router must be the last filter")
			}
		default:
			err = errors.New("not implemented by the front door")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("http_filters[%d] %s: %w", i, f.GetName(), err))
		}
		s.filters = append(s.filters, fc)
	}
	if n := len(s.filters); n == 0 || s.filters[n-1].name != filterRouter {
		errs = append(errs, errors.New("http_filters: the last filter must be envoy.filters.http.router"))
	}
	for _, vh := range s.vhosts {
		for _, r := range vh.GetRoutes() {
			if err := s.checkRoute(vh, r); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

func (s *settings) checkCluster(g *corev3.GrpcService) error {
	name := g.GetEnvoyGrpc().GetClusterName()
	if _, ok := s.clusters[name]; !ok {
		return fmt.Errorf("grpc_service: no cluster %q", name)
	}
	return nil
}

func (s *settings) checkRoute(vh *routev3.VirtualHost, r *routev3.Route) error {
	where := fmt.Sprintf("virtual host %s, route %s", vh.GetName(), r.GetName())
	if r.GetMatch().GetPathSpecifier() == nil {
		return fmt.Errorf("%s: want match.path or match.prefix", where)
	}
	if _, ok := s.clusters[r.GetRoute().GetCluster()]; !ok {
		return fmt.Errorf("%s: no cluster %q", where, r.GetRoute().GetCluster())
	}
	for k, v := range r.GetTypedPerFilterConfig() {
		if k != filterExtAuthz {
			return fmt.Errorf("%s: typed_per_filter_config[%q]: not implemented by the front door", where, k)
		}
		if err := v.UnmarshalTo(&extauthzv3.ExtAuthzPerRoute{}); err != nil {
			return fmt.Errorf("%s: typed_per_filter_config[%q]: %w", where, k, err)
		}
	}
	for i, rl := range r.GetRoute().GetRateLimits() {
		if f := rl.GetHitsAddend().GetFormat(); f != "" {
			if _, ok := metadataFormat(f); !ok {
				return fmt.Errorf("%s: rate_limits[%d].hits_addend.format %q: the front door implements %%DYNAMIC_METADATA(namespace:key)%% only", where, i, f)
			}
		}
		for j, a := range rl.GetActions() {
			if md := a.GetMetadata(); md != nil && md.GetSource() != routev3.RateLimit_Action_MetaData_DYNAMIC {
				return fmt.Errorf("%s: rate_limits[%d].actions[%d].metadata.source %s: not implemented by the front door", where, i, j, md.GetSource())
			}
		}
	}
	return nil
}

// metadataFormat parses "%DYNAMIC_METADATA(namespace:key[:key...])%".
func metadataFormat(f string) ([]string, bool) {
	inner, ok := strings.CutPrefix(f, "%DYNAMIC_METADATA(")
	if !ok {
		return nil, false
	}
	inner, ok = strings.CutSuffix(inner, ")%")
	if !ok {
		return nil, false
	}
	parts := strings.Split(inner, ":")
	if len(parts) < 2 {
		return nil, false
	}
	for _, p := range parts {
		if p == "" {
			return nil, false
		}
	}
	return parts, true
}

func socketAddress(a *corev3.Address) string {
	sa := a.GetSocketAddress()
	return net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10))
}
