"""Real PostgreSQL, Kafka and Neo4j on loopback, without Docker.

`up()` gets what each server needs the first time (Debian's PostgreSQL through apt-get; Kafka
and Neo4j jars from Maven Central through `infra/local/pom.xml`; the `Neo4jServer` class compiled
with javac), starts the missing servers as detached processes and waits until each answers a
real request. The servers outlive the Python process; `down()` stops them.

Where things live:
- home (`$MODELDB_INFRA_HOME`, else `./.infra`): data dirs, `logs/<service>.log`, `state.json`.
- cache (`${XDG_CACHE_HOME:-~/.cache}/modeldb-infra`): jars and compiled classes, once per machine.
- ports: 55432 (PostgreSQL), 59092 + 59093 (Kafka + its controller), 57687 (Neo4j Bolt);
  override with MODELDB_INFRA_PG_PORT, MODELDB_INFRA_KAFKA_PORT,
  MODELDB_INFRA_KAFKA_CONTROLLER_PORT, MODELDB_INFRA_NEO4J_PORT.

Command line: `python -m modeldb.infra.launcher up|down|status|env` (also `modeldb infra ...`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import fcntl
import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

SERVICES: tuple[str, ...] = ("postgres", "kafka", "neo4j")
HOST = "127.0.0.1"
LOCAL = Path(__file__).resolve().parent / "local"
PG_USER = "postgres"  # the database superuser; loopback uses trust auth, so no password
PG_DATABASE = "modeldb"

DEFAULT_PORTS = {"postgres": 55432, "kafka": 59092, "kafka_controller": 59093, "neo4j": 57687}
PORT_VARS = {
    "postgres": "MODELDB_INFRA_PG_PORT",
    "kafka": "MODELDB_INFRA_KAFKA_PORT",
    "kafka_controller": "MODELDB_INFRA_KAFKA_CONTROLLER_PORT",
    "neo4j": "MODELDB_INFRA_NEO4J_PORT",
}
ENV_VARS = {"kafka": "MODELDB_EVENT_LOG", "postgres": "MODELDB_READ_DB", "neo4j": "MODELDB_GRAPH"}

# Small heaps: the machine this runs on has 2 cores, and tests run beside all three servers.
# ExitOnOutOfMemoryError because a dead server is found at once, a half-dead JVM is not.
JVM_COMMON = ["-XX:+UseG1GC", "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true"]
KAFKA_JVM = ["-Xms256m", "-Xmx512m", "-XX:MaxGCPauseMillis=20"]
# Neo4j falls back to slower I/O paths (and logs warnings) without these opens, as its own
# start script knows.
NEO4J_JVM = [
    "-Xms256m", "-Xmx1g", "-Dlog4j2.disable.jmx=true",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
]


class LauncherError(RuntimeError):
    """A server could not be prepared, started or stopped; the message says why."""


def _say(service: str, message: str) -> None:
    # Progress goes to stderr so that `eval "$(... env)"` and captured stdout stay clean.
    print(f"[infra] {service}: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- places, ports and state


def infra_home(home: Path | None = None) -> Path:
    """Where data, logs and state.json live: `home`, else $MODELDB_INFRA_HOME, else ./.infra."""
    if home is not None:
        return Path(home).resolve()
    if configured := os.environ.get("MODELDB_INFRA_HOME"):
        return Path(configured).expanduser().resolve()
    return Path.cwd() / ".infra"


def cache_dir() -> Path:
    """Per-machine jar/class cache, shared by every checkout, so downloads happen once."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "modeldb-infra"


def configured_ports() -> dict[str, int]:
    ports = {}
    for key, default in DEFAULT_PORTS.items():
        value = os.environ.get(PORT_VARS[key]) or str(default)
        if not value.isdigit() or not 0 < int(value) < 65536:
            raise LauncherError(f"{PORT_VARS[key]}={value!r} is not a TCP port")
        ports[key] = int(value)
    return ports


def _state_path(home: Path) -> Path:
    return home / "state.json"


def _load_state(home: Path) -> dict[str, dict[str, Any]]:
    try:
        state: dict[str, dict[str, Any]] = json.loads(_state_path(home).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return state


def _save_state(home: Path, state: dict[str, dict[str, Any]]) -> None:
    # Write-then-rename: a reader never sees half a file.
    tmp = _state_path(home).with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    tmp.replace(_state_path(home))


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    """An exclusive lock across processes (and threads: each call opens its own descriptor)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---------------------------------------------------------------- processes

# Servers we spawned in this process: polling their Popen reaps them, so a server that died
# (or that down() stopped) is not mistaken for a live zombie.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _alive(pid: int) -> bool:
    if (child := _CHILDREN.get(pid)) is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie answers kill(0) but is gone
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _is_ours(entry: dict[str, Any] | None) -> bool:
    """The recorded pid is alive and still runs our command line (pids get reused)."""
    if not entry or not _alive(entry["pid"]):
        return False
    try:
        cmdline = Path(f"/proc/{entry['pid']}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return True  # no /proc: trust the pid
    return entry["marker"] in cmdline


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log yet)"


def _run(cmd: Sequence[str | Path], what: str, **kwargs: Any) -> None:
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, check=False, **kwargs)
    if done.returncode != 0:
        output = "\n".join((done.stdout + done.stderr).strip().splitlines()[-40:])
        raise LauncherError(f"{what} failed (exit {done.returncode}): {' '.join(map(str, cmd))}\n{output}")


def _stop(pid: int, sig: int, timeout: float = 60.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        # The server leads its own process group: take its helpers (postgres backends) too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.1)


# ---------------------------------------------------------------- getting the software


def _apt_install(*packages: str) -> None:
    if os.geteuid() != 0:
        raise LauncherError(f"needs the Debian packages {' '.join(packages)}: run "
                            f"`sudo apt-get install -y {' '.join(packages)}` and try again")
    _say("apt", f"installing {' '.join(packages)} (first run only)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with _flock(cache_dir() / ".apt.lock"):
        _run(["apt-get", "update"], "apt-get update", env=env)
        _run(["apt-get", "install", "-y", "--no-install-recommends", *packages], "apt-get install", env=env)


def _tool(name: str, package: str) -> str:
    if (found := shutil.which(name)) is None:
        _apt_install(package)
        found = shutil.which(name)
    if found is None:
        raise LauncherError(f"{name} is still missing after installing {package}")
    return found


def _digest(*files: Path) -> str:
    sha = hashlib.sha256()
    for file in files:
        sha.update(file.read_bytes())
    return sha.hexdigest()[:12]


def _cached(kind: str, inputs: Sequence[Path], build: Any) -> Path:
    """`<cache>/<kind>-<digest of inputs>`, built once by `build(tmp_dir)`.

    Built into a temporary dir and renamed, so an interrupted download never looks complete;
    a changed pom or source gets a new digest, and the stale dirs are removed.
    """
    cache = cache_dir()
    target = cache / f"{kind}-{_digest(*inputs)}"
    if target.is_dir():
        return target
    with _flock(cache / ".lock"):
        if not target.is_dir():
            tmp = cache / f".{target.name}.{os.getpid()}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            build(tmp)
            tmp.rename(target)
            for stale in cache.glob(f"{kind}-*"):
                if stale != target:
                    shutil.rmtree(stale, ignore_errors=True)
    return target


def _maven_libs(profile: str) -> Path:
    """The runtime jars of one pom profile ("kafka" or "neo4j"), from Maven Central."""
    pom = LOCAL / "pom.xml"

    def resolve(out: Path) -> None:
        _say(profile, f"resolving jars from Maven Central into {cache_dir()} (first run only)")
        mvn = _tool("mvn", "maven")
        _run([mvn, "-B", "-q", "-f", pom, "-P", profile, "dependency:copy-dependencies",
              f"-DoutputDirectory={out}"], f"resolving the {profile} jars with Maven")

    return _cached(f"lib-{profile}", [pom], resolve)


def _java() -> str:
    return _tool("java", "default-jdk-headless")


def _pg_bindir(prefer_version: str | None) -> Path:
    """Debian's PostgreSQL binaries; the data dir's own version if it has one, else the newest.

    (/usr/local/bin/pg_ctl and friends may exist as symlinks into the same place; the versioned
    Debian dir is what says which major version a binary is.)
    """
    found = {p.parent.parent.name: p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/postgres")}
    if not found:
        _apt_install("postgresql")
        found = {p.parent.parent.name: p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/postgres")}
    if not found:
        raise LauncherError("no PostgreSQL server under /usr/lib/postgresql/*/bin after apt-get install")
    if prefer_version in found:
        return found[prefer_version]
    return found[max(found, key=lambda v: [int(x) for x in v.split(".") if x.isdigit()])]


# ---------------------------------------------------------------- the servers


class Server:
    """One server: how to prepare it, its command line, and one real request to it."""

    name: ClassVar[str]
    stop_signal: ClassVar[int] = signal.SIGTERM
    start_timeout: ClassVar[float] = 120.0

    def __init__(self, home: Path, ports: dict[str, int]) -> None:
        self.home = home
        self.ports = ports
        self.data = home / self.name

    @property
    def port(self) -> int:
        return self.ports[self.name]

    @property
    def log(self) -> Path:
        return self.home / "logs" / f"{self.name}.log"

    @property
    def marker(self) -> str:
        """A string in the command line that tells our process from a reused pid."""
        return str(self.data)

    def url(self) -> str:
        raise NotImplementedError

    def prepare(self) -> None:
        """Install, download, compile, initialise: whatever is missing. Cheap when all is there."""

    def command(self) -> list[str]:
        raise NotImplementedError

    def spawn_options(self) -> dict[str, Any]:
        return {}

    async def probe(self) -> None:
        """One real request; raises until the server answers it."""
        raise NotImplementedError


class Postgres(Server):
    name = "postgres"
    # SIGINT is PostgreSQL's "fast" shutdown; SIGTERM ("smart") waits for every client to leave.
    stop_signal = signal.SIGINT
    start_timeout = 60.0

    def url(self) -> str:
        return f"postgresql+asyncpg://{PG_USER}@{HOST}:{self.port}/{PG_DATABASE}"

    def _os_user(self) -> pwd.struct_passwd | None:
        """initdb and postgres refuse to run as root: use the `postgres` account as Debian does."""
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam("postgres")
        except KeyError:
            _run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"],
                 "creating the postgres OS user")
            return pwd.getpwnam("postgres")

    def prepare(self) -> None:
        version_file = self.data / "PG_VERSION"
        version = version_file.read_text().strip() if version_file.exists() else None
        self.bindir = _pg_bindir(version)
        self.user = self._os_user()
        if version is not None:
            return
        _say(self.name, f"initdb into {self.data}")
        self.data.mkdir(parents=True, exist_ok=True)
        self.data.chmod(0o700)
        if self.user is not None:
            os.chown(self.data, self.user.pw_uid, self.user.pw_gid)
        _run([self.bindir / "initdb", "-D", self.data, "-U", PG_USER, "-A", "trust", "-E", "UTF8",
              "--no-locale", "--no-instructions"], "initdb (the data dir's parents must be "
             "searchable by the postgres OS user)", cwd=self.data, **self.spawn_options())
        # Only loopback TCP exists (no unix socket, listen_addresses=127.0.0.1); say so anyway.
        (self.data / "pg_hba.conf").write_text(
            "# written by modeldb.infra.launcher: trust, loopback only\n"
            "host all all 127.0.0.1/32 trust\n"
            "host all all ::1/128 trust\n"
        )

    def command(self) -> list[str]:
        settings = {
            "listen_addresses": HOST,
            "port": str(self.port),
            "unix_socket_directories": "",  # the Debian default dir may not exist or be writable
            "max_connections": "200",  # tests open many pools against many databases
        }
        return [str(self.bindir / "postgres"), "-D", str(self.data),
                *[arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")]]

    def spawn_options(self) -> dict[str, Any]:
        if self.user is None:
            return {}
        return {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}

    async def probe(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(host=HOST, port=self.port, user=PG_USER, database="postgres",
                                     timeout=5)
        try:
            await conn.fetchval("SELECT 1")
            # The first start also creates the application database; later starts find it.
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", PG_DATABASE):
                await conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')
        finally:
            await conn.close()


class Kafka(Server):
    name = "kafka"

    @property
    def config(self) -> Path:
        return self.data / "server.properties"

    @property
    def marker(self) -> str:
        return str(self.config)

    def url(self) -> str:
        return f"kafka://{HOST}:{self.port}"

    def properties(self) -> dict[str, str]:
        controller = f"{HOST}:{self.ports['kafka_controller']}"
        return {
            "process.roles": "broker,controller",
            "node.id": "1",
            "listeners": f"PLAINTEXT://{HOST}:{self.port},CONTROLLER://{controller}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{self.port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "controller.quorum.bootstrap.servers": controller,
            "log.dirs": str(self.data / "data"),
            "auto.create.topics.enable": "true",
            "num.partitions": "3",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",  # 50 by default: a slow first consumer group
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",  # tests start consumers and want them now
            "log.retention.ms": "-1",  # the event log is the system of record: keep it all
        }

    def prepare(self) -> None:
        self.java = _java()
        self.lib = _maven_libs("kafka")
        (self.data / "data").mkdir(parents=True, exist_ok=True)
        # Rewritten on every start so changed ports apply; the data dir keeps the cluster.
        self.config.write_text("".join(f"{k}={v}\n" for k, v in self.properties().items()))
        if not (self.data / "data" / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            _say(self.name, f"formatting storage (cluster {cluster_id})")
            _run([self.java, *JVM_COMMON, "-cp", f"{self.lib}/*", "kafka.tools.StorageTool", "format",
                  # One argument with its value: an id can start with "-", which the tool's
                  # parser would take for an option (1 in 64 starts failed so).
                  "--standalone", f"--cluster-id={cluster_id}", "-c", self.config],
                 "formatting Kafka storage")

    def command(self) -> list[str]:
        return [self.java, *JVM_COMMON, *KAFKA_JVM,
                f"-Dlog4j2.configurationFile={LOCAL / 'kafka-log4j2.properties'}",
                "-cp", f"{self.lib}/*", "kafka.Kafka", str(self.config)]

    async def probe(self) -> None:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=f"{HOST}:{self.port}", request_timeout_ms=5000)
        await admin.start()
        try:
            await admin.list_topics()
        finally:
            await admin.close()


class Neo4j(Server):
    name = "neo4j"
    start_timeout = 180.0

    @property
    def config(self) -> Path:
        return self.data / "neo4j.conf"

    @property
    def marker(self) -> str:
        return str(self.config)

    def url(self) -> str:
        return f"bolt://{HOST}:{self.port}"

    def settings(self) -> dict[str, str]:
        bolt = f"{HOST}:{self.port}"
        return {
            "server.bolt.enabled": "true",
            "server.bolt.listen_address": bolt,
            "server.bolt.advertised_address": bolt,
            "dbms.security.auth_enabled": "false",
            "dbms.usage_report.enabled": "false",
            "server.memory.pagecache.size": "128m",
            # Default: 256 MB of preallocated transaction log per database, 0.5 GB on disk idle.
            "db.tx_log.rotation.retention_policy": "2 files",
            "db.tx_log.rotation.size": "32m",
            "db.tx_log.preallocate": "false",
            # Bolt's graceful network shutdown otherwise adds ~10 s to every stop.
            "internal.dbms.bolt.netty_server_shutdown_quiet_period": "0",
            "internal.dbms.bolt.netty_server_shutdown_timeout": "2",
        }

    def prepare(self) -> None:
        self.java = _java()
        self.lib = _maven_libs("neo4j")
        source = LOCAL / "Neo4jServer.java"

        def compile_to(out: Path) -> None:
            _say(self.name, f"compiling {source.name}")
            javac = _tool("javac", "default-jdk-headless")
            _run([javac, "-d", out, "-cp", f"{self.lib}/*", source], "compiling Neo4jServer.java")

        self.classes = _cached("neo4j-server", [LOCAL / "pom.xml", source], compile_to)
        self.data.mkdir(parents=True, exist_ok=True)
        self.config.write_text("".join(f"{k}={v}\n" for k, v in self.settings().items()))

    def command(self) -> list[str]:
        return [self.java, *JVM_COMMON, *NEO4J_JVM, "-cp", f"{self.lib}/*{os.pathsep}{self.classes}",
                "Neo4jServer", str(self.data), str(self.config)]

    async def probe(self) -> None:
        from neo4j import AsyncGraphDatabase

        async with AsyncGraphDatabase.driver(self.url(), auth=None, connection_timeout=5) as driver:
            records, _, _ = await driver.execute_query("RETURN 1 AS one")
            if records[0]["one"] != 1:
                raise LauncherError("Neo4j answered RETURN 1 wrongly")


SERVER_TYPES: dict[str, type[Server]] = {"postgres": Postgres, "kafka": Kafka, "neo4j": Neo4j}


# ---------------------------------------------------------------- starting and stopping


def _check(server: Server, timeout: float = 10.0) -> None:
    # A TCP connect first, so a server that is not listening yet costs no driver error logs.
    if not _listening(server.port):
        raise ConnectionRefusedError(f"nothing listens on {HOST}:{server.port} yet")
    asyncio.run(asyncio.wait_for(server.probe(), timeout))


def _wait_ready(server: Server, pid: int) -> None:
    deadline = time.monotonic() + server.start_timeout
    while True:
        if not _alive(pid):
            raise LauncherError(f"{server.name} exited while starting; end of {server.log}:\n"
                                f"{_tail(server.log)}")
        try:
            _check(server)
            return
        except ImportError as error:  # waiting would not help
            raise LauncherError(f"checking {server.name} needs the Python package {error.name}: "
                                f"pip install 'modeldb[{server.name}]'") from error
        except Exception as error:
            if time.monotonic() > deadline:
                raise LauncherError(
                    f"{server.name} not ready on {HOST}:{server.port} after {server.start_timeout:.0f} s "
                    f"(last try: {error!r}); end of {server.log}:\n{_tail(server.log)}") from error
        time.sleep(0.5)


def _spawn(server: Server) -> int:
    for key, port in server.ports.items():
        if key.startswith(server.name) and _listening(port):
            raise LauncherError(f"{server.name}: port {port} is taken by another process; set "
                                f"{PORT_VARS[key]} to a free port")
    server.log.parent.mkdir(parents=True, exist_ok=True)
    with server.log.open("ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} modeldb.infra.launcher: "
                  f"{' '.join(server.command())}\n".encode())
        log.flush()
        # start_new_session: the server outlives us and ignores our terminal's Ctrl-C.
        child = subprocess.Popen(server.command(), stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT, cwd=server.data, start_new_session=True,
                                 **server.spawn_options())
    _CHILDREN[child.pid] = child
    return child.pid


def _ensure(server: Server, state: dict[str, dict[str, Any]], state_lock: threading.Lock) -> None:
    t0 = time.monotonic()
    entry = state.get(server.name)
    started = not _is_ours(entry)
    if entry is not None and not started:
        _wait_ready(server, entry["pid"])  # started by someone else moments ago, perhaps
    else:
        server.prepare()
        pid = _spawn(server)
        with state_lock:
            state[server.name] = {
                "pid": pid, "ports": {k: v for k, v in server.ports.items() if k.startswith(server.name)},
                "log": str(server.log), "marker": server.marker, "url": server.url(),
                "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            _save_state(server.home, state)
        _wait_ready(server, pid)
    how = f"started in {time.monotonic() - t0:.1f} s" if started else "already running"
    _say(server.name, f"ready on {HOST}:{server.port} ({how}); log {server.log}")


def _servers(home: Path, state: dict[str, dict[str, Any]], names: Sequence[str]) -> list[Server]:
    unknown = set(names) - set(SERVICES)
    if unknown:
        raise ValueError(f"unknown services {sorted(unknown)}; choose from {SERVICES}")
    servers = []
    for name in names:
        ports = configured_ports()
        if _is_ours(state.get(name)):  # a running server keeps the ports it was started with
            ports.update(state[name]["ports"])
        servers.append(SERVER_TYPES[name](home, ports))
    return servers


def up(services: Sequence[str] = SERVICES, home: Path | None = None) -> dict[str, str]:
    """Start the services that are not running, wait until all answer, return their env.

    Idempotent: running servers are left alone (and only checked). Servers start in parallel.
    Raises LauncherError, with the end of the server's log, when one does not come up.
    """
    root = infra_home(home)
    root.mkdir(parents=True, exist_ok=True)
    with _flock(root / ".lock"):
        state = _load_state(root)
        servers = _servers(root, state, services)
        state_lock = threading.Lock()
        with ThreadPoolExecutor(max_workers=len(servers) or 1) as pool:
            futures = [pool.submit(_ensure, server, state, state_lock) for server in servers]
        # Every start runs to its end; then all failures are reported together.
        errors = [str(error) for f in futures if (error := f.exception()) is not None]
        if errors:
            raise LauncherError("\n\n".join(errors))
        return {ENV_VARS[server.name]: server.url() for server in servers}


def down(home: Path | None = None, purge: bool = False) -> None:
    """Stop every server this home started (SIGTERM, or the server's clean-stop signal; SIGKILL
    after a minute). Data stays unless `purge`, which deletes data, logs and state."""
    root = infra_home(home)
    if not root.exists():
        return
    with _flock(root / ".lock"):
        state = _load_state(root)

        def stop(server: Server) -> None:
            entry = state.get(server.name)
            if _is_ours(entry):
                assert entry is not None
                t0 = time.monotonic()
                _stop(entry["pid"], server.stop_signal)
                _say(server.name, f"stopped (pid {entry['pid']}, {time.monotonic() - t0:.1f} s)")

        servers = [SERVER_TYPES[name](root, configured_ports()) for name in SERVICES]
        with ThreadPoolExecutor(max_workers=len(servers)) as pool:
            list(pool.map(stop, servers))
        _save_state(root, {})
        if purge:
            for server in servers:
                shutil.rmtree(server.data, ignore_errors=True)
            shutil.rmtree(root / "logs", ignore_errors=True)
            _state_path(root).unlink(missing_ok=True)
            _say("infra", f"purged data and logs under {root}")


def status(home: Path | None = None) -> dict[str, dict[str, Any]]:
    """Per service: running, pid, port, listening, url, log."""
    root = infra_home(home)
    state = _load_state(root)
    result: dict[str, dict[str, Any]] = {}
    for server in _servers(root, state, SERVICES):
        entry = state.get(server.name)
        running = _is_ours(entry)
        result[server.name] = {
            "running": running,
            "pid": entry["pid"] if running and entry else None,
            "port": server.port,
            "listening": _listening(server.port),
            "url": server.url(),
            "log": str(server.log),
        }
    return result


def env(home: Path | None = None) -> dict[str, str]:
    """The MODELDB_* settings that point ModelDB at these servers."""
    root = infra_home(home)
    return {ENV_VARS[s.name]: s.url() for s in _servers(root, _load_state(root), SERVICES)}


# ---------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="modeldb infra", description="Real PostgreSQL, Kafka and Neo4j on loopback, without Docker.")
    parser.add_argument("--home", type=Path, help="state/data dir (default $MODELDB_INFRA_HOME or ./.infra)")
    sub = parser.add_subparsers(dest="action", required=True)
    p_up = sub.add_parser("up", help="start the servers that are not running, wait until they answer")
    p_up.add_argument("services", nargs="*", metavar="SERVICE",
                      help=f"some of {', '.join(SERVICES)} (default: all)")
    p_down = sub.add_parser("down", help="stop the servers")
    p_down.add_argument("--purge", action="store_true", help="also delete their data and logs")
    p_status = sub.add_parser("status", help="show what runs where")
    p_status.add_argument("--json", action="store_true")
    sub.add_parser("env", help="print `export MODELDB_...=...` lines for these servers")
    args = parser.parse_args(argv)

    try:
        if args.action == "up":
            t0 = time.monotonic()
            urls = up(args.services or SERVICES, args.home)
            for key, value in urls.items():
                print(f"{key}={value}")
            print(f"all ready in {time.monotonic() - t0:.1f} s; `down` stops them", file=sys.stderr)
        elif args.action == "down":
            down(args.home, purge=args.purge)
        elif args.action == "status":
            report = status(args.home)
            if args.json:
                print(json.dumps(report, indent=2))
            for name, info in ([] if args.json else report.items()):
                state = f"running (pid {info['pid']})" if info["running"] else "stopped"
                print(f"{name:9} {state:22} {info['url']:48} log {info['log']}")
        else:
            for key, value in env(args.home).items():
                print(f"export {key}={value}")
    except (LauncherError, ValueError) as error:
        print(f"modeldb infra {args.action}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
