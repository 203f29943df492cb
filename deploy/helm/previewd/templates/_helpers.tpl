{{- define "previewd.name" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "previewd.labels" -}}
app.kubernetes.io/name: previewd
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "previewd.selector" -}}
app.kubernetes.io/name: previewd
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "previewd.serviceAccount" -}}
{{- default (include "previewd.name" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/*
previewd.validate fails the render on values that would install but not
run: several replicas need one reconciler (leader election) and one shared
store, and cannot share one ReadWriteOnce volume.
*/}}
{{- define "previewd.validate" -}}
{{- if gt (int .Values.replicaCount) 1 -}}
{{- if not (dig "runtime" "kubernetes" "leaderElection" "enabled" false .Values.config) -}}
{{- fail "replicaCount > 1 needs config.runtime.kubernetes.leaderElection.enabled: true, so that one replica reconciles at a time" -}}
{{- end -}}
{{- if ne (dig "store" "kind" "sqlite" .Values.config) "postgres" -}}
{{- fail "replicaCount > 1 needs the shared store, config.store.kind: postgres: replicas cannot share one SQLite file" -}}
{{- end -}}
{{- if .Values.persistence.enabled -}}
{{- fail "replicaCount > 1 needs persistence.enabled: false: the data volume is one pod's (ReadWriteOnce); the shared store holds the state" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.ingress.enabled (not .Values.ingress.host) -}}
{{- fail "ingress.enabled needs ingress.host, where the API, dashboard and webhooks are served" -}}
{{- end -}}
{{- end -}}
