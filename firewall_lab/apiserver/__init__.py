"""A Kubernetes API server double for kopf, kubectl and the lab.

Serves discovery, namespaces, pods, nodes, events, network policies, DaemonSets
(stored as given: no controller runs them), CRDs and the custom resources they
define, with lists, watches, patches, finalizers and server-side tables, from
memory (optionally persisted to a JSON file).  It is not a kube-apiserver: no
authentication, authorization, admission webhooks, garbage collection or
protobuf.  Modules, top-down: ``server`` (threads and
processes) → ``handlers`` (HTTP) → ``objects`` (verbs) → ``admission`` /
``validation`` / ``cel`` / ``patch`` / ``watch`` / ``tables`` / ``discovery``
→ ``storage`` / ``resources`` / ``selectors`` / ``errors``.
"""

from firewall_lab.apiserver.server import ApiServer, ApiServerError, spawn, write_kubeconfig

__all__ = ["ApiServer", "ApiServerError", "spawn", "write_kubeconfig"]
