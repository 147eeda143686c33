"""A throw-away single-node SLURM cluster for the tests: munged, slurmctld and slurmd on this machine.

Everything the daemons read and write (configuration, munge key and socket, state, spool, logs, PID
files) lives in one temporary directory; apart from installing the packages (`install`), nothing under
/etc or /var is used and no system service is started or stopped. The node declares fake GPUs as GRES: character devices (copies of /dev/null) made in that
directory, so that slurmd hands each GPU job its own CUDA_VISIBLE_DEVICES as on a real GPU node.
Every client call needs `SLURM_CONF` (see `Cluster.env`). The daemons are started as child processes
in the foreground and stopped by their PIDs.

`python tests/slurm_cluster.py DIR` starts one and leaves it running (for trying the profile by hand);
`kill` the PIDs it prints to stop it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
DAEMONS = ("munged", "slurmctld", "slurmd")
CPU_PARTITION, GPU_PARTITION = "cpu", "gpu"


class Unavailable(Exception):
    """SLURM cannot be installed or started here; the message says why (the tests skip with it)."""


def _which(name: str) -> str | None:
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/bin")


def install() -> None:
    """Debian's SLURM and munge packages, from the system's package manager, unless already there."""
    if all(_which(d) for d in (*DAEMONS, "sbatch", "srun", "squeue", "scontrol", "sinfo")):
        return
    if os.geteuid() != 0:
        raise Unavailable("SLURM is not installed and installing it needs root")
    if _which("apt-get") is None:
        raise Unavailable("SLURM is not installed and there is no apt-get to install it with")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:  # the package lists may be missing (a fresh container): update once
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True, timeout=600)
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    if result.returncode != 0 or not all(_which(d) for d in DAEMONS):
        raise Unavailable(f"`{' '.join(command)}` failed ({result.returncode}): "
                          f"{(result.stderr or result.stdout).strip()[-1500:]}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mem_total_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 1024


@dataclass
class Cluster:
    """One node named after this host, partitions `cpu` (default) and `gpu`, `gpus` fake GPUs."""

    root: Path
    gpus: int = 2
    cpus: int = 2
    memory_mb: int = 0  # 0: this machine's, at least 32 GB (see write_config)
    min_job_age: int = 900  # seconds a finished job stays in squeue and scontrol (the tests read both)
    node: str = field(default_factory=lambda: socket.gethostname().split(".")[0] or "localhost")
    processes: dict = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.root / "etc" / "slurm.conf"

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def env(self) -> dict:
        """The environment of every SLURM client call (and so of Snakemake and its jobs): SLURM_CONF names
        this cluster, and what an enclosing SLURM job or GPU machine set is left out (SLURM_*, SBATCH_*,
        SRUN_*, CUDA_VISIBLE_DEVICES), so that a job's GPU can only come from this cluster."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_", "SQUEUE_", "SINFO_"))
               and k != "CUDA_VISIBLE_DEVICES"}
        env["SLURM_CONF"] = str(self.conf)
        env["PATH"] = os.pathsep.join([str(self.bin), env.get("PATH", os.defpath)])
        return env

    @property
    def devices(self) -> list[Path]:
        return [self.root / "dev" / f"fakegpu{i}" for i in range(self.gpus)]

    def log(self, daemon: str) -> Path:
        return self.root / "log" / f"{daemon}.log"

    def logs(self, tail: int = 4000) -> str:
        """The end of every daemon's log, for failure messages."""
        parts = []
        for daemon in DAEMONS:
            path = self.log(daemon)
            text = path.read_text(errors="replace")[-tail:] if path.is_file() else "(none)"
            parts.append(f"--- {path}:\n{text}")
        return "\n".join(parts)

    # -- configuration ------------------------------------------------------------------------------
    def write_config(self) -> None:
        for sub in ("etc", "munge", "state", "spool", "log", "run", "dev", "bin"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
            os.chmod(self.root / sub, 0o700)
        os.chmod(self.root, 0o755)
        socket_path = self.root / "munge" / "munge.socket"
        if len(str(socket_path)) > 100:
            raise Unavailable(f"the munge socket path {socket_path} is too long for a UNIX socket")
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o600)
        for device in self.devices:
            if not device.exists():
                try:  # a character device like /dev/null: what a GPU's /dev/nvidiaN is to slurmd
                    os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
                except OSError as error:
                    raise Unavailable(f"cannot create the fake GPU device {device}: {error}") from error
        r = self.root
        # Memory is checked, not consumed (CR_Core): a job asking more than RealMemory is refused, so the
        # node declares at least 32 GB, enough for the rules' mem_mb (sized for real GPU nodes) on a
        # small CI runner; the jobs here use a few hundred MB each.
        memory = self.memory_mb or max(_mem_total_mb(), 32000)
        lines = [
            "# written by tests/slurm_cluster.py: a single-node test cluster, no accounting",
            "ClusterName=rdmltest",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={socket_path}",
            f"StateSaveLocation={r}/state",
            f"SlurmdSpoolDir={r}/spool",
            f"SlurmctldPidFile={r}/run/slurmctld.pid",
            f"SlurmdPidFile={r}/run/slurmd.pid",
            f"SlurmctldLogFile={self.log('slurmctld')}",
            f"SlurmdLogFile={self.log('slurmd')}",
            "SlurmctldDebug=info",
            "MailProg=/bin/true",
            "SlurmdDebug=info",
            f"PlugStackConfig={r}/etc/plugstack.conf",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "SwitchType=switch/none",
            "SchedulerType=sched/backfill",
            "SchedulerParameters=sched_interval=2,bf_interval=2",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",  # CPUs and GPUs are consumed; memory is only checked
            "GresTypes=gpu",
            "ReturnToService=2",
            f"MinJobAge={self.min_job_age}",
            "SlurmctldTimeout=30",
            "SlurmdTimeout=30",
            "InactiveLimit=0",
            "KillWait=5",
            "MessageTimeout=20",
            # slurmd takes the node as written here (it may have fewer cores than declared on a 1-core runner)
            "SlurmdParameters=config_overrides",
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={memory} "
            f"Gres=gpu:{self.gpus} State=UNKNOWN",
            f"PartitionName={CPU_PARTITION} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
            f"PartitionName={GPU_PARTITION} Nodes={self.node} MaxTime=INFINITE State=UP",
        ]
        self.conf.write_text("\n".join(lines) + "\n")
        (r / "etc" / "plugstack.conf").write_text("")
        # Inside a job, snakemake-executor-plugin-slurm-jobstep (0.6) removes every SLURM_* variable but
        # the job's id before it calls `srun`, SLURM_CONF included; a real cluster keeps slurm.conf where
        # srun looks by default (or runs configless), this one is in a temporary directory. The jobs
        # inherit PATH (sbatch --export=ALL), so this srun puts SLURM_CONF back.
        srun = self.bin / "srun"
        srun.write_text(f"#!/bin/sh\nSLURM_CONF={self.conf} exec {_which('srun')} \"$@\"\n")
        os.chmod(srun, 0o755)
        (r / "etc" / "gres.conf").write_text(
            "AutoDetect=off\n" + "".join(f"NodeName={self.node} Name=gpu File={d}\n" for d in self.devices))

    # -- daemons ------------------------------------------------------------------------------------
    def _spawn(self, name: str, command: list[str]) -> None:
        out = open(self.root / "log" / f"{name}.stdout", "ab")
        process = subprocess.Popen(command, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        self.processes[name] = process

    def _wait(self, what: str, check, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise Unavailable(f"{name} exited ({process.returncode}) while waiting for {what}:\n"
                                      f"{self.logs()}\n{self._stdout(name)}")
            if check():
                return
            time.sleep(0.3)
        raise Unavailable(f"timed out after {timeout:.0f} s waiting for {what}:\n{self.logs()}")

    def _stdout(self, name: str) -> str:
        path = self.root / "log" / f"{name}.stdout"
        return f"--- {path}:\n{path.read_text(errors='replace')[-3000:]}" if path.is_file() else ""

    def run(self, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        """A SLURM client command (sinfo, squeue, scontrol, sbatch, ...) against this cluster."""
        result = subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr}{result.stdout}")
        return result

    def start(self, timeout: float = 60) -> None:
        self.write_config()
        r = self.root
        self._spawn("munged", [_which("munged"), "--foreground", "--force",
                               f"--socket={r}/munge/munge.socket", f"--key-file={r}/munge/munge.key",
                               f"--log-file={self.log('munged')}", f"--pid-file={r}/run/munged.pid",
                               f"--seed-file={r}/munge/munged.seed"])
        self._wait("munged's socket", lambda: (r / "munge" / "munge.socket").exists(), 20)
        self._spawn("slurmctld", [_which("slurmctld"), "-D", "-i", "-f", str(self.conf)])

        def controller_up():
            return self.run("scontrol", "ping", check=False, timeout=10).stdout.count("UP") >= 1

        self._wait("slurmctld to answer `scontrol ping`", controller_up, timeout)
        self._spawn("slurmd", [_which("slurmd"), "-D", "-N", self.node, "-f", str(self.conf)])

        def node_idle():
            states = self.run("sinfo", "-h", "-N", "-o", "%t", check=False, timeout=10).stdout.split()
            return bool(states) and all(s.rstrip("*") == "idle" for s in states)

        self._wait(f"node {self.node} to be idle in sinfo", node_idle, timeout)

    def stop(self, timeout: float = 20) -> list[str]:
        """Cancel what is left, then stop slurmd, slurmctld and munged by PID; returns the daemons that
        had to be killed with SIGKILL (empty when all stopped on SIGTERM)."""
        if "slurmctld" in self.processes and self.processes["slurmctld"].poll() is None:
            self.run("scancel", "--full", "--user", str(os.geteuid()), check=False)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and self.run(
                    "squeue", "-h", "-t", "PENDING,RUNNING,CONFIGURING,COMPLETING", check=False).stdout.strip():
                time.sleep(0.5)
        killed = []
        for name in ("slurmd", "slurmctld", "munged"):
            process = self.processes.get(name)
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
                killed.append(name)
        return killed

    def gone(self) -> list[str]:
        """The daemons started here that still run (should be none after `stop`)."""
        return [name for name, p in self.processes.items() if p.poll() is None]


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/rdml-slurm").resolve()
    install()
    cluster = Cluster(root)
    cluster.start()
    print(f"export SLURM_CONF={cluster.conf} PATH={cluster.bin}:$PATH")
    print("PIDs: " + " ".join(f"{name}={p.pid}" for name, p in cluster.processes.items()))
