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
