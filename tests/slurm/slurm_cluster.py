"""A one-node SLURM cluster on localhost for the workflow tests (Debian packages, no systemd).

`SlurmCluster.start()` installs `munge slurm-wlm slurm-client slurmctld slurmd` with apt-get when
one is missing (apt-get update only then), writes `/etc/slurm/{slurm.conf,gres.conf,
job_submit.lua}`, starts `munged`, `slurmctld -c` and `slurmd` as daemons, records their pids and
waits until the node is idle. `stop()` sends TERM (KILL after 15 s) to exactly those pids, only
while `/proc/PID/comm` still names the expected daemon, and restores a pre-existing
`/etc/slurm` config it replaced. Nothing is ever killed by name.

The cluster mirrors a typical site, small:
- partitions `cpu` (default) and `gpu` on the one node, both with a finite `MaxTime` and
  `EnforcePartLimits=ALL`, so an impossible request fails at sbatch time instead of pending
  forever;
- 2 fake GPUs: ONE gres record `File=/dev/null,/dev/zero` (two `File=/dev/null` lines are a
  "duplicate device file name" fatal; `Count=2` without `File` reports 0 GPUs and drains the node);
- a `job_submit.lua` routing policy: a GPU request outside partition `gpu`, or a job in `gpu`
  without a GPU, is rejected at submit time - so a profile that misroutes a rule fails loudly;
- no slurmdbd: `sacct` cannot see jobs, so snakemake must poll with `squeue`, and
  `MinJobAge=900` keeps finished jobs visible to it (the plugin silently falls back to sacct if
  MinJobAge < 3 x `slurm-init-seconds-before-status-checks`);
- `DefMemPerCPU` so a job without `--mem` does not take the node's whole memory.

The config must live at the compiled-in default path `/etc/slurm/slurm.conf`: the
snakemake slurm-jobstep executor strips `SLURM_CONF` (all `SLURM_*` but a few) before its
inner `srun`, so a config elsewhere works for sbatch but not inside jobs. That makes the cluster
a machine-wide singleton; an exclusive lock file serialises concurrent test sessions.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"

PACKAGES = ("munge", "slurm-wlm", "slurm-client", "slurmctld", "slurmd")
ETC = Path("/etc/slurm")
CONFIG_FILES = ("slurm.conf", "gres.conf", "job_submit.lua")
MARKER = "# spinecensus test cluster (tests/slurm/slurm_cluster.py)"
LOCK = Path("/run/spinecensus-slurm-test.lock")
FAKE_GPU_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
DAEMON_PIDFILES = {
    "munged": Path("/run/munge/munged.pid"),
    "slurmctld": Path("/run/slurmctld.pid"),
    "slurmd": Path("/run/slurmd.pid"),
}

JOB_SUBMIT_LUA = """\
-- spinecensus test cluster: GPU routing policy (JobSubmitPlugins=lua).
-- A job asking for a GPU must run in partition "gpu"; a job in "gpu" must ask for one.
-- Job steps (srun inside an allocation) are not checked.
local function wants_gpu(j)
   for _, f in ipairs({"tres_per_job", "tres_per_node", "tres_per_task", "tres_per_socket"}) do
      local v = j[f]
      if v ~= nil and string.find(v, "gpu", 1, true) then return true end
   end
   return false
end

function slurm_job_submit(job_desc, part_list, submit_uid)
   local parts = job_desc.partition or "cpu"   -- nil = the default partition
   local gpu = wants_gpu(job_desc)
   for p in string.gmatch(parts, "[^,]+") do
      if gpu and p ~= "gpu" then
         slurm.log_user("policy: job requests a GPU but partition is '%s'; use 'gpu'", p)
         return slurm.ERROR
      end
      if p == "gpu" and not gpu then
         slurm.log_user("policy: partition 'gpu' requires a GPU request (--gpus/--gres=gpu:N)")
         return slurm.ERROR
      end
   end
   return slurm.SUCCESS
end

function slurm_job_modify(job_desc, job_rec, part_list, modify_uid)
   return slurm.SUCCESS
end

return slurm.SUCCESS
"""


class ClusterUnavailable(RuntimeError):
    """SLURM cannot be provided on this machine (not root, no apt, foreign daemons).

    `skip` is True where that is a property of the machine (packages not installable, daemons
    of someone else running) rather than a fault of the fixture (daemons failing to start).
    """

    def __init__(self, message: str, skip: bool = False) -> None:
        super().__init__(message)
        self.skip = skip


def unavailable_reason() -> str | None:
    """Why this machine cannot host the test cluster, or None when it can (cheap checks only)."""
    if os.environ.get("SPINECENSUS_SKIP_SLURM", "") not in ("", "0"):
        return "SPINECENSUS_SKIP_SLURM is set"
    if not Path("/proc").is_dir():
        return "needs Linux (/proc)"
    if os.geteuid() != 0:
        return "needs root to install/start slurmctld, slurmd and munged (CI runs as root)"
    if not missing_packages():
        return None
    if shutil.which("apt-get") is None or shutil.which("dpkg-query") is None:
        return f"SLURM packages missing ({' '.join(missing_packages())}) and no apt-get"
    return None


def missing_packages() -> list[str]:
    """Debian packages of PACKAGES that are not installed (empty without dpkg-query)."""
    if shutil.which("dpkg-query") is None:
        return [p for p in ("slurmctld", "slurmd", "munged") if shutil.which(p) is None]
    missing = []
    for pkg in PACKAGES:
        res = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True
        )
        if "install ok installed" not in res.stdout:
            missing.append(pkg)
    return missing


def _run(cmd: list[str], timeout: float = 60, check: bool = True) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise ClusterUnavailable(
            f"{' '.join(cmd)} exited {res.returncode}: {(res.stderr or res.stdout)[-2000:]}"
        )
    return res.stdout


def _comm(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def _pids_named(name: str) -> list[int]:
    """Pids whose /proc/PID/comm is exactly `name` (used to detect foreign daemons only)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _comm(int(entry.name)) == name:
            pids.append(int(entry.name))
    return pids


@dataclass
class SlurmCluster:
    """One-node cluster. `state_dir` receives pid files, apt log and config backups."""

    state_dir: Path
    gpus: int = 2
    max_time: str = "1-00:00:00"
    def_mem_per_cpu: int = 1000
    host: str = field(default_factory=lambda: socket.gethostname().split(".")[0])
    pids: dict[str, int] = field(default_factory=dict)
    started_s: float = 0.0
    real_memory_mb: int = 0

    # ------------------------------------------------------------------ public --
    def start(self, timeout_s: float = 60) -> None:
        """Install if needed, configure and start the daemons; wait for the node to be idle."""
        t0 = time.monotonic()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        reason = unavailable_reason()
        if reason:
            raise ClusterUnavailable(reason, skip=True)
        self._install()
        for name in ("slurmctld", "slurmd"):
            if _pids_named(name):
                raise ClusterUnavailable(
                    f"a {name} not started by this fixture is running "
                    f"(pids {_pids_named(name)}); stop it first",
                    skip=True,
                )
        self._start_munge()
        self._write_config()
        self._start_daemon("slurmctld", ["slurmctld", "-c"])  # -c: clean state, no old jobs
        self._start_daemon("slurmd", ["slurmd"])
        self._wait_idle(timeout_s)
        self.started_s = time.monotonic() - t0

    def stop(self) -> list[str]:
        """Stop the daemons this object started (by recorded pid) and restore /etc/slurm."""
        stopped = []
        # slurmd and slurmctld together (each takes seconds to exit), munged last: the others
        # authenticate through it while shutting down.
        for group in (("slurmd", "slurmctld"), ("munged",)):
            live = {n: self.pids[n] for n in group if n in self.pids}
            for name, pid in live.items():
                if _comm(pid) == name:
                    os.kill(pid, 15)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and any(_comm(p) == n for n, p in live.items()):
                time.sleep(0.1)
            for name, pid in live.items():
                if _comm(pid) == name:
                    os.kill(pid, 9)
                stopped.append(f"{name}:{pid}")
                self.pids.pop(name, None)
                (self.state_dir / f"{name}.pid").unlink(missing_ok=True)
        self._restore_config()
        return stopped

    def jobs(self, workdir: Path | str) -> list[dict[str, str]]:
        """Jobs slurmctld still knows (MinJobAge=900) whose working directory is `workdir`.

        Keys: id, partition, state, name, workdir, mem, tres (`%b`, e.g. `gres:gpu:1`).
        `squeue --states=all` is the only record: there is no accounting database.
        """
        out = _run(["squeue", "--states=all", "-h", "-o", "%i|%P|%T|%j|%Z|%m|%b|%k"])
        keys = ("id", "partition", "state", "name", "workdir", "mem", "tres", "comment")
        rows = [dict(zip(keys, line.split("|"), strict=False)) for line in out.splitlines()]
        want = str(Path(workdir).resolve())
        return [r for r in rows if r.get("workdir") == want]

    def show_job(self, job_id: str) -> str:
        """`scontrol -d show job ID` text (includes TresPerJob / GRES allocation)."""
        return _run(["scontrol", "-d", "show", "job", job_id])

    # ----------------------------------------------------------------- helpers --
    def _install(self) -> None:
        missing = missing_packages()
        if not missing:
            return
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        log = self.state_dir / "apt.log"
        with open(log, "w") as fh:
            for cmd in (
                ["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", *PACKAGES],
            ):
                res = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, timeout=600)
                if res.returncode != 0:
                    raise ClusterUnavailable(
                        f"{' '.join(cmd)} failed: {log.read_text()[-2000:]}", skip=True
                    )

    def _start_munge(self) -> None:
        def munge_ok() -> bool:
            try:
                cred = subprocess.run(["munge", "-n"], capture_output=True, timeout=5)
                res = subprocess.run(["unmunge"], input=cred.stdout, capture_output=True, timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                return False
            return cred.returncode == 0 and res.returncode == 0

        if munge_ok():
            return  # someone's munged answers: use it, do not own it
        key = Path("/etc/munge/munge.key")
        if not key.exists() or key.stat().st_size == 0:
            key.parent.mkdir(mode=0o700, exist_ok=True)
            key.write_bytes(os.urandom(1024))
            shutil.chown(key.parent, "munge", "munge")
        shutil.chown(key, "munge", "munge")
        key.chmod(0o400)
        for d, mode in (
            ("/run/munge", 0o755),
            ("/var/lib/munge", 0o700),
            ("/var/log/munge", 0o700),
        ):
            Path(d).mkdir(parents=True, exist_ok=True)
            Path(d).chmod(mode)
            shutil.chown(d, "munge", "munge")
        self._start_daemon("munged", ["runuser", "-u", "munge", "--", "/usr/sbin/munged"])
        for _ in range(50):
            if munge_ok():
                return
            time.sleep(0.1)
        raise ClusterUnavailable("munge round trip failed after starting munged")

    def _start_daemon(self, name: str, cmd: list[str]) -> None:
        pidfile = DAEMON_PIDFILES[name]
        pidfile.unlink(missing_ok=True)
        _run(cmd, timeout=30)  # each daemonizes and writes its own pid file
        for _ in range(100):
            try:
                pid = int(pidfile.read_text().strip())
            except (OSError, ValueError):
                pid = 0
            if pid and _comm(pid) == name:
                self.pids[name] = pid
                (self.state_dir / f"{name}.pid").write_text(f"{pid}\n")
                return
            time.sleep(0.1)
        raise ClusterUnavailable(f"{name} did not start; see /var/log/slurm/{name}.log")

    def _config_text(self) -> dict[str, str]:
        mem_mb = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
        self.real_memory_mb = mem_mb - max(mem_mb // 20, 512)  # keep some for the OS
        # The node's topology exactly as slurmd sees it (a mismatch makes the node INVAL).
        probe = _run(["slurmd", "-C"], check=False).splitlines()
        topo = (
            " ".join(
                w
                for w in (probe[0].split() if probe else [])
                if w.split("=")[0]
                in ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore")
            )
            or f"CPUs={os.cpu_count()}"
        )
        if not 1 <= self.gpus <= len(FAKE_GPU_DEVICES):
            raise ValueError(f"gpus must be 1..{len(FAKE_GPU_DEVICES)}")
        h, mem = self.host, self.real_memory_mb
        conf = f"""{MARKER}
ClusterName=spinecensus-test
SlurmctldHost={h}(127.0.0.1)
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile={DAEMON_PIDFILES["slurmctld"]}
SlurmdPidFile={DAEMON_PIDFILES["slurmd"]}
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
MailProg=/bin/true
# no cgroups/systemd in containers
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
# a job without --mem would otherwise be given the whole node's memory
DefMemPerCPU={self.def_mem_per_cpu}
# no slurmdbd: snakemake polls with squeue, which needs finished jobs kept for a while
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=900
# reject impossible requests at submit time instead of pending forever
EnforcePartLimits=ALL
ReturnToService=2
InactiveLimit=0
KillWait=5
Waittime=0
JobSubmitPlugins=lua
NodeName={h} NodeAddr=127.0.0.1 {topo} RealMemory={mem} Gres=gpu:{self.gpus} State=UNKNOWN
PartitionName=cpu Nodes={h} Default=YES MaxTime={self.max_time} State=UP
PartitionName=gpu Nodes={h} Default=NO MaxTime={self.max_time} State=UP
"""
        n_gpu = self.gpus
        gres = (
            f"{MARKER}\n# fake GPUs: ONE record listing distinct always-present char devices\n"
            f"AutoDetect=off\nNodeName={h} Name=gpu File={','.join(FAKE_GPU_DEVICES[:n_gpu])}\n"
        )
        return {"slurm.conf": conf, "gres.conf": gres, "job_submit.lua": JOB_SUBMIT_LUA}

    def _write_config(self) -> None:
        texts = self._config_text()
        for d in (
            ETC,
            Path("/var/spool/slurmctld"),
            Path("/var/spool/slurmd"),
            Path("/var/log/slurm"),
        ):
            d.mkdir(parents=True, exist_ok=True)
        backup = self.state_dir / "etc-slurm-backup"
        for name, text in texts.items():
            target = ETC / name
            if target.exists() and MARKER not in target.read_text(errors="replace"):
                # a site's own config: keep it and put it back in stop()
                backup.mkdir(exist_ok=True)
                shutil.copy2(target, backup / name)
            target.write_text(text)

    def _restore_config(self) -> None:
        backup = self.state_dir / "etc-slurm-backup"
        if backup.is_dir():
            for f in backup.iterdir():
                shutil.copy2(f, ETC / f.name)
                f.unlink()
            backup.rmdir()

    def _wait_idle(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        state = ""
        while time.monotonic() < deadline:
            state = _run(["sinfo", "-h", "-N", "-n", self.host, "-o", "%t"], check=False).strip()
            if state.split("\n")[0] in ("idle", "mix", "alloc"):
                return
            if any(s in state for s in ("drain", "drng", "down", "inval", "fail")):
                _run(["scontrol", "update", f"nodename={self.host}", "state=resume"], check=False)
            time.sleep(0.3)
        logs = ""
        for name in ("slurmctld", "slurmd"):
            p = Path(f"/var/log/slurm/{name}.log")
            if p.exists():
                logs += f"\n--- {p}\n" + "\n".join(p.read_text().splitlines()[-15:])
        raise ClusterUnavailable(
            f"node {self.host} not idle after {timeout_s}s (state {state!r}){logs}"
        )


@contextmanager
def exclusive_lock(path: Path = LOCK) -> Iterator[None]:
    """Serialise test sessions on this machine (the cluster config path is machine-wide)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextmanager
def running_cluster(state_dir: Path, **kwargs: object) -> Iterator[SlurmCluster]:
    """Start a cluster for the duration of the block; always stop what was started."""
    with exclusive_lock():
        cluster = SlurmCluster(state_dir=state_dir, **kwargs)  # type: ignore[arg-type]
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop()


@dataclass
class Run:
    """Outcome of one snakemake call."""

    returncode: int
    output: str
    seconds: float


def run_snakemake(
    args: list[str], cwd: Path, timeout_s: float, log: Path, env: dict[str, str] | None = None
) -> Run:
    """Run snakemake in its own process group; on timeout kill the whole group (jobs included).

    The main snakemake spawns sbatch/squeue children; killing only the parent would leave them,
    so the group is killed. SLURM jobs it submitted are cancelled by the caller via scancel.
    """
    env = dict(
        os.environ,
        PYTHONHASHSEED="0",
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        PATH=f"{SNAKEMAKE.parent}:{os.environ.get('PATH', '')}",
        **(env or {}),
    )
    t0 = time.monotonic()
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [str(SNAKEMAKE), *args],
            cwd=cwd,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = -9
    out = log.read_text(errors="replace")
    if rc == -9:
        out += f"\n[test] snakemake killed after {timeout_s}s hard timeout\n"
    return Run(rc, out, time.monotonic() - t0)


def scancel_workdir(cluster: SlurmCluster, workdir: Path) -> None:
    """Cancel still-queued/running jobs of `workdir` (after a timeout) so they do not linger."""
    ids = [j["id"] for j in cluster.jobs(workdir) if j["state"] in ("PENDING", "RUNNING")]
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True, timeout=30)
