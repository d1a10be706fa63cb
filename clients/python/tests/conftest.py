"""Fixtures: a test PKI, a private redis-server, and the real Countersign server (`countersign serve`
from the repository's CLI) with mutual TLS, restartable on the same port with the same store."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from countersign import Client, ReconnectPolicy

REPO = Path(__file__).resolve().parents[3]
CLI = REPO / "clients" / "cli" / "countersign.ts"
START_TIMEOUT = 60.0
"""Seconds a process may take to start: `tsx` compiles the server on start, on a shared machine."""

POLICY = """\
version: 1
defaults: { channel: C0, timeout: 30m, unknown_action: deny }
policies:
  - name: deploy
    match: "deploy.*"
    approvers: { users: [alice, bob] }
    required_approvals: 1
"""

ADMIN_TOKEN = "python-sdk-test-admin-token-0123456789"
FAST_RECONNECT = ReconnectPolicy(initial_delay=0.05, max_delay=0.5)
"""Fast retries, so that the reconnect tests take a fraction of a second per attempt."""


def node() -> str:
    path = shutil.which("node")
    if path is None:
        raise RuntimeError("the Python tests start the server with node, which is not on PATH")
    return path


class ProcessOutput:
    """Collects the lines a process writes (stdout and stderr), and waits for one that matches."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def text(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float, what: str, start: int = 0) -> str:
        """The first line from index ``start`` on that matches ``pattern``; fails when the process exits or
        ``timeout`` seconds pass first."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        with self._changed:
            while True:
                for line in self.lines[start:]:
                    if regex.search(line):
                        return line
                start = len(self.lines)
                if self.process.poll() is not None and not self._reader.is_alive():
                    raise RuntimeError(f"{what}: the process exited ({self.process.returncode}) first:\n{self.text()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"timed out after {timeout} s waiting for {what}:\n{self.text()}")
                self._changed.wait(min(remaining, 0.5))


def stop_process(process: subprocess.Popen[str], timeout: float = 30.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def free_port() -> int:
    """A port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Pki:
    """Paths of the test certificates (written by test/support/write-test-pki.ts) and the identities."""

    dir: Path
    identities: dict[str, str]

    def path(self, name: str) -> Path:
        return self.dir / name

    def client(self, url: str, identity: str | None = "requester", **options: object) -> Client:
        """A client of ``url`` trusting the test CA, with the certificate of ``identity`` (None: none)."""
        certs: dict[str, object] = {"ca": self.path("ca.pem")}
        if identity is not None:
            certs.update(cert=self.path(f"{identity}.pem"), key=self.path(f"{identity}-key.pem"))
        return Client(url, **{"reconnect": FAST_RECONNECT, **certs, **options})  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    subprocess.run(
        [node(), "--import", "tsx", str(REPO / "test" / "support" / "write-test-pki.ts"), str(directory)],
        cwd=REPO,
        check=True,
        timeout=START_TIMEOUT,
    )
    return Pki(dir=directory, identities=json.loads((directory / "identities.json").read_text()))


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server on a free port (never the machine's shared Redis)."""
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path_factory.mktemp("redis")),
         "--save", "", "--appendonly", "no", "--protected-mode", "no"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        ProcessOutput(process).wait_for("Ready to accept connections", START_TIMEOUT, f"redis-server on port {port}")
        yield f"redis://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait(10)


class Server:
    """`countersign serve` as its own process, with mutual TLS and the Redis store."""

    def __init__(self, pki: Pki, redis_url: str, work: Path) -> None:
        self.pki = pki
        self.redis_url = redis_url
        self.work = work
        self.grpc_port = 0
        self.process: subprocess.Popen[str] | None = None
        self.output: ProcessOutput | None = None
        (work / "policies.yaml").write_text(POLICY)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.grpc_port}"

    def start(self) -> None:
        """Starts the server (on the port it had before, after a restart) and returns once it serves."""
        args = [
            node(), "--import", "tsx", str(CLI), "serve",
            "--grpc-listen", f"127.0.0.1:{self.grpc_port}",
            "--connect-listen", "127.0.0.1:0",
            "--ops-listen", "127.0.0.1:0",
            "--policy", str(self.work / "policies.yaml"),
            "--tls-cert", str(self.pki.path("server.pem")),
            "--tls-key", str(self.pki.path("server-key.pem")),
            "--tls-client-ca", str(self.pki.path("ca.pem")),
            "--require-client-cert",
            "--deciders", self.pki.identities["decider"],
            "--store", self.redis_url,
            "--audit-file", str(self.work / "audit.jsonl"),
        ]  # fmt: skip
        env = {**os.environ, "ADMIN_TOKEN": ADMIN_TOKEN}
        for name in ("COUNTERSIGN_URL", "COUNTERSIGN_CA", "COUNTERSIGN_CERT", "COUNTERSIGN_KEY"):
            env.pop(name, None)
        self.process = subprocess.Popen(
            args, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        self.output = ProcessOutput(self.process)
        try:
            line = self.output.wait_for('"countersign is serving"', START_TIMEOUT, "countersign serve")
        except BaseException:
            self.process.kill()
            self.process.wait(10)
            raise
        self.grpc_port = int(json.loads(line)["grpc"].rsplit(":", 1)[1])

    def stop(self) -> None:
        """SIGTERM, and waits for the exit."""
        if self.process is not None:
            stop_process(self.process)

    def client(self, identity: str | None = "requester", **options: object) -> Client:
        return self.pki.client(self.url, identity, **options)


@pytest.fixture(scope="session")
def server(pki: Pki, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(pki, redis_url, tmp_path_factory.mktemp("server"))
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def requester(server: Server) -> Iterator[Client]:
    with server.client("requester") as client:
        yield client


@pytest.fixture
def decider(server: Server) -> Iterator[Client]:
    with server.client("decider") as client:
        yield client

