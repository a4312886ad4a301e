{{/*
Zero-to-JupyterHub values that register the gateway as a Hub service. The token is deliberately
not part of it (the snippet lives in a ConfigMap): it is JUPYTERHUB_API_TOKEN in the gateway's
Secret, handed to the Hub with --set-string (see af-gateway.hubTokenCommand).
*/}}
{{- define "af-gateway.hubSnippet" -}}
{{- $name := .Values.jupyterhub.service.name -}}
# Zero-to-JupyterHub values registering AF Gateway (release {{ .Release.Name }}, namespace {{ .Release.Namespace }})
# as the JupyterHub service "{{ $name }}". Merge them into your JupyterHub values and pass the
# service token (JUPYTERHUB_API_TOKEN of Secret {{ .Release.Namespace }}/{{ include "af-gateway.secretName" . }}) as
#   --set-string hub.services.{{ $name }}.apiToken="$(kubectl get secret -n {{ .Release.Namespace }} {{ include "af-gateway.secretName" . }} -o jsonpath='{.data.JUPYTERHUB_API_TOKEN}' | base64 -d)"
hub:
  services:
    {{ $name }}:
      # where the Hub's proxy sends /services/{{ $name }}/ (the gateway serves that prefix)
      url: {{ include "af-gateway.hubServiceUrl" . }}
      oauth_redirect_uri: /services/{{ $name }}/oauth_callback
      oauth_no_confirm: true
  loadRoles:
    # users may reach the service (JupyterHub answers 403 at its authorize step otherwise)
    user:
      scopes:
        - self
        - "access:services!service={{ $name }}"
    # notebooks reach it with their server's token (JUPYTERHUB_API_TOKEN, dask_gateway's JupyterHubAuth)
    server:
      scopes:
        - "users:activity!user"
        - "access:servers!server"
        - "access:services!service={{ $name }}"
    # With config.auth.oidc set and the provider's tokens kept in the Hub's auth_state, the
    # gateway's token broker reads them; uncomment to allow it:
    # {{ $name }}-auth-state:
    #   services: [{{ $name }}]
    #   scopes: ["admin:auth_state", "read:users"]
singleuser:
  networkPolicy:
    # notebooks reach the gateway pod (API and Dask scheduler traffic) on its one port
    egress:
      - to:
          - namespaceSelector:
              matchLabels:
                kubernetes.io/metadata.name: {{ .Release.Namespace }}
            podSelector:
              matchLabels:
                {{- include "af-gateway.selectorLabels" . | nindent 16 }}
        ports:
          - port: {{ int .Values.containerPort }}
            protocol: TCP
{{- end -}}
