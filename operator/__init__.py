"""Pilothouse operator: reconciles AgentDeployment and AgentPolicy resources with Kopf.

It renders each agent's runtime configuration (with its policies resolved into it), applies the
runtime's Deployment, Service, ServiceAccount, PodDisruptionBudget and ConfigMap, scales
replicas from queue depth, and reports status the way kstatus-aware tools (Argo CD, Flux) read.
"""

__all__: list[str] = []
