{{/*
Envoy's bootstrap for the sidecar topology. Static configuration only: the routes come from values,
and a change rolls the pods (checksum annotation on the Deployment).

Listeners: `http` (and `https` with envoy.tls.enabled) run ext_authz then the router; `ready` serves
/ready (health_check filter, 503 while Envoy drains) and /stats/prometheus from the admin interface,
which itself listens on 127.0.0.1 only.
*/}}

{{- define "authz.envoy.bootstrap" -}}
{{- $envoy := .Values.envoy -}}
node:
  id: {{ include "authz.fullname" . }}
  cluster: {{ include "authz.fullname" . }}
admin:
  address:
    socket_address: {address: 127.0.0.1, port_value: {{ $envoy.adminPort }}}
overload_manager:
  resource_monitors:
  - name: envoy.resource_monitors.global_downstream_max_connections
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig
      max_active_downstream_connections: {{ $envoy.maxDownstreamConnections }}
static_resources:
  listeners:
  - name: http
    address:
      socket_address: {address: 0.0.0.0, port_value: {{ $envoy.ports.http }}}
    per_connection_buffer_limit_bytes: 32768
    filter_chains:
    - filters:
      {{- if and $envoy.tls.enabled $envoy.tls.httpRedirect }}
      {{- include "authz.envoy.redirectHcm" . | nindent 6 }}
      {{- else }}
      {{- include "authz.envoy.hcm" (dict "root" . "statPrefix" "ingress_http") | nindent 6 }}
      {{- end }}
  {{- if $envoy.tls.enabled }}
  - name: https
    address:
      socket_address: {address: 0.0.0.0, port_value: {{ $envoy.ports.https }}}
    per_connection_buffer_limit_bytes: 32768
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: {{ $envoy.tls.requireClientCertificate }}
          common_tls_context:
            alpn_protocols: [h2, http/1.1]
            tls_params:
              tls_minimum_protocol_version: TLSv1_2
            tls_certificate_sds_secret_configs:
            - name: server_cert
              sds_config:
                resource_api_version: V3
                path_config_source:
                  path: {{ include "authz.envoyConfigDir" . }}/sds-server-cert.yaml
            {{- if $envoy.tls.clientCASecretName }}
            validation_context_sds_secret_config:
              name: client_ca
              sds_config:
                resource_api_version: V3
                path_config_source:
                  path: {{ include "authz.envoyConfigDir" . }}/sds-client-ca.yaml
            {{- end }}
      filters:
      {{- include "authz.envoy.hcm" (dict "root" . "statPrefix" "ingress_https") | nindent 6 }}
  {{- end }}
  - name: ready
    address:
      socket_address: {address: 0.0.0.0, port_value: {{ $envoy.ports.ready }}}
    # Probes and scrapes must get through even when the connection limit is reached.
    ignore_global_conn_limit: true
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ready
          route_config:
            name: ready
            virtual_hosts:
            - name: ready
              domains: ["*"]
              routes:
              - match: {path: /stats/prometheus}
                route: {cluster: envoy_admin}
              - match: {prefix: /}
                direct_response: {status: 404}
          http_filters:
          - name: envoy.filters.http.health_check
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck
              pass_through_mode: false
              headers:
              - name: ":path"
                string_match: {exact: /ready}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: authz
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {}
    # One local peer carries every check: the defaults (1024 requests) would turn a burst into
    # errors, that is denies.
    circuit_breakers:
      thresholds:
      - max_connections: 1024
        max_pending_requests: {{ $envoy.maxDownstreamConnections }}
        max_requests: {{ $envoy.maxDownstreamConnections }}
    load_assignment:
      cluster_name: authz
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              pipe: {path: {{ include "authz.socketPath" . }}}
  {{- if $envoy.extProc.enabled }}
  - name: authz_ext_proc
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {}
    circuit_breakers:
      thresholds:
      - max_connections: 1024
        max_pending_requests: {{ $envoy.maxDownstreamConnections }}
        max_requests: {{ $envoy.maxDownstreamConnections }}
    load_assignment:
      cluster_name: authz_ext_proc
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              pipe: {path: {{ include "authz.extProcSocketPath" . }}}
  {{- end }}
  - name: envoy_admin
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: envoy_admin
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {address: 127.0.0.1, port_value: {{ $envoy.adminPort }}}
  {{- $seen := dict }}
  {{- range .Values.routes }}
  {{- $name := include "authz.backendCluster" (dict "route" . "root" $) }}
  {{- if not (hasKey $seen $name) }}
  {{- $_ := set $seen $name true }}
  - name: {{ $name }}
    type: STRICT_DNS
    connect_timeout: {{ $envoy.connectTimeout }}
    dns_lookup_family: V4_PREFERRED
    per_connection_buffer_limit_bytes: 32768
    load_assignment:
      cluster_name: {{ $name }}
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address:
                address: {{ include "authz.backendAddress" (dict "route" . "root" $) }}
                port_value: {{ .port }}
  {{- end }}
  {{- end }}
{{- end }}

{{/*
The HTTP connection manager of a traffic listener: safe path handling, ext_authz, then the router.
Usage: include "authz.envoy.hcm" (dict "root" . "statPrefix" "ingress_http")
*/}}
{{- define "authz.envoy.hcm" -}}
{{- $root := .root }}
{{- $envoy := $root.Values.envoy -}}
- name: envoy.filters.network.http_connection_manager
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
    stat_prefix: {{ .statPrefix }}
    codec_type: AUTO
    # The client address is the peer's, or the one `trustedProxyHops` proxies reported.
    use_remote_address: true
    xff_num_trusted_hops: {{ $root.Values.trustedProxyHops }}
    # Paths are normalized before ext_authz sees them, so a policy on /admin also covers
    # /./admin, //admin and /foo/../admin; %2F and %5C in a path are refused outright.
    normalize_path: true
    merge_slashes: true
    path_with_escaped_slashes_action: REJECT_REQUEST
    # Virtual host domains match the Host header without its port.
    strip_any_host_port: true
    common_http_protocol_options:
      idle_timeout: 3600s
      # Headers like x_user would otherwise reach the upstream next to x-user.
      headers_with_underscores_action: REJECT_REQUEST
    http2_protocol_options:
      max_concurrent_streams: 100
      initial_stream_window_size: 65536
      initial_connection_window_size: 1048576
    stream_idle_timeout: 300s
    request_headers_timeout: 10s
    {{- if $envoy.accessLog }}
    access_log:
    {{- include "authz.envoy.accessLog" . | nindent 4 }}
    {{- end }}
    route_config:
      name: backends
      # The check's marker for the ext_proc filter is for Envoy only.
      request_headers_to_remove: [x-authz-ext-proc]
      virtual_hosts:
      {{- range $i, $h := (include "authz.routesByHost" $root | fromYaml).hosts }}
      - name: host_{{ $i }}
        domains: [{{ $h.host | quote }}]
        routes:
        {{- range $h.routes }}
        - match:
            {{- if or (eq .pathPrefix "/") (hasSuffix "/" .pathPrefix) }}
            prefix: {{ .pathPrefix | quote }}
            {{- else }}
            {{- /* /api matches /api and /api/..., not /apiary (Kubernetes Ingress semantics). */}}
            path_separated_prefix: {{ .pathPrefix | quote }}
            {{- end }}
          route:
            cluster: {{ .cluster }}
            timeout: {{ $envoy.routeTimeout }}
        {{- end }}
      {{- else }} []
      {{- end }}
    http_filters:
    - name: envoy.filters.http.ext_authz
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
        transport_api_version: V3
        grpc_service:
          envoy_grpc: {cluster_name: authz}
          timeout: {{ $envoy.extAuthz.timeout }}
        # Fail closed: no decision, no access.
        failure_mode_allow: false
        status_on_error: {code: {{ $envoy.extAuthz.statusOnError }}}
        include_peer_certificate: true
        # with_request_body is deliberately absent: decisions never depend on the body.
    {{- if $envoy.extProc.enabled }}
    # Response protection (AuthPolicy responseBody): after ext_authz, whose decision (the scopes
    # the token grants) reaches the sidecar as forwarded dynamic metadata. Requests the check
    # marked `x-authz-ext-proc: skip` (nothing to redact; the check removes the header from every
    # other request) skip the filter; redacting ones send the whole body.
    - name: envoy.filters.http.ext_proc
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.common.matching.v3.ExtensionWithMatcher
        xds_matcher:
          matcher_list:
            matchers:
            - predicate:
                single_predicate:
                  input:
                    name: skip_header
                    typed_config:
                      "@type": type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput
                      header_name: x-authz-ext-proc
                  value_match: {exact: skip}
              on_match:
                action:
                  name: skip
                  typed_config:
                    "@type": type.googleapis.com/envoy.extensions.filters.common.matcher.action.v3.SkipFilter
        extension_config:
          name: envoy.filters.http.ext_proc
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor
            grpc_service:
              envoy_grpc: {cluster_name: authz_ext_proc}
              timeout: {{ $envoy.extProc.timeout }}
            failure_mode_allow: false
            status_on_error: {code: {{ $envoy.extAuthz.statusOnError }}}
            allow_mode_override: true
            message_timeout: {{ $envoy.extProc.timeout }}
            processing_mode:
              request_header_mode: SEND
              response_header_mode: SEND
              request_body_mode: NONE
              response_body_mode: BUFFERED
              request_trailer_mode: SKIP
              response_trailer_mode: SKIP
            metadata_options:
              forwarding_namespaces: {untyped: [envoy.filters.http.ext_authz]}
    {{- end }}
    - name: envoy.filters.http.router
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
{{- end }}

{{/* Plain HTTP listener when HTTPS is on: every request is redirected, nothing is proxied. */}}
{{- define "authz.envoy.redirectHcm" -}}
- name: envoy.filters.network.http_connection_manager
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
    stat_prefix: ingress_http_redirect
    codec_type: AUTO
    use_remote_address: true
    xff_num_trusted_hops: {{ .Values.trustedProxyHops }}
    strip_any_host_port: true
    {{- if .Values.envoy.accessLog }}
    access_log:
    {{- include "authz.envoy.accessLog" . | nindent 4 }}
    {{- end }}
    route_config:
      name: https_redirect
      virtual_hosts:
      - name: https_redirect
        domains: ["*"]
        routes:
        - match: {prefix: /}
          redirect:
            https_redirect: true
            {{- if ne (int .Values.service.ports.https) 443 }}
            port_redirect: {{ .Values.service.ports.https }}
            {{- end }}
    http_filters:
    - name: envoy.filters.http.router
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
{{- end }}

{{/*
One JSON line per request on stdout. The query string is left out (it may carry tokens), and so
are request headers other than the user agent.
*/}}
{{- define "authz.envoy.accessLog" -}}
- name: envoy.access_loggers.stdout
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
    log_format:
      json_format:
        time: "%START_TIME%"
        request_id: "%REQ(X-REQUEST-ID)%"
        client: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"
        method: "%REQ(:METHOD)%"
        authority: "%REQ(:AUTHORITY)%"
        path: "%PATH(NQ:ORIG)%"
        protocol: "%PROTOCOL%"
        status: "%RESPONSE_CODE%"
        flags: "%RESPONSE_FLAGS%"
        details: "%RESPONSE_CODE_DETAILS%"
        upstream: "%UPSTREAM_CLUSTER%"
        bytes_received: "%BYTES_RECEIVED%"
        bytes_sent: "%BYTES_SENT%"
        duration_ms: "%DURATION%"
        user_agent: "%REQ(USER-AGENT)%"
{{- end }}

{{/* SDS documents read from files, so a renewed certificate is picked up without a restart. */}}
{{- define "authz.envoy.sdsServerCert" -}}
resources:
- "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret
  name: server_cert
  tls_certificate:
    certificate_chain: {filename: {{ include "authz.envoyTLSDir" . }}/tls.crt}
    private_key: {filename: {{ include "authz.envoyTLSDir" . }}/tls.key}
    # Kubernetes swaps a Secret volume's files through a symlink rename in this directory.
    watched_directory: {path: {{ include "authz.envoyTLSDir" . }}}
{{- end }}

{{- define "authz.envoy.sdsClientCA" -}}
resources:
- "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret
  name: client_ca
  validation_context:
    trusted_ca: {filename: {{ include "authz.envoyClientCADir" . }}/ca.crt}
    watched_directory: {path: {{ include "authz.envoyClientCADir" . }}}
{{- end }}
