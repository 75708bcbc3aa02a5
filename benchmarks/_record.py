"""What every benchmark script shares: the machine's description and RESULTS.md.

Each script prints its Markdown and, unless run with ``--no-record``, writes it
into ``benchmarks/RESULTS.md`` between the markers ``<!-- BEGIN name -->`` and
``<!-- END name -->`` (appended as a new section the first time). The block
holds the latest run only, with the machine it ran on; the commented history
around it is written by hand.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def machine() -> str:
    """One line: CPU model, cores, memory, Python, torch, and the GPU when there is one."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    parts = [f"{cpu} ({platform.machine()})", f"{os.cpu_count()} cores"]
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        parts.append(f"{pages * page_size / 2**30:.0f} GiB")
    except (ValueError, OSError, AttributeError):
        pass
    parts += [f"Python {platform.python_version()}", f"torch {torch.__version__}"]
    if torch.cuda.is_available():
        parts.append(f"GPU {torch.cuda.get_device_name(0)}")
    else:
        parts.append("no GPU")
    return ", ".join(parts)


def record(name: str, title: str, markdown: str, path: Path = RESULTS, gpu: bool = False) -> None:
    """Replace the block of benchmark ``name`` in RESULTS.md by ``markdown``.

    A run on a GPU (``gpu=True``) has its own block, "``name`` on GPU", so that
    it never replaces the CPU figures.
    """
    if gpu:
        name, title = f"{name} on GPU", f"{title} on GPU"
    stamp = datetime.date.today().isoformat()
    block = (
        f"<!-- BEGIN {name} -->\n"
        f"Latest run ({stamp}, written by `{name}`; machine: {machine()}).\n\n"
        f"{markdown.strip()}\n"
        f"<!-- END {name} -->"
    )
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(
        rf"<!-- BEGIN {re.escape(name)} -->.*?<!-- END {re.escape(name)} -->", re.DOTALL
    )
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip("\n") + f"\n\n## {title} (latest run)\n\n{block}\n"
    path.write_text(text)
