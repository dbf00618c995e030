{{/* Names and labels shared by every object of the release. */}}

{{- define "tollgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tollgate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "tollgate.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "tollgate.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tollgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tollgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tollgate.labels" -}}
{{ include "tollgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The Secret holding the CA (tls.crt, tls.key). */}}
{{- define "tollgate.caSecret" -}}
{{- default (printf "%s-ca" (include "tollgate.fullname" .)) .Values.ca.existingSecret -}}
{{- end -}}

{{- define "tollgate.caConfigMap" -}}
{{- default (printf "%s-ca" (include "tollgate.fullname" .)) .Values.ca.publishConfigMap -}}
{{- end -}}

{{/* The admin port is exposed on the node address only when something scrapes it. */}}
{{- define "tollgate.adminRemote" -}}
{{- if or .Values.metrics.podMonitor.enabled .Values.metrics.serviceMonitor.enabled -}}true{{- end -}}
{{- end -}}

{{/* Where a credential's Secret is mounted. */}}
{{- define "tollgate.credentialDir" -}}
/var/run/secrets/tollgate/{{ .name }}
{{- end -}}

{{/*
Tollgate's configuration: the user's `config`, with the keys the chart owns (listeners, admin,
CA files, capture, log paths) set from the chart's values, and one credential per mounted
Secret.
*/}}
{{- define "tollgate.config" -}}
{{- $listener := dict "addresses" (ternary (list (printf "127.0.0.1:%d" (int .Values.listener.port)) (printf "[::1]:%d" (int .Values.listener.port))) (list (printf "127.0.0.1:%d" (int .Values.listener.port))) .Values.listener.ipv6) -}}
{{- if .Values.listener.capturePods -}}
{{- $_ := set $listener "nodeAddress4" (printf "${TOLLGATE_NODE_IP}:%d" (int .Values.listener.port)) -}}
{{- end -}}
{{- $admin := dict "address" (printf "127.0.0.1:%d" (int .Values.admin.port)) -}}
{{- if include "tollgate.adminRemote" . -}}
{{- $admin = dict "address" (printf "${TOLLGATE_NODE_IP}:%d" (int .Values.admin.port)) "allowRemote" true -}}
{{- end -}}
{{- $capture := dict "failMode" .Values.capture.failMode "pinPath" "/sys/fs/bpf/tollgate" -}}
{{- with .Values.capture.cgroupPath -}}
{{- $_ := set $capture "cgroupPath" . -}}
{{- end -}}
{{- $tls := dict "caCert" "/etc/tollgate/ca/tls.crt" "caKey" "/etc/tollgate/ca/tls.key" -}}
{{- $user := deepCopy (default dict .Values.config) -}}
{{- with (get $user "tls") -}}
{{- $_ := set $tls "leafTtl" (get . "leafTtl" | default "24h") -}}
{{- end -}}
{{- /* The node CA comes from a read-only Secret: the audit signing key is the node's own, in its state directory. */ -}}
{{- $audit := mergeOverwrite (dict "path" "/var/log/tollgate/audit.jsonl" "signingKey" "/var/lib/tollgate/audit-signing.key") (default dict (get $user "audit")) -}}
{{- $credentials := default list (get $user "credentials") -}}
{{- range .Values.credentials -}}
{{- $credentials = append $credentials (dict "name" .name "kind" .kind "file" (printf "%s/%s" (include "tollgate.credentialDir" .) .key)) -}}
{{- end -}}
{{- $owned := dict "listener" $listener "admin" $admin "capture" $capture "tls" $tls "audit" $audit "connectionLog" "/var/log/tollgate/connections.jsonl" -}}
{{- if $credentials -}}
{{- $_ := set $owned "credentials" $credentials -}}
{{- end -}}
{{- with .Values.criSocket -}}
{{- $identity := dict "criSocket" . -}}
{{- with $.Values.recordLabels -}}
{{- $_ := set $identity "recordLabels" . -}}
{{- end -}}
{{- $_ := set $owned "identity" $identity -}}
{{- end -}}
{{- toYaml (mergeOverwrite $user $owned) -}}
{{- end -}}
