"""How the demo shows a phone number to other users."""

from __future__ import annotations


def masked(phone: str) -> str:
    """``+15550109988`` -> ``+15550•••88``: enough to tell people apart."""
    return phone[:-6] + "•••" + phone[-2:] if len(phone) > 8 else phone
