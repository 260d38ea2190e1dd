"""``bsr-team-cache check [PROJECT_DIR]``: validate buf.yaml and buf.lock, list what they pin."""

from __future__ import annotations

import json
from pathlib import Path

import click

from bsr_team_cache.domain.buflock import BUF_LOCK, read_buf_lock
from bsr_team_cache.domain.bufyaml import BUF_YAML, read_buf_yaml
from bsr_team_cache.errors import UsageError


@click.command("check")
@click.argument("project_dir", type=click.Path(path_type=Path), default=".")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def command(project_dir: Path, as_json: bool) -> None:
    """Check a project's buf.yaml and buf.lock for errors."""
    if not (project_dir / BUF_YAML).is_file():
        raise UsageError(
            f"{project_dir / BUF_YAML}: file not found (is {project_dir} a buf project?)"
        )
    config = read_buf_yaml(project_dir / BUF_YAML)
    lock = read_buf_lock(project_dir / BUF_LOCK) if (project_dir / BUF_LOCK).is_file() else None
    if as_json:
        click.echo(
            json.dumps(
                {
                    "buf_yaml": {"version": config.version, "deps": [str(d) for d in config.deps]},
                    "buf_lock": None
                    if lock is None
                    else {
                        "version": lock.version,
                        "deps": [
                            {
                                "name": str(d.module),
                                "commit": d.commit,
                                "digest": str(d.digest) if d.digest else None,
                            }
                            for d in lock.deps
                        ],
                    },
                },
                indent=2,
            )
        )
        return
    click.echo(f"{config.path}: {config.version}, {len(config.deps)} deps")
    for dep in config.deps:
        click.echo(f"  {dep}")
    if lock is None:
        click.echo(f"{project_dir / BUF_LOCK}: absent (run buf dep update)")
        return
    click.echo(f"{project_dir / BUF_LOCK}: {lock.version}, {len(lock.deps)} pinned")
    for locked in lock.deps:
        click.echo(f"  {locked.module}:{locked.commit}  {locked.digest or '(no digest)'}")
