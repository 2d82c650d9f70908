"""Redis Sentinel, all in one place: the watch that follows a master
through its sentinels (:mod:`.watch`, from what they announce and answer,
:mod:`.announcements`, into a :mod:`.view`), the pools and connections that
go only where it vouches (:mod:`.pools`, :mod:`.connections`), and the
client built on them (:mod:`.client`)."""

from .client import build_master_watch, build_sentinel_client
from .watch import MasterWatch

__all__ = ["MasterWatch", "build_master_watch", "build_sentinel_client"]
