{{/*
The authz container. In sidecar mode it is a native sidecar (restartPolicy: Always in
initContainers) listening on the Unix socket only; in standalone mode a plain container serving
gRPC on the network.

Scalar and boolean flags are arguments; list flags (comma-separated) and anything secret are
AUTHZ_* environment variables.
*/}}
{{- define "authz.container" -}}
{{- $sidecar := include "authz.sidecarMode" . -}}
- name: authz
  image: {{ include "authz.imageRef" (dict "image" .Values.image "default" .Chart.AppVersion) | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  {{- if $sidecar }}
  restartPolicy: Always
  {{- end }}
  args:
    - serve
    - --grpc-listen
    {{- if $sidecar }}
    - unix:{{ include "authz.socketPath" . }}
    {{- else }}
    - 0.0.0.0:{{ include "authz.grpcPort" . }}
    {{- end }}
    - --http-listen
    - 0.0.0.0:{{ include "authz.httpPort" . }}
    - --log-level
    - {{ .Values.logLevel }}
    - --trusted-proxy-hops
    {{- /* In the gateway pod, Envoy (use_remote_address) appends its own peer to X-Forwarded-For,
    so the client that T trusted proxies reported is the (T+1)th entry from the right. */}}
    {{- if and $sidecar (gt (int .Values.trustedProxyHops) 0) }}
    - {{ add (int .Values.trustedProxyHops) 1 | quote }}
    {{- else }}
    - {{ .Values.trustedProxyHops | quote }}
    {{- end }}
    {{- if not (kindIs "invalid" .Values.logAllowSampleRate) }}
    - --log-allow-sample-rate
    - {{ .Values.logAllowSampleRate | quote }}
    {{- end }}
    {{- if .Values.watch.enabled }}
    - --kubernetes
    {{- with .Values.watch.selector }}
    - --selector
    - {{ . | quote }}
    {{- end }}
    {{- end }}
    {{- if and $sidecar .Values.envoy.extProc.enabled }}
    - --ext-proc-listen
    - unix:{{ include "authz.extProcSocketPath" . }}
    - --response-body-max-bytes
    - {{ .Values.envoy.extProc.maxBodyBytes | int | quote }}
    {{- end }}
    {{- if or .Values.redis.url .Values.redis.existingSecret }}
    - --redis-mode
    - {{ .Values.redis.mode }}
    {{- end }}
    {{- if and (not $sidecar) .Values.grpcTLS.enabled }}
    {{- /* The whole Secret is mounted (no subPath), so renewals reach the files in place. */}}
    - --tls-cert
    - {{ include "authz.grpcTLSDir" . }}/tls.crt
    - --tls-key
    - {{ include "authz.grpcTLSDir" . }}/tls.key
    {{- if .Values.grpcTLS.clientCA.enabled }}
    - --tls-client-ca
    {{- if .Values.grpcTLS.clientCA.secretName }}
    - {{ include "authz.grpcClientCADir" . }}/{{ .Values.grpcTLS.clientCA.key }}
    {{- else }}
    - {{ include "authz.grpcTLSDir" . }}/ca.crt
    {{- end }}
    {{- end }}
    {{- end }}
  env:
    # Leader election (status writes) identifies this pod.
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: POD_NAMESPACE
      valueFrom:
        fieldRef:
          fieldPath: metadata.namespace
    {{- if .Values.introspectionSecrets }}
    - name: AUTHZ_SECRETS_DIR
      value: /etc/authz/secrets
    {{- end }}
    {{- if .Values.policies }}
    - name: AUTHZ_POLICIES
      value: {{ include "authz.policiesDir" . }}
    {{- end }}
    {{- if .Values.hostOwnership.enabled }}
    - name: AUTHZ_ALLOWED_HOSTS
      value: {{ include "authz.allowedHostsDir" . }}/{{ include "authz.allowedHostsFile" . }}
    {{- end }}
    {{- if and .Values.watch.enabled .Values.watch.namespaces }}
    - name: AUTHZ_NAMESPACE
      value: {{ join "," .Values.watch.namespaces | quote }}
    {{- end }}
    {{- if or .Values.redis.url .Values.redis.existingSecret }}
    - name: AUTHZ_REDIS_URL
      valueFrom:
        secretKeyRef:
          name: {{ include "authz.redisSecretName" . }}
          key: {{ include "authz.redisSecretKey" . }}
    {{- end }}
    - name: OTEL_SERVICE_NAME
      value: {{ default (include "authz.fullname" .) .Values.otel.serviceName | quote }}
    {{- if .Values.otel.endpoint }}
    - name: OTEL_EXPORTER_OTLP_ENDPOINT
      value: {{ .Values.otel.endpoint | quote }}
    - name: OTEL_TRACES_SAMPLER
      value: {{ .Values.otel.sampler | quote }}
    {{- with .Values.otel.samplerArg }}
    - name: OTEL_TRACES_SAMPLER_ARG
      value: {{ . | quote }}
    {{- end }}
    {{- else }}
    - name: OTEL_TRACES_EXPORTER
      value: none
    {{- end }}
    {{- with .Values.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    {{- if not $sidecar }}
    - name: grpc
      containerPort: {{ include "authz.grpcPort" . }}
      protocol: TCP
    {{- end }}
    - name: metrics
      containerPort: {{ include "authz.httpPort" . }}
      protocol: TCP
  startupProbe:
    httpGet:
      path: /healthz
      port: metrics
    periodSeconds: 1
    failureThreshold: 60
  readinessProbe:
    httpGet:
      path: /readyz
      port: metrics
    periodSeconds: 5
    timeoutSeconds: 2
    failureThreshold: 2
  livenessProbe:
    httpGet:
      path: /healthz
      port: metrics
    periodSeconds: 10
    timeoutSeconds: 2
    failureThreshold: 3
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  resources:
    {{- toYaml .Values.resources | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
    {{- if $sidecar }}
    - name: authz-socket
      mountPath: {{ include "authz.socketDir" . }}
    {{- end }}
    {{- if .Values.policies }}
    - name: policies
      mountPath: {{ include "authz.policiesDir" . }}
      readOnly: true
    {{- end }}
    {{- if .Values.hostOwnership.enabled }}
    {{- /* A directory mount, not subPath: the kubelet swaps its symlink on change, which the
    sidecar sees and re-reads; a subPath mount would never change. */}}
    - name: allowed-hosts
      mountPath: {{ include "authz.allowedHostsDir" . }}
      readOnly: true
    {{- end }}
    {{- if and (not $sidecar) .Values.grpcTLS.enabled }}
    - name: grpc-tls
      mountPath: {{ include "authz.grpcTLSDir" . }}
      readOnly: true
    {{- if and .Values.grpcTLS.clientCA.enabled .Values.grpcTLS.clientCA.secretName }}
    - name: grpc-client-ca
      mountPath: {{ include "authz.grpcClientCADir" . }}
      readOnly: true
    {{- end }}
    {{- end }}
    {{- range $i, $s := .Values.introspectionSecrets }}
    - name: introspection-secret-{{ $i }}
      mountPath: /etc/authz/secrets/{{ $s.namespace }}/{{ $s.name }}
      readOnly: true
    {{- end }}
{{- end }}
