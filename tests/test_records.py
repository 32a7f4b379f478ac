"""The stored form of a subscription: compact, exact, and readable back."""

from __future__ import annotations

import secrets

import pytest

from core.records import Subscription, decode, pack_path, subscription_id, unpack_path
from core.webpush import encrypt


@pytest.mark.parametrize("path", [
    "/fcm/send/dXgcABC:APA91bHx-yz_12", "/fcm/send/A", "/fcm/send/_-_", "/fcm/send/abc::d", "/fcm/send/",
    "/fcm/send/a%2Fb", "/fcm/send/ab=", "/wpush/v2/gAAAAABk", "/w/?token=BQYAAA%2b%2f", "?x=1", "/",
])
def test_paths_read_back_exactly(path):
    assert unpack_path(pack_path(path)) == path


def test_fcm_tokens_are_packed_at_six_bits_a_character():
    for _ in range(500):
        token = f"{secrets.token_urlsafe(16)[:secrets.randbelow(22) + 1]}:APA91b{secrets.token_urlsafe(120)[:secrets.randbelow(150)]}"
        path = "/fcm/send/" + token
        packed = pack_path(path)
        assert unpack_path(packed) == path
        assert len(packed) < len(path) * 0.8


def test_a_record_reads_back_the_same_subscription():
    endpoint = "https://fcm.googleapis.com/fcm/send/" + secrets.token_urlsafe(16)[:22] + ":APA91b" + "x" * 120
    sub = Subscription(subscription_id(endpoint), endpoint, b"\x04" + b"\x01" * 64, b"a" * 16, ("sports",), "ar", 1, 2)
    # That key is not on the curve: read back as stored (keys are checked when a reader subscribes, not on
    # every read), and refused by the encryption, where a broadcast counts it as failed.
    assert decode(sub.id, sub.encode()).p256dh == sub.p256dh
    with pytest.raises(ValueError):
        encrypt(b"{}", sub.p256dh, sub.auth)
    compressed = Subscription(sub.id, endpoint, b"\x02" + b"\x01" * 64, b"a" * 16, (), "ar", 1, 2)
    with pytest.raises(ValueError):  # not an uncompressed point at all: the record is refused when read
        decode(compressed.id, compressed.encode())
    from tests.fakepush import Subscriber

    real = Subscriber.generate()
    sub = Subscription(sub.id, endpoint, real.public_key_bytes, real.auth_secret, ("sports", "culture"), "ar", 1, 2)
    back = decode(sub.id, sub.encode())
    assert back == sub and back.origin == "fcm.googleapis.com" and back.audience == "https://fcm.googleapis.com"
