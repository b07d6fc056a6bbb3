"""farm-api's front door, an ASGI middleware in front of FastAPI: a request
carries a valid bearer token before any of its body is read, and its body
stays within [api] max_body_bytes, both answered in farm's error shape.

FastAPI reads and parses a body before it runs a route's dependencies, the
token check among them: a 50 MB POST with no token took 1.6 s and 320 MB to
reach its 401, and four at once stalled /ipmi for 5 s. Here the token is
checked on the headers alone, a Content-Length past the cap is refused
unread, and a chunked body is counted as it arrives and cut at the cap
(the body is read here, whole, and handed on).
The token's (role, name) goes on in the request's state (`farm_caller`), so
the routes check its role without hashing the token again."""

import json

PUBLIC = frozenset({"/openapi.json"})  # the API's own description: no secret in it


async def answer(send, status, code, message, headers=()):
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


def bearer(headers):
    """The token of an `Authorization: Bearer ...` header, or None."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip().decode("latin-1")
            return None
    return None


class Guard:
    def __init__(self, app, tokens, max_body):
        self.app, self.tokens, self.max_body = app, tokens, max_body

    async def _too_large(self, send):
        await answer(send, 413, "body_too_large",
                     f"a body of at most {self.max_body} bytes ([api] max_body_bytes)")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = scope["headers"]
        if scope["path"] not in PUBLIC:
            token = bearer(headers)
            found = self.tokens.check(token) if token is not None else None
            if found is None:
                return await answer(send, 401, "unauthorized", "a valid bearer token is needed",
                                    [(b"www-authenticate", b"Bearer")])
            scope.setdefault("state", {})["farm_caller"] = found
        length = next((v for k, v in headers if k == b"content-length"), None)
        if length is not None:
            if not length.isdigit() or len(length) > 12:
                return await answer(send, 400, "invalid_request", "a malformed Content-Length")
            if int(length) > self.max_body:
                return await self._too_large(send)
        if length is None and not any(k == b"transfer-encoding" for k, _ in headers):
            return await self.app(scope, receive, send)  # no body
        # Read the body here, up to the cap, and hand it on whole: FastAPI
        # turns an exception raised while it reads into its own 400.
        body, more = [], True
        received = 0
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            received += len(message.get("body", b""))
            if received > self.max_body:
                return await self._too_large(send)
            body.append(message.get("body", b""))
            more = message.get("more_body", False)
        whole = b"".join(body)
        handed = False

        async def replay():
            nonlocal handed
            if not handed:
                handed = True
                return {"type": "http.request", "body": whole, "more_body": False}
            return await receive()  # what follows: a disconnect
        await self.app(scope, replay, send)
