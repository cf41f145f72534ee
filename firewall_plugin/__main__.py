"""``python -m firewall_plugin``: run the CNI plugin (``cni.main``) and exit with its status.

Nothing else: the installed executable calls ``firewall_plugin.cni.main`` the same way.
"""

import sys

from firewall_plugin import cni

sys.exit(cni.main())
