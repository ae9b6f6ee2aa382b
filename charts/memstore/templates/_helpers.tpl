{{/*
Names and labels shared by every template. The operator's own objects are named
"<fullname>-operator" and labelled app.kubernetes.io/name=memstore-operator, so that no
selector of a memstore server (app.kubernetes.io/name=memstore, component=server, set by
the operator on the pods it creates) can ever match the operator pod.
*/}}

{{- define "memstore.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "memstore.fullname" -}}
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

{{- define "memstore.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object of this release carries. */}}
{{- define "memstore.commonLabels" -}}
helm.sh/chart: {{ include "memstore.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: memstore
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Chart-level objects (MemoryStore, monitoring, dashboards). */}}
{{- define "memstore.labels" -}}
{{ include "memstore.commonLabels" . }}
app.kubernetes.io/name: {{ include "memstore.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "memstore.operator.fullname" -}}
{{- printf "%s-operator" (include "memstore.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "memstore.operator.selectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-operator" (include "memstore.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "memstore.operator.labels" -}}
{{ include "memstore.commonLabels" . }}
{{ include "memstore.operator.selectorLabels" . }}
{{- end }}

{{- define "memstore.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "memstore.operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Container image reference, for every image the chart renders (the operator, the first
MemoryStore's spec.image, the helm test pod): [registry/]repository, then @digest when a
digest is given (it pins the exact image, so the tag is not used), else :tag (default: the
chart's appVersion). global.imageRegistry, when set, replaces image.registry (the Bitnami
convention for charts used as dependencies).
*/}}
{{- define "memstore.image" -}}
{{- $registry := .Values.image.registry }}
{{- with .Values.global }}{{ with .imageRegistry }}{{ $registry = . }}{{ end }}{{ end }}
{{- $repository := .Values.image.repository }}
{{- if $registry }}
{{- $repository = printf "%s/%s" $registry $repository }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Namespaces the operator watches, as a list. Empty with rbac.clusterWide means all
namespaces; otherwise it defaults to the release namespace.
*/}}
{{- define "memstore.watchNamespaces" -}}
{{- if .Values.operator.watchNamespaces }}
{{- toJson (uniq .Values.operator.watchNamespaces) }}
{{- else if .Values.rbac.clusterWide }}
{{- toJson list }}
{{- else }}
{{- toJson (list .Release.Namespace) }}
{{- end }}
{{- end }}

{{/* Name of the first MemoryStore (also its Service's name, set by the operator). */}}
{{- define "memstore.store.name" -}}
{{- default (include "memstore.fullname" .) .Values.memoryStore.name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "memstore.store.credentialsSecret" -}}
{{- printf "%s-credentials" (include "memstore.store.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* True when the chart holds any credential value for the first MemoryStore. */}}
{{- define "memstore.store.hasCredentials" -}}
{{- with .Values.memoryStore.credentials }}
{{- if or .redisPassword .mongodbUri }}true{{ end }}
{{- end }}
{{- end }}

{{/* Port of the first MemoryStore's Service (the CRD's default is 8080). */}}
{{- define "memstore.store.port" -}}
{{- $svc := (default dict .Values.memoryStore.spec.service) }}
{{- default 8080 $svc.port }}
{{- end }}

{{/* Restricted Pod Security Standard, container level (the helm test pod). */}}
{{- define "memstore.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}
