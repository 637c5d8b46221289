"""The only package that talks to the Kubernetes API server.

Seam: `kube.protocol` (ObjectSource, CasStore, Binder, EventRecorder, TokenReviewer; plain dicts).
Implementations: `kube.real.KubeCluster` (kubernetes_asyncio), `kube.fake.FakeCluster` (in memory),
`kube.snapshot.SnapshotSource` (a file). Built on them: `kube.informer` (Informer, ClusterWatcher),
`kube.policy_source` (policy ConfigMap hot reload). RBAC source of truth: `kube.permissions`.
"""
