"""The API server double, reachable from the machine and from the nodes.

The double listens on ``127.0.0.1:PORT`` in the machine's namespace (for
kubectl) and on ``API_IP:PORT`` inside the lab namespace (for the node
agents): ``firewall_lab.cluster_net.listening_socket`` makes the second
socket inside the lab namespace, and aiohttp serves it (``web.SockSite``).
Creates no links; changes nothing in any namespace.
"""

from __future__ import annotations

from aiohttp import web

from firewall_lab import cluster_net
from firewall_lab.apiserver import ApiServer
from firewall_lab.lab.errors import LabError


class LabApiServer(ApiServer):
    """``ApiServer`` plus one listening socket in another namespace.

    Set ``extra_netns`` and ``extra_host`` before ``start()``; the extra socket
    uses the same port as the loopback one.
    """

    extra_netns: str = ""
    extra_host: str = ""

    async def _start_site(self) -> None:
        await super()._start_site()
        if not self.extra_netns:
            return
        try:
            sock = cluster_net.listening_socket(
                self.extra_netns, host=self.extra_host, port=self.port
            )
        except cluster_net.ClusterNetError as exc:
            raise LabError(str(exc)) from exc
        runner = self._runner
        assert runner is not None
        await web.SockSite(runner, sock).start()
