"""Client-side helpers for AF Gateway."""

from .auth import BearerTokenAuth, find_bearer_token

__all__ = ["BearerTokenAuth", "find_bearer_token"]
