"""The podwall lab: a virtual multi-node cluster on one machine.

Network namespaces for nodes and pods, the real reference CNI plugins run by a
conflist runner, a Kubernetes API server double, a lab kubelet and probes.
Used by the tests, the demo and users trying policies against a real kernel.
"""
