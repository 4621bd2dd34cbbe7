{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "dataforest-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: the release name, prefixed to the chart name unless it already contains it.
Truncated to 63 characters (DNS label rules).
*/}}
{{- define "dataforest-operator.fullname" -}}
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

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "dataforest-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The standard labels of every object. */}}
{{- define "dataforest-operator.labels" -}}
helm.sh/chart: {{ include "dataforest-operator.chart" . }}
{{ include "dataforest-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ include "dataforest-operator.versionLabel" . | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: dataforest-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels: stable across upgrades (a Deployment's selector is immutable). */}}
{{- define "dataforest-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dataforest-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "dataforest-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "dataforest-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference: repository@digest when image.digest is set (the tag is then
ignored: a digest names one image, a tag may move), else repository:tag, the tag
defaulting to the chart's appVersion.
*/}}
{{- define "dataforest-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}
{{- end }}

{{/*
The app.kubernetes.io/version label: the image tag (or appVersion), made a valid label
value whatever the tag holds (e.g. `1.2.3@sha256:...`): characters other than
[A-Za-z0-9._-] become "_", at most 63 characters, starting and ending alphanumeric.
*/}}
{{- define "dataforest-operator.versionLabel" -}}
{{- $version := .Values.image.tag | default .Chart.AppVersion | toString }}
{{- regexReplaceAll "[^A-Za-z0-9._-]" $version "_" | trunc 63 | trimAll "_.-" }}
{{- end }}

{{/*
The namespaces the operator watches, as a list: watchNamespaces, or the one
watchNamespace of chart 0.1 (setting both fails the render). Empty: all namespaces.
*/}}
{{- define "dataforest-operator.watchNamespaces" -}}
{{- if and .Values.watchNamespace .Values.watchNamespaces }}
{{- fail "set watchNamespaces (a list) or the older watchNamespace (one namespace), not both" }}
{{- end }}
{{- $namespaces := .Values.watchNamespaces | default list }}
{{- with .Values.watchNamespace }}
{{- $namespaces = list . }}
{{- end }}
{{- toJson (uniq $namespaces) }}
{{- end }}

{{/* The leader-election Lease name. */}}
{{- define "dataforest-operator.leaseName" -}}
{{- default (include "dataforest-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
The permissions the controller needs on AiApps, their credentials Secrets and Events,
cluster-wide or in the watched namespace (see src/controller/ and kube-runtime's Recorder):
- AiApps: get (fresh read before submit), list/watch (the controller's cache), patch
  (the finalizer helper's JSON patch on metadata.finalizers);
- aiapps/status: patch (server-side apply of the whole status);
- Secrets: get (credentials), list/watch (metadata-only watch that wakes the AiApps naming
  a Secret). Nothing writes or deletes Secrets;
- Events: events.k8s.io/v1 create (src/controller/events.rs creates each Event once and
  never patches it).
*/}}
{{- define "dataforest-operator.controllerRules" -}}
- apiGroups: ["dataforest.dev"]
  resources: ["aiapps"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["dataforest.dev"]
  resources: ["aiapps/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/*
Fails the render on settings that cannot work: an AiApp whose Secret names no endpoint
uses dataforest.endpoint, which the operator refuses unless it is allowed (compared
without a trailing slash, as the operator does); a default credentials Secret without
the namespaces it serves, or the other way round (the operator refuses to start).
*/}}
{{- define "dataforest-operator.validate" -}}
{{- $endpoint := trimSuffix "/" .Values.dataforest.endpoint }}
{{- $allowed := list }}
{{- range .Values.dataforest.allowedEndpoints }}
{{- $allowed = append $allowed (trimSuffix "/" .) }}
{{- end }}
{{- if not (has $endpoint $allowed) }}
{{- fail (printf "dataforest.endpoint %q must be one of dataforest.allowedEndpoints %v" .Values.dataforest.endpoint .Values.dataforest.allowedEndpoints) }}
{{- end }}
{{- if and .Values.defaultCredentials.secretName (not .Values.defaultCredentials.namespaces) }}
{{- fail "defaultCredentials.secretName needs defaultCredentials.namespaces: the namespaces whose AiApps may use the default Secret" }}
{{- end }}
{{- if and .Values.defaultCredentials.namespaces (not .Values.defaultCredentials.secretName) }}
{{- fail "defaultCredentials.namespaces needs defaultCredentials.secretName: the Secret in the release namespace" }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled (not .Values.metrics.service.enabled) }}
{{- fail "serviceMonitor.enabled needs metrics.service.enabled" }}
{{- end }}
{{- end }}
