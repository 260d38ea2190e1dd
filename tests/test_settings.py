"""Where the registry, team and store come from: options, environment, config file, defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from bsr_team_cache.errors import ConfigError
from bsr_team_cache.settings import load_settings


def test_defaults_to_the_embedded_registry(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "USER": "alice"}
    settings = load_settings(env=env)
    assert settings.registry == f"oci-layout:{tmp_path}/.local/share/bsr-team-cache/registry"
    assert settings.source == "the embedded default"
    assert settings.team is None and settings.insecure is False


def test_precedence_option_env_file(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        'registry = "https://file.example.com/ns"\nteam = "file-team"\nmember = "carol"\n'
        "insecure = true\nstore_max_mb = 300\n"
    )
    env = {"HOME": str(tmp_path), "BSR_TEAM_CACHE_CONFIG": str(config)}
    from_file = load_settings(env=env)
    assert (from_file.registry, from_file.team, from_file.member) == (
        "https://file.example.com/ns",
        "file-team",
        "carol",
    )
    assert from_file.insecure and from_file.store_max_mb == 300
    env["BSR_TEAM_CACHE_REGISTRY"] = "oci-layout:/env"
    env["BSR_TEAM_CACHE_TEAM"] = "env-team"
    assert load_settings(env=env).registry == "oci-layout:/env"
    assert load_settings(env=env).team == "env-team"
    chosen = load_settings(registry="https://opt.example.com", team="opt-team", env=env)
    assert (chosen.registry, chosen.team, chosen.source) == (
        "https://opt.example.com",
        "opt-team",
        "option",
    )


def test_bad_config_files_say_where(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    env = {"HOME": str(tmp_path), "BSR_TEAM_CACHE_CONFIG": str(config)}
    config.write_text("registry = \n")
    with pytest.raises(ConfigError, match=r"config\.toml: not valid TOML"):
        load_settings(env=env)
    config.write_text('store_max_mb = "big"\n')
    with pytest.raises(ConfigError, match="store_max_mb: expected an integer"):
        load_settings(env=env)
    config.write_text("colour = 1\n")
    with pytest.raises(ConfigError, match="colour: unknown setting"):
        load_settings(env=env)


def test_layer_compression_from_the_environment_or_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    env = {"HOME": str(tmp_path), "BSR_TEAM_CACHE_CONFIG": str(config)}
    assert load_settings(env=env).layer_compression is None  # zstd
    config.write_text('layer_compression = "gzip"\n')
    assert load_settings(env=env).layer_compression == "gzip"
    env["BSR_TEAM_CACHE_LAYER_COMPRESSION"] = "ZSTD"
    assert load_settings(env=env).layer_compression == "zstd"
    env["BSR_TEAM_CACHE_LAYER_COMPRESSION"] = "lz4"
    with pytest.raises(ConfigError) as bad:
        load_settings(env=env)
    assert str(bad.value) == "BSR_TEAM_CACHE_LAYER_COMPRESSION: 'lz4' is not one of: zstd, gzip"
    del env["BSR_TEAM_CACHE_LAYER_COMPRESSION"]
    config.write_text('layer_compression = "brotli"\n')
    with pytest.raises(ConfigError) as bad:
        load_settings(env=env)
    assert str(bad.value).startswith(f"{config}: ") and "layer_compression" in str(bad.value)
    assert 'expected "zstd" or "gzip"' in str(bad.value)
