"""Run a command inside a fresh, private network namespace (loopback only).

mDNS is multicast: a demo, test or benchmark that uses discovery must not
reach a real network. This module wraps a command so that it runs in a new
network namespace whose only interface is loopback, brought up with
multicast enabled and a multicast route, so nothing it sends can leave the
machine::

    python -m headcount.service.netns headcount demo
    python -m headcount.service.netns --check      # exit 0 if usable here

It needs root (``unshare --net``) and the ``unshare`` (util-linux) and ``ip``
(iproute2) commands. :func:`unavailable_reason` says why it cannot run, so
that callers fall back (the demo uses static peers on 127.0.0.1) or skip
with that reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence

INSIDE_ENV = "NETNS_RUN_INSIDE"
"""Set to ``1`` inside the namespace (a nested call runs the command as is)."""

_SETUP = (
    "ip link set lo up && ip link set lo multicast on && "
    "{ ip route add 224.0.0.0/4 dev lo 2>/dev/null || true; } && "
    f'{INSIDE_ENV}=1 exec "$@"'
)


def inside() -> bool:
    """True when this process already runs in a namespace made by this module."""
    return os.environ.get(INSIDE_ENV) == "1"


def command(argv: Sequence[str]) -> list[str]:
    """The command line that runs ``argv`` in a private network namespace
    (``argv`` itself when already inside one).

    Raises:
        ValueError: ``argv`` is empty.
    """
    if not argv:
        raise ValueError("no command to run in the namespace")
    if inside():
        return list(argv)
    return ["unshare", "--net", "--", "sh", "-c", _SETUP, "netns-run", *argv]


def unavailable_reason(timeout: float = 10.0) -> str | None:
    """Why a private network namespace cannot be made here, or None.

    Runs ``true`` in one, so a missing capability shows up here and not as
    a failure of the real command.
    """
    if inside():
        return None
    if os.geteuid() != 0:
        return "needs root (unshare --net creates a network namespace)"
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return f"the {tool} command is not installed"
    try:
        probe = subprocess.run(
            command(["true"]), capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot make a network namespace: {exc}"
    if probe.returncode != 0:
        return f"cannot make a network namespace: {probe.stderr.strip() or probe.returncode}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m headcount.service.netns [--check] COMMAND [ARG...]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args in ([], ["-h"], ["--help"]):
        print(__doc__.strip().splitlines()[0])
        print("usage: python -m headcount.service.netns [--check] COMMAND [ARG...]")
        return 0 if args else 2
    reason = unavailable_reason()
    if args == ["--check"]:
        print(reason or "ok")
        return 0 if reason is None else 1
    if reason is not None:
        print(f"netns: {reason}", file=sys.stderr)
        return 1
    try:
        return subprocess.call(command(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
