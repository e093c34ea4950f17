"""Write one script's section of ``benchmarks/RESULTS.md`` (atomically), keeping the other sections."""

from __future__ import annotations

import datetime as _dt
import platform
import re
import shlex
import sys
from pathlib import Path

from latbench.io import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADER = (
    "# Results\n\n"
    "Every figure here was produced by a script in `benchmarks/`; each section names the command, the machine "
    "and the date. Nothing is copied from elsewhere.\n"
)


def machine() -> str:
    """A one-line description of this machine: CPU model, cores, torch version, GPU if any."""
    from latbench.profiling.fingerprint import collect, cpu_info

    cpu = cpu_info()
    fp = collect()
    gpus = ", ".join(str(g.get("name")) for g in fp.gpus) or "no GPU"
    torch_v = fp.libraries.get("torch", "?")
    py = platform.python_version()
    return f"{cpu['model']} ({cpu['usable_cores']} usable cores), {gpus}, Python {py}, torch {torch_v}"


def write_section(name: str, title: str, body: str, command: str | None = None) -> None:
    """Replace (or add) the section ``name`` of RESULTS.md with ``body`` under ``title``."""
    cmd = command or "python " + shlex.join(sys.argv)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        f"<!-- {name}:start -->\n## {title}\n\n"
        f"- command: `{cmd}`\n- machine: {machine()}\n- date: {stamp}\n\n{body.strip()}\n<!-- {name}:end -->\n"
    )
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else HEADER
    pattern = re.compile(rf"<!-- {re.escape(name)}:start -->.*?<!-- {re.escape(name)}:end -->\n", re.S)
    text = pattern.sub(lambda _m: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    atomic_write_text(RESULTS, text)
