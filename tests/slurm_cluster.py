"""A throw-away one-node Slurm cluster on localhost, for the tests that need a real Slurm.

Everything lives in one folder (its own munge key and socket, ``slurm.conf``, spool, state
and log folders, free TCP ports), so it neither reads nor changes ``/etc/slurm`` or a munged
already running; clients find it through ``SLURM_CONF``. The daemons it starts are stopped
by their PIDs, never by name.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "squeue", "scancel", "scontrol", "sinfo")


def why_not() -> str | None:
    """Why a cluster cannot be started here (None when it can)."""
    if os.name != "posix" or os.geteuid() != 0:
        return "starting slurmctld/slurmd/munged needs root"
    missing = [b for b in DAEMONS + CLIENTS
               if shutil.which(b) is None and not Path("/usr/sbin", b).is_file()]
    if missing:
        return ("Slurm/munge binaries missing: " + ", ".join(missing)
                + " (apt-get install slurm-wlm munge)")
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _binary(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


class Cluster:
    """``start()`` writes the configuration and starts munged, slurmctld and slurmd;
    ``stop()`` ends them (SIGTERM, then SIGKILL) by PID. ``env`` is what a client needs."""

    def __init__(self, root: Path, cpus: int | None = None) -> None:
        self.root = Path(root)
        self.host = socket.gethostname().split(".")[0]
        self.cpus = cpus or os.cpu_count() or 1
        self.pids: dict[str, int] = {}
        self.socket = self.root / "munge" / "munge.socket"
        self.conf = self.root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    def _write_conf(self) -> None:
        for sub in ("munge", "state", "spool", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root / "munge", 0o755)  # munged wants the socket reachable
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        r = self.root
        lines = [
            "ClusterName=harness-test", f"SlurmctldHost={self.host}(127.0.0.1)",
            f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
            "SlurmUser=root", "SlurmdUser=root", "AuthType=auth/munge",
            "CredType=cred/munge", f"AuthInfo=socket={self.socket}",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
            "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
            "ReturnToService=2", "MpiDefault=none", "SchedulerType=sched/backfill",
            "SchedulerParameters=sched_interval=1", "KillWait=5", "MinJobAge=600",
            "InactiveLimit=0", "MailProg=/bin/true", "SlurmdTimeout=60", "JobRequeue=1",
            f"StateSaveLocation={r / 'state'}", f"SlurmdSpoolDir={r / 'spool'}",
            f"SlurmctldPidFile={r / 'slurmctld.pid'}", f"SlurmdPidFile={r / 'slurmd.pid'}",
            f"SlurmctldLogFile={r / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={r / 'log' / 'slurmd.log'}",
            f"NodeName={self.host} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory=8000 "
            "State=UNKNOWN",
            f"PartitionName=debug Nodes={self.host} Default=YES MaxTime=INFINITE State=UP",
        ]
        self.conf.write_text("\n".join(lines) + "\n")

    def _spawn(self, name: str, args: list[str]) -> None:
        log = (self.root / "log" / f"{name}.out").open("w")
        proc = subprocess.Popen([_binary(name), *args], env=self.env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.pids[name] = proc.pid
        self._procs = getattr(self, "_procs", {})
        self._procs[name] = proc

    def start(self, timeout: float = 60.0) -> None:
        self._write_conf()
        m = self.root / "munge"
        self._spawn("munged", ["-F", "--force", f"--socket={self.socket}",
                               f"--key-file={m / 'munge.key'}", f"--pid-file={m / 'munged.pid'}",
                               f"--log-file={m / 'munged.log'}", f"--seed-file={m / 'seed'}"])
        self._wait(lambda: self.socket.exists(), timeout, "munged did not create its socket")
        self._spawn("slurmctld", ["-D", "-i", "-f", str(self.conf)])
        self._spawn("slurmd", ["-D", "-f", str(self.conf), "-N", self.host])
        self._wait(self._idle, timeout, "the node did not become idle")

    def _idle(self) -> bool:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%t"], env=self.env, text=True,
                             capture_output=True, check=False).stdout
        return out.strip().startswith("idle")

    def _wait(self, ok, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            dead = [n for n, p in getattr(self, "_procs", {}).items() if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{', '.join(dead)} exited at start: {self.logs()}")
            if ok():
                return
            time.sleep(0.3)
        raise RuntimeError(f"{what} within {timeout:.0f} s: {self.logs()}")

    def logs(self) -> str:
        parts = []
        for path in sorted((self.root / "log").glob("*")):
            parts.append(f"--- {path.name}\n" + path.read_text(errors="replace")[-2000:])
        return "\n".join(parts)

    def stop(self) -> None:
        """Cancel every job and wait for their steps to end (munged still up, so they can
        report), then SIGTERM slurmd, slurmctld and munged, SIGKILL any still alive after
        10 s, and kill the ``slurmstepd`` of this cluster that outlived them (found by the
        ``SLURM_CONF`` in their environment: ours, never another cluster's)."""
        procs = getattr(self, "_procs", {})
        if procs.get("slurmctld") is not None and procs["slurmctld"].poll() is None:
            subprocess.run(["scancel", "--full", "--user=root"], env=self.env, check=False,
                           capture_output=True)
            end = time.monotonic() + 20
            while time.monotonic() < end and (self._queue() or self._stepds()):
                time.sleep(0.5)
        for name in ("slurmd", "slurmctld", "munged"):
            if name in procs and procs[name].poll() is None:
                os.kill(procs[name].pid, signal.SIGTERM)
        for name in ("slurmd", "slurmctld", "munged"):
            if name in procs:
                try:
                    procs[name].wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.kill(procs[name].pid, signal.SIGKILL)
                    procs[name].wait(timeout=10)
        for pid in self._stepds():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _queue(self) -> str:
        return subprocess.run(["squeue", "-h", "-o", "%i"], env=self.env, text=True,
                              capture_output=True, check=False).stdout.strip()

    def _stepds(self) -> list[int]:
        """PIDs of live job processes of this cluster: ``slurmstepd`` and the tasks it runs,
        whose environment names this cluster's ``slurm.conf`` and a job id."""
        mine = f"SLURM_CONF={self.conf}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in self.pids.values():
                continue
            try:
                if (entry / "stat").read_text().split()[2] == "Z":
                    continue
                env = (entry / "environ").read_bytes().split(b"\0")
                if mine in env and any(v.startswith(b"SLURM_JOB_ID=") for v in env) or (
                        mine in env and (entry / "comm").read_text().strip() == "slurmstepd"):
                    found.append(int(entry.name))
            except (OSError, IndexError):
                continue
        return found
