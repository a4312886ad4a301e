{{/* Names, labels and the rendered gateway configuration of the AF Gateway chart. */}}

{{- define "af-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-af-gateway, or the release name alone when it already contains the chart name. */}}
{{- define "af-gateway.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "af-gateway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels: stable for the life of the release (a Deployment's selector is immutable). */}}
{{- define "af-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "af-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end -}}

{{- define "af-gateway.labels" -}}
helm.sh/chart: {{ include "af-gateway.chart" . }}
{{ include "af-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: af-gateway
{{- end -}}

{{- define "af-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "af-gateway.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "af-gateway.secretName" -}}
{{- default (include "af-gateway.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "af-gateway.claimName" -}}
{{- default (include "af-gateway.fullname" .) .Values.persistence.existingClaim -}}
{{- end -}}

{{- define "af-gateway.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The Service's in-cluster DNS name. */}}
{{- define "af-gateway.host" -}}
{{- printf "%s.%s.svc.%s" (include "af-gateway.fullname" .) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{/* http://<fullname>.<namespace>.svc.<domain>:<port> */}}
{{- define "af-gateway.internalUrl" -}}
{{- printf "http://%s:%d" (include "af-gateway.host" .) (int .Values.service.port) -}}
{{- end -}}

{{- define "af-gateway.hubServiceUrl" -}}
{{- default (include "af-gateway.internalUrl" .) .Values.jupyterhub.service.url -}}
{{- end -}}

{{- define "af-gateway.dataDir" -}}/var/lib/af-gateway{{- end -}}

{{/*
Checks that stop a render with a message instead of deploying something that cannot work.
*/}}
{{- define "af-gateway.validate" -}}
{{- if lt (int .Values.containerPort) 1024 -}}
{{- fail "containerPort must be above 1023 (the gateway runs without capabilities); expose a low port with service.port instead" -}}
{{- end -}}
{{- if ne (int .Values.replicaCount) 1 -}}
{{- fail (printf "replicaCount is %v, but AF Gateway supports exactly one replica: its state is one SQLite file on one volume. Several replicas would need a shared database (e.g. PostgreSQL), which the gateway does not support yet. Set replicaCount: 1." .Values.replicaCount) -}}
{{- end -}}
{{- if hasKey .Values.config "listen" -}}
{{- fail "config.listen is set by the chart (0.0.0.0:<containerPort>); set containerPort (and service.port) instead" -}}
{{- end -}}
{{- if hasKey .Values.config "data_dir" -}}
{{- fail "config.data_dir is set by the chart (/var/lib/af-gateway, the persistent volume); remove it from config" -}}
{{- end -}}
{{- $cfg := include "af-gateway.config" . | fromYaml -}}
{{- if ne (toString $cfg.backend.type) "kubernetes" -}}
{{- fail (printf "config.backend.type is %v: this chart deploys the kubernetes backend only" $cfg.backend.type) -}}
{{- end -}}
{{- $auth := $cfg.auth | default dict -}}
{{- $type := $auth.type | default "simple" -}}
{{- if eq $type "simple" -}}
{{- if not (dig "simple" "password" "" $auth) -}}
{{- fail "config.auth.type simple without auth.simple.password accepts anyone, and the gateway refuses it on a non-loopback listener: use auth.type jupyterhub or oidc (or set a password, for tests)" -}}
{{- end -}}
{{- else if eq $type "oidc" -}}
{{- if not (dig "oidc" "issuer" "" $auth) -}}
{{- fail "config.auth.type oidc needs config.auth.oidc.issuer (the provider's issuer URL)" -}}
{{- end -}}
{{- else if eq $type "jupyterhub" -}}
{{- if not (dig "jupyterhub" "api_url" "" $auth) -}}
{{- fail "config.auth.type jupyterhub needs config.auth.jupyterhub.api_url (e.g. http://hub:8081/hub/api for Zero-to-JupyterHub in the same namespace)" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The gateway's configuration: what the chart owns (listener, state directory, Kubernetes backend,
workspace root, JupyterHub service prefix, client addresses), then .Values.config merged over it
with mergeOverwrite. Secrets are never part of it: they come from the Secret as environment
variables.
*/}}
{{- define "af-gateway.config" -}}
{{- $port := int .Values.service.port -}}
{{- $k := .Values.kubernetes -}}
{{- $kube := dict
      "instance" (printf "%s-%s" .Release.Name .Release.Namespace | trunc 63 | trimSuffix "-")
      "api_url" (printf "%s/api" (include "af-gateway.internalUrl" .))
      "cluster_domain" .Values.clusterDomain
      "namespace_per_user" $k.namespacePerUser
      "user_namespace_prefix" $k.userNamespacePrefix
      "scheduler_address" $k.schedulerAddress
      "image_pull_policy" $k.imagePullPolicy
      "python" $k.python -}}
{{- if not $k.namespacePerUser -}}
{{- $_ := set $kube "namespace" .Release.Namespace -}}
{{- end -}}
{{- if $k.image -}}
{{- $_ := set $kube "image" $k.image -}}
{{- end -}}
{{- if $k.nodeSelector -}}
{{- $_ := set $kube "node_selector" $k.nodeSelector -}}
{{- end -}}
{{- if $k.tolerations -}}
{{- $_ := set $kube "tolerations" $k.tolerations -}}
{{- end -}}
{{- if $k.profiles -}}
{{- $_ := set $kube "profiles" $k.profiles -}}
{{- end -}}
{{- $workflows := dict -}}
{{- if $k.workspaceVolume -}}
{{- $_ := set $kube "workspace_volume" $k.workspaceVolume -}}
{{- $_ := set $workflows "workspace_root" $k.workspaceMountPath -}}
{{- else -}}
{{- $_ := set $workflows "workspace_root" (printf "%s/workflows" (include "af-gateway.dataDir" .)) -}}
{{- end -}}
{{- $host := include "af-gateway.host" . -}}
{{- $base := dict
      "listen" (printf "0.0.0.0:%d" (int .Values.containerPort))
      "data_dir" (include "af-gateway.dataDir" .)
      "backend" (dict "type" "kubernetes" "kubernetes" $kube "local" (dict "prefork" false))
      "workflows" $workflows
      "client" (dict "address" (include "af-gateway.internalUrl" .) "proxy_address" (printf "gateway://%s:%d" $host $port)) -}}
{{- if .Values.jupyterhub.service.enabled -}}
{{- $name := .Values.jupyterhub.service.name -}}
{{- $_ := set $base "base_path" (printf "/services/%s/" $name) -}}
{{- $_ := set $base "auth" (dict "jupyterhub" (dict "client_id" (printf "service-%s" $name))) -}}
{{- end -}}
{{- $merged := mergeOverwrite $base (deepCopy .Values.config) -}}
{{- toYaml $merged -}}
{{- end -}}
