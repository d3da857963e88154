"""The API key stays where it belongs; a deadline is a deadline. Servers on loopback only."""

from __future__ import annotations

import http.server
import threading
import time
from contextlib import contextmanager

import pytest

from evalkit.errors import ConfigError, ServiceError
from evalkit.rerank.http import HttpReranker, redact


@contextmanager
def serve(handler_class):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_redirect_to_another_host_never_carries_the_key(monkeypatch):
    seen = []

    class Elsewhere(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"results": []}')

        def log_message(self, *args):
            pass

    with serve(Elsewhere) as elsewhere:

        class Redirecting(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.send_response(307)
                self.send_header("Location", f"{elsewhere}/rerank")
                self.end_headers()

            def log_message(self, *args):
                pass

        with serve(Redirecting) as url:
            monkeypatch.setenv("EVALKIT_TEST_KEY", "sk-secret-123")
            reranker = HttpReranker(url, "m", api_key_env="EVALKIT_TEST_KEY", max_retries=0)
            with pytest.raises(ServiceError, match="redirects \\(HTTP 307\\) to another host"):
                reranker.score([("q", "d")])
    assert seen == []  # the other host never got a request, let alone the key


def test_a_body_echoing_the_key_is_redacted(monkeypatch):
    class Echo(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = f'{{"error": "bad key {self.headers.get("Authorization")}"}}'.encode()
            self.send_response(400)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    with serve(Echo) as url:
        monkeypatch.setenv("EVALKIT_TEST_KEY", "sk-secret-123")
        reranker = HttpReranker(url, "m", api_key_env="EVALKIT_TEST_KEY", max_retries=0)
        with pytest.raises(ServiceError) as error:
            reranker.score([("q", "d")])
    assert "sk-secret-123" not in str(error.value) and "Bearer ***" in str(error.value)
    assert redact("token: Bearer abc.def", "") == "token: Bearer ***"


@pytest.mark.parametrize(
    "url", ["https://api.example.com/rerank?api_key=sk-1", "https://user:pw@api.example.com"]
)
def test_a_key_in_the_url_is_refused(url):
    from evalkit.config import validate
    from tests.conftest import compose

    with pytest.raises(ConfigError, match=r"reranker\.url carries credentials"):
        validate(compose(["reranker=http", f"reranker.url='{url}'", "reranker.model=m"]))


def test_a_trickling_server_meets_the_deadline():
    class Trickle(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(12):  # one byte every 0.1 s: each read is quick, the body is not
                try:
                    self.wfile.write(b" ")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.1)

        def log_message(self, *args):
            pass

    with serve(Trickle) as url:
        reranker = HttpReranker(url, "m", timeout_s=0.5, max_retries=0)
        with pytest.raises(ServiceError, match=r"longer than reranker\.timeout_s"):
            reranker.score([("q", "d")])
