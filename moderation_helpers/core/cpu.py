"""How many CPU cores this process may use."""

from __future__ import annotations

import os


def available_cpus() -> int:
    """The cores this process may run on: its affinity mask where the OS has one (a container
    or ``taskset`` limit), else every logical core. Threads beyond this only wait."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)
