{{/*
Rules the operator needs in every watched namespace. operator/celeriac/permissions.py
is the reasoned list these must equal; tests/integration/test_chart.py checks both ways.
*/}}
{{- define "celeriac.namespacedRules" -}}
# kopf watches the resources and keeps its finalizer and progress annotations on
# them; status is a subresource; a WorkerPool reads its broker.
- apiGroups: [celeriac.io]
  resources: [workflowbrokers]
  verbs: [get, list, watch, patch]
- apiGroups: [celeriac.io]
  resources: [workerpools]
  verbs: [list, watch, patch]
- apiGroups: [celeriac.io]
  resources: [workflowbrokers/status, workerpools/status]
  verbs: [patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
# A generated broker password is created once, then only read.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, create]
# Rendered objects: server-side apply (get, patch; create when the object is new)
# and pruning (list, delete).
- apiGroups: [""]
  resources: [configmaps, services]
  verbs: [get, list, create, patch, delete]
- apiGroups: [apps]
  resources: [statefulsets]
  verbs: [get, list, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, create, patch, delete]
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [list, delete]
# Worker pools: Deployments applied like the rest; the autoscaler sets replicas
# through the scale subresource.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [apps]
  resources: [deployments/scale]
  verbs: [patch]
# Role labels on Redis pods, OnDelete rollouts; the autoscaler lists worker pods
# and sets their deletion cost; pool reconciles watch worker pods.
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch, patch, delete]
{{- end -}}

{{- define "celeriac.namespacedPeeringRule" -}}
- apiGroups: [kopf.dev]
  resources: [kopfpeerings]
  verbs: [list, watch, patch]
{{- end -}}
