"""The fake push service speaks the real protocol: checked against pywebpush and the RFC vectors."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
import time

import aiohttp
import http_ece
import pytest
import requests
from py_vapid import Vapid
from py_vapid import jwt as vapid_jwt
from pywebpush import WebPusher, WebPushException, webpush

try:
    from . import fakepush
except ImportError:  # tests/ is not a package: pytest put it on sys.path
    import fakepush  # type: ignore[no-redef]

FakePushService = fakepush.FakePushService
Subscriber = fakepush.Subscriber
VapidError = fakepush.VapidError

pytestmark = pytest.mark.timeout(30)

SUB_CLAIM = "mailto:test@example.com"

# RFC 8292 §2.4
RFC8292_TOKEN = (
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzI1NiJ9.eyJhdWQiOiJodHRwczovL3B1c2guZXhhbXBsZS5uZXQiLCJleHAiOjE0NTM1MjM3NjgsInN1YiI6Im1haWx0bzpwdXNoQGV4YW1wbGUuY29tIn0"
    ".i3CYb7t4xfxCDquptFOepC9GAu_HLGkMlMuCGSK2rpiUfnK9ojFwDXb1JrErtmysazNjjvW2L9OkSSHzvoD1oA"
)
RFC8292_K = "BA1Hxzyi1RUM1b5wjxsn7nGxAszw2u61m164i3MrAIxHF6YK5h4SDYic-dRuU_RCPCfA5aq9ojSwk5Y2EmClBPs"

# RFC 8291 Appendix A
RFC8291 = {
    "plaintext": b"When I grow up, I want to be a watermelon",
    "as_public": "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8",
    "ua_private": "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94",
    "ua_public": "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
    "auth_secret": "BTBZMqHH6r4Tts7J_aSIgg",
    "salt": "DGv6ra1nlYgDCS1FRnbzlw",
    "body": (
        "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8w"
        "EqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
    ),
}


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def vapid() -> Vapid:
    v = Vapid()
    v.generate_keys()
    return v


@pytest.fixture
def fps():
    with FakePushService.in_thread() as service:
        yield service


def vapid_header(v: Vapid, aud: str, *, exp: float | None = None, sub: str = SUB_CLAIM) -> str:
    """Sign with py_vapid's JWT code directly, bypassing py_vapid's own claim checks."""
    claims = {"aud": aud, "exp": int(time.time() + 12 * 3600 if exp is None else exp), "sub": sub}
    token = vapid_jwt.sign(claims, v.private_key)
    return f"vapid t={token}, k={fakepush.b64url_encode(fakepush._public_raw(v.public_key))}"


def good_request(sub: Subscriber, v: Vapid, data: bytes = b'{"title":"hi"}') -> tuple[dict[str, str], bytes]:
    body = WebPusher(sub.subscription_json()).encode(data)["body"]
    headers = {
        "Content-Encoding": "aes128gcm",
        "Content-Type": "application/octet-stream",
        "TTL": "60",
        "Urgency": "normal",
        "Topic": "alert-1",
        "Authorization": vapid_header(v, sub.origin),
    }
    return headers, body


def post(sub: Subscriber, headers: dict[str, str], body: bytes, **kw) -> requests.Response:
    return requests.post(sub.endpoint, data=body, headers=headers, timeout=5, allow_redirects=False, **kw)


def send(sub: Subscriber, data: str, v: Vapid, *, timeout: float = 5, session=None) -> requests.Response:
    """pywebpush's WebPusher with a proper TTL, Content-Type and VAPID header; returns any status."""
    headers = {"Content-Type": "application/octet-stream", "Urgency": "high"}
    headers.update(v.sign({"aud": sub.origin, "exp": int(time.time()) + 12 * 3600, "sub": SUB_CLAIM}))
    return WebPusher(sub.subscription_json(), requests_session=session).send(data, headers, ttl=60, timeout=timeout)


def wait_until(cond, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


# --------------------------------------------------------------------------- standalone verifiers


def test_rfc8292_example_token_verifies():
    claims = fakepush.verify_vapid(f"vapid t={RFC8292_TOKEN}, k={RFC8292_K}", "https://push.example.net", check_exp=False)
    assert claims == {"aud": "https://push.example.net", "exp": 1453523768, "sub": "mailto:push@example.com"}


def test_rfc8292_example_token_checks():
    header = f"vapid t={RFC8292_TOKEN}, k={RFC8292_K}"
    with pytest.raises(VapidError, match="in the past"):
        fakepush.verify_vapid(header, "https://push.example.net")
    with pytest.raises(VapidError, match="aud"):
        fakepush.verify_vapid(header, "https://other.example.net", check_exp=False)
    tampered = RFC8292_TOKEN[:-2] + ("AA" if not RFC8292_TOKEN.endswith("AA") else "BB")
    with pytest.raises(VapidError, match="signature"):
        fakepush.verify_vapid(f"vapid t={tampered}, k={RFC8292_K}", None, check_exp=False)
    with pytest.raises(VapidError, match="scheme"):
        fakepush.verify_vapid(f"WebPush {RFC8292_TOKEN}", None, check_exp=False)


def test_rfc8291_vector_decrypts():
    ua = Subscriber.from_raw(RFC8291["ua_private"], RFC8291["auth_secret"])
    assert ua.p256dh == RFC8291["ua_public"]
    body = fakepush.b64url_decode(RFC8291["body"])
    assert len(body) == 144
    header = fakepush.parse_ece_header(body)
    assert header.salt == fakepush.b64url_decode(RFC8291["salt"])
    assert header.rs == 4096
    assert header.keyid == fakepush.b64url_decode(RFC8291["as_public"])
    assert ua.decrypt(body) == RFC8291["plaintext"]


def test_verify_push_request_without_network(vapid):
    sub = Subscriber.generate("https://fcm.googleapis.com/fcm/send/abc")
    headers, body = good_request(sub, vapid, b'{"title":"\xd9\x86\xd8\xa8\xd8\xa3"}')
    out = fakepush.verify_push_request(headers, body, sub)
    assert out.payload == {"title": "نبأ"}
    assert out.vapid_claims["aud"] == "https://fcm.googleapis.com"
    assert out.ttl == 60 and out.urgency == "normal" and out.topic == "alert-1"
    with pytest.raises(VapidError, match="aud"):
        fakepush.verify_push_request(headers, body, sub, expected_aud="https://updates.push.services.mozilla.com")


def test_subscription_json_shape():
    sub = Subscriber.generate("https://push.example.net/push/x")
    j = sub.subscription_json()
    assert j["endpoint"] == "https://push.example.net/push/x" and j["expirationTime"] is None
    assert len(fakepush.b64url_decode(j["keys"]["p256dh"])) == 65 and "=" not in j["keys"]["p256dh"]
    assert len(fakepush.b64url_decode(j["keys"]["auth"])) == 16 and "=" not in j["keys"]["auth"]


# --------------------------------------------------------------------------- pywebpush against the fake


def test_pywebpush_roundtrip_decrypts_and_verifies(fps, vapid):
    assert fps.connections == 0
    sub = fps.new_subscriber()
    assert sub.endpoint.startswith(f"http://127.0.0.1:{fps.port}/push/")
    payload = {"title": "عاجل", "body": "نص الخبر 🚨", "tag": "alert-1"}
    data = json.dumps(payload, ensure_ascii=False)
    resp = webpush(
        sub.subscription_json(),
        data=data,
        vapid_private_key=vapid,
        vapid_claims={"sub": SUB_CLAIM},
        ttl=120,
        timeout=5,
        headers={"Content-Type": "application/octet-stream", "Urgency": "high", "Topic": "abc_DEF-123"},
    )
    assert resp.status_code == 201
    assert resp.headers["Location"].startswith(fps.base_url + "/message/")
    assert resp.headers["TTL"] == "120"

    [rec] = fps.received
    assert rec.error is None and rec.status == 201 and rec.accepted
    assert rec.subscriber is sub
    assert rec.plaintext == data.encode("utf-8")
    assert rec.payload == payload
    assert rec.vapid_claims["aud"] == fps.origin == sub.origin
    assert rec.vapid_claims["sub"] == SUB_CLAIM
    assert rec.vapid_key == fakepush._public_raw(vapid.public_key)
    assert rec.headers["ttl"] == "120" and rec.ttl == 120 and rec.urgency == "high" and rec.topic == "abc_DEF-123"
    assert fps.messages_for(sub) == [payload]
    assert fps.count == 1 and fps.connections == 1


def test_each_message_has_fresh_salt_and_ecdh_key(fps, vapid):
    sub = fps.new_subscriber()
    for _ in range(2):
        assert send(sub, '{"n":1}', vapid).status_code == 201
    a, b = fps.received
    assert a.salt != b.salt and a.keyid != b.keyid
    assert a.keyid != a.vapid_key and b.keyid != b.vapid_key


def test_scripted_answers_in_order_then_default(fps, vapid):
    sub = fps.new_subscriber()
    fps.script(sub, [(429, {"Retry-After": "2"}), 410])
    with pytest.raises(WebPushException) as err:
        webpush(sub.subscription_json(), data="x", vapid_private_key=vapid, vapid_claims={"sub": SUB_CLAIM},
                ttl=60, timeout=5, headers={"Content-Type": "application/octet-stream"})
    assert err.value.status_code == 429 and err.value.retry_after == "2"
    r = send(sub, "x", vapid)
    assert r.status_code == 410 and r.json()["reason"] == "scripted 410"
    assert send(sub, "x", vapid).status_code == 201  # queue used up: fps.default
    assert [r.status for r in fps.received] == [429, 410, 201]
    assert [r.action for r in fps.received] == ["429", "410", "201"]
    assert all(r.error is None and r.plaintext == b"x" for r in fps.received)
    assert fps.messages_for(sub) == [b"x"]  # only the accepted one
    assert fps.messages_for(sub, accepted_only=False) == [b"x"] * 3


def test_script_scopes_then_and_default(fps, vapid):
    a = fps.new_subscriber()
    b = fps.new_subscriber("localhost")
    assert b.endpoint.startswith(f"http://localhost:{fps.port}/push/")
    fps.script(None, [500])
    fps.script_host("localhost", [], then=(503, {"Retry-After": "1"}))
    fps.script(a, [404], then=201)
    assert send(a, "1", vapid).status_code == 404  # subscriber queue before the global one
    assert send(a, "2", vapid).status_code == 500  # then the global queue
    assert send(a, "3", vapid).status_code == 201  # then the subscriber's sticky `then`
    r = send(b, "4", vapid)
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    assert send(b, "5", vapid).status_code == 503  # `then` sticks
    assert fps.records_for(b)[0].vapid_claims["aud"] == f"http://localhost:{fps.port}"
    fps.clear_scripts()
    fps.default = lambda rec: 202 if rec.plaintext == b"six" else 500
    assert send(b, "six", vapid).status_code == 202
    assert send(b, "seven", vapid).status_code == 500
    with pytest.raises(ValueError):
        fps.script(a, ["teapot"])
    with pytest.raises(TypeError):
        fps.script(a, (429, {"Retry-After": "1"}))


def test_unknown_and_unsubscribed(fps, vapid):
    sub = fps.new_subscriber()
    fps.unsubscribe(sub)
    assert send(sub, "x", vapid).status_code == 410
    ghost = Subscriber.generate(f"{fps.base_url}/push/nobody")
    assert send(ghost, "x", vapid).status_code == 404
    assert [r.status for r in fps.received] == [410, 404]


def test_redirect_is_answered_not_followed_by_the_fake(fps, vapid):
    sub = fps.new_subscriber()
    fps.script(sub, [(301, {"Location": "http://127.0.0.1:1/x"})])
    headers, body = good_request(sub, vapid)
    r = post(sub, headers, body)
    assert r.status_code == 301 and r.headers["Location"] == "http://127.0.0.1:1/x"


def test_hang_until_client_timeout(fps, vapid):
    sub = fps.new_subscriber()
    fps.script(sub, ["hang"])
    t0 = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        send(sub, "x", vapid, timeout=0.5)
    assert 0.45 <= time.monotonic() - t0 < 3
    [rec] = fps.received
    assert rec.action == "hang" and rec.status is None and rec.plaintext == b"x"
    wait_until(lambda: fps.in_flight == 0 and fps.open_connections == 0)  # the fake let go too
    assert send(sub, "y", vapid).status_code == 201


def test_hang_ends_when_the_service_stops(vapid):
    errors: list[BaseException] = []
    with FakePushService.in_thread() as service:
        sub = service.new_subscriber()
        service.default = "hang"

        def client():
            try:
                send(sub, "x", vapid, timeout=20)
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)

        t = threading.Thread(target=client)
        t.start()
        service.wait_for(1)
        t0 = time.monotonic()
    assert time.monotonic() - t0 < 3
    t.join(5)
    assert not t.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], requests.exceptions.ConnectionError)


def test_reset_and_slow(fps, vapid):
    sub = fps.new_subscriber()
    fps.script(sub, ["reset", ("slow", 0.3), ("slow", 0.1, 503)])
    with pytest.raises(requests.exceptions.ConnectionError):
        send(sub, "x", vapid)
    t0 = time.monotonic()
    assert send(sub, "x", vapid).status_code == 201
    assert time.monotonic() - t0 >= 0.3
    assert send(sub, "x", vapid).status_code == 503
    assert [r.action for r in fps.received] == ["reset", "slow 0.3 -> 201", "slow 0.1 -> 503"]


def test_in_flight_is_tracked_per_host(fps, vapid):
    subs = [fps.new_subscriber() for _ in range(4)]
    fps.default = ("slow", 0.3)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda s: send(s, "x", vapid).status_code, subs))
    assert statuses == [201] * 4
    assert fps.max_in_flight == 4 and fps.max_in_flight_by_host == {"127.0.0.1": 4}
    assert fps.in_flight == 0


def test_concurrent_senders_and_readers(fps, vapid):
    subs = [fps.new_subscriber() for _ in range(8)]
    stop = threading.Event()
    seen: list[int] = []

    def reader():
        while not stop.is_set():
            seen.append(len(fps.received))
            time.sleep(0.001)

    r = threading.Thread(target=reader)
    r.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            jobs = [pool.submit(send, s, json.dumps({"i": i}), vapid) for s in subs for i in range(5)]
            assert all(j.result().status_code == 201 for j in jobs)
    finally:
        stop.set()
        r.join()
    assert fps.count == 40 and not fps.errors
    assert seen == sorted(seen)
    for s in subs:
        assert sorted(m["i"] for m in fps.messages_for(s)) == list(range(5))


# --------------------------------------------------------------------------- rejected requests


def _without(name):
    def mutate(h, body, sub, v):
        del h[name]
        return h, body
    return mutate


def _set(name, value):
    def mutate(h, body, sub, v):
        h[name] = value
        return h, body
    return mutate


def _auth(**kw):
    def mutate(h, body, sub, v):
        rest = {k: val for k, val in kw.items() if k != "aud"}
        h["Authorization"] = vapid_header(v, kw.get("aud", sub.origin), **rest)
        return h, body
    return mutate


def _bad_signature(h, body, sub, v):
    token, k = fakepush.parse_vapid_authorization(h["Authorization"])
    head, claims, sig = token.split(".")
    raw = bytearray(fakepush.b64url_decode(sig))
    raw[10] ^= 1
    h["Authorization"] = f"vapid t={head}.{claims}.{fakepush.b64url_encode(bytes(raw))}, k={k}"
    return h, body


def _other_k(h, body, sub, v):
    token, _ = fakepush.parse_vapid_authorization(h["Authorization"])
    other = Vapid()
    other.generate_keys()
    h["Authorization"] = f"vapid t={token}, k={fakepush.b64url_encode(fakepush._public_raw(other.public_key))}"
    return h, body


def _compressed_k(h, body, sub, v):
    from cryptography.hazmat.primitives import serialization

    token, _ = fakepush.parse_vapid_authorization(h["Authorization"])
    k = v.public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    h["Authorization"] = f"vapid t={token}, k={fakepush.b64url_encode(k)}"
    return h, body


def _padded_k(h, body, sub, v):
    h["Authorization"] = h["Authorization"] + "="
    return h, body


def _off_curve_keyid(h, body, sub, v):
    return h, body[:21] + b"\x04" + b"\x01" * 64 + body[86:]


def _two_records(h, body, sub, v):
    import os

    from cryptography.hazmat.primitives.asymmetric import ec

    body = http_ece.encrypt(b"x" * 100, salt=os.urandom(16), private_key=ec.generate_private_key(ec.SECP256R1()),
                            dh=sub.public_key_bytes, auth_secret=sub.auth_secret, version="aes128gcm", rs=64)
    return h, body


def _vapid_key_as_ecdh_key(h, body, sub, v):
    import os

    body = http_ece.encrypt(b"x", salt=os.urandom(16), private_key=v.private_key, dh=sub.public_key_bytes,
                            auth_secret=sub.auth_secret, version="aes128gcm")
    return h, body


def _too_big(h, body, sub, v):
    return h, WebPusher(sub.subscription_json()).encode(b"x" * 3994)["body"]


def _tampered(h, body, sub, v):
    return h, body[:-1] + bytes([body[-1] ^ 1])


def _wrong_subscriber(h, body, sub, v):
    other = Subscriber.generate()
    return h, WebPusher(other.subscription_json()).encode(b"x")["body"]


REJECTIONS = [
    ("no-ttl", _without("TTL"), 400, "ttl: missing"),
    ("ttl-0", _set("TTL", "0"), 400, "ttl:"),
    ("ttl-abc", _set("TTL", "abc"), 400, "ttl:"),
    ("urgency", _set("Urgency", "urgent"), 400, "urgency:"),
    ("topic-33", _set("Topic", "a" * 33), 400, "topic:"),
    ("topic-alphabet", _set("Topic", "a+b/c"), 400, "topic:"),
    ("no-content-type", _without("Content-Type"), 400, "content-type:"),
    ("aesgcm", _set("Content-Encoding", "aesgcm"), 400, "content-encoding:"),
    ("no-auth", _without("Authorization"), 400, "authorization:"),
    ("webpush-scheme", _set("Authorization", "WebPush abc"), 400, "authorization:"),
    ("bad-signature", _bad_signature, 400, "vapid: bad ES256 signature"),
    ("other-k", _other_k, 400, "vapid: bad ES256 signature"),
    ("wrong-aud", _auth(aud="https://fcm.googleapis.com"), 400, "vapid: aud"),
    ("exp-25h", _auth(exp=time.time() + 25 * 3600), 400, "vapid: exp"),
    ("exp-past", _auth(exp=time.time() - 10), 400, "vapid: exp"),
    ("sub-bare-email", _auth(sub="test@example.com"), 400, "vapid: sub"),
    ("k-compressed", _compressed_k, 400, "vapid: k must be a 65-byte"),
    ("k-padded", _padded_k, 400, "vapid: k is not strict base64url"),
    ("keyid-off-curve", _off_curve_keyid, 400, "body: keyid (the sender's ECDH key) is not a point"),
    ("two-records", _two_records, 400, "body: more than one record"),
    ("vapid-key-reused", _vapid_key_as_ecdh_key, 400, "VAPID key"),
    ("4097-bytes", _too_big, 413, "body: 4097 bytes"),
    ("tampered", _tampered, 400, "decrypt:"),
    ("wrong-subscriber", _wrong_subscriber, 400, "decrypt:"),
]


@pytest.mark.parametrize("mutate,status,reason", [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS])
def test_rejects_invalid_requests(fps, vapid, mutate, status, reason):
    sub = fps.new_subscriber()
    fps.script(sub, [410])  # must not be consumed by an invalid request
    headers, body = mutate(*good_request(sub, vapid), sub, vapid)
    r = post(sub, headers, body)
    assert r.status_code == status, r.text
    assert reason in r.json()["reason"]
    [rec] = fps.received
    assert rec.status == status and reason in rec.error and rec.plaintext is None
    assert fps.messages_for(sub, accepted_only=False) == []
    headers, body = good_request(sub, vapid)
    assert post(sub, headers, body).status_code == 410


def test_largest_allowed_body_is_accepted(fps, vapid):
    sub = fps.new_subscriber()
    headers, body = good_request(sub, vapid, b"x" * 3993)
    assert len(body) == 4096
    assert post(sub, headers, body).status_code == 201


def test_expected_aud_for_an_aliased_origin(fps, vapid):
    sub = fps.new_subscriber(origin="https://fcm.googleapis.com")
    assert sub.endpoint.startswith("https://fcm.googleapis.com/push/")
    url = f"{fps.base_url}/push/{sub.token}"  # the test routes the connection itself
    headers, body = good_request(sub, vapid)
    assert requests.post(url, data=body, headers=headers, timeout=5).status_code == 201
    headers["Authorization"] = vapid_header(vapid, fps.origin)
    r = requests.post(url, data=body, headers=headers, timeout=5)
    assert r.status_code == 400 and "aud" in r.json()["reason"]


def test_reject_invalid_false_records_but_follows_the_script(vapid):
    with FakePushService.in_thread(reject_invalid=False, require_content_type=False) as service:
        sub = service.new_subscriber()
        headers, body = good_request(sub, vapid)
        del headers["Content-Type"]
        assert post(sub, headers, body).status_code == 201
        headers["TTL"] = "0"
        assert post(sub, headers, body).status_code == 201
        ok, bad = service.received
        assert ok.error is None and bad.error.startswith("ttl:")


# --------------------------------------------------------------------------- TLS


def test_tls_with_the_fakes_ca(vapid):
    with FakePushService.in_thread(tls=True) as service:
        sub = service.new_subscriber()
        assert sub.endpoint.startswith("https://127.0.0.1:")
        with requests.Session() as session:
            session.trust_env = False  # else REQUESTS_CA_BUNDLE silently wins over session.verify
            session.verify = service.ca_file
            assert send(sub, '{"ok":true}', vapid, session=session).status_code == 201
        with pytest.raises(requests.exceptions.SSLError):
            send(sub, "x", vapid)  # default trust store: refused
        assert service.messages_for(sub) == [{"ok": True}]
        assert service.connections == 2  # the failed handshake is counted too
        assert service.received[0].vapid_claims["aud"] == sub.origin


def test_tls_host_alias_must_be_in_the_certificate():
    with FakePushService.in_thread(tls=True, hostnames=["push.test"]) as service:
        assert service.new_subscriber("localhost").host == "localhost"
        assert service.new_subscriber("push.test").host == "push.test"
        with pytest.raises(ValueError, match="hostnames"):
            service.new_subscriber("other.test")


# --------------------------------------------------------------------------- async use


@pytest.mark.asyncio
async def test_async_service_with_aiohttp_sender(vapid):
    async with FakePushService() as service:
        sub = service.new_subscriber()
        assert service.connections == 0
        headers = {"Content-Type": "application/octet-stream"}
        headers.update(vapid.sign({"aud": sub.origin, "exp": int(time.time()) + 3600, "sub": SUB_CLAIM}))
        async with aiohttp.ClientSession() as session:
            pusher = WebPusher(sub.subscription_json(), aiohttp_session=session)
            for i in range(3):
                resp = await pusher.send_async(json.dumps({"i": i}), headers, ttl=30,
                                               timeout=aiohttp.ClientTimeout(total=5))
                assert resp.status == 201
        assert service.messages_for(sub) == [{"i": 0}, {"i": 1}, {"i": 2}]
        assert service.connections == 1  # one kept-alive connection
        for _ in range(100):
            if service.open_connections == 0:
                break
            await asyncio.sleep(0.01)
        assert service.open_connections == 0  # closed with the client session
        await service.wait_for_async(3)


@pytest.mark.asyncio
async def test_async_tls_hang_and_client_timeout(vapid):
    async with FakePushService(tls=True) as service:
        sub = service.new_subscriber()
        service.script(sub, ["hang"])
        headers = {"Content-Type": "application/octet-stream"}
        headers.update(vapid.sign({"aud": sub.origin, "exp": int(time.time()) + 3600, "sub": SUB_CLAIM}))
        connector = aiohttp.TCPConnector(ssl=service.client_ssl_context())
        async with aiohttp.ClientSession(connector=connector) as session:
            pusher = WebPusher(sub.subscription_json(), aiohttp_session=session)
            with pytest.raises(TimeoutError):
                await pusher.send_async("x", headers, ttl=30, timeout=aiohttp.ClientTimeout(total=0.3))
            resp = await pusher.send_async("y", headers, ttl=30, timeout=aiohttp.ClientTimeout(total=5))
            assert resp.status == 201
        assert [r.status for r in service.received] == [None, 201]
        assert service.messages_for(sub) == [b"y"]
