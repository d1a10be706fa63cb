"""The Python example of docs/sdk.md runs as written against the real server with mutual TLS."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys

from conftest import REPO, ProcessOutput, Server, stop_process

from countersign import Client
from countersign.v1 import approval_pb2, approval_service_pb2


def example(name: str) -> str:
    doc = (REPO / "docs" / "sdk.md").read_text()
    match = re.search(rf"<!-- test: {name} -->\n```python\n(.*?)```", doc, re.DOTALL)
    assert match is not None, f"docs/sdk.md has no python block marked {name}"
    return match.group(1)


def test_the_quickstart_waits_for_the_decision_and_prints_it(server: Server, decider: Client) -> None:
    pki = server.pki
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(REPO / "clients" / "python" / d) for d in ("src", "gen")),
        "COUNTERSIGN_URL": server.url,
        "COUNTERSIGN_CA": str(pki.path("ca.pem")),
        "COUNTERSIGN_CERT": str(pki.path("requester.pem")),
        "COUNTERSIGN_KEY": str(pki.path("requester-key.pem")),
    }
    process = subprocess.Popen(
        [sys.executable, "-c", example("python-quickstart")],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = ProcessOutput(process)
    try:
        line = output.wait_for(r"^waiting for approval \S+$", 30, "the example to request approval")
        id = line.rsplit(" ", 1)[1]
        decider.approvals.SubmitDecision(
            approval_service_pb2.SubmitDecisionRequest(
                id=id, approver="alice", decision=approval_pb2.DECISION_APPROVE, reason="ship it"
            )
        )
        output.wait_for(r"^deploying exactly", 30, "the example to report the approval")
        assert process.wait(30) == 0, output.text()
    finally:
        stop_process(process)
    lines = output.text().splitlines()
    assert "approved by alice: ship it" in lines
    # A Struct is a map: its keys come back in no particular order.
    deploying = [line for line in lines if line.startswith("deploying exactly ")]
    assert len(deploying) == 1, lines
    assert ast.literal_eval(deploying[0][len("deploying exactly "):]) == {"service": "api", "version": "v42"}
