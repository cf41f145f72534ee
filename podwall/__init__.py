"""The ``podwall`` umbrella command line: argparse dispatch only.

Each subcommand lives in its own module and is imported only when chosen, so
``podwall cni ...`` never pays for kopf or the lab.
"""
