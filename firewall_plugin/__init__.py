"""podwall's CNI meta-plugin and the node data plane library.

The plugin (``firewall_plugin.cni``) creates each pod's base chains at ADD and
removes them at DEL.  The library beside it (names, ruleset model, rendering,
backends, locking, endpoint records) is what both the plugin and the agent use
to write the kernel.

This package never imports kopf, Kubernetes clients or aiohttp: the CNI ADD
path must start fast.
"""
