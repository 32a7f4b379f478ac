"""The benchmark's push service must refuse what a real one refuses, or `make bench` would count bad pushes."""

from __future__ import annotations

import time

import pytest

from bench.sink import Checker
from core.vapid import Vapid, generate_private_key
from core.webpush import build_request
from tests.fakepush import Subscriber

AUDIENCE = "https://localhost:4443"


def request(vapid: Vapid, plaintext: bytes = b'{"title": "x"}', audience: str = AUDIENCE):
    reader = Subscriber.generate()
    push = build_request(f"{AUDIENCE}/fcm/send/abc", reader.public_key_bytes, reader.auth_secret, plaintext,
                         ttl_s=3600, urgency="high", topic="abcd", authorization=vapid.header(audience))
    return {name.lower().encode(): value.encode() for name, value in push.headers.items()}, push.body


def test_a_push_as_nabaa_sends_it_is_accepted_and_its_token_verified_once():
    checker, vapid = Checker(AUDIENCE), Vapid(generate_private_key(), "mailto:ops@news.example")
    for _ in range(3):
        assert checker.check(*request(vapid)) is None
    assert len(checker.tokens) == 1


@pytest.mark.parametrize("change, reason", [
    (lambda h, b: ({**h, b"content-encoding": b"aesgcm"}, b), "content-encoding"),
    (lambda h, b: ({**h, b"ttl": b"0"}, b), "ttl"),
    (lambda h, b: ({**h, b"urgency": b"urgent"}, b), "urgency"),
    (lambda h, b: ({**h, b"topic": b"a" * 33}, b), "topic"),
    (lambda h, b: ({**h, b"topic": b"no spaces"}, b), "topic"),
    (lambda h, b: ({k: v for k, v in h.items() if k != b"content-type"}, b), "content-type"),
    (lambda h, b: ({**h, b"authorization": h[b"authorization"].replace(b"t=", b"t=x")}, b), "vapid"),
    (lambda h, b: ({**h, b"authorization": b"WebPush abc"}, b), "vapid"),
    (lambda h, b: (h, b + bytes(4096)), "size"),
    (lambda h, b: (h, b[:21] + b"\x03" + b[22:]), "header"),
])
def test_what_a_push_service_refuses_is_refused(change, reason):
    checker, vapid = Checker(AUDIENCE), Vapid(generate_private_key(), "mailto:ops@news.example")
    headers, body = change(*request(vapid))
    assert (checker.check(headers, body) or "").startswith(reason)


def test_a_token_for_another_push_service_or_expired_is_refused():
    checker = Checker(AUDIENCE)
    other = Vapid(generate_private_key(), "mailto:ops@news.example")
    assert "aud" in checker.check(*request(other, audience="https://fcm.googleapis.com"))
    stale = Vapid(generate_private_key(), "mailto:ops@news.example", clock=lambda: time.time() - 13 * 3600)
    assert "exp" in checker.check(*request(stale))
