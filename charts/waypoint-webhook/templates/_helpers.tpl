{{/* The objects of one install carry the app labels and waypoint-webhook.io/self, which every
webhook entry's objectSelector skips: the webhook never judges its own pods, in any namespace. */}}
{{- define "waypoint-webhook.labels" -}}
app.kubernetes.io/name: waypoint-webhook
app.kubernetes.io/part-of: waypoint-webhook
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
waypoint-webhook.io/self: "true"
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "waypoint-webhook.selector" -}}
app.kubernetes.io/name: waypoint-webhook
{{- end }}

{{/* Whether the release namespace is the webhook's own (excluded by name) or a shared one. */}}
{{- define "waypoint-webhook.excludeRelease" -}}
{{- $mode := toString .Values.namespaces.excludeRelease -}}
{{- $shared := list "default" "istio-system" "kube-public" "kube-system" "kube-node-lease" -}}
{{- if or (eq $mode "true") (and (eq $mode "auto") (not (has .Release.Namespace $shared))) -}}true{{- end -}}
{{- end }}

{{/* The excluded namespaces, one list for the webhook selectors, the policy bindings and the server. */}}
{{- define "waypoint-webhook.excludedList" -}}
{{- $names := .Values.namespaces.excluded -}}
{{- if include "waypoint-webhook.excludeRelease" . -}}
{{- $names = append $names .Release.Namespace -}}
{{- end -}}
{{- toJson (uniq $names) -}}
{{- end }}

{{- define "waypoint-webhook.excludedNamespaces" -}}
{{- include "waypoint-webhook.excludedList" . -}}
{{- end }}

{{/* A route's failure policy, computed as webhook/core/routing.py does: Fail when one of its codes
is a denial under the preset and overrides (argument: list $ (dict code (list default strict overridable))). */}}
{{- define "waypoint-webhook.failurePolicy" -}}
{{- $root := index . 0 -}}
{{- $deny := false -}}
{{- range $code, $sev := index . 1 -}}
{{- $s := index $sev (eq $root.Values.preset "strict" | ternary 1 0) -}}
{{- if index $sev 2 -}}
{{- if and (eq $code "StateUnavailable") $root.Values.unsynced -}}{{- $s = $root.Values.unsynced -}}{{- end -}}
{{- if hasKey $root.Values.severities $code -}}{{- $s = index $root.Values.severities $code -}}{{- end -}}
{{- end -}}
{{- if eq $s "deny" -}}{{- $deny = true -}}{{- end -}}
{{- end -}}
{{- if and $deny (eq $root.Values.webhook.failurePolicy "Fail") -}}Fail{{- else -}}Ignore{{- end -}}
{{- end }}

{{- define "waypoint-webhook.webhookAnnotations" -}}
{{- $a := dict -}}
{{- if .Values.aks.admissionsEnforcerDisabled -}}{{- $_ := set $a "admissions.enforcer/disabled" "true" -}}{{- end -}}
{{- if eq .Values.certificates.mode "cert-manager" -}}
{{- $_ := set $a "cert-manager.io/inject-ca-from" (printf "%s/waypoint-webhook-serving" .Release.Namespace) -}}
{{- end -}}
{{- range $k, $v := .Values.webhook.annotations -}}{{- $_ := set $a $k $v -}}{{- end -}}
{{- toYaml $a -}}
{{- end }}

{{/* The serving pair, made once per render and kept across upgrades (lookup of the Secret). */}}
{{- define "waypoint-webhook.generatedPair" -}}
{{- if not (hasKey .Values "__pair") -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace "waypoint-webhook-tls" -}}
{{- $pair := dict -}}
{{- if and $existing (not .Values.certificates.generate.rotate) (hasKey (default dict $existing.data) "ca.crt") -}}
{{- $pair = dict "ca" (index $existing.data "ca.crt") "crt" (index $existing.data "tls.crt") "key" (index $existing.data "tls.key") -}}
{{- else -}}
{{- $ns := .Release.Namespace -}}
{{- $names := list (printf "waypoint-webhook.%s.svc" $ns) (printf "waypoint-webhook.%s.svc.cluster.local" $ns) (printf "waypoint-webhook.%s" $ns) -}}
{{- $ca := genCA "waypoint-webhook CA" (int (mul 2 .Values.certificates.generate.days)) -}}
{{- $cert := genSignedCert (index $names 0) nil $names (int .Values.certificates.generate.days) $ca -}}
{{- $pair = dict "ca" ($ca.Cert | b64enc) "crt" ($cert.Cert | b64enc) "key" ($cert.Key | b64enc) -}}
{{- end -}}
{{- $_ := set .Values "__pair" $pair -}}
{{- end -}}
{{- toJson .Values.__pair -}}
{{- end }}

{{- define "waypoint-webhook.caBundle" -}}
{{- if eq .Values.certificates.mode "generate" -}}
caBundle: {{ (include "waypoint-webhook.generatedPair" . | fromJson).ca }}
{{- else if eq .Values.certificates.mode "secret" -}}
caBundle: {{ required "certificates.secret.caBundle is required with certificates.mode=secret" .Values.certificates.secret.caBundle }}
{{- end -}}
{{- end }}

{{- define "waypoint-webhook.secretName" -}}
{{- if eq .Values.certificates.mode "secret" -}}
{{- required "certificates.secret.name is required with certificates.mode=secret" .Values.certificates.secret.name -}}
{{- else -}}waypoint-webhook-tls{{- end -}}
{{- end }}

{{- define "waypoint-webhook.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end }}

{{/* The scrape's scheme, and with monitoring.tls the TLS settings that verify the serving
certificate: the CA from the TLS Secret (ca.crt, in every certificate mode) and the Service's
DNS name, which the certificate carries. */}}
{{- define "waypoint-webhook.scrapeTLS" -}}
{{- $root := . -}}
{{- if $root.Values.monitoring.tls -}}
scheme: https
tlsConfig:
  ca:
    secret:
      name: {{ include "waypoint-webhook.secretName" $root }}
      key: ca.crt
  serverName: waypoint-webhook.{{ $root.Release.Namespace }}.svc
{{- else -}}
scheme: http
{{- end -}}
{{- end -}}
