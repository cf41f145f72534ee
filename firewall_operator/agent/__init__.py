"""The per-node kopf agent: keeps this node's kernel in line with the cluster.

Modules, top-down: ``main`` (wiring, kopf settings, run) → ``handlers`` (kopf
handlers: update the cache, mark dirty; nothing else) → ``reconcile`` (one
coalescing loop: debounce, compile with one incremental ``Compiler``, apply,
resync), ``sockserver`` (``<runDir>/agent.sock``), ``status`` (NodeFirewall,
FirewallRule conditions, events; ``policy_events`` for NetworkPolicies),
``trafficlog`` (NFLOG packets → JSON lines, over ``nflog``), ``relist`` (own
LISTs: priming and mark-and-sweep after kopf re-lists) → ``cache`` (slim
cluster cache, pure; ``snapshots`` keeps its values sorted so a sync's
snapshot is cheap), ``kubeapi`` (small REST client), ``metrics`` (Prometheus;
``counters`` for drop counters), ``config`` (settings from flags and the
conflist), ``logformat`` (text or JSON log lines).
The kernel is written only through ``firewall_operator.applier``.
"""
