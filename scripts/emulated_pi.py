"""An emulated arm64 Raspberry Pi for the tests: a Debian bookworm arm64 root (debootstrap), run through
qemu-user-static and binfmt_misc, with its own sshd on 127.0.0.1 that a throwaway key logs into as `pi`.

    python3 scripts/emulated_pi.py build     # build (or reuse) the cached root
    python3 scripts/emulated_pi.py start     # bind mounts + sshd on a free port; prints host, port, user, key
    python3 scripts/emulated_pi.py status
    python3 scripts/emulated_pi.py stop      # every process of the root by PID, then the mounts, reversed

The root is cached under /var/cache/edgefarm-emu/<key> (EDGEFARM_EMU_CACHE), the key a hash of the suite
and the package list; the stamp file written last marks it complete. Inside it, /opt/edgefarm-wheels holds
the aarch64 wheels of the agent's base install and LiteRT (downloaded by the host's pip, natively, so a
deploy inside the emulator does not fetch 60 MB through qemu) and /etc/pip.conf points pip at them. Needs
root (chroot, mount) and Debian's qemu-user-static, binfmt-support and debootstrap. See docs/arm64.md."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("python3", "python3-venv", "openssh-server", "ca-certificates", "sudo")
USER = "pi"
SETUP_VERSION = "1"        # bump when what build() does inside the root changes
CACHE = Path(os.environ.get("EDGEFARM_EMU_CACHE", "/var/cache/edgefarm-emu"))
REPO = Path(__file__).resolve().parents[1]
WHEELHOUSE = "/opt/edgefarm-wheels"
CONSTRAINTS = REPO / "controller" / "fleet" / "agent-constraints.txt"     # read only: deploy's pins
# the root's Python (bookworm: 3.11) and glibc (2.36) decide which wheels fit
WHEEL_PLATFORMS = ("manylinux_2_28_aarch64", "manylinux_2_27_aarch64", "manylinux_2_17_aarch64",
                   "manylinux2014_aarch64")
BINFMT = Path("/proc/sys/fs/binfmt_misc")


class EmulatorError(RuntimeError):
    """The emulated board cannot be built or started here; the message says why and what to do."""


@dataclass
class Board:
    """A running emulated board: where to SSH to, as whom, with which key."""

    host: str
    port: int
    user: str
    key: str               # private key file on the host
    known_hosts: str       # a known_hosts file with the board's throwaway host key
    root: str
    sshd_pid: int
    mounts: list[str]


def cache_key() -> str:
    text = json.dumps({"suite": SUITE, "packages": sorted(PACKAGES), "user": USER, "setup": SETUP_VERSION})
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def cache_dir() -> Path:
    return CACHE / cache_key()


def root_dir() -> Path:
    return cache_dir() / "root"


def _run(cmd: list[str], timeout: float = 1800, **kw) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if done.returncode != 0:
        raise EmulatorError(f"`{' '.join(cmd)[:200]}` failed ({done.returncode}): "
                            f"{(done.stderr or done.stdout).strip()[-800:]}")
    return done


def check_host() -> None:
    """Root, the three Debian packages, and binfmt_misc with qemu-aarch64 enabled; raises EmulatorError."""
    if os.geteuid() != 0:
        raise EmulatorError("the emulated Pi needs root (chroot, bind mounts, binfmt_misc); run as root")
    missing = [p for p, exe in (("qemu-user-static", "qemu-aarch64-static"), ("binfmt-support", "update-binfmts"),
                                ("debootstrap", "debootstrap")) if not shutil.which(exe)]
    if missing:
        raise EmulatorError(f"missing {', '.join(missing)}: `apt-get install -y {' '.join(missing)}`")
    if not (BINFMT / "status").exists():
        done = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], capture_output=True,
                              text=True)
        if done.returncode != 0:
            raise EmulatorError(f"cannot mount binfmt_misc at {BINFMT} ({done.stderr.strip()}); in a container, "
                                "give it the privilege or mount it on the host")
    if not (BINFMT / "qemu-aarch64").exists():
        subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True, text=True)
    state = (BINFMT / "qemu-aarch64").read_text() if (BINFMT / "qemu-aarch64").exists() else ""
    if not state.startswith("enabled"):
        raise EmulatorError("binfmt_misc has no enabled qemu-aarch64 entry after `update-binfmts --enable "
                            "qemu-aarch64`; reinstall qemu-user-static")


def _chroot(root: Path, *cmd: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    return _run(["chroot", str(root), *cmd], timeout=timeout, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                                                   "LANG": "C.UTF-8", "HOME": "/root"})


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below path, deepest first (from /proc/self/mountinfo)."""
    prefix = str(path.resolve())
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    inside = [p for p in points if p == prefix or p.startswith(prefix + "/")]
    return sorted(set(inside), key=len, reverse=True)


def _umount_all(path: Path) -> None:
    _unmount(_mounts_under(path)[::-1])          # _unmount goes last to first: deepest first
    left = _mounts_under(path)
    if left:
        raise EmulatorError(f"could not unmount {', '.join(left)}; unmount them by hand")


def _remove_tree(path: Path) -> None:
    """rm -rf, but never through a mount that is still there (a bound /dev under a half-built root)."""
    if path.exists():
        _umount_all(path)
        shutil.rmtree(path)


def requirements() -> list[str]:
    """The agent's base install plus the LiteRT extra, from pyproject.toml (the installed metadata on 3.10)."""
    try:
        import tomllib
    except ImportError:                     # Python 3.10: what `pip install -e .` recorded
        from importlib.metadata import requires

        reqs = [r.split(";")[0].strip() for r in requires("edgefarm") or []
                if "extra" not in r or '"tflite"' in r]
        return [r for r in reqs if not r.startswith("edgefarm")]
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return list(project["dependencies"]) + list(project["optional-dependencies"]["tflite"])


def fill_wheelhouse(root: Path, progress=print) -> float:
    """Download (with the host's pip, natively) the aarch64 wheels the deploy will install; seconds taken."""
    t0 = time.monotonic()
    house = root / WHEELHOUSE.lstrip("/")
    house.mkdir(parents=True, exist_ok=True)
    reqs = requirements()
    pins = ["-c", str(CONSTRAINTS)] if CONSTRAINTS.exists() else []     # the versions deploy installs
    stamp, wanted = house / ".requirements", "\n".join(reqs) + (CONSTRAINTS.read_text() if pins else "")
    if stamp.exists() and stamp.read_text() == wanted:
        return 0.0
    progress(f"emulated Pi: downloading aarch64 wheels for {len(reqs)} requirements into {house}")
    platforms = [a for p in WHEEL_PLATFORMS for a in ("--platform", p)]
    _run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", *platforms,
          "--python-version", "3.11", "--implementation", "cp", "-d", str(house), *pins, *reqs], timeout=1200)
    (root / "etc/pip.conf").write_text(f"[global]\nfind-links = {WHEELHOUSE}\n")
    stamp.write_text(wanted)
    return time.monotonic() - t0


def build(progress=print) -> Path:
    """The cached arm64 root, built when missing or incomplete (about 7 minutes on 2 cores)."""
    check_host()
    root, stamp = root_dir(), cache_dir() / "complete"
    if stamp.exists() and root.is_dir():
        fill_wheelhouse(root, progress)
        return root
    partial = cache_dir() / "root.partial"
    _remove_tree(partial)
    _remove_tree(root)
    partial.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    progress(f"emulated Pi: debootstrap --arch=arm64 {SUITE} into {partial} (several minutes)")
    _run(["debootstrap", "--arch=arm64", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE,
          str(partial), MIRROR], timeout=3600)
    _configure(partial)
    _umount_all(partial)
    partial.rename(root)
    fill_wheelhouse(root, progress)
    stamp.write_text(json.dumps({"suite": SUITE, "packages": PACKAGES, "built_s": round(time.monotonic() - t0)}))
    progress(f"emulated Pi: root built in {time.monotonic() - t0:.0f} s")
    return root


def _configure(root: Path) -> None:
    """The user `pi` with passwordless sudo, no password login, and an empty apt cache."""
    _chroot(root, "useradd", "--create-home", "--shell", "/bin/bash", "--groups", "sudo", USER)
    _chroot(root, "usermod", "-p", "*", USER)        # '*': no password, but not a locked account for sshd
    (root / "etc/sudoers.d/010_pi-nopasswd").write_text(f"{USER} ALL=(ALL) NOPASSWD: ALL\n")
    (root / "etc/sudoers.d/010_pi-nopasswd").chmod(0o440)
    (root / "etc/hostname").write_text("emu-pi\n")
    _chroot(root, "apt-get", "clean")
    for key in (root / "etc/ssh").glob("ssh_host_*"):       # the package's host keys: each start makes its own
        key.unlink()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpuinfo_text(cores: int) -> str:
    """An arm64 /proc/cpuinfo (a Pi 4's Cortex-A72 cores) for the board. qemu-user 7.2 shows aarch64
    programs the host's x86 /proc/cpuinfo, and ONNX Runtime's cpuinfo crashes (SIGSEGV on import) parsing
    it next to the /sys CPU lists; a real arm64 kernel shows this format."""
    block = ("processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
             "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\n"
             "CPU revision\t: 3\n\n")
    return "".join(block.format(i=i) for i in range(cores)) + \
        "Hardware\t: edgefarm emulated arm64 board (qemu-user)\n"


def _bind_mounts(root: Path, run_dir: Path) -> list[str]:
    done: list[str] = []
    (run_dir / "cpuinfo").write_text(cpuinfo_text(os.cpu_count() or 1))
    for source, target, how in (("proc", "proc", ["-t", "proc"]), (str(run_dir / "cpuinfo"), "proc/cpuinfo",
                                                                     ["--bind"]),
                                ("/sys", "sys", ["--bind"]), ("/dev", "dev", ["--bind"]),
                                ("/dev/pts", "dev/pts", ["--bind"]), ("/dev/shm", "dev/shm", ["--bind"])):
        point = root / target
        if target != "proc/cpuinfo":
            point.mkdir(parents=True, exist_ok=True)
        try:
            _run(["mount", *how, source, str(point)], timeout=60)
        except EmulatorError:
            _unmount(done)
            raise
        done.append(str(point))
    return done


def _unmount(mounts: list[str]) -> None:
    for point in reversed(mounts):
        if subprocess.run(["umount", point], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True)


def _keys(root: Path, run_dir: Path) -> tuple[Path, Path]:
    """A throwaway client key authorized for pi, and a throwaway host key; returns (client key, host pub)."""
    for f in (run_dir / "id_ed25519", run_dir / "host_key"):
        for old in (f, f.with_suffix(".pub")):
            old.unlink(missing_ok=True)
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgefarm-emulated-pi", "-f", str(f)])
    ssh_dir = root / "home" / USER / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text((run_dir / "id_ed25519.pub").read_text())
    uid, gid = _ids(root)
    for p in (ssh_dir, ssh_dir / "authorized_keys"):
        os.chown(p, uid, gid)
    (ssh_dir / "authorized_keys").chmod(0o600)
    inside = root / "etc/ssh/edgefarm"
    inside.mkdir(exist_ok=True)
    shutil.copy(run_dir / "host_key", inside / "host_key")
    (inside / "host_key").chmod(0o600)
    return run_dir / "id_ed25519", run_dir / "host_key.pub"


def _fresh_state(root: Path) -> None:
    """What an earlier run left on the board goes (an agent install, /tmp), except pi's pip cache: each
    start is a board nothing was deployed to."""
    home = root / "home" / USER
    keep = {".ssh", ".cache", ".bashrc", ".profile", ".bash_logout"}
    for entry in [*(e for e in home.iterdir() if e.name not in keep), *(root / "tmp").iterdir()]:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _ids(root: Path) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == USER:
            return int(fields[2]), int(fields[3])
    raise EmulatorError(f"no user {USER} in {root}/etc/passwd; rebuild the root (`emulated_pi.py build`)")


def start(progress=print) -> Board:
    """Build (or reuse) the root, mount /proc (with an arm64 cpuinfo) /sys /dev /dev/pts /dev/shm into it,
    start its sshd on a free port of 127.0.0.1 and wait until it accepts connections."""
    root = build(progress)
    state = cache_dir() / "state.json"
    if state.exists():
        stop()
    run_dir = cache_dir() / "run"
    run_dir.mkdir(mode=0o700, exist_ok=True)
    _fresh_state(root)
    key, host_pub = _keys(root, run_dir)
    shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")      # pip reaches PyPI from inside
    port = _free_port()
    (root / "etc/ssh/edgefarm/sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey /etc/ssh/edgefarm/host_key\nPidFile none\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
        "PermitRootLogin no\nUsePAM no\nSubsystem sftp internal-sftp\n")
    (root / "run/sshd").mkdir(parents=True, exist_ok=True)
    (run_dir / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub.read_text().strip()}\n")
    mounts = _bind_mounts(root, run_dir)
    t0 = time.monotonic()
    log = open(run_dir / "sshd.log", "wb")
    proc = subprocess.Popen(["chroot", str(root), "/usr/sbin/sshd", "-D", "-e", "-f", "/etc/ssh/edgefarm/sshd_config"],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})
    log.close()
    board = Board("127.0.0.1", port, USER, str(key), str(run_dir / "known_hosts"), str(root), proc.pid, mounts)
    state.write_text(json.dumps(asdict(board)))
    try:
        _wait_listening(proc, port, run_dir / "sshd.log")
    except EmulatorError:
        stop()
        raise
    progress(f"emulated Pi: sshd listening on 127.0.0.1:{port} after {time.monotonic() - t0:.1f} s")
    return board


def _wait_listening(proc: subprocess.Popen, port: int, log: Path, timeout: float = 120) -> None:
    """Until the port accepts a connection (sshd under qemu takes a few seconds), or sshd exits."""
    deadline, pause = time.monotonic() + timeout, 0.05
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmulatorError(f"the emulated Pi's sshd exited ({proc.returncode}): {log.read_text()[-600:]}")
        with socket.socket() as s:
            s.settimeout(2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(pause)                   # polling a port: the condition itself, backing off
        pause = min(pause * 2, 1.0)
    raise EmulatorError(f"the emulated Pi's sshd did not listen within {timeout:.0f} s: {log.read_text()[-600:]}")


def processes_in(root: Path) -> list[int]:
    """PIDs of the processes whose root directory is this root (sshd, sessions, agents)."""
    target, pids = str(root.resolve()), []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "root") == target:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _kill_all(root: Path, first: int | None, timeout: float = 20) -> None:
    order = ([first] if first else []) + [p for p in processes_in(root) if p != first]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in order:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(_alive(p) for p in order):
            time.sleep(0.05)
        order = processes_in(root) + [p for p in order if _alive(p)]
        if not order:
            return


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:                                    # a zombie child of ours: reap it
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return True


def stop() -> None:
    """Stop sshd and everything else running in the root (by PID), then unmount in reverse order."""
    state = cache_dir() / "state.json"
    board = json.loads(state.read_text()) if state.exists() else None
    root = Path(board["root"]) if board else root_dir()
    if root.exists():
        _kill_all(root, board["sshd_pid"] if board else None)
    _unmount(board["mounts"] if board else [])
    if root.exists():
        _umount_all(root)
    state.unlink(missing_ok=True)


def status() -> dict:
    state = cache_dir() / "state.json"
    return {"root": str(root_dir()), "built": (cache_dir() / "complete").exists(),
            "running": json.loads(state.read_text()) if state.exists() else None,
            "processes": processes_in(root_dir()) if root_dir().exists() else []}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["build", "start", "stop", "status"])
    args = parser.parse_args(argv)

    def say(line: str) -> None:              # progress on stderr; stdout has only the answer
        print(line, file=sys.stderr, flush=True)

    try:
        if args.command == "build":
            print(build(say))
        elif args.command == "start":
            print(json.dumps(asdict(start(say)), indent=2))
        elif args.command == "stop":
            stop()
        else:
            print(json.dumps(status(), indent=2))
    except EmulatorError as exc:
        print(f"emulated_pi: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
