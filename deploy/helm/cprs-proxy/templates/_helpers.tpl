{{/* Names, labels, and the proxy's config file assembled from values. */}}

{{- define "cprs.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "cprs.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "cprs.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "cprs.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-keys" (include "cprs.fullname" .)) -}}
{{- end -}}

{{- define "cprs.redisUrl" -}}
{{- if .Values.redis.url -}}
{{- .Values.redis.url -}}
{{- else if .Values.redis.bundled.enabled -}}
{{- printf "redis://%s-redis:6379/0" (include "cprs.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* One URL per engine pod, from the replica count: the StatefulSet's pods under its headless
Service (engine.yaml). Scaling the engines means a new config, which `helm upgrade` renders. */}}
{{- define "cprs.engineUrls" -}}
{{- if lt (int .Values.engine.replicas) 1 -}}
{{- fail "engine.replicas must be at least 1 while engine.enabled (else set engine.enabled false)" -}}
{{- end -}}
{{- $name := printf "%s-engine" (include "cprs.fullname" .) -}}
{{- range $i := until (int .Values.engine.replicas) }}
- {{ printf "http://%s-%d.%s.%s.svc:%v" $name $i $name $.Release.Namespace $.Values.engine.port }}
{{- end -}}
{{- end -}}

{{/* config.yaml: values.config with the deployment's own keys set over it. */}}
{{- define "cprs.config" -}}
{{- $c := deepCopy .Values.config -}}
{{- $cache := deepCopy ($c.cache | default dict) -}}
{{- $url := include "cprs.redisUrl" . -}}
{{- if $url -}}
{{- $_ := set $cache "redis_url" $url -}}
{{- end -}}
{{- $_ := set $cache "key_secret_env" "CPRS_CACHE_KEY_SECRET" -}}
{{- $_ := set $c "cache" $cache -}}
{{- $engine := deepCopy ($c.engine | default dict) -}}
{{- if .Values.engine.enabled -}}
{{- $_ := set $engine "mode" "remote" -}}
{{- $_ := set $engine "urls" (include "cprs.engineUrls" . | fromYamlArray) -}}
{{- else -}}
{{- $_ := set $engine "mode" "local" -}}
{{- end -}}
{{- $_ := set $c "engine" $engine -}}
{{- $server := deepCopy ($c.server | default dict) -}}
{{- $_ := set $server "host" "0.0.0.0" -}}
{{- $_ := set $server "port" (int .Values.proxy.port) -}}
{{- $_ := set $c "server" $server -}}
{{- toYaml $c -}}
{{- end -}}
