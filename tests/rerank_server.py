"""A real HTTP rerank server for tests (and for trying ``reranker=http`` locally).

It speaks the Cohere-compatible protocol on ``/v2/rerank`` and ``/v1/rerank`` (``results``,
or Voyage's ``data`` when started with ``voyage=True``) and Text Embeddings Inference's
``/rerank`` (``texts`` in, a bare list out), over a real socket, scoring with a local model:
a sentence-transformers CrossEncoder folder, or word overlap (scores a test can compute by
hand). ``faults`` is a queue of failures served before normal answers: ``"429"``,
``"500"``, ``"slow"`` (sleeps past the client's timeout), ``"not-json"``, ``"short"`` (one
score missing), ``"die"`` (500 for every later request).

    python tests/rerank_server.py --port 8080 [--model DIR] [--key SECRET]
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def word_overlap(query: str, documents: list[str]) -> list[float]:
    words = set(query.lower().split())
    return [float(len(words & set(d.lower().split()))) for d in documents]


def cross_encoder_scorer(folder: str):
    import torch
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(folder, device="cpu")
    lock = threading.Lock()

    def score(query: str, documents: list[str]) -> list[float]:
        with lock:
            logits = model.predict(
                [(query, d) for d in documents], activation_fn=torch.nn.Identity()
            )
        return [float(x) for x in logits]

    return score


class RerankServer:
    """Start with ``with RerankServer() as server:``; ``server.url`` is its base URL."""

    def __init__(self, scorer=word_overlap, key: str | None = None, voyage: bool = False):
        self.scorer = scorer
        self.key = key
        self.voyage = voyage
        self.faults: list[str] = []
        self.requests: list[dict] = []  # every request received: path, documents, auth
        self.slow_s = 2.0
        self.dead = False
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> RerankServer:
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def documents_scored(self) -> int:
        return sum(r["documents"] for r in self.requests if r["answered"])

    def _next_fault(self) -> str | None:
        with self._lock:
            if self.dead:
                return "500"
            if not self.faults:
                return None
            fault = self.faults.pop(0)
            if fault == "die":
                self.dead = True
                return "500"
            return fault

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, body: bytes, headers: dict | None = None):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                request = json.loads(self.rfile.read(length))
                tei = self.path == "/rerank"
                documents = request.get("texts" if tei else "documents") or []
                record = {
                    "path": self.path,
                    "documents": len(documents),
                    "auth": self.headers.get("Authorization"),
                    "answered": False,
                }
                with server._lock:
                    server.requests.append(record)
                if self.path not in ("/rerank", "/v1/rerank", "/v2/rerank"):
                    return self._send(404, b'{"message": "not found"}')
                if server.key is not None and record["auth"] != f"Bearer {server.key}":
                    return self._send(401, b'{"message": "invalid api token"}')
                fault = server._next_fault()
                if fault == "429":
                    return self._send(429, b'{"message": "rate limited"}', {"Retry-After": "0"})
                if fault == "500":
                    return self._send(500, b'{"message": "internal error"}')
                if fault == "slow":
                    time.sleep(server.slow_s)
                if fault == "not-json":
                    return self._send(200, b"<html>gateway</html>")
                scores = server.scorer(request["query"], documents)
                if fault == "short":
                    scores = scores[:-1]
                if tei:
                    body = [{"index": i, "score": s} for i, s in enumerate(scores)]
                else:
                    results = [{"index": i, "relevance_score": s} for i, s in enumerate(scores)]
                    results.sort(key=lambda r: -r["relevance_score"])  # as services do
                    body = {"data" if server.voyage else "results": results}
                record["answered"] = fault is None
                self._send(200, json.dumps(body).encode())

        return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--model", help="a CrossEncoder folder (default: word overlap)")
    parser.add_argument("--key", help="require this bearer token")
    args = parser.parse_args()
    scorer = cross_encoder_scorer(args.model) if args.model else word_overlap
    server = RerankServer(scorer, key=args.key)
    server._httpd.server_close()
    server._httpd = ThreadingHTTPServer(("127.0.0.1", args.port), server._handler())
    print(f"serving /v2/rerank, /v1/rerank and /rerank on http://127.0.0.1:{args.port}")
    server._httpd.serve_forever()


if __name__ == "__main__":
    main()
