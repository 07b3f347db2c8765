"""The typer front end: parse options, call the library, print, exit. The one error boundary."""

from __future__ import annotations

import os
import select
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, NoReturn, TypeVar

import typer

from meshlog.cli.exit_codes import ExitCode, exit_code_for
from meshlog.errors import FilterError, FormatError, MeshlogError

app = typer.Typer(
    name="meshlog",
    help="Triage Istio sidecar (Envoy) access logs: what is failing, where, and why.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from meshlog import __version__

        print(f"meshlog {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", "-V", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Triage Istio sidecar (Envoy) access logs: what is failing, where, and why."""

F = TypeVar("F", bound=Callable[..., Any])


def say(message: str) -> None:
    """A diagnostic line on stderr (stdout is for data)."""
    print(f"meshlog: {message}", file=sys.stderr, flush=True)


def boundary(func: F) -> F:
    """Turn a ``MeshlogError`` into one stderr line (plus a caret for formats) and an exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = func(*args, **kwargs)
            sys.stdout.flush()  # a reader that went away (| head) shows here, not at interpreter exit
            return result
        except MeshlogError as exc:
            say(f"error: {exc}")
            if (isinstance(exc, FormatError) and exc.format) or (
                isinstance(exc, FilterError) and exc.option == "--where"
            ):
                print(exc.caret(), file=sys.stderr)
            raise typer.Exit(exit_code_for(exc)) from None
        except BrokenPipeError:
            _reader_gone()
        except KeyboardInterrupt:
            raise typer.Exit(ExitCode.INTERRUPTED) from None
        except typer.Exit:
            raise
        except Exception as exc:  # a bug: still one line, and a way to see more
            if _is_broken_pipe(exc):  # polars' writers say so in their own words
                _reader_gone()
            if os.environ.get("MESHLOG_TRACEBACK"):
                raise
            say(f"internal error: {type(exc).__name__}: {exc} (rerun with MESHLOG_TRACEBACK=1 and report it)")
            raise typer.Exit(ExitCode.INTERNAL) from None

    return wrapper  # type: ignore[return-value]


def _is_broken_pipe(exc: BaseException) -> bool:
    """polars' writers report a closed stdout in their own words ("Broken pipe", "transport error"):
    ask the pipe itself whether its reader is gone."""
    if "Broken pipe" in str(exc) or "os error 32" in str(exc):
        return True
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def _reader_gone() -> NoReturn:
    """stdout's reader went away (``| head``): stop quietly, exit 0. stdout now points at /dev/null,
    so the interpreter's last flush of what is still buffered cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    raise typer.Exit(ExitCode.OK)


# Last: the command modules import `app` and `boundary` from here.
from meshlog.cli import commands, listen, metrics, tui  # noqa: E402, F401  (registers the commands)
