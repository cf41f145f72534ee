"""``podwall lab``: a multi-node cluster inside one machine.

Modules, top-down: ``daemon`` (the long-running lab process: API server
double, lab kubelet, node agents) → ``kubelet`` (pods through the CNI chain)
/ ``topology`` (node namespaces, the underlay, CNI install) / ``apiserve``
(the API double listening in two network namespaces) / ``programmer`` (a
stand-in node agent) → ``client`` (the CLI's side: apply, delete, waits) /
``probing`` (reachability matrices) / ``teardown`` (``down``, also after a
crash) → ``layout`` (names and addresses) / ``state`` (the state file).

Never creates links or changes sysctls in the machine's own network
namespace: every link lives in the lab's namespaces.
"""
