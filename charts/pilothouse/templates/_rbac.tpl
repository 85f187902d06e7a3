{{/*
The operator's permissions, in one place for both RBAC scopes. Each rule names what needs it;
tests/e2e run the operator under exactly these rules and prove that each one is needed.
*/}}

{{/* Rules on namespaced objects: a ClusterRole's or each watched namespace's Role's. */}}
{{- define "pilothouse.operator.namespacedRules" -}}
# AgentDeployments and AgentPolicies: watched by Kopf, which patches its finalizer and
# bookkeeping annotations onto them.
- apiGroups: ["pilothouse.dev"]
  resources: ["agentdeployments", "agentpolicies"]
  verbs: ["get", "list", "watch", "patch"]
# Their status: conditions, replicas, applied policies / the agents a policy applies to.
- apiGroups: ["pilothouse.dev"]
  resources: ["agentdeployments/status", "agentpolicies/status"]
  verbs: ["get", "patch"]
# The autoscaler writes the replica count through the scale subresource.
- apiGroups: ["pilothouse.dev"]
  resources: ["agentdeployments/scale"]
  verbs: ["get", "patch", "update"]
# Each agent's runtime config, Service and ServiceAccount.
- apiGroups: [""]
  resources: ["configmaps", "services", "serviceaccounts"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# Each agent's pods.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# Events on AgentDeployments and AgentPolicies (Kopf's and the operator's own).
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- if and .Values.operator.standby.enabled (not (include "pilothouse.clusterwide" .)) }}
# Kopf peering of a namespaced operator: one KopfPeering per watched namespace.
- apiGroups: ["kopf.dev"]
  resources: ["kopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
{{- end }}

{{/* Rules only a ClusterRole can hold. */}}
{{- define "pilothouse.operator.clusterRules" -}}
{{- if .Values.rbac.crdRead }}
# Kopf notices CRDs installed or upgraded while it runs.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
{{- end }}
{{- if and .Values.operator.standby.enabled (include "pilothouse.clusterwide" .) }}
# Kopf peering of a cluster-wide operator.
- apiGroups: ["kopf.dev"]
  resources: ["clusterkopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
{{- end }}
