"""Record Gemini answers once (request hash → response) and replay them offline.

`GeminiRecorder(upstream, store)` is a local HTTP proxy the real google-genai SDK talks to
(`GEMINI_BASE_URL`): it forwards every request to `upstream` (the real API, or the fake in
tests), and stores each generateContent answer under the hash of its request. The fake
Gemini then replays a store (`FakeGemini(answers="replay", replay_dir=...)`): the same
request gets the same answer, so parsing, merging and scoring run deterministically without
a key; a request never recorded gets 400 "not recorded" (a permanent error: the run fails
and the eval says the model was not measured for it).

A request's hash covers the model and the whole request (prompt, schema, generation config:
media resolution, thinking budget, ...) with each uploaded file replaced by its identity
(display name, size, MIME type), since the upload URI differs on every run. Standard
library only, like the fake.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

FileIdentity = Callable[[str], str | None]
_GENERATE = ":generateContent"
_HOP_HEADERS = {"host", "content-length", "connection", "transfer-encoding", "accept-encoding"}


def _get(obj: dict[str, Any], camel: str) -> Any:
    snake = "".join("_" + c.lower() if c.isupper() else c for c in camel)
    return obj.get(camel, obj.get(snake))


def request_key(model: str, request: dict[str, Any], file_identity: FileIdentity) -> str:
    """The hash a recorded answer is stored under."""
    req = copy.deepcopy(request)
    for content in req.get("contents") or []:
        for part in content.get("parts") or []:
            data = _get(part, "fileData")
            if isinstance(data, dict):
                uri = str(_get(data, "fileUri") or "")
                data.pop("fileUri", None)
                data.pop("file_uri", None)
                data["file"] = file_identity(uri) or uri
            inline = _get(part, "inlineData")
            if isinstance(inline, dict) and "data" in inline:
                inline["data"] = hashlib.sha256(str(inline["data"]).encode()).hexdigest()
    text = json.dumps({"model": model.removeprefix("models/"), "request": req}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def identity(display_name: str, size_bytes: int | str, mime_type: str) -> str:
    return f"{display_name}|{size_bytes}|{mime_type}"


class Store:
    """A directory of recorded answers, one JSON file per request hash."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        path = self.path(key)
        return json.loads(path.read_text()) if path.exists() else None

    def put(self, key: str, record: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.path(key).with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1))
        tmp.replace(self.path(key))

    def keys(self) -> list[str]:
        return sorted(p.stem for p in self.root.glob("*.json")) if self.root.exists() else []


class _Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def do_GET(self) -> None:
        self._forward("GET")

    def do_POST(self) -> None:
        self._forward("POST")

    def do_DELETE(self) -> None:
        self._forward("DELETE")

    def _forward(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        upstream = self.server.upstream
        url = upstream + self.path
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
        request = urllib.request.Request(url, data=body or None, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.server.timeout_s) as resp:
                status, got, out_headers = resp.status, resp.read(), dict(resp.headers.items())
        except urllib.error.HTTPError as exc:
            status, got, out_headers = exc.code, exc.read(), dict(exc.headers.items())
        self._observe(method, body, status, got)
        self.send_response(status)
        for key, value in out_headers.items():
            if key.lower() in _HOP_HEADERS:
                continue
            if key.lower() == "x-goog-upload-url":  # uploads continue through the proxy
                value = value.replace(upstream, self.server.base_url, 1)
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(got)))
        self.end_headers()
        self.wfile.write(got)

    def _observe(self, method: str, body: bytes, status: int, got: bytes) -> None:
        """Learn uploaded files' identities; record generateContent answers."""
        try:
            answer = json.loads(got) if got else None
        except ValueError:
            return
        file_json = (answer or {}).get("file") if isinstance(answer, dict) else None
        if isinstance(file_json, dict) and file_json.get("uri"):
            with self.server.lock:
                self.server.files[file_json["uri"]] = identity(
                    str(file_json.get("displayName", "")),
                    file_json.get("sizeBytes", ""),
                    str(file_json.get("mimeType", "")),
                )
        path = self.path.split("?", 1)[0]
        if method != "POST" or not path.endswith(_GENERATE) or status != 200:
            return
        model = path.rsplit("/", 1)[-1].removesuffix(_GENERATE)
        key = request_key(model, json.loads(body or b"{}"), self.server.files.get)
        self.server.store.put(key, {"status": status, "model": model, "response": answer})
        with self.server.lock:
            self.server.recorded.append(key)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str, store: Store, timeout_s: float) -> None:
        super().__init__(("127.0.0.1", 0), _Proxy)
        self.upstream = upstream.rstrip("/")
        self.store = store
        self.timeout_s = timeout_s
        self.files: dict[str, str] = {}
        self.recorded: list[str] = []
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class GeminiRecorder:
    """The recording proxy in a background thread on 127.0.0.1 and a free port.

    >>> with GeminiRecorder("https://generativelanguage.googleapis.com", Store(dir)) as rec:
    ...     run the container with GEMINI_BASE_URL=rec.base_url
    """

    def __init__(self, upstream: str, store: Store, *, timeout_s: float = 600.0) -> None:
        self._server = _Server(upstream, store, timeout_s)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return self._server.base_url

    @property
    def recorded(self) -> list[str]:
        return list(self._server.recorded)

    def __enter__(self) -> GeminiRecorder:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05})  # fmt: skip
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
