"""Private database servers for tests that stop and start their database.

The suite's shared servers (.ci/postgres.sh, .ci/mariadb.sh) serve every test at once, so a
test that takes its database down runs its own instance instead: a fresh data directory
under a temporary directory, a free loopback port, the Debian binaries the .ci scripts use
(Kafka, which Debian does not package: its jars from Maven Central, cached).
Each is a context manager that creates and starts the instance and removes everything at
the end; stop() and start() take it down and bring it back in between.

    with PostgresServer() as pg:
        dsn = pg.dsn          # postgres://...
        pg.stop(); pg.start()
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.conftest import STANDARDS

PASSWORD = "cgs-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as(user: str) -> list[str]:
    """Run as user when the tests run as root (the servers refuse to run as root)."""
    return ["runuser", "-u", user, "--"] if os.geteuid() == 0 else []


def _private_dir(owner: str) -> tuple[Path, Path]:
    """A temporary base directory others may traverse, and a data directory in it that the
    server's user owns."""
    base = Path(tempfile.mkdtemp(prefix="cgs-db-", dir="/tmp"))
    base.chmod(0o755)
    data = base / "data"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(data, owner, owner)
    return base, data


def postgres_bindir() -> Path | None:
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: [int(x) for x in Path(d).parent.name.split(".") if x.isdigit()])
    return Path(dirs[-1]) if dirs and Path(dirs[-1], "initdb").exists() else None


def mariadbd_path() -> Path | None:
    found = shutil.which("mariadbd") or ("/usr/sbin/mariadbd" if os.path.exists("/usr/sbin/mariadbd") else None)
    return Path(found) if found and shutil.which("mariadb-install-db") else None


class PrivateServer:
    """A database server of the test's own under self.base: started on entry; on exit
    halted (halt) and its directory removed, whatever happened."""

    base: Path

    def start(self) -> None:
        raise NotImplementedError

    def halt(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.halt()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


def stop_process(proc: subprocess.Popen | None, crash: bool = False, timeout: float = 30) -> None:
    """Stop a server process the way a service manager does (SIGTERM: a normal shutdown), or
    with crash kill it (SIGKILL); SIGKILL after timeout if it does not exit."""
    if proc and proc.poll() is None:
        if crash:
            proc.kill()
        else:
            proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


class ProcessServer(PrivateServer):
    """A server that is one process of ours, healthy when _healthy() says so; its data under
    self.base outlive stop()/start()."""

    name: str
    proc: subprocess.Popen | None = None

    def command(self, log: Path) -> list[str]:
        raise NotImplementedError

    def _healthy(self) -> bool:
        raise NotImplementedError

    def environment(self) -> dict[str, str] | None:
        """The server's environment (None: the tests')."""
        return None

    def start(self, timeout: float = 30) -> None:
        """Start the server and return once it is healthy."""
        log = self.base / "server.log"
        self.proc = subprocess.Popen(self.command(log), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env=self.environment(), start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self._healthy():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start:\n" + (log.read_text()[-3000:] if log.exists() else ""))
            time.sleep(0.05)

    def stop(self, timeout: float = 30) -> None:
        """Stop the server (SIGTERM, as a service manager does)."""
        stop_process(self.proc, timeout=timeout)
        self.proc = None

    def halt(self) -> None:
        self.stop()


class PostgresServer(PrivateServer):
    """A PostgreSQL instance of its own (initdb, pg_ctl), on 127.0.0.1 and a free port."""

    def __init__(self) -> None:
        bindir = postgres_bindir()
        if bindir is None:
            raise FileNotFoundError("no PostgreSQL server binaries under /usr/lib/postgresql (apt-get install postgresql)")
        self.bindir = bindir
        self.port = free_port()
        self.base, self.data = _private_dir("postgres")
        self.dsn = f"postgres://postgres:{PASSWORD}@127.0.0.1:{self.port}/postgres?sslmode=disable"
        pwfile = self.base / "pw"
        pwfile.write_text(PASSWORD + "\n")
        pwfile.chmod(0o644)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", f"--pwfile={pwfile}", "-A", "scram-sha-256")
        pwfile.unlink()

    def _run(self, tool: str, *args: str, timeout: float = 120) -> None:
        proc = subprocess.run([*_as("postgres"), str(self.bindir / tool), *args], capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            log = self.data / "server.log"
            raise RuntimeError(f"{tool} failed: {proc.stderr}\n{log.read_text() if log.exists() else ''}")

    def start(self) -> None:
        """Start the server and return once it accepts connections."""
        # fsync off: a committed transaction survives the server's processes crashing (its WAL
        # is written at commit), not the machine's, which these tests never do.
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.data} -c fsync=off "
                "-c full_page_writes=off -c max_connections=100")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.data / "server.log"), "-w", "-t", "60", "-o", opts, "start")

    def stop(self, crash: bool = False) -> None:
        """Stop the server: a fast shutdown (sessions are ended, as by an administrator or
        systemd), or with crash an immediate one (every process quits at once, no
        checkpoint: the next start recovers from the WAL, like after a crash)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate" if crash else "fast", "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return subprocess.run([*_as("postgres"), str(self.bindir / "pg_ctl"), "-D", str(self.data), "status"],
                              capture_output=True, timeout=30).returncode == 0

    def sql(self, query: str, db: str = "postgres") -> str:
        """Run a statement with psql as the superuser; return its unaligned output."""
        dsn = self.dsn.replace("/postgres?", f"/{db}?")
        return subprocess.run(["psql", dsn, "-qAtc", query], check=True, capture_output=True, text=True, timeout=60).stdout

    def create_database(self, name: str) -> str:
        """Create a database; return its DSN."""
        self.sql(f"CREATE DATABASE {name}")
        return self.dsn.replace("/postgres?", f"/{name}?")

    def halt(self) -> None:
        if self.running():
            self.stop(crash=True)


class MariaDBServer(PrivateServer):
    """A MariaDB instance of its own (mariadb-install-db, mariadbd), on 127.0.0.1 and a free
    port, with a user 'cgs' that may do anything over TCP."""

    USER = "cgs"

    def __init__(self) -> None:
        mariadbd = mariadbd_path()
        if mariadbd is None:
            raise FileNotFoundError("mariadbd or mariadb-install-db not found (apt-get install mariadb-server)")
        self.mariadbd = mariadbd
        self.port = free_port()
        self.base, self.data = _private_dir("mysql")
        self.sock = self.data / "mariadb.sock"
        self.proc: subprocess.Popen | None = None
        self.dsn = f"{self.USER}:{PASSWORD}@tcp(127.0.0.1:{self.port})/"
        proc = subprocess.run(["mariadb-install-db", f"--datadir={self.data}", "--user=mysql",
                               "--auth-root-authentication-method=socket", "--skip-test-db"],
                              capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed: {proc.stdout}\n{proc.stderr}")
        self._created_user = False

    def url(self, db: str) -> str:
        """The service's mariadb:// URL for database db."""
        return f"mariadb://{self.USER}:{PASSWORD}@127.0.0.1:{self.port}/{db}"

    def _alive(self) -> bool:
        return subprocess.run(["mariadb-admin", f"--socket={self.sock}", "-uroot", "ping"],
                              capture_output=True, timeout=30).returncode == 0

    def start(self, timeout: float = 60) -> None:
        """Start the server and return once it answers. The redo log is written at every
        commit (flushed once a second): a commit survives mariadbd being killed, not the
        machine crashing, which these tests never do."""
        self.proc = subprocess.Popen(
            [str(self.mariadbd), "--no-defaults", f"--datadir={self.data}", "--user=mysql", f"--port={self.port}",
             "--bind-address=127.0.0.1", f"--socket={self.sock}", f"--pid-file={self.data / 'mariadb.pid'}",
             f"--log-error={self.data / 'error.log'}", "--innodb-flush-log-at-trx-commit=2", "--skip-log-bin",
             "--max-connections=200", "--innodb-buffer-pool-size=64M"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not self._alive():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = self.data / "error.log"
                raise RuntimeError("mariadbd did not start:\n" + (log.read_text()[-3000:] if log.exists() else ""))
            time.sleep(0.1)
        if not self._created_user:
            self.root_sql(f"CREATE USER '{self.USER}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'; "
                          f"GRANT ALL PRIVILEGES ON *.* TO '{self.USER}'@'127.0.0.1' WITH GRANT OPTION;")
            self._created_user = True

    def stop(self, crash: bool = False, timeout: float = 60) -> None:
        """Stop the server the way a service manager does (SIGTERM: a normal shutdown), or
        with crash kill it (SIGKILL: the next start recovers from the redo log)."""
        stop_process(self.proc, crash=crash, timeout=timeout)
        self.proc = None

    def root_sql(self, query: str) -> str:
        return subprocess.run(["mariadb", f"--socket={self.sock}", "-uroot", "-N", "-B", "-e", query],
                              check=True, capture_output=True, text=True, timeout=60).stdout

    def create_database(self, name: str) -> str:
        """Create a database; return the service's URL for it."""
        self.root_sql(f"CREATE DATABASE {name}")
        return self.url(name)

    def halt(self) -> None:
        self.stop()


def galera_provider() -> Path | None:
    """Debian's galera-4 replication library, if installed."""
    for path in ("/usr/lib/galera/libgalera_smm.so", "/usr/lib/galera-4/libgalera_smm.so"):
        if os.path.exists(path):
            return Path(path)
    return None


class GaleraCluster(PrivateServer):
    """A MariaDB Galera cluster of n nodes of its own on loopback: node 1 bootstraps the
    cluster (--wsrep-new-cluster), the others join it by state transfer (rsync SST, IST when
    a restarted node's gap is still in the donor's cache). Entering returns once
    wsrep_cluster_size is n. Nodes are numbered from 1: kill(i) sends SIGKILL to a node,
    start(i) starts it again and returns once it is synced. The user 'cgs' may do anything
    over TCP; dsn(i)/url(i, db) address node i.

        with GaleraCluster(3) as c:
            c.create_database("app")      # on every node (DDL is replicated)
            c.kill(3); c.start(3)
    """

    USER = "cgs"
    # Failure detection on loopback: a killed node leaves the group within about 3 s
    # instead of the defaults' 5-15 s, during which commits on the others wait; still loose
    # enough that a busy 2-core CI machine does not make live nodes look dead.
    PROVIDER_OPTIONS = ("evs.keepalive_period=PT0.5S;evs.suspect_timeout=PT2S;evs.inactive_timeout=PT4S;"
                        "evs.inactive_check_period=PT0.5S;evs.install_timeout=PT4S;gcache.size=128M")

    def __init__(self, n: int = 3) -> None:
        mariadbd, provider = mariadbd_path(), galera_provider()
        if mariadbd is None:
            raise FileNotFoundError("mariadbd or mariadb-install-db not found (apt-get install mariadb-server)")
        if provider is None:
            raise FileNotFoundError("the Galera library libgalera_smm.so was not found (apt-get install galera-4)")
        if shutil.which("rsync") is None or shutil.which("wsrep_sst_rsync") is None:
            raise FileNotFoundError("rsync or wsrep_sst_rsync not found (apt-get install rsync mariadb-server)")
        self.mariadbd, self.provider, self.n = mariadbd, provider, n
        self.base = Path(tempfile.mkdtemp(prefix="cgs-galera-", dir="/tmp"))
        self.base.chmod(0o755)
        self.ports = [free_port() for _ in range(n)]  # SQL
        self.gcomm = [free_port() for _ in range(n)]  # group communication
        self.ist = [free_port() for _ in range(n)]
        self.sst = [free_port() for _ in range(n)]
        self.data = [self.base / f"node{i + 1}" for i in range(n)]
        self.procs: list[subprocess.Popen | None] = [None] * n
        self.started = False
        self.last_transfer = ""  # how the last node start(i) started caught up: "IST" or "SST"
        for d in self.data:
            d.mkdir()
            if os.geteuid() == 0:
                shutil.chown(d, "mysql", "mysql")
        # Only node 1 needs system tables: the others receive node 1's data by SST.
        proc = subprocess.run(["mariadb-install-db", f"--datadir={self.data[0]}", "--user=mysql",
                               "--auth-root-authentication-method=socket", "--skip-test-db"],
                              capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed: {proc.stdout}\n{proc.stderr}")

    def sock(self, i: int) -> Path:
        return self.data[i - 1] / "mariadb.sock"

    def dsn(self, i: int, db: str = "") -> str:
        """The driver DSN of node i."""
        return f"{self.USER}:{PASSWORD}@tcp(127.0.0.1:{self.ports[i - 1]})/{db}"

    def url(self, i: int, db: str) -> str:
        """The service's mariadb:// URL for database db on node i."""
        return f"mariadb://{self.USER}:{PASSWORD}@127.0.0.1:{self.ports[i - 1]}/{db}"

    def _launch(self, i: int, bootstrap: bool = False, position: str = "") -> None:
        args = self._args(i)
        if bootstrap:
            args.append("--wsrep-new-cluster")
        if position:
            args.append(f"--wsrep-start-position={position}")
        self.procs[i - 1] = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _recovered_position(self, i: int) -> str:
        """The position (uuid:seqno) of node i's committed data, from InnoDB: after a crash
        grastate.dat does not know it, and without it the node would ask for a full state
        transfer. mariadbd --wsrep-recover finds it, as the Debian service does before every
        start (galera_recovery); "" when it cannot."""
        log = self.data[i - 1] / "recover.log"
        log.unlink(missing_ok=True)
        subprocess.run([*self._args(i), "--wsrep-recover", f"--log-error={log}"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
        m = re.search(r"WSREP: Recovered position: ([0-9a-f-]{36}:\d+)", log.read_text(errors="replace") if log.exists() else "")
        return m.group(1) if m else ""

    def _args(self, i: int) -> list[str]:
        d = self.data[i - 1]
        peers = ",".join(f"127.0.0.1:{p}" for p in self.gcomm)
        opts = (f"gmcast.listen_addr=tcp://127.0.0.1:{self.gcomm[i - 1]};ist.recv_addr=127.0.0.1:{self.ist[i - 1]};"
                + self.PROVIDER_OPTIONS)
        args = [str(self.mariadbd), "--no-defaults", f"--datadir={d}", "--user=mysql", f"--port={self.ports[i - 1]}",
                "--bind-address=127.0.0.1", f"--socket={d / 'mariadb.sock'}", f"--pid-file={d / 'mariadb.pid'}",
                f"--log-error={d / 'error.log'}", "--innodb-flush-log-at-trx-commit=2", "--max-connections=200",
                "--innodb-buffer-pool-size=64M", "--binlog-format=ROW", "--innodb-autoinc-lock-mode=2",
                "--default-storage-engine=InnoDB", "--wsrep-on=ON", f"--wsrep-provider={self.provider}",
                "--wsrep-cluster-name=cgs-test", f"--wsrep-cluster-address=gcomm://{peers}",
                f"--wsrep-node-name=node{i}", f"--wsrep-node-address=127.0.0.1:{self.gcomm[i - 1]}",
                f"--wsrep-node-incoming-address=127.0.0.1:{self.ports[i - 1]}",
                f"--wsrep-provider-options={opts}", "--wsrep-sst-method=rsync",
                f"--wsrep-sst-receive-address=127.0.0.1:{self.sst[i - 1]}", "--wsrep-slave-threads=2"]
        return args

    def status(self, i: int, name: str) -> str | None:
        """A wsrep status variable of node i, or None when the node does not answer."""
        proc = subprocess.run(["mariadb", f"--socket={self.sock(i)}", "-uroot", "-N", "-B", "-e",
                               f"SHOW STATUS LIKE '{name}'"], capture_output=True, text=True, timeout=30)
        if proc.returncode != 0 or not proc.stdout.strip():
            return None
        return proc.stdout.split("\t", 1)[1].strip()

    def _wait(self, i: int, ok, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ok():
            proc = self.procs[i - 1]
            if proc is None or proc.poll() is not None or time.monotonic() > deadline:
                log = self.data[i - 1] / "error.log"
                raise RuntimeError(f"galera node {i}: {what} not reached:\n" + (log.read_text()[-4000:] if log.exists() else ""))
            time.sleep(0.2)

    def _synced(self, i: int) -> bool:
        return self.status(i, "wsrep_ready") == "ON" and self.status(i, "wsrep_local_state_comment") == "Synced"

    def start(self, i: int | None = None, timeout: float = 120) -> None:
        """Without i: bootstrap the cluster and join every node; with i: start node i again
        from its recovered position (it catches up by IST while the others' cache holds the
        writes it missed, else by SST). Returns once the node(s) are synced."""
        if i is not None:
            log = self.data[i - 1] / "error.log"
            offset = log.stat().st_size if log.exists() else 0
            self._launch(i, position=self._recovered_position(i))
            self._wait(i, lambda: self._synced(i), "wsrep_ready=ON and Synced", timeout)
            with open(log, errors="replace") as f:
                f.seek(offset)
                tail = f.read()
            self.last_transfer = "IST" if "IST received" in tail and "SST complete" not in tail else "SST"
            return
        self._launch(1, bootstrap=True)
        self._wait(1, lambda: self._synced(1), "bootstrap", timeout)
        self.root_sql(1, f"CREATE USER '{self.USER}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'; "
                         f"GRANT ALL PRIVILEGES ON *.* TO '{self.USER}'@'127.0.0.1' WITH GRANT OPTION;")
        for j in range(2, self.n + 1):  # one at a time: node 1 is the donor of each
            self._launch(j)
            self._wait(j, lambda j=j: self._synced(j), "join", timeout)
        self._wait(1, lambda: self.status(1, "wsrep_cluster_size") == str(self.n), f"wsrep_cluster_size={self.n}", 30)
        self.started = True

    def kill(self, i: int) -> None:
        """SIGKILL node i (a crash: no goodbye to the group, no clean InnoDB shutdown)."""
        proc = self.procs[i - 1]
        if proc and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        self.procs[i - 1] = None

    def log_grep(self, pattern: str, limit: int = 20) -> str:
        """The nodes' error log lines matching pattern (a regular expression), for failure
        messages."""
        out = []
        for i, d in enumerate(self.data, 1):
            log = d / "error.log"
            if log.exists():
                out += [f"node{i}: {line}" for line in log.read_text(errors="replace").splitlines() if re.search(pattern, line)]
        return "\n".join(out[-limit:])

    def heal(self) -> None:
        """Start every node that is down; return once all are synced."""
        for i in range(1, self.n + 1):
            if self.procs[i - 1] is None or self.procs[i - 1].poll() is not None:
                self.start(i)
            elif not self._synced(i):
                self._wait(i, lambda i=i: self._synced(i), "wsrep_ready=ON and Synced", 60)

    def root_sql(self, i: int, query: str) -> str:
        return subprocess.run(["mariadb", f"--socket={self.sock(i)}", "-uroot", "-N", "-B", "-e", query],
                              check=True, capture_output=True, text=True, timeout=60).stdout

    def create_database(self, name: str) -> None:
        self.root_sql(1, f"CREATE DATABASE {name}")

    def halt(self) -> None:
        for i in range(self.n, 0, -1):
            proc = self.procs[i - 1]
            if proc and proc.poll() is None:
                proc.terminate()
        for i in range(1, self.n + 1):
            proc = self.procs[i - 1]
            if proc:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=30)
            self.procs[i - 1] = None
def nats_server_path() -> Path | None:
    found = shutil.which("nats-server") or ("/usr/sbin/nats-server" if os.path.exists("/usr/sbin/nats-server") else None)
    return Path(found) if found else None


class NatsServer(ProcessServer):
    """A NATS server with JetStream of its own (Debian's nats-server), on 127.0.0.1 and a
    free port, its streams stored under a temporary directory that outlives stop()/start()
    (a restarted broker keeps its streams, as a real one does)."""

    def __init__(self) -> None:
        binary = nats_server_path()
        if binary is None:
            raise FileNotFoundError("nats-server not found (apt-get install nats-server)")
        self.binary = binary
        self.port, self.monitor = free_port(), free_port()
        self.base = Path(tempfile.mkdtemp(prefix="cgs-nats-", dir="/tmp"))
        self.url = f"nats://127.0.0.1:{self.port}"
        self.name = "nats-server"

    def _healthy(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor}/healthz", timeout=2) as res:
                return res.status == 200
        except OSError:
            return False

    def command(self, log: Path) -> list[str]:
        return [str(self.binary), "-js", "-a", "127.0.0.1", "-p", str(self.port), "-m", str(self.monitor),
                "-sd", str(self.base / "store"), "-l", str(log)]


class RedisServer(ProcessServer):
    """A Redis server of its own (Debian's redis-server) on 127.0.0.1 and a free port, with
    an append-only file under a temporary directory that outlives stop()/start(), so a
    restarted server keeps its streams, as a production one configured for it does."""

    def __init__(self) -> None:
        found = shutil.which("redis-server") or ("/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None)
        if found is None:
            raise FileNotFoundError("redis-server not found (apt-get install redis-server)")
        self.binary = Path(found)
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="cgs-redis-", dir="/tmp"))
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.name = "redis-server"

    def _healthy(self) -> bool:
        import socket

        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def command(self, log: Path) -> list[str]:
        # SIGTERM makes Redis write its append-only file and exit.
        return [str(self.binary), "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.base),
                "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--logfile", str(log),
                "--daemonize", "no", "--protected-mode", "no"]


RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")


class RabbitMQServer(ProcessServer):
    """A RabbitMQ node of its own (Debian's rabbitmq-server, no plugins) on 127.0.0.1 and a
    free port, its own node name, Erlang cookie and distribution port, its data (mnesia, the
    quorum queues' logs) under a temporary directory that outlives stop()/start(). The
    default guest account connects from loopback."""

    def __init__(self) -> None:
        if not RABBITMQ_SERVER.exists():
            raise FileNotFoundError(f"{RABBITMQ_SERVER} not found (apt-get install rabbitmq-server)")
        self.port, self.dist = free_port(), free_port()
        self.base = Path(tempfile.mkdtemp(prefix="cgs-rabbitmq-", dir="/tmp"))
        (self.base / "enabled_plugins").write_text("[].\n")
        self.node = f"cgs{self.port}@localhost"
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"
        self.name = "rabbitmq-server"

    def environment(self) -> dict[str, str]:
        return {**os.environ, "HOME": str(self.base), "RABBITMQ_NODENAME": self.node,
                "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1", "RABBITMQ_NODE_PORT": str(self.port),
                "RABBITMQ_DIST_PORT": str(self.dist), "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
                "RABBITMQ_LOG_BASE": str(self.base / "log"), "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
                "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq"), "RABBITMQ_PID_FILE": str(self.base / "pid"),
                "RABBITMQ_LOGS": str(self.base / "server.log")}

    def command(self, log: Path) -> list[str]:
        return [str(RABBITMQ_SERVER)]

    def _healthy(self) -> bool:
        # The AMQP 0-9-1 protocol header is answered by connection.start (a method frame, type 1)
        # once the node accepts clients.
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(b"AMQP\x00\x00\x09\x01")
                return s.recv(1) == b"\x01"
        except OSError:
            return False

    def start(self, timeout: float = 90) -> None:
        super().start(timeout=timeout)

    def stop(self, timeout: float = 60) -> None:
        """Stop the node (SIGTERM: the script stops the Erlang VM and waits for it); the
        process group is killed if it does not exit in time."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=30)

    def ctl(self, *args: str) -> str:
        """rabbitmqctl against this node."""
        return subprocess.run(["/usr/lib/rabbitmq/bin/rabbitmqctl", "-q", "-n", self.node, *args], check=True,
                              capture_output=True, text=True, timeout=60, env=self.environment()).stdout


KAFKA_CACHE = Path.home() / ".cache" / "cgs-kafka"

KAFKA_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>cgs.test</groupId>
  <artifactId>kafka-broker</artifactId>
  <version>0</version>
  <dependencies>{dependencies}</dependencies>
  <build><plugins><plugin>
    <groupId>org.apache.maven.plugins</groupId>
    <artifactId>maven-dependency-plugin</artifactId>
    <version>{plugin}</version>
  </plugin></plugins></build>
</project>
"""


def kafka_libs() -> Path:
    """The directory of the jars of the Kafka broker that extensions/standards.yml pins
    (test_servers.kafka), fetched from Maven Central once into a cache every run shares:
    Debian packages no Kafka. mvn copies the artifact and its runtime dependencies from a pom
    of ours into a temporary directory, renamed into place when complete, under a lock, so
    two test processes fetch it once and neither sees half of it."""
    if shutil.which("java") is None:
        raise FileNotFoundError("java not found: the Kafka broker runs on Java 17+ (apt-get install default-jre-headless)")
    spec = STANDARDS["test_servers"]["kafka"]
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:8]
    home = KAFKA_CACHE / f"{spec['version']}-{key}"
    lib = home / "lib"
    if lib.is_dir():
        return lib
    if shutil.which("mvn") is None:
        raise FileNotFoundError("mvn not found: it fetches the Kafka broker's jars (apt-get install maven)")
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "fetch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if lib.is_dir():  # fetched by another process while this one waited
            return lib
        work = Path(tempfile.mkdtemp(prefix="fetch-", dir=home))
        try:
            coordinates = [f"{spec['maven']}:{spec['version']}", spec["logger"]]
            deps = "".join(f"<dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version></dependency>"
                           for g, a, v in (c.split(":") for c in coordinates))
            (work / "pom.xml").write_text(KAFKA_POM.format(dependencies=deps, plugin=spec["fetch_plugin"]))
            proc = subprocess.run(["mvn", "-q", "-B", "-f", str(work / "pom.xml"), "dependency:copy-dependencies",
                                   "-DincludeScope=runtime", f"-DoutputDirectory={work / 'lib'}"],
                                  capture_output=True, text=True, timeout=900)
            if proc.returncode != 0:
                raise RuntimeError(f"mvn could not fetch {', '.join(coordinates)}:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
            (work / "lib").rename(lib)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return lib


class KafkaServer(ProcessServer):
    """An Apache Kafka broker of its own (the jars kafka_libs() fetches, on the machine's
    Java): one node in KRaft mode, broker and controller in one process, on 127.0.0.1 and two
    free ports (clients', the controller's), its log directories under a temporary
    directory that outlives stop()/start() (a restarted broker keeps its topics and the
    groups' committed offsets). url is the bootstrap server list a Kafka client takes."""

    def __init__(self) -> None:
        self.lib = kafka_libs()
        self.port, self.controller = free_port(), free_port()
        self.base = Path(tempfile.mkdtemp(prefix="cgs-kafka-", dir="/tmp"))
        self.url = f"127.0.0.1:{self.port}"
        self.name = "kafka"
        self.config = self.base / "server.properties"
        self.config.write_text(self._properties())
        try:
            self._format()
        except BaseException:
            shutil.rmtree(self.base, ignore_errors=True)
            raise

    def _properties(self) -> str:
        # Production-like where the tests look (durable topics, committed offsets, no topic
        # made by a client's metadata request: the service must create its topic), small
        # where they do not: one partition for the groups' offsets instead of 50 and few
        # threads, on a 2-core machine.
        return "\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{self.controller}",
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={self.base / 'data'}",
            "num.partitions=3",
            "auto.create.topics.enable=false",
            "offsets.topic.num.partitions=1",
            "offsets.topic.replication.factor=1",
            "transaction.state.log.num.partitions=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "num.network.threads=2",
            "num.io.threads=2",
            "num.recovery.threads.per.data.dir=1",
            "",
        ])

    def _java(self, main: str, *args: str, log: Path | None = None) -> list[str]:
        # A small heap and the serial collector: a test broker's load, on few cores. Its log
        # (slf4j-simple) goes to log, or stderr.
        logging = [f"-Dorg.slf4j.simpleLogger.logFile={log}"] if log else []
        return ["java", "-Xms64m", "-Xmx512m", "-XX:+UseSerialGC", "-Djava.awt.headless=true",
                "-Dorg.slf4j.simpleLogger.showDateTime=true", *logging, "-cp", f"{self.lib}/*", main, *args]

    def _format(self) -> None:
        """Format the log directories once, as a new cluster's (kafka-storage.sh format)."""
        def tool(*args: str) -> str:
            proc = subprocess.run(self._java("kafka.tools.StorageTool", *args), capture_output=True, text=True, timeout=120)
            if proc.returncode != 0:
                raise RuntimeError(f"kafka-storage {args[0]} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
            return proc.stdout.strip()

        cluster = tool("random-uuid").splitlines()[-1]
        tool("format", "-t", cluster, "-c", str(self.config))

    def command(self, log: Path) -> list[str]:
        return self._java("kafka.Kafka", str(self.config), log=log)

    def _healthy(self) -> bool:
        """Ready when a metadata request names this broker: its port accepts connections
        before the broker has joined the quorum and serves requests."""
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        try:
            return bool(AdminClient({"bootstrap.servers": self.url, "log_level": 0}).list_topics(timeout=2).brokers)
        except KafkaException:  # not answering yet
            return False

    def start(self, timeout: float = 90) -> None:
        super().start(timeout=timeout)

    def stop(self, timeout: float = 60) -> None:
        """Stop the broker (SIGTERM: a controlled shutdown, which flushes its logs and can
        take seconds); killed if it does not exit in time."""
        super().stop(timeout=timeout)
