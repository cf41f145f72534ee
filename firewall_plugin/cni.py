"""The plugin's entry point: ``main()`` reads CNI_COMMAND and stdin, dispatches
to ``firewall_plugin.commands`` and prints the outcome.

This is the only place that writes to stdout or chooses the exit status.  Every
error becomes CNI error JSON (``cniVersion``, ``code``, ``msg``, ``details``) on
stdout, one line on stderr and exit status 1; never a traceback.  Codes are in
``firewall_plugin.protocol``.  Checks run in this order, so each bad input fails
before anything is written: environment (4), stdin JSON (6: also stdin that
is not UTF-8, larger than ``MAX_STDIN_BYTES`` or nested too deeply),
cniVersion (1), configuration (7), then the verb.

Import cost matters (kubelet runs one plugin process per pod): the ADD and
DEL paths import, beyond the interpreter's own start-up modules, only ``os``,
``fcntl``, ``errno``, ``_json``, ``_sha256``, ``_thread`` and this package;
not even ``typing``, ``json``, ``re`` or ``subprocess`` (see ``values``,
``jsoncodec``, ``addresses``, ``spawn``; ``tests/unit/test_cni_imports.py``
keeps it so), never pyroute2, yaml or python-iptables (unless the backend is
``iptc``).  ``bench/bench_plugin.py`` measures it against the reference
``firewall`` plugin.
"""

from __future__ import annotations

import os
import sys

from firewall_plugin import jsoncodec, protocol

TYPE_CHECKING = False  # typing costs the CNI start-up ~4 ms (see values.py)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, TextIO

#: stdin beyond this is refused (code 6): a conflist entry with its
#: prevResult is a few kilobytes, and the whole text is held in memory
MAX_STDIN_BYTES = 16 << 20


def _error(version: str, exc: BaseException) -> dict[str, Any]:
    details = ""
    if not isinstance(exc, Exception) or type(exc).__module__ not in (
        "firewall_plugin.errors",
        "firewall_plugin.protocol",
    ):
        details = f"{type(exc).__name__}: {exc}"
    return {
        "cniVersion": version,
        "code": protocol.code_of(exc),
        "msg": str(exc) or type(exc).__name__,
        "details": details,
    }


def one_line(text: str) -> str:
    """``text`` with every unprintable character (line breaks, escapes,
    direction overrides: the caller's variables and names end up in error
    messages) written as a Python escape, so that a log line stays one line."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def run(
    environ: Mapping[str, str], stdin_text: str, *, unreadable: str = ""
) -> tuple[int, dict[str, Any] | None]:
    """Do one invocation; return (exit status, JSON to print or None).
    ``unreadable``: why stdin could not be read (then it is a code 6 error
    of every verb that reads its configuration)."""
    version = protocol.LATEST_VERSION
    env: protocol.Environment | None = None
    try:
        env = protocol.read_environment(environ)
        if env.command == "VERSION":
            from firewall_plugin import commands

            return 0, commands.cmd_version()
        from firewall_plugin import config as config_module

        if unreadable:
            raise protocol.DecodeError(unreadable)
        data = config_module.decode(stdin_text)
        version = config_module.requested_version(data)
        if env.command in protocol.NEW_IN_1_1 and version != "1.1.0":
            raise protocol.VersionError(f"{env.command} needs cniVersion 1.1.0, not {version}")
        if env.command == "CHECK" and version in protocol.WITHOUT_CHECK:
            raise protocol.VersionError(f"CHECK needs cniVersion 0.4.0 or later, not {version}")
        cfg = config_module.parse(data)
        return 0, _dispatch(env, cfg)
    except Exception as exc:
        body = _error(version, exc)
        where = f" {env.container_id}/{env.ifname}" if env and env.container_id else ""
        command = env.command if env else environ.get("CNI_COMMAND", "?")
        line = f"podwall: {command}{where}: error {body['code']}: {body['msg']}"
        print(one_line(line), file=sys.stderr)
        return 1, body


def _dispatch(env: protocol.Environment, cfg: Any) -> dict[str, Any] | None:
    from firewall_plugin import commands

    if env.command == "ADD":
        return commands.cmd_add(env, cfg)
    if env.command == "DEL":
        commands.cmd_del(env, cfg)
    elif env.command == "CHECK":
        commands.cmd_check(env, cfg)
    elif env.command == "GC":
        commands.cmd_gc(env, cfg)
    elif env.command == "STATUS":
        commands.cmd_status(env, cfg)
    return None


def read_stdin(stdin: TextIO | None) -> tuple[str, str]:
    """(the text, '') or ('', why it cannot be decoded): at most
    ``MAX_STDIN_BYTES`` of UTF-8 (JSON's encoding), read as bytes when the
    stream has a buffer, so that the locale's encoding plays no part."""
    if stdin is None:
        return "", "stdin is closed"
    source: Any = getattr(stdin, "buffer", None) or stdin
    try:
        data = source.read(MAX_STDIN_BYTES + 1)
    except (OSError, ValueError) as exc:  # ValueError: UnicodeDecodeError, a closed file
        return "", f"cannot read stdin: {exc}"
    if len(data) > MAX_STDIN_BYTES:
        return "", f"stdin is larger than {MAX_STDIN_BYTES} bytes: not a CNI configuration"
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            return "", f"stdin is not UTF-8: {exc}"
    return data, ""


def main(stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """Run the plugin for this process's environment and stdin; return the exit status."""
    stdout = stdout or sys.stdout
    text, unreadable = read_stdin(stdin or sys.stdin)
    status, body = run(os.environ, text, unreadable=unreadable)
    if body is not None:
        stdout.write(jsoncodec.dumps(body) + "\n")
        stdout.flush()
    return status


def run_and_exit() -> None:
    """``main()``, then leave at once: the executable's entry point.  Skipping
    interpreter finalisation (module teardown, GC) saves a few ms per pod; all
    output is flushed and every thread has been joined by then."""
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
