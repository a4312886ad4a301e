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

{{/*
The claim mounted at the data directory; empty: an emptyDir. With SQLite (and persistence) the
chart's claim or persistence.existingClaim. With PostgreSQL the durable state is in the database and
the directory only holds per-cluster scratch files, so only an existingClaim is mounted.
*/}}
{{- define "af-gateway.dataClaim" -}}
{{- if .Values.persistence.enabled -}}
{{- if .Values.persistence.existingClaim -}}
{{- .Values.persistence.existingClaim -}}
{{- else if not .Values.postgresql.enabled -}}
{{- include "af-gateway.fullname" . -}}
{{- end -}}
{{- end -}}
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
{{- /* The gateway holds every user's tokens and the service account: it stays hardened. */ -}}
{{- $psc := .Values.podSecurityContext | default dict -}}
{{- $csc := .Values.securityContext | default dict -}}
{{- if ne (toString $psc.runAsNonRoot) "true" -}}
{{- fail "podSecurityContext.runAsNonRoot must be true: the gateway never runs as root" -}}
{{- end -}}
{{- if or (not (hasKey $psc "runAsUser")) (eq (int $psc.runAsUser) 0) -}}
{{- fail "podSecurityContext.runAsUser must be a non-zero uid (the image's is 1000)" -}}
{{- end -}}
{{- if ne (toString $csc.readOnlyRootFilesystem) "true" -}}
{{- fail "securityContext.readOnlyRootFilesystem must be true (the gateway writes only to its data volume and /tmp, both mounted)" -}}
{{- end -}}
{{- if or (ne (toString $csc.allowPrivilegeEscalation) "false") (eq (toString $csc.privileged) "true") -}}
{{- fail "securityContext.allowPrivilegeEscalation must be false and privileged unset or false" -}}
{{- end -}}
{{- if not (has "ALL" (dig "capabilities" "drop" list $csc)) -}}
{{- fail "securityContext.capabilities.drop must contain ALL" -}}
{{- end -}}
{{- if dig "capabilities" "add" list $csc -}}
{{- fail "securityContext.capabilities.add must be empty: the gateway needs no capability" -}}
{{- end -}}
{{- if ne (dig "seccompProfile" "type" "" $psc) "RuntimeDefault" -}}
{{- if ne (dig "seccompProfile" "type" "" $csc) "RuntimeDefault" -}}
{{- fail "podSecurityContext.seccompProfile.type (or securityContext's) must be RuntimeDefault" -}}
{{- end -}}
{{- end -}}
{{- $pg := .Values.postgresql -}}
{{- if lt (int .Values.replicaCount) 1 -}}
{{- fail (printf "replicaCount is %v: it must be at least 1 (one gateway serves; with postgresql.enabled more replicas are standbys)" .Values.replicaCount) -}}
{{- end -}}
{{- if and (gt (int .Values.replicaCount) 1) (not $pg.enabled) -}}
{{- fail (printf "replicaCount is %v, but with the default SQLite state (one file on one volume) AF Gateway runs exactly one replica. For several replicas (one serves, the others are hot standbys) keep the state in PostgreSQL: set postgresql.enabled=true and postgresql.url=postgresql://USER:PASSWORD@HOST:5432/DATABASE (or AF_GATEWAY_DATABASE_URL in secrets.existingSecret). Otherwise set replicaCount: 1." .Values.replicaCount) -}}
{{- end -}}
{{- if and $pg.url (not $pg.enabled) -}}
{{- fail "postgresql.url is set but postgresql.enabled is false, so the gateway would keep its state in SQLite: set postgresql.enabled=true, or leave postgresql.url empty" -}}
{{- end -}}
{{- if $pg.enabled -}}
{{- if and (not $pg.url) (not .Values.secrets.existingSecret) -}}
{{- fail "postgresql.enabled needs the database's URL: set postgresql.url=postgresql://USER:PASSWORD@HOST:5432/DATABASE (it goes into the chart's Secret as AF_GATEWAY_DATABASE_URL, never into the ConfigMap), or put the key AF_GATEWAY_DATABASE_URL into your own Secret and name it in secrets.existingSecret" -}}
{{- end -}}
{{- if and $pg.url .Values.secrets.existingSecret -}}
{{- fail "postgresql.url cannot be used with secrets.existingSecret (the chart then renders no Secret to put it in): add the key AF_GATEWAY_DATABASE_URL to that Secret and leave postgresql.url empty" -}}
{{- end -}}
{{- if and $pg.url (not (regexMatch "^postgres(ql)?://" (toString $pg.url))) -}}
{{- fail "postgresql.url must start with postgresql:// or postgres:// (postgresql://USER:PASSWORD@HOST:5432/DATABASE, parameters such as ?sslmode=verify-full allowed); the value is not repeated here because it holds a password" -}}
{{- end -}}
{{- if or (lt (int $pg.poolSize) 1) (gt (int $pg.poolSize) 100) -}}
{{- fail (printf "postgresql.poolSize is %v: it must be an integer from 1 to 100 (connections per replica)" $pg.poolSize) -}}
{{- end -}}
{{- if or (lt (float64 $pg.standbyPollPeriod) 0.2) (gt (float64 $pg.standbyPollPeriod) 60.0) -}}
{{- fail (printf "postgresql.standbyPollPeriod is %v: it must be from 0.2 to 60 (seconds)" $pg.standbyPollPeriod) -}}
{{- end -}}
{{- end -}}
{{- if hasKey .Values.config "state_store" -}}
{{- fail "config.state_store is set by the chart from postgresql.* (the URL holds a password, so it goes into the Secret, never into the ConfigMap): set postgresql.enabled, postgresql.url, postgresql.poolSize and postgresql.standbyPollPeriod instead" -}}
{{- end -}}
{{- if hasKey .Values.config "listen" -}}
{{- fail "config.listen is set by the chart (0.0.0.0:<containerPort>); set containerPort (and service.port) instead" -}}
{{- end -}}
{{- if hasKey .Values.config "data_dir" -}}
{{- fail "config.data_dir is set by the chart (/var/lib/af-gateway, the gateway's volume); remove it from config" -}}
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
{{- if and (not (dig "oidc" "audience" list $auth)) (not (dig "oidc" "allow_any_audience" false $auth)) -}}
{{- fail "config.auth.type oidc needs config.auth.oidc.audience (e.g. [af-gateway]), or config.auth.oidc.allow_any_audience: true if every token of the provider is meant for this gateway" -}}
{{- end -}}
{{- else if eq $type "jupyterhub" -}}
{{- if not (dig "jupyterhub" "api_url" "" $auth) -}}
{{- fail "config.auth.type jupyterhub needs config.auth.jupyterhub.api_url (e.g. http://hub:8081/hub/api for Zero-to-JupyterHub in the same namespace)" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The gateway's configuration: what the chart owns (listener, state directory, state store pool and
poll period with PostgreSQL, Kubernetes backend, workspace root, JupyterHub service prefix, client
addresses), then .Values.config merged over it with mergeOverwrite. Secrets are never part of it:
they come from the Secret as environment variables.
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
      "python" $k.python
      "gateway_pod_labels" (include "af-gateway.selectorLabels" . | fromYaml) -}}
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
{{- if .Values.postgresql.enabled -}}
{{- /* never the URL: it holds a password and comes from the Secret as AF_GATEWAY_DATABASE_URL */ -}}
{{- $_ := set $base "state_store" (dict "pool_size" (int .Values.postgresql.poolSize) "standby_poll_period" (float64 .Values.postgresql.standbyPollPeriod)) -}}
{{- end -}}
{{- if .Values.jupyterhub.service.enabled -}}
{{- $name := .Values.jupyterhub.service.name -}}
{{- $_ := set $base "base_path" (printf "/services/%s/" $name) -}}
{{- $_ := set $base "auth" (dict "jupyterhub" (dict "client_id" (printf "service-%s" $name))) -}}
{{- end -}}
{{- $merged := mergeOverwrite $base (deepCopy .Values.config) -}}
{{- toYaml $merged -}}
{{- end -}}
