"""``phasekit webhook``: helpers for the bundled webhook notifier, such as a new secret."""

from __future__ import annotations

import base64
import secrets

import click

from .app import cli
from .output import echo_json

__all__ = ["SECRET_BYTES", "webhook"]

#: Random bytes in a new secret; Standard Webhooks takes keys of 24 to 64 bytes.
SECRET_BYTES = 32


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and the base64 of ``SECRET_BYTES`` random bytes."""
    # The format is the standard's, not phasekit's; it is written here rather than imported
    # from the bundled plugin because the core never imports a plugin (they load by entry
    # point). tests/test_webhook.py checks that the notifier and the standard's library
    # both take what this prints.
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


@cli.group()
def webhook() -> None:
    """Helpers for the webhook notifier (Standard Webhooks v1)."""


@webhook.command("secret")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def secret(as_json: bool) -> None:
    """Print a new signing secret: whsec_ and the base64 of 32 random bytes."""
    value = new_secret()
    if as_json:
        echo_json({"secret": value})
    else:
        click.echo(value)
