"""podwall's per-node agent and the one home of policy semantics.

Pure semantics (no I/O): ``cluster`` (snapshot model), ``selectors``,
``netpol``, ``fwrule``, ``index``, ``plan`` (what applies to a pod in one
direction), ``evaluate`` (verdicts and the matrix), ``compiler`` (kernel state
for one node) and ``explain`` (text for humans).  ``loading`` reads YAML files.
The kopf agent and the applier live beside them and do the I/O.
"""
