"""Region routing (the seed's PACK 426): which region is a user's home?

A user's home region decides where their queue entries, device sync states
and typing events live. A router decides it. The default router reads
`users/{uid}.region` (PACK427_DEFAULT_REGION, else EU, when it names none),
as the chat core keeps it. A multi-region router installs its own once at
start-up, in main.py:

    routing.install(MyRouter(...))

A router is asked on the request path with the profile already read: keep it
fast and free of I/O, or cache. A router that raises is logged and the
profile's region is used: routing trouble must not stop messaging.

Moving a user (a router that answers another region, or a changed profile)
strands nothing: their entries already queued in the old region are still
delivered there (every query for awaiting entries spans all regions, and
the processor drains every region), and each device's sync state moves home
with its position on the device's next sync or registration (see sync).
"""

from __future__ import annotations

import os
from typing import Protocol

from firebase_functions import logger

from .models import Region, UserProfile


def default_region() -> Region:
    """The region of users whose document names none (env PACK427_DEFAULT_REGION, else EU)."""
    return Region(os.environ.get("PACK427_DEFAULT_REGION", Region.EU.value))


class RegionRouter(Protocol):
    """What a multi-region router implements."""

    name: str

    def home_region(self, uid: str, profile: UserProfile) -> Region:
        """The user's home region.

        Args:
            uid: the user.
            profile: their `users/{uid}` as read (defaults when there is none).
        """


class ProfileRegion:
    """The default router: `users/{uid}.region`, else the default region."""

    name = "profile-region"

    def home_region(self, uid: str, profile: UserProfile) -> Region:
        return profile.region or default_region()


_installed: RegionRouter = ProfileRegion()


def install(router: RegionRouter) -> RegionRouter:
    """Make `router` decide home regions from now on; returns the one it replaces."""
    global _installed
    previous, _installed = _installed, router
    return previous


def home_region(uid: str, profile: UserProfile) -> Region:
    """The home region of `uid` as the installed router decides it (the profile's if it fails)."""
    try:
        return Region(_installed.home_region(uid, profile))
    except Exception as err:  # noqa: BLE001 - routing trouble must not stop messaging
        logger.error(f"region router {getattr(_installed, 'name', _installed)!r} failed for {uid}: {err!r}",
                     alert="REGION_ROUTER_FAILED", uid=uid)
        return ProfileRegion().home_region(uid, profile)
