"""podwall's per-node agent and the one home of policy semantics.

Pure semantics (no I/O): ``cluster`` (snapshot model), ``selectors``,
``netpol``, ``fwrule``, ``index``, ``plan`` (what applies to a pod in one
direction), ``evaluate`` (verdicts and the matrix), ``questions`` (explain's
endpoints and families), ``compiler`` (kernel state for one node), ``explain``
(text for humans), ``realization`` (programmed on N/M nodes) and ``logtags``
(the tags log and counter rules carry).  ``loading`` reads YAML files;
``kubeconfig`` and ``live`` read a cluster for the CLI.  The kopf agent and
the applier live beside them and do the I/O.
"""
