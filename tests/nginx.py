"""A real nginx (Debian's package) on loopback in front of a live service, running the server block
docs/DEPLOYMENT.md gives deployers (deploy/nginx.conf), with only its ports changed."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.helpers import free_port, wait_for

DEPLOYED_BLOCK = ROOT / "deploy" / "nginx.conf"


def nginx_config(folder: Path, listen: int, upstream: int) -> str:
    block = DEPLOYED_BLOCK.read_text()
    assert "listen 80;" in block and "proxy_pass http://127.0.0.1:8081;" in block
    block = block.replace("listen 80;", f"listen 127.0.0.1:{listen};")
    block = block.replace("proxy_pass http://127.0.0.1:8081;", f"proxy_pass http://127.0.0.1:{upstream};")
    temp = "\n".join(f"    {kind}_temp_path {folder / kind};" for kind in
                     ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    user = "user root root;\n" if os.geteuid() == 0 else ""  # workers must read the test's own folder
    return (f"{user}daemon off;\nworker_processes 1;\npid {folder / 'nginx.pid'};\n"
            f"error_log {folder / 'error.log'} info;\nevents {{ worker_connections 64; }}\n"
            f"http {{\n    access_log {folder / 'access.log'};\n{temp}\n{block}\n}}\n")


class Nginx:
    def __init__(self, folder: Path, upstream_url: str):
        self.folder = folder
        self.port = free_port()
        upstream = int(upstream_url.rsplit(":", 1)[1])
        config = folder / "nginx.conf"
        config.write_text(nginx_config(folder, self.port, upstream))
        self.process = subprocess.Popen([nginx_binary(), "-c", str(config), "-p", str(folder)],
                                        stdout=subprocess.DEVNULL, stderr=open(folder / "stderr.log", "w"))
        self._wait_listening()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _wait_listening(self, timeout: float = 30) -> None:
        def listening() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"nginx exited with {self.process.returncode}: {self.log()}")
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", self.port)) == 0

        wait_for(listening, timeout, 0.05, lambda: f"nginx to listen on port {self.port}: {self.log()}")

    def log(self) -> str:
        parts = [path.read_text()[-2000:] for path in (self.folder / "stderr.log", self.folder / "error.log")
                 if path.exists()]
        return "\n".join(parts)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None:
        pytest.fail("nginx is not installed: run_tests.sh installs Debian's nginx package")
    return found


@pytest.fixture
def nginx_in_front(tmp_path):
    """nginx_in_front(url) -> an Nginx forwarding to the service at `url`; stopped afterwards."""
    started: list[Nginx] = []

    def start(url: str) -> Nginx:
        folder = tmp_path / f"nginx-{len(started)}"
        folder.mkdir()
        started.append(Nginx(folder, url))
        return started[-1]

    yield start
    for proxy in started:
        proxy.stop()
