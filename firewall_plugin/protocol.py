"""The CNI wire protocol: versions, error codes, and the ``CNI_*`` environment.

CNI error codes podwall returns (CNI spec 1.1.0 "Well-known Error Codes";
100+ are podwall's own)::

    1   incompatible CNI version (unknown cniVersion; GC/STATUS below 1.1.0;
        CHECK below 0.4.0)
    3   container unknown: ADD/CHECK with a CNI_NETNS path that does not exist
    4   invalid or missing CNI_* environment variables
    5   I/O failure: endpoint records or run files unusable (StateError)
    6   stdin is not a JSON object
    7   invalid network configuration (unknown key, ill-typed value, no prevResult)
    11  try again later: the podwall lock or the xtables lock is busy
    50  STATUS: ADD cannot be served now
    100 a kernel write or read failed (BackendError)
    101 CHECK found state missing (the message names what)
    102 bridged pod traffic bypasses iptables and ensureBridgeNetfilter is false

The error classes extend ``firewall_plugin.errors``; ``code_of`` maps any
exception to its code at the one boundary that prints (``cni.main``).

Pure: no I/O beyond reading the mapping it is given.
"""

from __future__ import annotations

from firewall_plugin import errors
from firewall_plugin.values import Frozen, init_fields

TYPE_CHECKING = False  # typing costs the CNI start-up ~4 ms (see values.py)
if TYPE_CHECKING:
    from collections.abc import Mapping

#: 0.3.x is what Calico, flannel and kindnet conflists say; it has no CHECK.
SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST_VERSION = SUPPORTED_VERSIONS[-1]
COMMANDS = ("ADD", "DEL", "CHECK", "VERSION", "GC", "STATUS")
#: verbs the spec introduced in 1.1.0
NEW_IN_1_1 = ("GC", "STATUS")
#: versions that predate CHECK (added in 0.4.0)
WITHOUT_CHECK = ("0.3.0", "0.3.1")

CODE_VERSION = 1
CODE_CONTAINER_UNKNOWN = 3
CODE_ENV = 4
CODE_IO = 5
CODE_DECODE = 6
CODE_CONFIG = 7
CODE_TRY_AGAIN = 11
CODE_NOT_READY = 50
CODE_BACKEND = 100
CODE_CHECK = 101
CODE_BRIDGE_NETFILTER = 102

# CNI spec: container ID is alphanumeric first, then alphanumerics, _ . -
# (checked without ``re``: importing it costs the plugin's start-up ~5 ms)
_ALPHANUMERIC = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_CONTAINER_ID_CHARS = _ALPHANUMERIC | frozenset("_.-")
MAX_IFNAME = 15
DEFAULT_LOCK_TIMEOUT = 30.0
LOCK_TIMEOUT_VARIABLE = "PODWALL_LOCK_TIMEOUT_MS"


class VersionError(errors.ConfigError):
    """The cniVersion is not one podwall speaks (code 1)."""


class EnvError(errors.ConfigError):
    """A CNI_* variable is missing or malformed (code 4)."""


class DecodeError(errors.ConfigError):
    """stdin is not a JSON object (code 6)."""


class ContainerUnknownError(errors.StateError):
    """The network namespace of the container does not exist (code 3)."""


class CheckError(errors.PodwallError):
    """CHECK found podwall state missing (code 101)."""


class NotReadyError(errors.PodwallError):
    """STATUS: this node cannot serve ADD now (code 50)."""


class BridgeNetfilterError(errors.ConfigError):
    """Bridged traffic would bypass iptables and podwall may not fix it (102)."""


def code_of(exc: BaseException) -> int:
    """The CNI error code for ``exc`` (most specific class first)."""
    table: tuple[tuple[type[BaseException], int], ...] = (
        (VersionError, CODE_VERSION),
        (EnvError, CODE_ENV),
        (DecodeError, CODE_DECODE),
        (BridgeNetfilterError, CODE_BRIDGE_NETFILTER),
        (ContainerUnknownError, CODE_CONTAINER_UNKNOWN),
        (CheckError, CODE_CHECK),
        (NotReadyError, CODE_NOT_READY),
        (errors.ConfigError, CODE_CONFIG),
        (errors.TryAgainError, CODE_TRY_AGAIN),
        (errors.BackendError, CODE_BACKEND),
        (errors.StateError, CODE_IO),
    )
    for kind, code in table:
        if isinstance(exc, kind):
            return code
    return CODE_BACKEND


class Environment(Frozen):
    """The validated ``CNI_*`` variables of one invocation."""

    __slots__ = ("args", "command", "container_id", "ifname", "lock_timeout", "netns", "path")
    command: str
    container_id: str
    ifname: str
    netns: str
    path: str
    args: Mapping[str, str]
    #: seconds to wait for the podwall lock (PODWALL_LOCK_TIMEOUT_MS, for tests)
    lock_timeout: float

    def __init__(
        self,
        command: str,
        container_id: str = "",
        ifname: str = "",
        netns: str = "",
        path: str = "",
        args: Mapping[str, str] | None = None,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ) -> None:
        init_fields(
            self,
            command,
            container_id,
            ifname,
            netns,
            path,
            {} if args is None else args,
            lock_timeout,
        )

    @property
    def pod_namespace(self) -> str:
        return self.args.get("K8S_POD_NAMESPACE", "")

    @property
    def pod_name(self) -> str:
        return self.args.get("K8S_POD_NAME", "")

    @property
    def pod_uid(self) -> str:
        return self.args.get("K8S_POD_UID", "")


def parse_args(text: str) -> dict[str, str]:
    """``CNI_ARGS`` (``K=V;K2=V2``) as a dict; EnvError when malformed."""
    pairs: dict[str, str] = {}
    for item in text.split(";"):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise EnvError(f"CNI_ARGS: {item!r} is not KEY=VALUE")
        pairs[key] = value
    return pairs


def _required(command: str) -> tuple[str, ...]:
    if command in ("ADD", "CHECK"):
        return ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_NETNS")
    if command == "DEL":
        return ("CNI_CONTAINERID", "CNI_IFNAME")
    if command == "GC":
        return ("CNI_PATH",)
    return ()


def validate_container_id(value: str) -> str:
    if not value or value[0] not in _ALPHANUMERIC or not _CONTAINER_ID_CHARS.issuperset(value):
        raise EnvError(
            f"CNI_CONTAINERID {value!r} must start with a letter or digit and hold "
            "only letters, digits, '_', '.' and '-'"
        )
    return value


def validate_ifname(value: str) -> str:
    forbidden = any(c in "/:" or c.isspace() for c in value)
    if len(value) > MAX_IFNAME or value in (".", "..") or forbidden:
        raise EnvError(
            f"CNI_IFNAME {value!r} must be 1-15 characters, not '.' or '..', "
            "without '/', ':' or white space"
        )
    return value


def read_environment(env: Mapping[str, str]) -> Environment:
    """Validate the ``CNI_*`` variables of ``env`` for its CNI_COMMAND."""
    command = env.get("CNI_COMMAND", "")
    if not command:
        raise EnvError("CNI_COMMAND is not set")
    if command not in COMMANDS:
        raise EnvError(f"CNI_COMMAND {command!r} is not one of {', '.join(COMMANDS)}")
    missing = [name for name in _required(command) if not env.get(name)]
    if missing:
        raise EnvError(f"{command} needs {', '.join(missing)}, not set")
    container_id = env.get("CNI_CONTAINERID", "")
    ifname = env.get("CNI_IFNAME", "")
    if command in ("ADD", "CHECK", "DEL"):
        validate_container_id(container_id)
        validate_ifname(ifname)
    return Environment(
        command=command,
        container_id=container_id,
        ifname=ifname,
        netns=env.get("CNI_NETNS", ""),
        path=env.get("CNI_PATH", ""),
        args=parse_args(env.get("CNI_ARGS", "")),
        lock_timeout=_lock_timeout(env.get(LOCK_TIMEOUT_VARIABLE, "")),
    )


def _lock_timeout(text: str) -> float:
    if not text:
        return DEFAULT_LOCK_TIMEOUT
    # ASCII digits only (str.isdigit also takes "²", which int() refuses), and
    # few enough for int() (it refuses more than 4,300): at most ~11 days
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        raise EnvError(
            f"{LOCK_TIMEOUT_VARIABLE} {text[:40]!r} is not a number of milliseconds "
            "(at most 9 digits)"
        )
    return int(text) / 1000
