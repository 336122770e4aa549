"""A real Label Studio server for the tests, started on 127.0.0.1 with its own SQLite data folder
and a known legacy token, and stopped by its process id; plus the API calls annotators make.

The executable comes from ``ACTIVERM_FAST_LABEL_STUDIO``, else ``build/label-studio`` (the
virtual environment ``.ci/run`` installs it into, so that its pinned dependencies never reach
the package's environment), else the PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gloo import free_port  # the gloo groups' helper: a port of 127.0.0.1 free now

REPOSITORY = Path(__file__).resolve().parent.parent
EXECUTABLE_VARIABLE = "ACTIVERM_FAST_LABEL_STUDIO"
TOKEN = "activerm0fast0test0token0000000000000000"
USERNAME = "annotator-one@example.com"
PASSWORD = "activerm-fast-test-password"


def executable() -> str | None:
    """The label-studio executable, or None when none is installed."""
    given = os.environ.get(EXECUTABLE_VARIABLE)
    if given:
        return given
    local = REPOSITORY / "build" / "label-studio" / "bin" / "label-studio"
    return str(local) if local.exists() else shutil.which("label-studio")


@dataclass
class Server:
    url: str
    token: str
    process: subprocess.Popen[bytes]
    log: Path
    started_in: float

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        """One API call as the user of ``token`` (the first annotator's by default)."""
        request = urllib.request.Request(
            self.url + path,
            data=None if body is None else json.dumps(body).encode("utf-8"),
            method=method,
            headers={
                "Authorization": f"Token {token or self.token}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                text = response.read().decode("utf-8")
        except urllib.error.HTTPError as err:
            raise AssertionError(f"{method} {path}: HTTP {err.code} {err.read()[:500]!r}") from None
        return json.loads(text) if text.strip() else None

    def annotate(
        self,
        task_id: int,
        choice: str | None,
        *,
        annotator: int | None = None,
        cancelled: bool = False,
    ) -> None:
        """Post an annotation of the task as ``annotator`` (a user id; the first annotator by
        default): ``choice`` one of the project's choices, or a skip with ``cancelled``."""
        result = []
        if choice is not None:
            result = [
                {
                    "from_name": "preference",
                    "to_name": "first_response",
                    "type": "choices",
                    "value": {"choices": [choice]},
                }
            ]
        body: dict[str, Any] = {"result": result, "was_cancelled": cancelled}
        if annotator is not None:
            body["completed_by"] = annotator
        self.call("POST", f"/api/tasks/{task_id}/annotations/", body)

    def add_annotator(self, name: str) -> int:
        """A second annotator's user id."""
        user = self.call(
            "POST",
            "/api/users/",
            {"username": name, "email": f"{name}@example.com", "password": PASSWORD},
        )
        return int(user["id"])

    def project_id(self, title: str) -> int:
        projects = self.call("GET", "/api/projects?page_size=1000")["results"]
        return next(p["id"] for p in projects if p["title"] == title)

    def export(self, title: str) -> list[dict[str, Any]]:
        """The project's JSON export, as the interface's Export button gives it."""
        path = (
            f"/api/projects/{self.project_id(title)}/export?exportType=JSON&download_all_tasks=true"
        )
        tasks: list[dict[str, Any]] = self.call("GET", path)
        return tasks


def start(program: str, data_dir: Path, timeout: float = 300.0, attempts: int = 2) -> Server:
    """Start Label Studio on a free port of 127.0.0.1 and wait for /health.

    A server that exits before it answers is started once more, in a fresh data folder under
    ``data_dir`` (a port taken between choosing and binding it). Raises RuntimeError (after
    stopping it) when every attempt exits or one does not answer in ``timeout`` seconds, with
    the end of each attempt's log.
    """
    failures = []
    for attempt in range(attempts):
        folder = data_dir / f"attempt-{attempt}"
        folder.mkdir()
        server = _launch(program, folder)
        begun = time.monotonic()
        while server.process.poll() is None and time.monotonic() - begun < timeout:
            try:
                with urllib.request.urlopen(server.url + "/health", timeout=5) as response:
                    if response.status == 200:
                        server.started_in = time.monotonic() - begun
                        return server
            except OSError:
                pass
            time.sleep(1)
        exited = server.process.poll()  # None: it runs but did not answer in time
        stop(server)
        why = f"exited with {exited}" if exited is not None else "did not answer in time"
        failures.append(
            f"{why} ({server.url}/health); the end of {server.log}:\n{_tail(server.log)}"
        )
        if exited is None:
            break  # a server that hangs would hang again: do not wait twice
    raise RuntimeError("Label Studio " + "\nand then ".join(failures))


def _launch(program: str, data_dir: Path) -> Server:
    """The server process, its output in ``data_dir``/label-studio.log."""
    port = free_port()
    # Only what a server needs from the environment: Label Studio reads many bare names as
    # settings (CI, DEBUG, HOST, PORT, LOG_LEVEL, ...), so a CI machine's own variables must not
    # reach it; PYTHONPATH would mix another environment's packages into its own.
    kept = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR")
    env = {name: os.environ[name] for name in kept if name in os.environ}
    env.update(
        {
            "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
            "LABEL_STUDIO_USERNAME": USERNAME,
            "LABEL_STUDIO_PASSWORD": PASSWORD,
            "LABEL_STUDIO_USER_TOKEN": TOKEN,
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "LATEST_VERSION_CHECK": "false",  # no call to pypi.org at start-up
        }
    )
    log = data_dir / "label-studio.log"
    command = [program, "start", "--no-browser", "--internal-host", "127.0.0.1"]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # its own process group, stopped whole by its id
        )
    return Server(f"http://127.0.0.1:{port}", TOKEN, process, log, 0.0)


def _tail(log: Path, lines: int = 20) -> str:
    """The last lines of a log, indented, so a failure in CI shows its cause."""
    text = log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    return "\n".join("    " + line for line in text) or "    (empty)"


def stop(server: Server) -> None:
    """Stop the server's process group (its id is the server's process id)."""
    if server.process.poll() is not None:
        return
    os.killpg(server.process.pid, signal.SIGTERM)
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=30)
