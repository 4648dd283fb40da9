"""`patas dashboard`: the command-line face of `patas.dashboard`.

The server's libraries (Starlette, uvicorn) are imported only when the command runs, so neither
`patas --help` nor `patas dashboard --help` loads them.
"""

from __future__ import annotations

from pathlib import Path

import click

from patas.cli.lab_options import lab_option

DEFAULT_HOST = "127.0.0.1"  # patas.dashboard.server.DEFAULT_HOST, without importing it for --help
DEFAULT_PORT = 8765


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@lab_option
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="The port to listen on; 0 takes a free one (the URL printed says which).")  # fmt: skip
@click.option("--bind", "host", default=DEFAULT_HOST, show_default=True, metavar="HOST",
              help="The address to listen on. Another than loopback lets other machines reach the page (with the token).")  # fmt: skip
@click.option("--open", "open_browser", is_flag=True, help="Open the page in a web browser.")
def dashboard(lab_root: str, port: int, host: str, open_browser: bool) -> None:
    """Serve a live web page of the lab: experiments, tasks, output, summaries, charts.

    The page is served on this machine only (127.0.0.1) unless --bind says otherwise, and only to
    whoever has its URL: it holds a random token, and every request without it is refused. Stop
    it with Ctrl-C. It works with no internet: its scripts are in the package.

    \b
    Example:
      patas explore --cmd 'for i in 1 2 3; do echo "loss 0.$i"; sleep 1; done' --repeat 20 -y
      # in another terminal, while it runs:
      patas dashboard --open
      ssh -L 8765:127.0.0.1:8765 server   # from your laptop, for a dashboard on a server
    """
    from patas.dashboard.access import new_token
    from patas.dashboard.server import check_lab, is_loopback, listen, serve

    root = Path(lab_root)
    check_lab(root)
    listening = listen(host, port)
    if not is_loopback(listening.host):
        click.echo(
            f"Warning: --bind {host}: other machines can reach the dashboard; anyone with its URL sees the lab, "
            "and plain HTTP shows the token to the network (prefer the default and an SSH tunnel: ssh -L).",
            err=True,
        )
    token = new_token()
    url = listening.url(token)
    click.echo(f"patas dashboard of {root.absolute()}: {url}", err=False)
    click.echo("Ctrl-C stops it.", err=True)
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    serve(root, listening, token)
