"""Throwaway `redis-server`s (the Debian package) on free loopback ports, for tests and
benchmarks of the shared Gemini budget. No persistence; their files live in a temp dir.

    with RedisServer() as server:                      # plain, password auth
        os.environ["GEMINI_BUDGET_URI"] = server.uri

    with RedisServer.as_shipped(tls) as server:         # the store Terraform provisions
        ...                                             # (TLS, its ACL user, cluster mode)

    with sharded_cluster(3, tls=tls) as nodes:          # slots split over three nodes
        nodes[0].cluster_uri                            # rediss+cluster://...

`as_shipped` behaves as ElastiCache Serverless for Valkey does towards a client: TLS only
(a self-signed certificate here), the `default` user switched off, the budget's user with
exactly the access string `terraform/budget_store.tf` gives it, and cluster mode enabled
(multi-key commands must stay in one hash slot) with every slot on the one node.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

REPO = Path(__file__).resolve().parents[1]
BUDGET_STORE_TF = REPO / "terraform" / "budget_store.tf"
SLOTS = 16384
_ADMIN = ("bench-admin", "admin-secret")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Tls:
    """A self-signed certificate for 127.0.0.1 (its own CA)."""

    cert: Path
    key: Path

    @classmethod
    def make(cls, directory: Path) -> Tls:
        directory.mkdir(parents=True, exist_ok=True)
        cert, key = directory / "redis.crt", directory / "redis.key"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
            check=True, capture_output=True,
        )  # fmt: skip
        return cls(cert, key)


@dataclass(frozen=True)
class AclUser:
    name: str
    password: str
    access: str  # ACL rules, e.g. "on ~{gemini-budget}:* -@all +@read"


def terraform_acl() -> AclUser:
    """The budget store's user as terraform/budget_store.tf writes it (name and access
    string read from the source; the password is this test's own)."""
    text = BUDGET_STORE_TF.read_text()
    block = re.search(r'resource "aws_elasticache_user" "budget" \{(.*?)\n\}', text, re.S)
    if block is None:
        raise RuntimeError(f"no aws_elasticache_user.budget in {BUDGET_STORE_TF}")
    access = re.search(r'access_string\s*=\s*"([^"]*)"', block.group(1))
    if access is None:
        raise RuntimeError("aws_elasticache_user.budget has no literal access_string")
    return AclUser("analysis-pipeline-budget", "budget-user-token", access.group(1))


class RedisServer:
    def __init__(
        self,
        *,
        password: str | None = None,
        tls: Tls | None = None,
        user: AclUser | None = None,
        cluster: bool = False,
        assign_slots: bool = True,
        start_timeout_s: float = 10.0,
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found: `make install` installs it (Debian)")
        self._binary = binary
        self._password = password
        self._tls = tls
        self._user = user
        self._cluster = cluster
        self._assign_slots = assign_slots
        self._timeout = start_timeout_s
        self.port = free_port()
        self.bus_port = free_port() if cluster else 0
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._configured = False  # users exist (a restart forgets them)

    @classmethod
    def as_shipped(cls, tls: Tls, **kwargs: object) -> RedisServer:
        """TLS, the Terraform ACL user (default user off), cluster mode, all slots here."""
        return cls(tls=tls, user=terraform_acl(), cluster=True, **kwargs)  # type: ignore[arg-type]

    # -- addresses ---------------------------------------------------------------------------

    def _uri(self, scheme: str) -> str:
        if self._user is not None:
            auth = f"{quote(self._user.name)}:{quote(self._user.password)}@"
        else:
            auth = f":{self._password}@" if self._password else ""
        query = f"?ssl_ca_certs={quote(str(self._tls.cert))}" if self._tls else ""
        db = "" if self._cluster else "/0"
        return f"{scheme}://{auth}127.0.0.1:{self.port}{db}{query}"

    @property
    def uri(self) -> str:
        """What a container is given: rediss:// with TLS, else redis://."""
        return self._uri("rediss" if self._tls else "redis")

    @property
    def cluster_uri(self) -> str:
        """The same endpoint for a cluster-aware client (`+cluster`)."""
        return self._uri("rediss+cluster" if self._tls else "redis+cluster")

    def admin(self) -> redis.Redis:
        """A client with every right (to set the server up, flush it, inspect it)."""
        username, password = _ADMIN if self._user is not None else (None, self._password)
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            username=username,
            password=password,
            ssl=self._tls is not None,
            ssl_ca_certs=str(self._tls.cert) if self._tls else None,
            socket_connect_timeout=0.5,
            decode_responses=True,
            retry=Retry(NoBackoff(), 0),
        )

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> RedisServer:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="redis-"))
        argv = [self._binary, "--bind", "127.0.0.1", "--dir", str(self._dir)]
        argv += ["--save", "", "--appendonly", "no"]
        if self._tls is not None:
            argv += ["--port", "0", "--tls-port", str(self.port)]
            argv += ["--tls-cert-file", str(self._tls.cert), "--tls-key-file", str(self._tls.key)]
            argv += ["--tls-ca-cert-file", str(self._tls.cert), "--tls-auth-clients", "no"]
        else:
            argv += ["--port", str(self.port)]
        if self._cluster:
            argv += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            argv += ["--cluster-port", str(self.bus_port), "--cluster-node-timeout", "2000"]
            if self._tls is not None:
                argv += ["--tls-cluster", "yes"]
        if self._password and self._user is None:
            argv += ["--requirepass", self._password]
        self._proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self._dir
        )
        self._wait_until_up()
        self._configure()
        return self

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + self._timeout
        while True:
            client = self._bootstrap_client()
            try:
                client.ping()
                return
            except redis.RedisError:
                if self._proc is None or self._proc.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on {self.port}") from None
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server did not start on {self.port}") from None
                time.sleep(0.05)
            finally:
                client.close()

    def _bootstrap_client(self) -> redis.Redis:
        """Before _configure: the default user (with the password when one was set)."""
        if self._user is not None and self._configured:
            return self.admin()
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            password=self._password if self._user is None else None,
            ssl=self._tls is not None,
            ssl_ca_certs=str(self._tls.cert) if self._tls else None,
            socket_connect_timeout=0.5,
            decode_responses=True,
            retry=Retry(NoBackoff(), 0),
        )

    def _configure(self) -> None:
        client = self._bootstrap_client()
        try:
            if self._user is not None:
                user = self._user
                client.execute_command("ACL", "SETUSER", _ADMIN[0], "on", f">{_ADMIN[1]}", "~*",
                                       "&*", "+@all")  # fmt: skip
                client.execute_command(
                    "ACL", "SETUSER", user.name, "reset", f">{user.password}", *user.access.split()
                )
                # As Terraform's user group: the default user exists but is switched off.
                client.execute_command("ACL", "SETUSER", "default", "off", "-@all")
                self._configured = True
            if self._cluster and self._assign_slots:
                admin = self.admin()
                try:
                    # A restart keeps nodes.conf, hence its slots.
                    if "cluster_slots_assigned:0" in admin.execute_command("CLUSTER", "INFO"):
                        admin.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, SLOTS - 1)
                    wait_cluster_ok([self])
                finally:
                    admin.close()
        finally:
            client.close()

    def flush(self) -> None:
        """Forget every key (between tests sharing one server)."""
        admin = self.admin()
        try:
            admin.flushall()
        finally:
            admin.close()

    def restart(self) -> None:
        """Stop and start again on the same port: every key is lost (no persistence), as a
        cache node's restart or a failover to an empty replica loses them."""
        self.stop(keep_dir=True)
        self.start()

    def stop(self, *, keep_dir: bool = False) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        self._configured = False  # users live in memory only
        if self._dir is not None and not keep_dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_cluster_ok(nodes: list[RedisServer], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    for node in nodes:
        admin = node.admin()
        try:
            while "cluster_state:ok" not in admin.execute_command("CLUSTER", "INFO"):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the cluster did not reach state ok on {node.port}")
                time.sleep(0.05)
        finally:
            admin.close()


@contextlib.contextmanager
def sharded_cluster(
    size: int = 3, *, tls: Tls | None = None, user: AclUser | None = None
) -> Iterator[list[RedisServer]]:
    """`size` primaries, the hash slots split evenly between them (no replicas)."""
    nodes = [RedisServer(tls=tls, user=user, cluster=True, assign_slots=False) for _ in range(size)]
    try:
        for node in nodes:
            node.start()
        first = nodes[0].admin()
        try:
            for node in nodes[1:]:
                first.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port, node.bus_port)
        finally:
            first.close()
        for index, node in enumerate(nodes):
            admin = node.admin()
            try:
                low = index * SLOTS // size
                high = (index + 1) * SLOTS // size - 1
                admin.execute_command("CLUSTER", "ADDSLOTSRANGE", low, high)
            finally:
                admin.close()
        wait_cluster_ok(nodes)
        yield nodes
    finally:
        for node in nodes:
            node.stop()
