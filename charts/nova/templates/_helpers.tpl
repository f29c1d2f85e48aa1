{{/* Names */}}
{{- define "nova.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" }}
{{- end }}

{{- define "nova.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "nova.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels: common, and the selector of one component */}}
{{- define "nova.labels" -}}
helm.sh/chart: {{ include "nova.chart" .root }}
{{ include "nova.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: nova
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "nova.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nova.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "nova.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "nova.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Images */}}
{{- define "nova.operatorImage" -}}
{{- printf "%s:%s" .Values.image.operator.repository (default .Chart.AppVersion .Values.image.operator.tag) }}
{{- end }}

{{- define "nova.trainerImage" -}}
{{- printf "%s:%s" .Values.image.trainer.repository (default .Chart.AppVersion .Values.image.trainer.tag) }}
{{- end }}

{{/* Namespaces the operator watches: [] = every namespace (rbac.scope cluster) */}}
{{- define "nova.watchNamespaces" -}}
{{- if eq .Values.rbac.scope "namespace" }}
{{- $ns := .Values.rbac.watchNamespaces | default (list .Release.Namespace) }}
{{- toJson $ns }}
{{- else }}
{{- toJson list }}
{{- end }}
{{- end }}

{{/* Storage: the database URL Secret (name, key) of the chart's PostgreSQL or the user's */}}
{{- define "nova.postgresql.fullname" -}}
{{- printf "%s-postgresql" (include "nova.fullname" .) }}
{{- end }}

{{- define "nova.storageSecretName" -}}
{{- if eq .Values.storage.mode "postgresql" }}
{{- include "nova.postgresql.fullname" . }}
{{- else if eq .Values.storage.mode "external" }}
{{- required "storage.existingSecret.name is required when storage.mode is external" .Values.storage.existingSecret.name }}
{{- end }}
{{- end }}

{{- define "nova.storageSecretKey" -}}
{{- if eq .Values.storage.mode "postgresql" }}url{{ else }}{{ .Values.storage.existingSecret.key | default "url" }}{{ end }}
{{- end }}

{{- define "nova.proxy.fullname" -}}
{{- printf "%s-optuna-proxy" (include "nova.fullname" .) }}
{{- end }}

{{- define "nova.dashboard.fullname" -}}
{{- printf "%s-dashboard" (include "nova.fullname" .) }}
{{- end }}

{{/* The Secret/key runs use when they name no storage: the proxy's when it runs, else the database's */}}
{{- define "nova.runStorageSecret" -}}
{{- if and .Values.optunaProxy.enabled (ne .Values.storage.mode "none") }}
{{- printf "%s/url" (include "nova.proxy.fullname" .) }}
{{- else if ne .Values.storage.mode "none" }}
{{- printf "%s/%s" (include "nova.storageSecretName" .) (include "nova.storageSecretKey" .) }}
{{- end }}
{{- end }}

{{- define "nova.outputClaim" -}}
{{- if .Values.output.claimName }}{{ .Values.output.claimName }}{{ else if .Values.output.createClaim }}{{ printf "%s-models" (include "nova.fullname" .) }}{{ end }}
{{- end }}

{{/* The "restricted" Pod Security Standard */}}
{{- define "nova.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ . | default 1000 }}
runAsGroup: {{ . | default 1000 }}
fsGroup: {{ . | default 1000 }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "nova.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end }}

{{- /* Nova's run pods (workers, refit), created by the operator in the watched namespaces */}}
{{- define "nova.runPodsPeer" -}}
- podSelector:
    matchLabels:
      app.kubernetes.io/managed-by: nova-operator
  namespaceSelector:
    {{- $watch := include "nova.watchNamespaces" . | fromJsonArray }}
    {{- if $watch }}
    matchExpressions:
      - key: kubernetes.io/metadata.name
        operator: In
        values: {{ toJson $watch }}
    {{- else }}
    {}
    {{- end }}
{{- end }}
{{- define "nova.componentPeer" -}}
- podSelector:
    matchLabels:
      {{- include "nova.selectorLabels" . | nindent 6 }}
{{- end }}
