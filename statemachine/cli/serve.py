"""``phasekit serve``: the web dashboard of a store, under uvicorn."""

from __future__ import annotations

from pathlib import Path
from types import FrameType

import click

from .app import DomainError, cli
from .output import error_console
from .stores import StoreSession, store_options

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "serve"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8750
TOKEN_ENV = "PHASEKIT_TOKEN"


@cli.command("serve")
@store_options
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True)
@click.option(
    "--token",
    envvar=TOKEN_ENV,
    show_envvar=True,
    metavar="TOKEN",
    help="Every request needs Authorization: Bearer TOKEN (a browser: open /?token=TOKEN once).",
)
def serve(
    *, store_url: str, config_path: Path | None, host: str, port: int, token: str | None
) -> None:
    """Serve the dashboard of a store: jobs, live progress, histories, an API and SSE.

    It only reads the store, so it runs beside any number of workers.
    """
    try:
        import uvicorn  # noqa: PLC0415 (the web extra; other commands do without it)

        from ..web import create_app, end_streams  # noqa: PLC0415
    except ImportError as exc:
        raise DomainError(
            f"phasekit serve needs the web extra ({exc.name} is missing): "
            "pip install 'phasekit[web]'"
        ) from None
    if token is not None and not token.strip():
        raise click.BadParameter("must not be empty", param_hint="--token")
    with StoreSession(store_url, config_path, read_only=True) as session:
        app = create_app(session.store, token=token)
        if token is None and host not in ("127.0.0.1", "localhost", "::1"):
            error_console().print(
                f"warning: serving {host} without --token: anyone who reaches it reads every job",
                soft_wrap=True,
            )
        shown = f"[{host}]" if ":" in host else host
        click.echo(f"phasekit dashboard on http://{shown}:{port}/ (Ctrl-C stops it)")

        class Server(uvicorn.Server):
            """Ends the event streams first on Ctrl-C: open ones would hold the shutdown."""

            def handle_exit(self, sig: int, frame: FrameType | None) -> None:
                end_streams(app)
                super().handle_exit(sig, frame)

        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=2
        )
        Server(config).run()
