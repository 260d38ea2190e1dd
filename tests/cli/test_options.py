"""Every option says what it does, and a command refuses an option it would ignore."""

from __future__ import annotations

import click
import pytest

from bsr_team_cache.cli import COMMANDS, cli, main


def test_every_command_and_option_has_help() -> None:
    missing = []
    for name in sorted(COMMANDS):
        command = cli.get_command(click.Context(cli), name)
        assert command is not None and command.help, name
        missing += [
            f"{name} {param.opts[0]}"
            for param in command.params
            if isinstance(param, click.Option) and not param.help
        ]
    assert missing == []


@pytest.mark.parametrize(
    ("argv", "refused"),
    [
        (["clear", "--registry", "oci-layout:/nowhere"], "--registry"),
        (["check", "--team", "platform-team"], "--team"),
        (["digest", "--store-dir", "/nowhere", "."], "--store-dir"),
        (["resolve", "--registry", "oci-layout:/x", "buf.build/acme/pets"], "--registry"),
        (["monitor", "--team", "t", "--update-lock"], "--update-lock"),
        (["setup", "--team", "t", "--export", "/nowhere"], "--export"),
        (["demo", "--team", "t"], "--team"),
    ],
)
def test_an_option_a_command_does_not_use_is_refused(
    argv: list[str], refused: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert f"No such option '{refused}'" in capsys.readouterr().err
