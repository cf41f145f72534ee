"""The per-node agent: keeps this node's kernel in line with the cluster.

Modules, top-down: ``main`` (wiring, kopf settings, run) → ``handlers`` (the
kopf handlers: login, start-up, probe, cleanup) → ``watching`` (its own LIST
and watch per kind into the cache: one LIST per kind at start, re-lists after
410 Gone or a stalled watch, sweeps), ``reconcile`` (one coalescing loop:
debounce, compile with one incremental ``Compiler``, apply, resync),
``sockserver`` (``<runDir>/agent.sock``), ``node`` (backend, records repair,
drift watch), ``status`` (NodeFirewall, FirewallRule conditions, events;
``policy_events`` for NetworkPolicies, ``upstream_status`` for the upstream
kinds), ``trafficlog`` (NFLOG packets → JSON lines, over ``nflog``) →
``cache`` (slim cluster cache, pure; ``snapshots`` keeps its values sorted so
a sync's snapshot is cheap and says which pods changed), ``kubeapi`` (small
REST client with kopf's credentials), ``metrics`` (Prometheus; ``counters``
for drop counters), ``config`` (settings from flags and the conflist),
``logformat`` (text or JSON log lines), ``heap`` (glibc heap settings for big
lists).
The kernel is written only through ``firewall_operator.applier``.
"""
