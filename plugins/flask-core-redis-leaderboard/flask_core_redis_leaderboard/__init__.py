"""Leaderboards on Redis sorted sets, as a flask-core-redis plugin."""

from __future__ import annotations

from typing import Any

import click
from flask import Flask

from flask_core_redis.plugin_api import PluginContext, hookimpl


class LeaderboardPlugin:
    """``ext.plugins["leaderboard"]``: scores per member, highest first."""

    context: PluginContext

    @hookimpl
    def core_redis_setup(self, app: Flask, context: PluginContext) -> None:
        self.context = context

    def _key(self, board: str) -> str:
        if not board:
            raise ValueError("a leaderboard needs a non-empty name")
        return self.context.key("leaderboard", board)

    def add(self, board: str, member: str, score: float) -> None:
        """Set ``member``'s score."""
        self.context.client.zadd(self._key(board), {member: score})

    def incr(self, board: str, member: str, amount: float = 1) -> float:
        """Add ``amount`` to ``member``'s score; the new score."""
        return float(self.context.client.zincrby(self._key(board), amount, member))

    def top(self, board: str, n: int = 10) -> list[tuple[str, float]]:
        """The ``n`` best members with their scores."""
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        rows = self.context.client.zrevrange(self._key(board), 0, n - 1, withscores=True)
        return [(member, float(score)) for member, score in rows]

    def rank(self, board: str, member: str) -> int | None:
        """0 for the best member, None for one not on the board."""
        rank: Any = self.context.client.zrevrank(self._key(board), member)
        return None if rank is None else int(rank)

    @hookimpl
    def core_redis_commands(self, context: PluginContext, group: click.Group) -> None:
        @group.group("leaderboard")
        def leaderboard() -> None:
            """Leaderboards (flask-core-redis-leaderboard)."""

        @leaderboard.command("top")
        @click.argument("name")
        @click.option("--n", default=10, show_default=True, type=click.IntRange(min=1))
        def top(name: str, n: int) -> None:
            """Print the top N members of leaderboard NAME."""
            for place, (member, score) in enumerate(self.top(name, n), start=1):
                click.echo(f"{place}. {member} {score:g}")
