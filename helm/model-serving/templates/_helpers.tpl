{{/* Labels every object carries. */}}
{{- define "model-serving.labels" -}}
app.kubernetes.io/name: model-serving
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: mlops-airflow
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app: {{ .Values.model }}
{{- end }}

{{/* The Role's name, shared by the RoleBinding. */}}
{{- define "model-serving.switchRole" -}}
{{ .Values.model }}-serving-switch
{{- end }}

{{/*
The current selector colour of a Service, read back from the cluster, or the default.
The serving tasks own the selector: an upgrade must not move live traffic.
Call with (list $ "service-name" "default-colour").
*/}}
{{- define "model-serving.selectedColor" -}}
{{- $root := index . 0 -}}
{{- $existing := lookup "v1" "Service" $root.Release.Namespace (index . 1) -}}
{{- if and $existing $existing.spec.selector $existing.spec.selector.color -}}
{{ $existing.spec.selector.color }}
{{- else -}}
{{ index . 2 }}
{{- end -}}
{{- end }}
