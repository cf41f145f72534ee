"""The pod relay: one list+watch of the cluster's pods, served slim to many agents.

``store`` (slim pods, their encoded change history; pure) → ``server`` (the
relay's own watch of the API server with the agent's ``watching`` code, and
``/api/v1/pods`` list and watch for agents).  See docs/scale.md for why.
"""
