"""Conformance of the push request builder: RFC 8291 Appendix A, headers, VAPID (test-plan C1–C4)."""

from __future__ import annotations

import base64
import json
import time

import http_ece
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from core.vapid import TOKEN_LIFETIME_S, Vapid, generate_private_key
from core.webpush import MAX_PLAINTEXT_BYTES, build_request, encrypt, topic_for
from tests.fakepush import Subscriber, parse_ece_header, verify_push_request, verify_vapid


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


RFC = {
    "plaintext": b"When I grow up, I want to be a watermelon",
    "as_private": "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw",
    "ua_public": "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
    "ua_private": "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94",
    "auth_secret": "BTBZMqHH6r4Tts7J_aSIgg",
    "salt": "DGv6ra1nlYgDCS1FRnbzlw",
    "body": "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6Tlz"
            "AC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN",
}


def test_rfc8291_appendix_a_byte_for_byte():
    sender = ec.derive_private_key(int.from_bytes(b64d(RFC["as_private"]), "big"), ec.SECP256R1())
    body = encrypt(RFC["plaintext"], b64d(RFC["ua_public"]), b64d(RFC["auth_secret"]),
                   salt=b64d(RFC["salt"]), sender_key=sender)
    assert body == b64d(RFC["body"])
    assert len(body) == 144
    receiver = ec.derive_private_key(int.from_bytes(b64d(RFC["ua_private"]), "big"), ec.SECP256R1())
    assert http_ece.decrypt(body, private_key=receiver, auth_secret=b64d(RFC["auth_secret"]),
                            version="aes128gcm") == RFC["plaintext"]


def test_every_request_is_conformant_and_decrypts():
    sub = Subscriber.generate(endpoint="https://fcm.googleapis.com/fcm/send/abc")
    vapid = Vapid(generate_private_key(), "mailto:newsroom@nabaa.example")
    payload = json.dumps({"title": "عاجل"}, ensure_ascii=False).encode()
    request = build_request(sub.endpoint, sub.public_key_bytes, sub.auth_secret, payload, ttl_s=3600,
                            urgency="high", topic=topic_for("a1"),
                            authorization=vapid.header("https://fcm.googleapis.com"))
    headers = request.headers
    assert headers["Content-Encoding"] == "aes128gcm" and headers["Content-Type"] == "application/octet-stream"
    assert headers["TTL"] == "3600" and headers["Urgency"] == "high"
    assert len(headers["Topic"]) <= 32
    verified = verify_push_request({k.lower(): v for k, v in headers.items()}, request.body, sub,
                                   expected_aud="https://fcm.googleapis.com")
    assert verified.plaintext == payload
    assert len(request.body) <= 4096


def test_two_sends_differ_in_salt_and_key_and_never_use_the_vapid_key():
    sub = Subscriber.generate(endpoint="https://fcm.googleapis.com/fcm/send/abc")
    vapid = Vapid(generate_private_key(), "mailto:newsroom@nabaa.example")
    bodies = [build_request(sub.endpoint, sub.public_key_bytes, sub.auth_secret, b"{}", ttl_s=60, urgency="low",
                            topic=topic_for("a"), authorization=vapid.header("https://fcm.googleapis.com")).body
              for _ in range(2)]
    first, second = (parse_ece_header(body) for body in bodies)
    assert first.salt != second.salt and first.keyid != second.keyid
    assert b64d(vapid.public_key) not in (first.keyid, second.keyid)


def test_vapid_tokens_one_per_audience_reused_and_correct():
    vapid = Vapid(generate_private_key(), "mailto:newsroom@nabaa.example")
    fcm = vapid.header("https://fcm.googleapis.com")
    mozilla = vapid.header("https://updates.push.services.mozilla.com")
    assert vapid.header("https://fcm.googleapis.com") is fcm  # reused, not signed again
    for header, aud in ((fcm, "https://fcm.googleapis.com"), (mozilla, "https://updates.push.services.mozilla.com")):
        claims = verify_vapid(header, aud)
        assert claims["aud"] == aud and claims["sub"].startswith("mailto:")
        assert 0 < claims["exp"] - time.time() <= TOKEN_LIFETIME_S


def test_vapid_token_renewed_before_it_expires():
    clock = [1_000_000.0]
    vapid = Vapid(generate_private_key(), "mailto:n@nabaa.example", clock=lambda: clock[0])
    first = vapid.header("https://fcm.googleapis.com")
    clock[0] += TOKEN_LIFETIME_S - 600
    assert vapid.header("https://fcm.googleapis.com") != first


def test_plaintext_over_one_record_is_refused():
    sub = Subscriber.generate()
    encrypt(b"x" * MAX_PLAINTEXT_BYTES, sub.public_key_bytes, sub.auth_secret)
    with pytest.raises(ValueError):
        encrypt(b"x" * (MAX_PLAINTEXT_BYTES + 1), sub.public_key_bytes, sub.auth_secret)


@pytest.mark.parametrize("ttl", [0, -1])
def test_ttl_must_be_positive(ttl):
    sub = Subscriber.generate()
    with pytest.raises(ValueError):
        build_request(sub.endpoint, sub.public_key_bytes, sub.auth_secret, b"{}", ttl_s=ttl, urgency="high",
                      topic="t", authorization="vapid t=x, k=y")
