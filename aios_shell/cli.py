"""`aios`: the shell (no arguments), `aios -c 'CMD; CMD'`, `aios FILE`, or one-shot `aios CMD ARGS…`.

Exit codes: 0 ok, 1 failure, 2 usage, 130 interrupted.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from aios_shell import __version__
from aios_shell.render import make_console
from kernel.api import HostLock, default_home
from kernel.api.wire import Connection

if TYPE_CHECKING:
    from kernel.api import KernelConfig

# (an `aios` that attaches to a running kernel imports neither the kernel nor its backends: it starts in ~0.3 s)

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)


def _version(value: bool) -> None:
    if value:
        print(f"aios {__version__}")
        raise typer.Exit(0)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "allow_interspersed_args": False},
    help="aios — an agent operating system. With no arguments, an interactive shell.",
)
def aios(
    args: Optional[list[str]] = typer.Argument(None, help="a script FILE, or a COMMAND and its arguments"),  # noqa: UP045
    command: Optional[str] = typer.Option(None, "-c", help="run these shell commands and exit"),  # noqa: UP045
    backend: Optional[str] = typer.Option(  # noqa: UP045
        None, "--backend", "-b",
        help="model backend: auto|ollama|openai|llamacpp|simulated|pool, or one from aios.backends "
             "(env AIOS_BACKEND)",
    ),
    base_url: Optional[str] = typer.Option(  # noqa: UP045
        None, "--base-url", metavar="URL", help="the openai backend's server, e.g. http://127.0.0.1:8080/v1 "
                                                "(env OPENAI_BASE_URL)"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="model name (env AIOS_MODEL)"),  # noqa: UP045
    slots: Optional[int] = typer.Option(None, "--slots", "-P", min=1, help="model calls served at once"),  # noqa: UP045
    user: Optional[str] = typer.Option(None, "--user", "-u", help="act as this aios user"),  # noqa: UP045
    yes_for: Optional[list[str]] = typer.Option(  # noqa: UP045
        None, "--yes-for", metavar="RULE", help="allow tool calls matching RULE without asking, e.g. 'shell(ls*)'"
    ),
    local: bool = typer.Option(
        False, "--local", help="a private kernel for this aios only: neither attach to the home's kernel nor serve it"
    ),
    hand_over: bool = typer.Option(
        False, "--hand-over",
        help="when this aios hosts the kernel and its script ends with agents running, leave them running in a "
             "headless kernel instead of hanging them up",
    ),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="print the version"),
) -> None:
    if backend is not None:
        from kernel.api import backend_names

        if backend.lower() not in (known := backend_names()):
            raise typer.BadParameter(f"'{backend}' is not one of {', '.join(known)}", param_hint="--backend")

    def configure() -> KernelConfig:
        from kernel.api import KernelConfig

        config = KernelConfig()
        if backend:
            config.backend = backend.lower()
        if model:
            config.model = model
        if slots:
            config.slots = slots
        if base_url:
            config.base_url = base_url
        if user:
            config.user = user
        if yes_for:
            config.yes_for = tuple(yes_for)
        return config

    args = list(args or [])
    wanted = user or os.environ.get("AIOS_USER") or None  # who to act as when attaching (the kernel checks)
    mode = "script"
    if args[:1] == ["serve"] and command is None:
        from aios_shell import serve

        what = _serve_args(args[1:])
        if what == "stop":
            raise typer.Exit(asyncio.run(serve.stop(default_home(), wanted)))
        if what == "detach":
            passed = [*(["--backend", backend] if backend else []), *(["--model", model] if model else []),
                      *(["--slots", str(slots)] if slots else []), *(["--user", user] if user else []),
                      *(["--base-url", base_url] if base_url else []),
                      *(f"--yes-for={rule}" for rule in yes_for or ())]
            raise typer.Exit(serve.detach(default_home(), passed))
        mode, args = "serve", []
    elif command is None and not args and sys.stdin.isatty():
        mode = "repl"
    if not local and (mode == "repl" or (hand_over and mode == "script")):
        from aios_shell.serve import Launcher, kernel_answers

        if not kernel_answers(default_home()):  # we are about to host: make handing the kernel over possible
            Launcher.start()
    code = asyncio.run(_main(configure, command, args, local=local, wanted=wanted, mode=mode, hand_over=hand_over,
                             configured=bool(backend or model or slots or base_url or yes_for)))
    raise typer.Exit(code)


def _serve_args(argv: list[str]) -> str:
    """`aios serve [--http ADDR] [--detach | --stop]`: which of the three (`--http` sets AIOS_HTTP)."""
    argv = list(argv)
    for i, arg in enumerate(argv):
        if arg == "--http" or arg.startswith("--http="):
            address = arg.partition("=")[2] if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else "")
            del argv[i: i + (1 if "=" in arg else 2)]
            from kernel.api import parse_address

            try:
                parse_address(address)
            except ValueError as exc:
                print(f"aios: serve: --http {exc}", file=sys.stderr)
                raise typer.Exit(2) from None
            os.environ["AIOS_HTTP"] = address
            break
    if argv in ([], ["--foreground"]):
        return "foreground"
    if argv == ["--detach"]:
        return "detach"
    if argv == ["--stop"]:
        return "stop"
    if argv[:1] in (["-h"], ["--help"]):
        print("usage: aios serve [--http 127.0.0.1:PORT] [--detach | --stop]\n\n"
              "Serve the kernel for AIOS_HOME headless: in the foreground (for systemd or tmux), --detach in a\n"
              "session of its own (its log: AIOS_HOME/serve.log), or --stop the one that runs. --http also serves\n"
              "the Ollama and OpenAI APIs there (AIOS_HTTP); `token` gives a client its token.")
        raise typer.Exit(0)
    print(f"aios: serve: unknown arguments: {' '.join(argv)} (usage: aios serve [--http ADDR] [--detach | --stop])",
          file=sys.stderr)
    raise typer.Exit(2)


async def _main(configure: Callable[[], KernelConfig], command: str | None, args: list[str], local: bool = True,
                wanted: str | None = None, mode: str = "script", hand_over: bool = False,
                configured: bool = False) -> int:
    err = make_console(stderr=True)

    def say(text: str) -> None:
        err.print(f"aios: {text}", markup=False, highlight=False, soft_wrap=True)

    lock = None
    if not local:
        from aios_shell import attach

        home = default_home()
        try:
            conn = None
            for _ in range(3):  # attach; or host; or, while another aios boots the kernel, wait and attach
                conn = await attach.connect(home, wanted)
                if conn is not None:
                    break
                home.mkdir(parents=True, exist_ok=True, mode=0o700)
                lock = HostLock(home)
                if lock.acquire():
                    break
                lock, conn = None, await attach.wait_for_kernel(home, wanted)
                if conn is not None:
                    break
            if conn is None and lock is None:
                say(f"{home}: another aios holds its kernel but does not answer")
                return 1
        except attach.RemoteError as exc:  # another protocol version, a user we may not act as
            say(str(exc))
            return 1
        except (OSError, attach.WireError) as exc:
            say(f"{home}: cannot reach or host its kernel: {exc}")
            return 1
        if conn is not None:
            if mode == "serve":
                say(f"a kernel already serves {home} (pid {conn.hello.get('kernel_pid')})")
                await conn.close()
                return 1
            if configured:
                say(f"attached to the kernel for {home} (pid {conn.hello.get('kernel_pid')}); --backend, --model, "
                    "--slots and --yes-for are its own (`--local` for a kernel of your own)")
            return await _attached(conn, home, command, args, say)
    from kernel.api import BackendError, InvalidArgument, SettingError, StorageError, boot

    try:
        kernel = await boot(configure())
    except SettingError as exc:  # a bad value in the environment: the usage error it is
        say(str(exc))
        return 2
    except (BackendError, StorageError, InvalidArgument) as exc:
        say(str(exc))
        return 1
    from aios_shell import host

    try:
        if not host.may_host_as(kernel):  # who you are is the OS's word: another name only for root and admins
            say(f"{host.login_name(os.getuid())} may not act as {kernel.user}: only root and admins may")
            return 1
        if lock is None:
            return await host.front_end(kernel, None, mode, command, args, say, _is_script)
        server = await host.serve(kernel)
        try:
            return await host.front_end(kernel, server, mode, command, args, say, _is_script,
                                        hand_over=hand_over)
        finally:
            try:
                await host.wait_for_clients(server, say)
            finally:
                await server.close()
    finally:
        await kernel.shutdown()
        if lock is not None:
            lock.release()


async def _attached(conn: Connection, home: Path, command: str | None, args: list[str],
                    say: Callable[[str], None]) -> int:
    from aios_shell import attach

    script_text = None
    theme = attach.top_theme(args) if command is None else None
    if theme is not None and sys.stdin.isatty() and sys.stdout.isatty():  # `aios top`: the monitor here
        from aios_shell.tui.remote import attached_top

        code = await attached_top(conn, home, theme or None)
        if conn.closed.is_set() and code:
            say(f"the aios kernel for {home} has gone")
        return code
    if command is None and not args:
        if sys.stdin.isatty():
            from aios_shell.repl_attached import AttachedRepl

            return await AttachedRepl(conn, home).run()
        command = sys.stdin.read()
    elif command is None and _is_script(args[0], conn.hello.get("commands")):
        try:
            script_text = Path(args[0]).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            say(f"{args[0]}: {exc}")
            await conn.close()
            return 1
    return await attach.run_attached(conn, home, command, args, script_text)


def _is_script(arg: str, commands: list[str] | None = None) -> bool:
    """`aios FILE` runs a script, `aios NAME` a command (the kernel's list of them when attached)."""
    if commands is None:
        from commands.registry import lookup

        known = lookup(arg) is not None
    else:
        known = arg in commands
    return not known and (os.path.sep in arg or Path(arg).is_file())


def main() -> None:
    """Console entry point."""
    try:
        app(prog_name="aios")
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
