{{/* Names and labels. */}}
{{- define "ecom-stream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ecom-stream.fullname" -}}
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

{{- define "ecom-stream.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ecom-stream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ecom-stream.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "ecom-stream.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "ecom-stream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ecom-stream.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ecom-stream.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The subscriptions `run` reads, named as the binary names them: the topic + "-sub". */}}
{{- define "ecom-stream.ordersSubscription" -}}
{{- $p := default dict .Values.config.pubsub }}
{{- default (printf "%s-sub" (default "orders_data" $p.orders_topic)) $p.orders_subscription }}
{{- end }}
{{- define "ecom-stream.paymentsSubscription" -}}
{{- $p := default dict .Values.config.pubsub }}
{{- default (printf "%s-sub" (default "payments_data" $p.payments_topic)) $p.payments_subscription }}
{{- end }}
{{- define "ecom-stream.project" -}}
{{- required "config.project: the Google Cloud project of the topics and subscriptions" .Values.config.project }}
{{- end }}

{{/* The Secret holding the Cassandra password, or nothing when there is no password. */}}
{{- define "ecom-stream.passwordSecret" -}}
{{- if .Values.cassandraPassword.existingSecret }}
{{- .Values.cassandraPassword.existingSecret }}
{{- else if .Values.cassandraPassword.value }}
{{- printf "%s-cassandra" (include "ecom-stream.fullname" .) }}
{{- end }}
{{- end }}

{{/*
The TOML file: the config map with the keys the chart owns added. Written here rather than
with toToml, which writes every number as a float (values files reach templates as floats)
and the binary refuses `shards = 1.0` for an integer setting.
*/}}
{{- define "ecom-stream.configToml" -}}
{{- $config := deepCopy .Values.config }}
{{- $_ := set $config "store" "cassandra" }}
{{- $_ := set $config "shutdown_deadline" (printf "%ds" (int .Values.shutdownDeadlineSeconds)) }}
{{- range $key := keys $config | sortAlpha }}
{{- $value := get $config $key }}
{{- if not (kindIs "map" $value) }}
{{ $key }} = {{ include "ecom-stream.tomlValue" (dict "key" $key "value" $value) }}
{{- end }}
{{- end }}
{{- range $table := keys $config | sortAlpha }}
{{- $entries := get $config $table }}
{{- if kindIs "map" $entries }}

[{{ $table }}]
{{- range $key := keys $entries | sortAlpha }}
{{ $key }} = {{ include "ecom-stream.tomlValue" (dict "key" (printf "%s.%s" $table $key) "value" (get $entries $key)) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ecom-stream.tomlValue" -}}
{{- $v := .value }}
{{- if kindIs "string" $v }}{{ toJson $v }}
{{- else if kindIs "bool" $v }}{{ $v }}
{{- else if and (kindIs "float64" $v) (eq $v (float64 (int64 $v))) }}{{ int64 $v }}
{{- else if or (kindIs "int" $v) (kindIs "int64" $v) }}{{ $v }}
{{- else }}{{ fail (printf "config.%s: %v is not text, a whole number or a boolean (durations are text: \"5s\")" .key $v) }}
{{- end }}
{{- end }}

{{/*
Refusals: a setting that would make the deployment lose data or time out its own drain fails
the render with a message naming the value to change.
*/}}
{{- define "ecom-stream.checks" -}}
{{- $config := .Values.config | default dict }}
{{- $cassandra := get $config "cassandra" | default dict }}
{{- if hasKey $config "metrics_addr" }}
{{- fail "config.metrics_addr: the chart sets the listener (0.0.0.0 on metrics.port); set metrics.port instead" }}
{{- end }}
{{- if hasKey $config "shutdown_deadline" }}
{{- fail "config.shutdown_deadline: set shutdownDeadlineSeconds instead (the chart checks it against terminationGracePeriodSeconds)" }}
{{- end }}
{{- if and (hasKey $config "store") (ne (toString (get $config "store")) "cassandra") }}
{{- fail "config.store: only \"cassandra\" is deployable: the embedded store is a file inside one pod, lost with the pod after its messages were acked" }}
{{- end }}
{{- if hasKey $cassandra "password" }}
{{- fail "config.cassandra.password: the password never goes into the ConfigMap; use cassandraPassword.existingSecret (or cassandraPassword.value)" }}
{{- end }}
{{- if and .Values.cassandraPassword.existingSecret .Values.cassandraPassword.value }}
{{- fail "cassandraPassword: set existingSecret or value, not both" }}
{{- end }}
{{- if and (get $cassandra "username") (not (include "ecom-stream.passwordSecret" .)) }}
{{- fail "config.cassandra.username is set but no password: set cassandraPassword.existingSecret (or cassandraPassword.value)" }}
{{- end }}
{{- if le (int .Values.shutdownDeadlineSeconds) 0 }}
{{- fail "shutdownDeadlineSeconds must be a positive number of seconds" }}
{{- end }}
{{- if le (int .Values.terminationGracePeriodSeconds) (int .Values.shutdownDeadlineSeconds) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be above shutdownDeadlineSeconds (%d): the kubelet SIGKILLs the pod at the grace period, before the drain ends" (int .Values.terminationGracePeriodSeconds) (int .Values.shutdownDeadlineSeconds)) }}
{{- end }}
{{- if not (has .Values.autoscaling.mode (list "none" "keda" "hpa")) }}
{{- fail (printf "autoscaling.mode: %q is none of none, keda, hpa" .Values.autoscaling.mode) }}
{{- end }}
{{- if and .Values.setup.enabled (not .Values.setup.serviceAccountName) }}
{{- fail "setup.enabled: setup.serviceAccountName must name an existing service account with Pub/Sub admin rights (a pre-install hook runs before the chart's own service account exists)" }}
{{- end }}
{{- if and .Values.setup.enabled .Values.cassandraPassword.value }}
{{- fail "setup.enabled: use cassandraPassword.existingSecret (a pre-install hook runs before the chart's own Secret exists)" }}
{{- end }}
{{- end }}

{{/* The container and volumes shared by run, dlq replay and setup. */}}
{{- define "ecom-stream.container" -}}
- name: {{ .name }}
  image: {{ include "ecom-stream.image" .root | quote }}
  imagePullPolicy: {{ .root.Values.image.pullPolicy }}
  args:
    {{- range .args }}
    - {{ . | quote }}
    {{- end }}
    - --config
    - /etc/ecom-stream/ecom-stream.toml
  env:
    - name: ECOM_METRICS_ADDR
      value: {{ printf "0.0.0.0:%d" (int .root.Values.metrics.port) | quote }}
    {{- with include "ecom-stream.passwordSecret" .root }}
    - name: ECOM_CASSANDRA_PASSWORD
      valueFrom:
        secretKeyRef:
          name: {{ . }}
          key: {{ $.root.Values.cassandraPassword.key }}
    {{- end }}
    {{- if .root.Values.gcpCredentialsSecret }}
    - name: GOOGLE_APPLICATION_CREDENTIALS
      value: /var/run/secrets/google/key.json
    {{- end }}
  securityContext:
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    runAsNonRoot: true
    capabilities:
      drop: ["ALL"]
  volumeMounts:
    - name: config
      mountPath: /etc/ecom-stream/ecom-stream.toml
      subPath: ecom-stream.toml
      readOnly: true
    - name: tmp
      mountPath: /tmp
    {{- if .root.Values.cassandraTls.existingSecret }}
    - name: cassandra-tls
      mountPath: /etc/ecom-stream/tls
      readOnly: true
    {{- end }}
    {{- if .root.Values.gcpCredentialsSecret }}
    - name: gcp-credentials
      mountPath: /var/run/secrets/google
      readOnly: true
    {{- end }}
{{- end }}

{{- define "ecom-stream.podSecurityContext" -}}
runAsNonRoot: true
# The image's user (Dockerfile: useradd --uid 10001).
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "ecom-stream.volumes" -}}
- name: config
  configMap:
    name: {{ .configMap }}
- name: tmp
  emptyDir:
    sizeLimit: 16Mi
{{- if .root.Values.cassandraTls.existingSecret }}
- name: cassandra-tls
  secret:
    secretName: {{ .root.Values.cassandraTls.existingSecret }}
{{- end }}
{{- if .root.Values.gcpCredentialsSecret }}
- name: gcp-credentials
  secret:
    secretName: {{ .root.Values.gcpCredentialsSecret }}
{{- end }}
{{- end }}
