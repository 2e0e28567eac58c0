"""The JSON-over-HTTP call shared by the delivery bench drivers."""
import json
import urllib.request


def make_call(base, headers):
    """call(method, path, body=None, url=None) -> parsed JSON (or None)."""
    def call(method, path, body=None, url=None):
        req = urllib.request.Request((url or base) + path, method=method, headers=headers,
                                     data=None if body is None else json.dumps(body).encode())
        with urllib.request.urlopen(req) as r:
            return json.loads(r.read() or b"null")
    return call
