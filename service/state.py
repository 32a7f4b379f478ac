"""What the API builds once at start-up and every route shares (`request.app.state.nabaa`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from fastapi import Request

from core.alerts import AlertStore
from core.settings import Settings
from core.store import Store
from core.subscriptions import SubscriptionStore
from core.validation import HostPolicy


@dataclass
class ApiState:
    settings: Settings
    store: Store
    vapid_public_key: str
    secret: bytes  # for hashing client addresses (rate limits): derived from the VAPID key, never stored
    cap_total: tuple[float, int] | None = field(default=None, repr=False)  # (read at, subscriptions): the cap check
    cap_alarm_at: float = field(default=-1e9, repr=False)  # when the cap alarm was last logged (monotonic)
    open_streams: int = field(default=0, repr=False)  # progress streams open now (service.results)

    @property
    def subs(self) -> SubscriptionStore:
        return SubscriptionStore(self.store)

    @property
    def alerts(self) -> AlertStore:
        return AlertStore(self.store)

    @property
    def policy(self) -> HostPolicy:
        return HostPolicy(tuple(self.settings.push_allowed_hosts), self.settings.push_allow_insecure)

    def client_bucket(self, address: str) -> str:
        return hashlib.blake2s(address.encode(), key=self.secret[:32], digest_size=12).hexdigest()


def get_state(request: Request) -> ApiState:
    return request.app.state.nabaa
