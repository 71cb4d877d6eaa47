{{/* Names, labels, the image reference and the connection Secrets, shared by every template. */}}

{{- define "o2c.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "o2c.labels" -}}
app.kubernetes.io/name: o2c
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "o2c.selectorLabels" -}}
app.kubernetes.io/name: o2c
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "o2c.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (printf "%s-operator" (include "o2c.fullname" .)) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* One image for the operator and the runtime pods it renders: repository@digest or repository:tag. */}}
{{- define "o2c.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* The broker Secret: the one named in values, or the one the chart creates from broker.url. */}}
{{- define "o2c.brokerSecretName" -}}
{{- if and .Values.broker.existingSecret .Values.broker.url -}}
{{- fail "broker: set either broker.existingSecret or broker.url, not both" -}}
{{- else if .Values.broker.existingSecret -}}
{{- .Values.broker.existingSecret -}}
{{- else if .Values.broker.url -}}
{{- printf "%s-broker" (include "o2c.fullname" .) -}}
{{- else -}}
{{- fail "broker: set broker.existingSecret (a Secret with the AMQP URL under broker.secretKey) or, for development, broker.url" -}}
{{- end -}}
{{- end -}}

