{{/*
Helpers of the Pilothouse chart. Every name is prefixed with "pilothouse." so the chart can
be used as a subchart without clashing with its parent's helpers.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "pilothouse.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name: fullnameOverride, else the release name, plus the chart name unless the release
name already contains it. Truncated to leave room for suffixes such as "-operator".
*/}}
{{- define "pilothouse.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of the operator's Deployment, Service, roles and bindings. */}}
{{- define "pilothouse.operator.fullname" -}}
{{- printf "%s-operator" (include "pilothouse.fullname" .) }}
{{- end }}

{{/* chart label value: name-version. */}}
{{- define "pilothouse.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every resource. */}}
{{- define "pilothouse.labels" -}}
helm.sh/chart: {{ include "pilothouse.chart" . }}
app.kubernetes.io/name: {{ include "pilothouse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pilothouse
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of the operator's resources. */}}
{{- define "pilothouse.operator.labels" -}}
{{ include "pilothouse.labels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Selector labels of the operator's pods (immutable once installed: keep them few). */}}
{{- define "pilothouse.operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pilothouse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Name of the operator's ServiceAccount. */}}
{{- define "pilothouse.operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pilothouse.operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator image reference: repository:tag, or repository@digest. */}}
{{- define "pilothouse.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The agent runtime image the operator uses unless an AgentDeployment names its own. */}}
{{- define "pilothouse.runtimeImage" -}}
{{- $repository := default .Values.image.repository .Values.runtime.image.repository }}
{{- if .Values.runtime.image.tag }}
{{- printf "%s:%s" $repository .Values.runtime.image.tag }}
{{- else if and .Values.image.digest (not .Values.runtime.image.repository) }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The watched namespaces, validated against rbac.scope: namespaced RBAC needs an explicit list,
and a namespace listed twice is a mistake worth saying.
*/}}
{{- define "pilothouse.watchNamespaces" -}}
{{- if and (eq .Values.rbac.scope "namespaced") (empty .Values.watchNamespaces) }}
{{- fail "rbac.scope=namespaced needs watchNamespaces: the namespaces to grant the operator a Role in" }}
{{- end }}
{{- if ne (len .Values.watchNamespaces) (len (uniq .Values.watchNamespaces)) }}
{{- fail (printf "watchNamespaces lists a namespace twice: %v" .Values.watchNamespaces) }}
{{- end }}
{{- join "," .Values.watchNamespaces }}
{{- end }}

{{/* True ("true") when the operator runs cluster-wide (no namespace list). */}}
{{- define "pilothouse.clusterwide" -}}
{{- if empty .Values.watchNamespaces }}true{{ end }}
{{- end }}

{{/* Replicas of the operator: one, or two with a standby. */}}
{{- define "pilothouse.operator.replicas" -}}
{{- if .Values.operator.standby.enabled }}2{{ else }}1{{ end }}
{{- end }}

{{/* The Pilothouse CRDs (crds/), comma-separated: what `helm test` checks. */}}
{{- define "pilothouse.crdNames" -}}
agentdeployments.pilothouse.dev,agentpolicies.pilothouse.dev
{{- end }}

{{/*
Labels the operator puts on every agent's Service (operator/labels.py: common_labels): what the
agents' ServiceMonitor selects.
*/}}
{{- define "pilothouse.agentSelectorLabels" -}}
app.kubernetes.io/name: pilothouse-agent
app.kubernetes.io/managed-by: pilothouse-operator
{{- end }}
