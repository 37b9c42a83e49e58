"""Which interpreter runs sandboxed programs, which of its files the jail shows, and which packages it may import.

The validator ran programs under Python 3.12 with the ``site`` module (so ``exit``/``quit`` exist) and the packages
of its image.  ``python: auto`` takes a pyenv 3.12 where one is installed (a logged note says when it falls back to
the host's interpreter); ``packages`` names the third-party top-level packages a program may import (``[numpy]``
matches the validator's image; the default is none), taken from ``site_packages`` (default: that interpreter's own
site-packages).  Inside the jail the interpreter's site-packages is an empty tmpfs holding only those packages, and
the host's package trees (``/usr/local``, Debian's ``/usr/lib/python3``) are masked, so no ``sys.path`` trick
reaches anything else.
"""

from __future__ import annotations

import functools
import glob
import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from affine.sandbox.host import SandboxUnavailable

log = logging.getLogger(__name__)

VALIDATOR_PYTHON = "3.12"
PYENV_GLOB = "/root/.pyenv/versions/3.12*/bin/python3.12"
MASKS = ("/usr/local", "/usr/lib/python3")
_QUERY = (
    "import json, sys, sysconfig as s\n"
    "v = s.get_config_vars()\n"
    "print(json.dumps({'version': '%d.%d' % sys.version_info[:2], 'exe': sys.executable,"
    " 'stdlib': s.get_path('stdlib'), 'platstdlib': s.get_path('platstdlib'), 'purelib': s.get_path('purelib'),"
    " 'platlib': s.get_path('platlib'), 'libdir': v.get('LIBDIR') or '', 'ldlibrary': v.get('LDLIBRARY') or '',"
    " 'shared': bool(v.get('Py_ENABLE_SHARED'))}))\n"
)


@dataclass(frozen=True)
class Interpreter:
    python: str  # real path of the executable
    version: str
    binds: tuple[str, ...]  # host paths the jail shows read-only at the same place
    site: str  # the site-packages directory the interpreter adds to sys.path (an empty tmpfs in the jail)
    packages: tuple[str, ...]  # host paths of the allowed packages, bound into ``site``


def _auto_python() -> str:
    found = sorted(glob.glob(PYENV_GLOB))
    if found:
        return found[-1]
    host = os.path.realpath(sys.executable)
    log.info("sandbox.python: auto found no Python %s (%s); programs run under the host's %s (%s)",
             VALIDATOR_PYTHON, PYENV_GLOB, sys.version.split()[0], host)  # fmt: skip
    return host


def _find_packages(names: tuple[str, ...], where: str) -> tuple[str, ...]:
    """Each allowed package's directory (or module file), its vendored ``.libs`` and its dist-info metadata."""
    found: list[str] = []
    for name in names:
        hits = [p for p in (os.path.join(where, name), os.path.join(where, name + ".py")) if os.path.exists(p)]
        if not hits:
            raise SandboxUnavailable(
                f"sandbox.packages: {name!r} is not installed in {where}; install it for the sandbox's interpreter "
                f"(<python> -m pip install {name}) or remove it from sandbox.packages"
            )
        found += hits + sorted(glob.glob(os.path.join(where, name + ".libs")))
        found += sorted(glob.glob(os.path.join(where, glob.escape(name.replace("-", "_")) + "-*.dist-info")))
    return tuple(found)


@functools.cache
def resolve(python: str = "auto", packages: tuple[str, ...] = (), site_packages: str | None = None) -> Interpreter:
    """Check the chosen interpreter once (by running it) and work out its jail view; bad settings → one line."""
    exe = _auto_python() if python == "auto" else python
    if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        raise SandboxUnavailable(f"sandbox.python: {exe} is not an executable file (use auto or a python path)")
    try:
        out = subprocess.run([exe, "-I", "-S", "-c", _QUERY], capture_output=True, text=True, timeout=30, check=True)
        info = json.loads(out.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise SandboxUnavailable(f"sandbox.python: {exe} does not run as a Python interpreter ({exc})") from None
    real = os.path.realpath(exe)
    binds = {real, os.path.realpath(info["stdlib"]), os.path.realpath(info["platstdlib"])}
    if info["shared"] and info["libdir"]:
        binds.update(glob.glob(os.path.join(info["libdir"], glob.escape(info["ldlibrary"]) + "*")))
    site = os.path.realpath(info["purelib"])
    where = os.path.realpath(site_packages) if site_packages else site
    if site_packages and not os.path.isdir(where):
        raise SandboxUnavailable(f"sandbox.site_packages: {site_packages} is not a directory")
    allowed = _find_packages(tuple(packages), where)
    if Path(where) != Path(site) and allowed:
        log.info("sandbox: packages %s come from %s (not %s's own site-packages)", list(packages), where, real)
    return Interpreter(real, info["version"], tuple(sorted(binds)), site, allowed)
