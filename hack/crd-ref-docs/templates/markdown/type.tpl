{{- define "doc" -}}
{{- regexReplaceAll "([^\n])\n([^\n])" (. | replace "<" "&lt;" | replace ">" "&gt;") "${1} ${2}" | markdownRenderFieldDoc -}}
{{- end -}}

{{- define "rules" -}}
{{- range . }}
- `{{ .Rule | replace "`" "'" }}`: {{ .Message }}
{{- end }}
{{- end -}}

{{- define "type" -}}
{{- $type := . -}}
{{- if markdownShouldRenderType $type }}
### {{ $type.Name }}

{{ $type.Doc | replace "<" "&lt;" | replace ">" "&gt;" }}
{{ if $type.GVK }}
{{- $res := index $type.Markers "kubebuilder:resource" }}
| | |
|---|---|
| API version | `{{ $type.GVK.Group }}/{{ $type.GVK.Version }}` |
{{- range $res }}
| Scope | {{ .Scope | default "Namespaced" }} |
{{- if .ShortName }}
| Short names | {{ range $i, $n := .ShortName }}{{ if $i }}, {{ end }}`{{ $n }}`{{ end }} |
{{- end }}
{{- if .Categories }}
| Categories | {{ range $i, $n := .Categories }}{{ if $i }}, {{ end }}`{{ $n }}`{{ end }} |
{{- end }}
{{- end }}
{{- with index $type.Markers "kubebuilder:printcolumn" }}

Columns of `kubectl get` (priority 1: only with `-o wide`):

| Column | Type | JSONPath | Priority |
|---|---|---|---|
{{- range . }}
| {{ .Name }} | {{ .Type }} | `{{ .JSONPath }}` | {{ .Priority }} |
{{- end }}
{{- end }}
{{ end }}
{{- if $type.IsAlias }}
Type: {{ markdownRenderTypeLink $type.UnderlyingType }}
{{- range $type.Validation }}{{ if not (hasPrefix "Optional" .) }}; {{ . | replace "{}" "" | trimSuffix ": " }}{{ end }}{{ end }}.
{{ end }}
{{- with index $type.Markers "kubebuilder:validation:XValidation" }}
Validation rules:
{{ template "rules" . }}
{{ end }}
{{- if $type.References }}
Used by: {{ range $i, $r := $type.SortedReferences }}{{ if $i }}, {{ end }}{{ markdownRenderTypeLink $r }}{{ end }}.
{{ end }}
{{- if $type.Members }}
| Field | Type | Required | Default | Validation | Description |
|---|---|---|---|---|---|
{{- range $type.Members }}
{{- $opt := false }}{{ range .Validation }}{{ if hasPrefix "Optional" . }}{{ $opt = true }}{{ end }}{{ end }}
| `{{ .Name }}` | {{ markdownRenderType .Type }} | {{ if or $opt (eq .Name "metadata") }}no{{ else }}yes{{ end }} | {{ with .Default }}`{{ . }}`{{ end }} | {{ range $i, $v := .Validation }}{{ if not (or (hasPrefix "Optional" $v) (hasPrefix "Required" $v)) }}{{ $v | replace "{}" "" | markdownRenderFieldDoc }}<br>{{ end }}{{ end }}{{ range index .Markers "kubebuilder:validation:XValidation" }}rule: {{ .Message | markdownRenderFieldDoc }}<br>{{ end }} | {{ if eq .Name "metadata" }}Standard object metadata.{{ else }}{{ template "doc" .Doc }}{{ end }} |
{{- end }}
{{ end }}
{{- end }}
{{- end -}}
