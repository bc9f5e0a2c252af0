"""JSON Web Tokens and JWK Sets for the attack tests: HS256 with the standard library,
RS256 and ES256 with the cryptography package. Only for tests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import threading
import time

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

SECRET = "s" * 32


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(sub: str, scope: str, ttl: int = 3600, **extra) -> dict:
    return {"sub": sub, "scope": scope, "exp": int(time.time()) + ttl, **extra}


def _signing_input(alg: str, payload: dict, kid: str | None) -> bytes:
    header = {"alg": alg, "typ": "JWT", **({"kid": kid} if kid else {})}
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}".encode()


def hs256(payload: dict, secret: str = SECRET) -> str:
    signing_input = _signing_input("HS256", payload, None)
    return f"{signing_input.decode()}.{b64(hmac.new(secret.encode(), signing_input, hashlib.sha256).digest())}"


def rs256(key: rsa.RSAPrivateKey, kid: str, payload: dict) -> str:
    signing_input = _signing_input("RS256", payload, kid)
    return f"{signing_input.decode()}.{b64(key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256()))}"


def es256(key: ec.EllipticCurvePrivateKey, kid: str, payload: dict) -> str:
    signing_input = _signing_input("ES256", payload, kid)
    r, s = utils.decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return f"{signing_input.decode()}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def new_rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def new_ec() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def jwk(key, kid: str) -> dict:
    pub = key.public_key().public_numbers()
    if isinstance(key, rsa.RSAPrivateKey):
        return {"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
                "n": b64(pub.n.to_bytes((pub.n.bit_length() + 7) // 8, "big")), "e": b64(pub.e.to_bytes(3, "big"))}
    return {"kty": "EC", "kid": kid, "alg": "ES256", "use": "sig", "crv": "P-256",
            "x": b64(pub.x.to_bytes(32, "big")), "y": b64(pub.y.to_bytes(32, "big"))}


class JWKSServer:
    """An identity provider's JWKS endpoint on loopback; set() rotates its keys."""

    def __init__(self) -> None:
        self.keys: list[dict] = []
        self.fetches = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                owner.fetches += 1
                body = json.dumps({"keys": owner.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/.well-known/jwks.json"

    def set(self, *keys: dict) -> None:
        self.keys = list(keys)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
