"""Profiling from outside the built binary: net/http/pprof on its own listener, off by
default, on loopback only unless explicitly allowed, never on the API or metrics listeners,
and a profile in progress does not hold up shutdown. REST-only and gRPC-only variants."""

from __future__ import annotations

import http.client
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import STANDARDS, go_env
from tests.test_smoke import Service, base_env, binaries  # noqa: F401 (binaries is a fixture)

pytestmark = [pytest.mark.go, pytest.mark.slow]

VARIANTS = ["default", "grpc"]  # REST only, gRPC only (chi-grpc shares their code paths)
GZIP_MAGIC = b"\x1f\x8b"


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    return base_env(DB_TYPE="sqlite", DATABASE_URL=f"file:{tmp_path}/p.db", GRPC_ADDR="127.0.0.1:0", **extra)


def get(addr: str, path: str, timeout: float = 15) -> tuple[int, bytes]:
    host, port = addr.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", path)
        res = conn.getresponse()
        return res.status, res.read()
    finally:
        conn.close()


def listening(pid: int) -> set[tuple[str, int]]:
    """The TCP sockets process pid listens on, as (local address, port): its socket inodes
    matched against the kernel's table (Linux), whatever it logs about itself."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for row in Path(table).read_text().splitlines()[1:]:
            cols = row.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                hex_ip, hex_port = local.split(":")
                found.add((decode_ip(hex_ip), int(hex_port, 16)))
    return found


def decode_ip(hex_ip: str) -> str:
    import ipaddress

    raw = bytes.fromhex(hex_ip)
    # The kernel prints each 32-bit word in host (little-endian) order.
    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    ip = ipaddress.ip_address(raw)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return str(ip)


def port_of(addr: str) -> int:
    return int(addr.rsplit(":", 1)[1])


def listening_line(svc: Service) -> dict:
    return next(line for line in svc.lines if line.get("msg") == "listening")


@pytest.mark.parametrize("variant", VARIANTS)
def test_profiling_is_off_by_default(binaries, variant, tmp_path):
    svc = Service(binaries[variant], env_for(tmp_path))
    svc.wait_listening().wait_ready()
    try:
        assert "pprof_addr" not in listening_line(svc)
        api_ports = {port_of(a) for a in (svc.api, svc.grpc, svc.metrics) if a}
        ports = {port for _, port in listening(svc.proc.pid)}
        assert ports == api_ports, f"the service listens on {ports}, want only {api_ports}"
        assert STANDARDS["ports"]["pprof"] not in ports
        for addr in (a for a in (svc.api, svc.metrics) if a):
            for path in ("/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/heap"):
                code, body = get(addr, path)
                assert code == 404 and b"goroutine" not in body, (addr, path)
    finally:
        assert svc.stop() == 0


@pytest.mark.parametrize("variant", VARIANTS)
def test_profiling_on_loopback_and_a_profile_in_progress_ends_at_shutdown(binaries, variant, tmp_path):
    svc = Service(binaries[variant], env_for(tmp_path, PPROF_ENABLED="true", PPROF_ADDR="127.0.0.1:0"))
    svc.wait_listening().wait_ready()
    stopped = False
    try:
        pprof = listening_line(svc)["pprof_addr"]
        assert pprof.startswith("127.0.0.1:")
        # Its own socket, on loopback, besides the API and metrics ones.
        sockets = listening(svc.proc.pid)
        assert ("127.0.0.1", port_of(pprof)) in sockets
        assert len(sockets) == len([a for a in (svc.api, svc.grpc, svc.metrics) if a]) + 1

        code, body = get(pprof, "/debug/pprof/")
        assert code == 200 and b"goroutine" in body and b"heap" in body
        code, body = get(pprof, "/debug/pprof/profile?seconds=1")
        assert code == 200 and body.startswith(GZIP_MAGIC) and len(body) > 100, body[:200]
        code, body = get(pprof, "/debug/pprof/heap")
        assert code == 200 and body.startswith(GZIP_MAGIC)
        # Longer than the standard allows: refused at once, the profiler stays off.
        too_long = STANDARDS["sizing"]["pprof_max_seconds"] + 1
        for path in ("profile", "trace", "heap"):
            code, body = get(pprof, f"/debug/pprof/{path}?seconds={too_long}", timeout=5)
            assert code == 400 and b"seconds must be" in body, (path, code, body)
        # Still never on the API or metrics listeners.
        for addr in (a for a in (svc.api, svc.metrics) if a):
            assert get(addr, "/debug/pprof/")[0] == 404, addr

        # A long profile in progress is cut short by SIGTERM (a valid, shorter profile),
        # and the service exits cleanly well before the profile's 30 s.
        result: dict = {}

        def profile() -> None:
            try:
                result["res"] = get(pprof, "/debug/pprof/profile?seconds=30", timeout=60)
            except OSError as err:
                result["err"] = err

        worker = threading.Thread(target=profile)
        worker.start()
        time.sleep(0.5)
        start = time.monotonic()
        assert svc.stop() == 0
        stopped = True
        worker.join(timeout=30)
        assert time.monotonic() - start < 15
        assert "res" in result, result
        code, body = result["res"]
        assert code == 200 and body.startswith(GZIP_MAGIC)
    finally:
        if not stopped:
            svc.stop()


@pytest.mark.parametrize("addr", ["0.0.0.0:0", ":0", "[::]:0", "localhost:0"])
def test_profiling_beyond_loopback_is_refused_without_the_opt_in(binaries, addr, tmp_path):
    proc = subprocess.run([str(binaries["default"])], env=go_env(**env_for(tmp_path, PPROF_ENABLED="true", PPROF_ADDR=addr)),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "PPROF_ADDR" in proc.stderr and "not a loopback address" in proc.stderr, proc.stderr
    assert "PPROF_ALLOW_NON_LOOPBACK=true" in proc.stderr
    assert '"msg":"listening"' not in proc.stdout


@pytest.mark.parametrize("variant", VARIANTS)
def test_profiling_beyond_loopback_with_the_opt_in_warns(binaries, variant, tmp_path):
    svc = Service(binaries[variant], env_for(tmp_path, PPROF_ENABLED="true", PPROF_ADDR="0.0.0.0:0",
                                             PPROF_ALLOW_NON_LOOPBACK="true"))
    svc.wait_listening()
    try:
        pprof = listening_line(svc)["pprof_addr"]
        # Every interface (Go makes 0.0.0.0 a dual-stack socket, shown as ::).
        hosts = {host for host, port in listening(svc.proc.pid) if port == port_of(pprof)}
        assert hosts and hosts <= {"0.0.0.0", "::"}, hosts
        warnings = [line for line in svc.lines if line.get("level") == "WARN" and "pprof" in line.get("msg", "")]
        assert warnings and warnings[0]["pprof_addr"] == pprof, svc.raw
        assert get(f"127.0.0.1:{port_of(pprof)}", "/debug/pprof/")[0] == 200
    finally:
        assert svc.stop() == 0
