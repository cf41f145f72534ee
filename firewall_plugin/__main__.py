"""``python -m firewall_plugin``: run the CNI plugin and exit with its status.

Nothing else: the installed executable calls ``firewall_plugin.cni.run_and_exit``
the same way.
"""

from firewall_plugin import cni

cni.run_and_exit()
