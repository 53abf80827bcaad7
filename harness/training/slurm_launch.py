"""``srun harness run ...`` on N tasks trains one model with N processes.

Accelerate (and ``torch.distributed``) find their process group through the variables a
launcher such as ``torchrun`` or ``accelerate launch`` sets: ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``. ``srun`` sets Slurm's
own instead (``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS``, ``SLURM_LOCALID``,
``SLURM_STEP_NODELIST``, ...). :func:`adopt_srun_rendezvous` translates them, before anything
creates a process group, so that ``srun -n N harness run`` is the same run as N processes of
``torchrun --nproc_per_node N -m harness.cli run``.

It does nothing outside a multi-task ``srun`` step, and never overrides a variable that is
already set (``srun accelerate launch ...``: the launcher's own variables win; ``MASTER_ADDR``
or ``MASTER_PORT`` exported by a batch script win too).
"""

from __future__ import annotations

import os
import re
from collections.abc import MutableMapping

#: the rendezvous port, unless MASTER_PORT is set: one per job step, so that two multi-task
#: steps sharing a node (two jobs, or two steps of one job) do not collide
PORT_BASE, PORT_SPAN = 20000, 20000


def expand_hostlist(hostlist: str) -> list[str]:
    """Slurm's compressed host list (``node[01-03,7],gpu5``) as host names, in order."""
    hosts: list[str] = []
    for part in re.findall(r"[^,\[]+(?:\[[^\]]*\])?[^,]*", hostlist):
        match = re.fullmatch(r"([^\[]*)\[([^\]]*)\](.*)", part)
        if not match:
            hosts.append(part)
            continue
        prefix, ranges, suffix = match.groups()
        for item in ranges.split(","):
            low, _, high = item.partition("-")
            width = len(low)
            for number in range(int(low), int(high or low) + 1):
                hosts.append(f"{prefix}{number:0{width}d}{suffix}")
    return hosts


def srun_rendezvous(env: MutableMapping[str, str]) -> dict[str, str]:
    """The launcher variables for this ``srun`` task (empty outside a multi-task step):
    rank = ``SLURM_PROCID``, world size = the step's task count, local rank =
    ``SLURM_LOCALID``, the master = the step's first node."""
    tasks = env.get("SLURM_STEP_NUM_TASKS")
    if "SLURM_STEP_ID" not in env or not tasks or int(tasks) <= 1:
        return {}
    nodes = expand_hostlist(env.get("SLURM_STEP_NODELIST") or env.get("SLURM_NODELIST", ""))
    per_node = env.get("SLURM_STEP_TASKS_PER_NODE", "").split("(")[0].split(",")[0]
    job = int(env.get("SLURM_JOB_ID", "0") or 0)
    step = int(env.get("SLURM_STEP_ID", "0") or 0)
    found = {
        "RANK": env["SLURM_PROCID"],
        "WORLD_SIZE": tasks,
        "LOCAL_RANK": env.get("SLURM_LOCALID", "0"),
        "LOCAL_WORLD_SIZE": per_node or "1",
        "NODE_RANK": env.get("SLURM_NODEID", "0"),
        "MASTER_ADDR": nodes[0] if nodes else "127.0.0.1",
        "MASTER_PORT": str(PORT_BASE + (job * 31 + step) % PORT_SPAN),
    }
    return {key: value for key, value in found.items() if key not in env}


def adopt_srun_rendezvous(env: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set the variables of :func:`srun_rendezvous` in ``env`` (default: this process's
    environment) and return them."""
    env = os.environ if env is None else env
    found = srun_rendezvous(env)
    env.update(found)
    return found


__all__ = ["adopt_srun_rendezvous", "expand_hostlist", "srun_rendezvous"]
