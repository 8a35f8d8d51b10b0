"""What the console's browser tests share: the app on a loopback port, Debian's nginx in front of
it with the repository's configuration, and headless Chromium.

Chromium is the Debian ``chromium`` package (``make system-deps``), nginx Debian's ``nginx``
(``apt-get install -y nginx``); Playwright drives Chromium through ``executable_path``, never a
browser of its own. Each server is started here on loopback and stopped here, by its own pid.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from chorus.cli import proxy_options
from core.auth import Role, create_key
from core.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NGINX = Path("/usr/sbin/nginx")
REPO = Path(__file__).resolve().parents[2]
NGINX_CONF = REPO / "infra" / "config" / "nginx.conf"
SCREENSHOTS = (REPO / "tests" / "artifacts",) + (
    (REPO / "docs",) if os.environ.get("CHORUS_UPDATE_DOC_SCREENSHOTS") == "1" else ()
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def require(binary: Path, package: str) -> None:
    if not binary.exists():
        pytest.fail(f"Debian {package} is missing: apt-get install -y {package}")


@contextlib.contextmanager
def serve_app(app: FastAPI, settings: Settings) -> Iterator[tuple[str, dict[Role, str]]]:
    """``app`` under uvicorn (with ``chorus serve``'s proxy options) on a free loopback port,
    with one key per role."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=free_port(),
        log_config=None,
        access_log=False,
        **proxy_options(settings),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "server stopped while starting"
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    with app.state.database.session() as session:
        keys = {role: create_key(session, role=role, name=f"browser {role}") for role in Role}
    try:
        yield f"http://127.0.0.1:{config.port}", keys
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def nginx_config(*, listen_port: int, upstream_port: int, folder: Path) -> str:
    """``infra/config/nginx.conf`` on loopback: the test's ports and a folder of its own."""
    text = NGINX_CONF.read_text()
    for old, new in (
        ("server api:8000", f"server 127.0.0.1:{upstream_port}"),
        ("listen 8080;", f"listen 127.0.0.1:{listen_port};"),
        ("worker_processes auto;", "worker_processes 1;"),
        ("/tmp/", f"{folder}/"),
    ):
        assert old in text, f"{NGINX_CONF} no longer has {old!r}: update the test's derivation"
        text = text.replace(old, new)
    if os.geteuid() == 0:  # workers would run as nobody, who cannot enter the test's folder
        text = "user root;\n" + text
    return text


@contextlib.contextmanager
def nginx_in_front(upstream: str, folder: Path) -> Iterator[str]:
    """Debian's nginx with the repository's configuration, proxying to ``upstream``."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = folder / "nginx.conf"
    conf.write_text(
        nginx_config(listen_port=port, upstream_port=int(upstream.rsplit(":", 1)[1]), folder=folder)
    )
    log = folder / "nginx.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(NGINX), "-p", str(folder), "-c", str(conf), "-e", str(log), "-g", "daemon off;"],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            assert process.poll() is None, f"nginx stopped: {log.read_text(errors='replace')}"
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "nginx did not answer"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()  # SIGTERM: nginx's fast shutdown, its workers with it
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def save_screenshot(page: Any, name: str) -> Path:
    first = SCREENSHOTS[0] / name
    first.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(first), full_page=True)
    for folder in SCREENSHOTS[1:]:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(first, folder / name)
    return first
