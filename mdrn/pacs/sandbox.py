"""A private Orthanc on loopback for tests, benchmarks and trying ``mdrn-pacs``: :class:`LocalOrthanc`.

It runs Debian's ``Orthanc`` (package ``orthanc``) with the DICOMweb plugin (package ``orthanc-dicomweb``)
from a temporary folder of its own (storage, index and configuration, mode 0700), on free HTTP and DICOM
ports, reachable only from this computer (``RemoteAccessAllowed`` off), with optional basic-auth users
and modalities (``name -> (AE, host, port)``: the DICOM nodes Orthanc may send to, and the only ones it
accepts C-STORE from). HTTPS is left to a proxy in front of it, as hospitals deploy Orthanc (Debian's
Orthanc 1.10.1 stops on the first HTTPS connection). Nothing here is used by ``mdrn-pacs`` itself,
which talks to any PACS.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DICOMWEB_PLUGIN_PATHS", "LocalOrthanc", "OrthancNotFound", "find_orthanc", "free_port"]

#: Where Debian's ``orthanc-dicomweb`` puts the plugin (the first one found is used).
DICOMWEB_PLUGIN_PATHS = (
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
    "/usr/lib/orthanc/libOrthancDicomWeb.so",
    "/usr/local/share/orthanc/plugins/libOrthancDicomWeb.so",
)
_INSTALL = "apt-get install orthanc orthanc-dicomweb"


class OrthancNotFound(RuntimeError):
    """Orthanc or its DICOMweb plugin is not installed (the message says what to install)."""


def find_orthanc() -> tuple[str, str]:
    """Paths of the ``Orthanc`` program and of the DICOMweb plugin, or :class:`OrthancNotFound`."""
    exe = shutil.which("Orthanc") or next(
        (p for p in ("/usr/sbin/Orthanc", "/usr/bin/Orthanc") if os.access(p, os.X_OK)), None
    )
    if exe is None:
        raise OrthancNotFound(f"Orthanc is not installed ({_INSTALL})")
    plugin = next((p for p in DICOMWEB_PLUGIN_PATHS if Path(p).is_file()), None)
    if plugin is None:
        raise OrthancNotFound(f"the Orthanc DICOMweb plugin is not installed ({_INSTALL})")
    return exe, plugin


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalOrthanc:
    """An Orthanc of its own on 127.0.0.1; ``start()`` / ``stop()`` or ``with LocalOrthanc() as pacs``.

    ``folder`` (default: a new private temporary folder, deleted by :meth:`close`) keeps the storage, so
    a stopped Orthanc restarts with its data on the same ports.
    """

    aet: str = "ORTHANC"
    users: dict[str, str] = field(default_factory=dict)
    modalities: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    folder: Path | None = None
    http_port: int = 0
    dicom_port: int = 0
    _process: Any = field(default=None, repr=False)
    _own_folder: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        """The REST API's root URL."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        """The DICOMweb root URL (QIDO-RS, WADO-RS, STOW-RS)."""
        return f"{self.url}/dicom-web"

    @property
    def log(self) -> Path:
        """Orthanc's own output (for failures)."""
        assert self.folder is not None
        return self.folder / "orthanc.log"

    def _config(self, plugin: str) -> dict[str, Any]:
        assert self.folder is not None
        storage = str(self.folder / "storage")
        config: dict[str, Any] = {
            "Name": "mdrn-test",
            "StorageDirectory": storage,
            "IndexDirectory": storage,
            "TemporaryDirectory": str(self.folder / "tmp"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": bool(self.users),
            "RegisteredUsers": dict(self.users),
            "Plugins": [plugin],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "Host": f"127.0.0.1:{self.http_port}"},
            "DicomModalities": {k: list(v) for k, v in self.modalities.items()},
            "DicomAlwaysAllowStore": False,  # C-STORE only from the modalities above
            "DicomCheckModalityHost": True,
            "DicomAssociationCloseDelay": 0,
            "SaveJobs": False,
            "HttpThreadsCount": 8,
            "StableAge": 2,
            "ConcurrentJobs": 1,
        }
        return config

    def start(self, timeout: float = 30.0) -> LocalOrthanc:
        """Start Orthanc and wait until its REST API answers."""
        exe, plugin = find_orthanc()
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="mdrn-orthanc-"))  # 0700
            self._own_folder = True
        (self.folder / "tmp").mkdir(parents=True, exist_ok=True)
        self.http_port = self.http_port or free_port()
        self.dicom_port = self.dicom_port or free_port()
        config = self.folder / "orthanc.json"
        config.write_text(json.dumps(self._config(plugin), indent=1))
        config.chmod(0o600)  # it holds the users' passwords
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [exe, str(config)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"Orthanc exited with code {self._process.returncode}:\n{tail}")
            if self._answers():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer on {self.url} within {timeout:.0f} s (see {self.log})")

    def _answers(self) -> bool:
        import requests

        try:
            r = requests.get(f"{self.url}/system", auth=self.auth, timeout=2)
        except requests.RequestException:
            return False
        return r.status_code == 200

    @property
    def auth(self) -> tuple[str, str] | None:
        """The first user's (name, password), for ``requests``."""
        return next(iter(self.users.items()), None)

    def stop(self) -> None:
        """Stop Orthanc (its storage is kept until :meth:`close`)."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def close(self) -> None:
        """Stop Orthanc and delete its folder if it made it."""
        self.stop()
        if self._own_folder and self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    def rest(self, method: str, path: str, **kwargs: Any) -> Any:
        """A call to the REST API; the decoded JSON answer (raises on an HTTP error)."""
        import requests

        r = requests.request(method, f"{self.url}{path}", auth=self.auth, timeout=60, **kwargs)
        r.raise_for_status()
        return r.json() if r.content and "json" in r.headers.get("content-type", "") else r.content

    def upload(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """Store one DICOM file through the REST API (``POST /instances``)."""
        return self.rest("POST", "/instances", data=Path(path).read_bytes())

    def __enter__(self) -> LocalOrthanc:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
