"""Putting the podwall CNI plugin on a node: runs in the image, never on the host.

* ``conf``: chain a podwall entry into the node's primary CNI config (or take
  it out); which file that is comes from ``firewall_plugin.conflist``.
* ``launcher``: write ``<bin-dir>/podwall`` (local, ``--python`` or bundle
  launcher); retire and prune old bundles without breaking a running plugin.
* ``bundle``, ``modules``: the host bundle, the interpreter plus exactly the
  modules the CNI path imports (derived from the code, not listed by hand).
* ``elf``, ``glibc``: the glibc floor of the bundle and the host's glibc.
* ``removal``, ``apiclient``: ``--watch --uninstall-on-exit=if-daemonset-gone``
  asks the API server whether podwall is being removed.

Layering: imports ``firewall_plugin`` only; ``podwall`` (the CLI) and
``firewall_lab`` import it.  The host gets none of it: the bundle carries
``firewall_plugin``'s CNI path alone.
"""
