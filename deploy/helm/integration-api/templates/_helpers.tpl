{{/* Names, labels and the values the templates compute: every template takes them from here. */}}

{{- define "integration-api.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's resource name: the release name, with the chart's name unless it already contains it. */}}
{{- define "integration-api.fullname" -}}
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

{{- define "integration-api.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* What a selector matches: never changes across upgrades. */}}
{{- define "integration-api.selectorLabels" -}}
app.kubernetes.io/name: {{ include "integration-api.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "integration-api.labels" -}}
helm.sh/chart: {{ include "integration-api.chart" . }}
{{ include "integration-api.selectorLabels" . }}
app.kubernetes.io/version: {{ include "integration-api.imageTag" . | quote }}
app.kubernetes.io/component: gateway
app.kubernetes.io/part-of: integration-api
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "integration-api.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "integration-api.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "integration-api.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret the pods read: the user's existingSecret, or the chart's own when it has a key to hold. */}}
{{- define "integration-api.secretName" -}}
{{- if .Values.existingSecret }}
{{- .Values.existingSecret }}
{{- else if include "integration-api.secretData" . }}
{{- include "integration-api.fullname" . }}
{{- end }}
{{- end }}

{{/* The chart's Secret's keys (base64), only those set: an empty variable would set an empty URL or key. */}}
{{- define "integration-api.secretData" -}}
{{- $secrets := dict
  "INTEGRATION_API_JWT_SECRET" .Values.secrets.jwtSecret
  "INTEGRATION_API_CREDENTIALS_KEY" .Values.secrets.credentialsKey
  "INTEGRATION_API_REDIS_URL" .Values.redis.url
  "INTEGRATION_API_DATABASE_URL" .Values.postgresql.url }}
{{- range $key, $value := $secrets }}
{{- if $value }}
{{ $key }}: {{ $value | toString | b64enc | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The ConfigMap's keys: `config` as INTEGRATION_API_<NAME>, then what the chart owns. A `config` entry for a setting
the chart owns, or for a secret, would be silently shadowed or leak into a ConfigMap: refuse it instead.
*/}}
{{- define "integration-api.configData" -}}
{{- $owned := dict "host" "the chart (0.0.0.0)" "port" "ports.grpc" "http_port" "ports.http" "http_host" "the chart (0.0.0.0)" "data_dir" "persistence.mountPath" "tls_cert_file" "tls.enabled" "tls_key_file" "tls.enabled" }}
{{- $secret := dict "jwt_secret" "secrets.jwtSecret" "credentials_key" "secrets.credentialsKey" "redis_url" "redis.url" "database_url" "postgresql.url" }}
{{- range $name, $value := .Values.config }}
{{- if hasKey $owned $name }}
{{- fail (printf "config.%s: set by %s, not in config" $name (get $owned $name)) }}
{{- end }}
{{- if hasKey $secret $name }}
{{- fail (printf "config.%s is a secret: set %s (or existingSecret) instead" $name (get $secret $name)) }}
{{- end }}
{{- if kindIs "invalid" $value }}
{{- fail (printf "config.%s is null: remove it to keep the server's default" $name) }}
{{- end }}
{{ printf "INTEGRATION_API_%s" (upper $name) }}: {{ include "integration-api.settingValue" $value | quote }}
{{- end }}
INTEGRATION_API_HOST: "0.0.0.0"
INTEGRATION_API_PORT: {{ .Values.ports.grpc | int | toString | quote }}
INTEGRATION_API_HTTP_PORT: {{ .Values.ports.http | int | toString | quote }}
INTEGRATION_API_DATA_DIR: {{ .Values.persistence.mountPath | quote }}
{{- if .Values.tls.enabled }}
INTEGRATION_API_TLS_CERT_FILE: "/etc/integration-api/tls/tls.crt"
INTEGRATION_API_TLS_KEY_FILE: "/etc/integration-api/tls/tls.key"
{{- end }}
{{- end }}

{{/* One setting as its environment variable's text: maps as JSON, lists comma-separated, numbers without 1e+06. */}}
{{- define "integration-api.settingValue" -}}
{{- if kindIs "map" . }}
{{- toJson . }}
{{- else if kindIs "slice" . }}
{{- join "," . }}
{{- else if kindIs "float64" . }}
{{- if eq (floor .) . }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{/* The drain, end to end: preStop, then the server's grace, then a margin before the kubelet's SIGKILL. */}}
{{- define "integration-api.terminationGracePeriodSeconds" -}}
{{- $grace := 15 }}
{{- if hasKey .Values.config "grace_period_s" }}
{{- $grace = .Values.config.grace_period_s | float64 | ceil | int }}
{{- end }}
{{- add .Values.preStopSleepSeconds $grace .Values.terminationGraceMarginSeconds }}
{{- end }}

{{/* A probe's check: the kubelet's own gRPC call, or (with TLS, which that call cannot speak) the CLI's. */}}
{{- define "integration-api.probeCheck" -}}
{{- if .Values.tls.enabled }}
exec:
  command: [integration-api, health]
{{- else }}
grpc:
  port: {{ .Values.ports.grpc }}
{{- end }}
{{- end }}
