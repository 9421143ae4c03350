"""Headless Chromium driven over the DevTools protocol (CDP) through a pipe: no Python
package beyond the standard library, no network port, the system's Debian ``chromium``.

``--remote-debugging-pipe`` makes Chromium read CDP commands from file descriptor 3 and
write replies and events to descriptor 4, each message JSON ended by a NUL byte.
:func:`find_chromium` finds the browser or installs the Debian package (root or
password-less sudo) the first time a test needs it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

NAMES = ("chromium", "chromium-headless-shell", "chromium-browser")


def _which() -> str | None:
    return next((p for p in map(shutil.which, NAMES) if p), None)


def find_chromium(install: bool = True) -> tuple[str | None, str]:
    """``(path, why)``: the browser, installing Debian's ``chromium`` when absent and apt may
    run (as root or with password-less sudo); path None and the reason otherwise."""
    found = _which()
    if found or not install:
        return found, "" if found else "chromium is not installed"
    if os.geteuid() == 0:
        sudo: list[str] = []
    elif shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"]).returncode == 0:
        sudo = ["sudo", "-n"]
    else:
        return None, "chromium is not installed and apt-get needs root (no password-less sudo)"
    if not shutil.which("apt-get"):
        return None, "chromium is not installed and this system has no apt-get"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
        done = subprocess.run([*sudo, *cmd], env=env, capture_output=True, text=True, timeout=1200)
        if done.returncode != 0:
            return None, f"{' '.join(cmd)} failed: {done.stderr.strip()[-300:]}"
    found = _which()
    return found, "" if found else "apt-get installed chromium but it is not on PATH"


class Browser:
    """One headless Chromium process and a CDP session on one page.

    ``events`` collects every event (``method``, ``params``); :attr:`errors` the console
    errors, uncaught exceptions and error log entries (e.g. a blocked fetch) of the page.
    """

    def __init__(self, binary: str, profile_dir: str | os.PathLike[str]):
        cmd_read, self._cmd_write = os.pipe()
        self._reply_read, reply_write = os.pipe()

        def to_fds_3_and_4() -> None:  # in the child, before exec
            # via descriptors >= 10 first: the pipe's own numbers may be 3 or 4 already
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (cmd_read, reply_write)]
            os.dup2(high[0], 3)  # dup2 clears close-on-exec: Chromium inherits 3 and 4
            os.dup2(high[1], 4)

        self.proc = subprocess.Popen(
            [
                binary,
                "--headless=new",
                "--remote-debugging-pipe",
                "--no-sandbox",  # tests run as root in CI; the page is our own local file
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                f"--user-data-dir={profile_dir}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=False,
            preexec_fn=to_fds_3_and_4,
        )
        os.close(cmd_read)
        os.close(reply_write)
        self._next_id = 0
        self._replies: dict[int, dict] = {}
        self.events: list[dict] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.session: str | None = None

    def _read(self) -> None:
        buf = b""
        with os.fdopen(self._reply_read, "rb", buffering=0) as f:
            while chunk := f.read(1 << 16):
                buf += chunk
                *messages, buf = buf.split(b"\0")
                with self._cond:
                    for raw in messages:
                        msg = json.loads(raw)
                        if "id" in msg:
                            self._replies[msg["id"]] = msg
                        else:
                            self.events.append(msg)
                    self._cond.notify_all()

    def send(self, method: str, params: dict | None = None, timeout: float = 30.0, **kw) -> dict:
        """Send one command (to the page session unless ``browser=True``); its result."""
        with self._cond:
            self._next_id += 1
            mid = self._next_id
        msg: dict[str, Any] = {"id": mid, "method": method, "params": params or {}}
        if self.session and not kw.get("browser"):
            msg["sessionId"] = self.session
        os.write(self._cmd_write, json.dumps(msg).encode() + b"\0")
        with self._cond:
            if not self._cond.wait_for(lambda: mid in self._replies, timeout):
                raise TimeoutError(f"CDP {method}: no reply in {timeout} s")
            reply = self._replies.pop(mid)
        if "error" in reply:
            raise RuntimeError(f"CDP {method}: {reply['error']}")
        return reply.get("result", {})

    def wait_event(
        self, method: str, where: Callable[[dict], bool] = lambda p: True, timeout: float = 30.0
    ) -> dict:
        """The params of the first ``method`` event for which ``where(params)`` holds."""

        def found() -> dict | None:
            return next(
                (e["params"] for e in self.events if e["method"] == method and where(e["params"])),
                None,
            )

        with self._cond:
            if not self._cond.wait_for(lambda: found() is not None, timeout):
                raise TimeoutError(f"no {method} event in {timeout} s")
            return found()  # type: ignore[return-value]

    def open_page(self) -> None:
        """A new page target with Runtime, Log and Page events on."""
        target = self.send("Target.createTarget", {"url": "about:blank"}, browser=True)
        attached = self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}, browser=True
        )
        self.session = attached["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            self.send(f"{domain}.enable")

    def navigate(self, url: str, ready: str = "document.body?.dataset.ready === 'true'") -> float:
        """Load ``url`` and wait until the ``ready`` expression holds; seconds it took."""
        t0 = time.perf_counter()
        self.send("Page.navigate", {"url": url})
        deadline = t0 + 30
        while not self.eval(ready):
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{url}: not ready in 30 s")
            time.sleep(0.01)
        return time.perf_counter() - t0

    def eval(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (exceptions raise)."""
        out = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in out:
            raise RuntimeError(f"{expression}: {out['exceptionDetails']}")
        return out["result"].get("value")

    def key(self, key: str) -> None:
        """Press and release one printable key (``"j"``) or a named key (``"ArrowDown"``)."""
        text = key if len(key) == 1 else ""
        self.send("Input.dispatchKeyEvent", {"type": "keyDown", "key": key, "text": text})
        self.send("Input.dispatchKeyEvent", {"type": "keyUp", "key": key})

    def allow_downloads(self, folder: str | os.PathLike[str]) -> None:
        self.send(
            "Browser.setDownloadBehavior",
            {"behavior": "allow", "downloadPath": str(folder), "eventsEnabled": True},
            browser=True,
        )

    def wait_download(self, folder: Path, name: str, timeout: float = 30.0) -> Path:
        self.wait_event("Browser.downloadProgress", lambda p: p["state"] == "completed", timeout)
        return folder / name

    @property
    def errors(self) -> list[str]:
        out = []
        for e in self.events:
            p = e["params"]
            if e["method"] == "Runtime.exceptionThrown":
                out.append(json.dumps(p["exceptionDetails"])[:500])
            elif e["method"] == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
            elif e["method"] == "Log.entryAdded" and p["entry"]["level"] == "error":
                out.append(p["entry"].get("text", ""))
        return out

    def close(self) -> None:
        try:
            self.send("Browser.close", browser=True, timeout=5)
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._cmd_write)
