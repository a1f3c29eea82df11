{{/*
Names, labels and the small pieces every template shares.
*/}}

{{- define "authz.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: <release>-<chart>, or the release name alone when it already contains the chart name.
Truncated to 63 characters (DNS label limit of some resource names).
*/}}
{{- define "authz.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "authz.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Cluster-scoped objects are shared by every release in the cluster: their names carry the namespace.
*/}}
{{- define "authz.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "authz.fullname" .) }}
{{- end }}

{{- define "authz.selectorLabels" -}}
app.kubernetes.io/name: {{ include "authz.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "authz.labels" -}}
helm.sh/chart: {{ include "authz.chart" . }}
{{ include "authz.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: authz
{{- end }}

{{/*
The pod's role: the whole gateway (Envoy + sidecar) or the authz service alone.
*/}}
{{- define "authz.component" -}}
{{- if eq .Values.mode "standalone" }}authz{{ else }}gateway{{ end }}
{{- end }}

{{- define "authz.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "authz.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "authz.sidecarMode" -}}
{{- if eq .Values.mode "sidecar" }}true{{ end }}
{{- end }}

{{/*
An image reference from {repository, tag, digest}; the digest wins when set.
Usage: include "authz.imageRef" (dict "image" .Values.image "default" .Chart.AppVersion)
*/}}
{{- define "authz.imageRef" -}}
{{- $tag := default .default .image.tag }}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}
{{- end }}

{{/* Where the sidecar listens for Envoy, on the emptyDir both containers mount. */}}
{{- define "authz.socketDir" -}}/var/run/authz{{- end }}
{{- define "authz.socketPath" -}}{{ include "authz.socketDir" . }}/authz.sock{{- end }}
{{- define "authz.extProcSocketPath" -}}{{ include "authz.socketDir" . }}/ext-proc.sock{{- end }}
{{- define "authz.policiesDir" -}}/etc/authz/policies{{- end }}
{{- define "authz.allowedHostsDir" -}}/etc/authz/allowed-hosts{{- end }}
{{- define "authz.allowedHostsFile" -}}allowed-hosts.yaml{{- end }}

{{/*
The --allowed-hosts file: hostOwnership.grants, or by default the release's own namespace
granted every host ("*") and every other namespace nothing.
*/}}
{{- define "authz.hostGrants" -}}
{{- if .Values.hostOwnership.grants -}}
{{ toYaml .Values.hostOwnership.grants }}
{{- else -}}
{{ toYaml (dict .Release.Namespace (list "*")) }}
{{- end -}}
{{- end }}
{{- define "authz.envoyConfigDir" -}}/etc/envoy{{- end }}
{{- define "authz.envoyTLSDir" -}}/etc/envoy-tls{{- end }}
{{- define "authz.envoyClientCADir" -}}/etc/envoy-client-ca{{- end }}
{{- define "authz.grpcTLSDir" -}}/etc/authz/tls{{- end }}
{{- define "authz.grpcClientCADir" -}}/etc/authz/client-ca{{- end }}
{{- define "authz.httpPort" -}}9090{{- end }}
{{- define "authz.grpcPort" -}}9000{{- end }}

{{- define "authz.redisSecretName" -}}
{{- if .Values.redis.existingSecret }}
{{- .Values.redis.existingSecret }}
{{- else }}
{{- printf "%s-redis" (include "authz.fullname" .) }}
{{- end }}
{{- end }}

{{- define "authz.redisSecretKey" -}}
{{- if .Values.redis.existingSecret }}
{{- .Values.redis.existingSecretKey }}
{{- else }}redis-url{{ end }}
{{- end }}

{{/*
The Secret holding the gRPC listener's certificate (grpcTLS): given, or the one cert-manager writes.
*/}}
{{- define "authz.grpcTLSSecretName" -}}
{{- .Values.grpcTLS.secretName | default (printf "%s-grpc-tls" (include "authz.fullname" .)) }}
{{- end }}

{{/*
"true" when the NetworkPolicy is rendered: as set, or (null) in standalone mode only.
*/}}
{{- define "authz.networkPolicyEnabled" -}}
{{- $enabled := .Values.networkPolicy.enabled }}
{{- if kindIs "invalid" $enabled }}
{{- if not (include "authz.sidecarMode" .) }}true{{ end }}
{{- else if $enabled }}true{{ end }}
{{- end }}

{{/*
Checks across values that a JSON schema cannot express well; rendering fails with a clear message.
*/}}
{{- define "authz.validate" -}}
{{- $envoy := .Values.envoy }}
{{- if and (eq .Values.mode "sidecar") $envoy.tls.enabled (not $envoy.tls.secretName) }}
{{- fail "envoy.tls.enabled needs envoy.tls.secretName (a kubernetes.io/tls Secret)" }}
{{- end }}
{{- if and $envoy.tls.requireClientCertificate (not $envoy.tls.clientCASecretName) }}
{{- fail "envoy.tls.requireClientCertificate needs envoy.tls.clientCASecretName" }}
{{- end }}
{{- if and $envoy.tls.clientCASecretName (not $envoy.tls.enabled) }}
{{- fail "envoy.tls.clientCASecretName needs envoy.tls.enabled" }}
{{- end }}
{{- $grpcTLS := .Values.grpcTLS }}
{{- if and $grpcTLS.enabled (eq .Values.mode "sidecar") }}
{{- fail "grpcTLS is for mode: standalone (in sidecar mode Envoy reaches authz over a Unix socket in the pod; use envoy.tls for the gateway's clients)" }}
{{- end }}
{{- if and $grpcTLS.enabled (not $grpcTLS.secretName) (not $grpcTLS.certManager.enabled) }}
{{- fail "grpcTLS.enabled needs grpcTLS.secretName (a kubernetes.io/tls Secret) or grpcTLS.certManager.enabled" }}
{{- end }}
{{- if and $grpcTLS.certManager.enabled (not $grpcTLS.certManager.issuerRef.name) }}
{{- fail "grpcTLS.certManager.enabled needs grpcTLS.certManager.issuerRef.name (an Issuer or ClusterIssuer)" }}
{{- end }}
{{- if and (or $grpcTLS.certManager.enabled $grpcTLS.clientCA.enabled) (not $grpcTLS.enabled) }}
{{- fail "grpcTLS.certManager and grpcTLS.clientCA need grpcTLS.enabled" }}
{{- end }}
{{- if and .Values.redis.url .Values.redis.existingSecret }}
{{- fail "set redis.url or redis.existingSecret, not both" }}
{{- end }}
{{- if and (not (kindIs "invalid" .Values.podDisruptionBudget.minAvailable)) (not (kindIs "invalid" .Values.podDisruptionBudget.maxUnavailable)) }}
{{- fail "set podDisruptionBudget.minAvailable or podDisruptionBudget.maxUnavailable, not both" }}
{{- end }}
{{- if ge (int $envoy.drainSeconds) (int .Values.terminationGracePeriodSeconds) }}
{{- fail "envoy.drainSeconds must be less than terminationGracePeriodSeconds, or the sidecar is killed before it can finish" }}
{{- end }}
{{- if and (not .Values.watch.enabled) (not .Values.policies) }}
{{- fail "with watch.enabled=false the sidecar has no policies: set policies" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (not .Values.autoscaling.targetCPUUtilizationPercentage) (not .Values.autoscaling.targetMemoryUtilizationPercentage) }}
{{- fail "autoscaling.enabled needs targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage" }}
{{- end }}
{{- if lt (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas) }}
{{- fail "autoscaling.maxReplicas must be at least autoscaling.minReplicas" }}
{{- end }}
{{- $hosts := dict }}
{{- range .Values.routes }}
{{- $key := printf "%s%s" .host .pathPrefix }}
{{- if hasKey $hosts $key }}
{{- fail (printf "routes: %s%s is listed twice" .host .pathPrefix) }}
{{- end }}
{{- $_ := set $hosts $key true }}
{{- end }}
{{- end }}

{{/*
Backend routes grouped by host, each host's routes ordered longest prefix first (Envoy takes the
first match), as YAML: {host: [{pathPrefix, cluster}], ...}. Hosts keep the order in which they
first appear.
*/}}
{{- define "authz.routesByHost" -}}
{{- $byHost := dict }}
{{- $order := list }}
{{- range $i, $r := .Values.routes }}
{{- if not (hasKey $byHost $r.host) }}
{{- $order = append $order $r.host }}
{{- $_ := set $byHost $r.host list }}
{{- end }}
{{- /* Sort key: 10000 - prefix length, zero-padded, so sortAlpha puts the longest first. */}}
{{- $key := printf "%05d-%05d" (sub 10000 (len $r.pathPrefix)) $i }}
{{- $_ := set $byHost $r.host (append (get $byHost $r.host) $key) }}
{{- end }}
{{- $out := list }}
{{- range $host := $order }}
{{- $routes := list }}
{{- range $key := sortAlpha (get $byHost $host) }}
{{- $r := index $.Values.routes (atoi (last (splitList "-" $key))) }}
{{- $routes = append $routes (dict "pathPrefix" $r.pathPrefix "cluster" (include "authz.backendCluster" (dict "route" $r "root" $))) }}
{{- end }}
{{- $out = append $out (dict "host" $host "routes" $routes) }}
{{- end }}
{{- toYaml (dict "hosts" $out) }}
{{- end }}

{{/* The Envoy cluster name of a route's backend Service: backend_<service>_<port>. */}}
{{- define "authz.backendCluster" -}}
{{- printf "backend_%s_%v" (.route.service | replace "." "_") .route.port }}
{{- end }}

{{/* The DNS name of a route's backend Service: <name>.<namespace>.svc.<clusterDomain>. */}}
{{- define "authz.backendAddress" -}}
{{- $parts := splitList "." .route.service }}
{{- $ns := .root.Release.Namespace }}
{{- if gt (len $parts) 1 }}{{ $ns = index $parts 1 }}{{ end }}
{{- printf "%s.%s.svc.%s" (index $parts 0) $ns .root.Values.clusterDomain }}
{{- end }}
