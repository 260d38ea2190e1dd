"""``bsr-team-cache digest MODULE_DIR``: print a module's b5 (or b4) digest as buf computes it."""

from __future__ import annotations

from pathlib import Path

import click

from bsr_team_cache.domain.digest import B5, SHAKE256, b4_digest, b5_digest, parse_digest
from bsr_team_cache.errors import UsageError


@click.command("digest")
@click.argument("module_dir", type=click.Path(path_type=Path))
@click.option(
    "--dep",
    "deps",
    multiple=True,
    metavar="b5:HEX",
    help="b5 digest of a dependency (all transitive deps that the module imports).",
)
@click.option(
    "--type",
    "digest_type",
    type=click.Choice([B5, "b4"]),
    default=B5,
    show_default=True,
    help="b5 (buf.lock v2) or the legacy b4 (shake256:).",
)
def command(module_dir: Path, deps: tuple[str, ...], digest_type: str) -> None:
    """Print the digest of the module rooted at MODULE_DIR."""
    if not module_dir.is_dir():
        raise UsageError(f"{module_dir}: not a directory (expected a module's root directory)")
    if digest_type == B5:
        parsed = [parse_digest(d, expected_type=B5) for d in deps]
        click.echo(str(b5_digest(module_dir, parsed)))
        return
    if deps:
        raise UsageError("--dep applies to b5 only: b4 digests do not fold in dependencies")
    yaml_path, lock_path = module_dir / "buf.yaml", module_dir / "buf.lock"
    digest = b4_digest(
        module_dir,
        v1_buf_yaml=yaml_path.read_bytes() if yaml_path.is_file() else None,
        v1_buf_lock=lock_path.read_bytes() if lock_path.is_file() else None,
    )
    assert digest.type == SHAKE256
    click.echo(str(digest))
