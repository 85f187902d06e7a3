{{/*
The operator's permissions, in one place for both RBAC scopes. Each rule names what needs it;
tests/e2e run the operator under exactly these rules and prove that each one is needed.
*/}}

{{/* Rules on namespaced objects: a ClusterRole's or each watched namespace's Role's. */}}
{{- define "pilothouse.operator.namespacedRules" -}}
# AgentDeployments and AgentPolicies: Kopf lists and watches them and patches its finalizer and
# bookkeeping annotations onto them; the reconciler reads them.
- apiGroups: ["pilothouse.dev"]
  resources: ["agentdeployments", "agentpolicies"]
  verbs: ["get", "list", "watch", "patch"]
# Their status: conditions, replicas, queue depth; the agents a policy applies to.
- apiGroups: ["pilothouse.dev"]
  resources: ["agentdeployments/status", "agentpolicies/status"]
  verbs: ["patch"]
# Each agent's runtime config (server-side apply: create and patch; watched, list and watch, so
# an edit or a deletion is put back at once), and the ConfigMaps of systemPromptFrom (get).
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Each agent's Service (server-side apply; watched for drift).
- apiGroups: [""]
  resources: ["services"]
  verbs: ["list", "watch", "create", "patch"]
# Each agent's ServiceAccount (server-side apply; watched for drift); with
# podTemplate.serviceAccountName the pods use another one, and the operator deletes its own.
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# Each agent's Deployment: applied, watched (list, watch) for its rollout and for drift, read and
# patched by the autoscaler (spec.replicas).
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch"]
# An agent's PodDisruptionBudget exists only with two or more replicas: below, the operator
# finds (list) and deletes it; watched for drift.
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# An agent's NetworkPolicy exists only with spec.network: without, the operator finds (list)
# and deletes it.
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["list", "create", "patch", "delete"]
{{- if .Values.rbac.secretRead }}
# The reconciler checks that every Secret an agent's pods reference exists (metadata only, no
# value); the autoscaler reads the Redis URL of an agent with spec.scaling from its Secret (or
# the runtime.redis Secret). Pods get Secrets as references. Without (rbac.secretRead: false)
# no Secret is read: missing ones show as pods that cannot start, and the autoscaler reads
# operator.autoscalerRedis for every agent.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end }}
# Events on AgentDeployments and AgentPolicies (the reconciler's and Kopf's warnings).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- if and .Values.operator.standby.enabled (not (include "pilothouse.clusterwide" .)) }}
# Kopf peering of a namespaced operator: one KopfPeering per watched namespace.
- apiGroups: ["kopf.dev"]
  resources: ["kopfpeerings"]
  verbs: ["list", "watch", "patch"]
{{- end }}
{{- end }}

{{/* Rules only a ClusterRole can hold. */}}
{{- define "pilothouse.operator.clusterRules" -}}
{{- if and (not (include "pilothouse.clusterwide" .)) .Values.rbac.namespaceRead }}
# Kopf, given namespaces to watch, lists and watches namespaces to find them (without it, it
# retries for about a minute before it starts, then assumes they exist).
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
{{- if .Values.rbac.agentTokenReviews }}
# Agents authenticate their callers with Kubernetes tokens and RBAC (the default): each agent's
# ServiceAccount gets one ClusterRoleBinding to system:auth-delegator (create tokenreviews and
# subjectaccessreviews, nothing else), applied with the agent and deleted with it.
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["clusterrolebindings"]
  verbs: ["create", "patch", "delete"]
# The API server lets the operator bind a role only if it holds the role's rights or may bind
# it: it may bind this one role and no other.
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["clusterroles"]
  resourceNames: ["system:auth-delegator"]
  verbs: ["bind"]
{{- end }}
{{- if .Values.rbac.crdRead }}
# Kopf notices CRDs installed or upgraded while it runs.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- end }}
{{- if and .Values.operator.standby.enabled (include "pilothouse.clusterwide" .) }}
# Kopf peering of a cluster-wide operator.
- apiGroups: ["kopf.dev"]
  resources: ["clusterkopfpeerings"]
  verbs: ["list", "watch", "patch"]
{{- end }}
{{- end }}
