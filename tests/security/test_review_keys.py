"""Private key handling: a key file readable by others is refused, and a key given where a
file path is expected never appears in the error."""

from __future__ import annotations

from pathlib import Path

import pytest

from bsr_team_cache.errors import ConfigError
from bsr_team_cache.oci.encryption import (
    ENV_PRIVATE_KEY,
    ENV_PRIVATE_KEY_FILE,
    generate_private_key,
    private_key_pem,
    private_keys_from_env,
)
from bsr_team_cache.trust.keys import SIGNING_KEY_ENV, SIGNING_KEY_FILE_ENV, load_signing_key
from tests.trust.conftest import ALICE, pem


def test_an_encryption_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "encryption.pem"
    key_file.write_bytes(private_key_pem(generate_private_key("ec")))
    key_file.chmod(0o644)
    with pytest.raises(ConfigError) as refused:
        private_keys_from_env({ENV_PRIVATE_KEY_FILE: str(key_file)})
    assert str(refused.value) == (
        f"{key_file}: the private key is readable by others (mode 0644); it must be private:"
        f" chmod 600 {key_file} (a mounted secret: mode 0400)"
    )
    key_file.chmod(0o600)
    assert len(private_keys_from_env({ENV_PRIVATE_KEY_FILE: str(key_file)})) == 1


def test_an_encryption_key_given_as_the_file_path_is_not_shown() -> None:
    text = private_key_pem(generate_private_key("ec")).decode()
    with pytest.raises(ConfigError) as refused:
        private_keys_from_env({ENV_PRIVATE_KEY_FILE: text})
    assert str(refused.value) == (
        f"{ENV_PRIVATE_KEY_FILE}: holds a key, not a file path: put the PEM text in"
        f" {ENV_PRIVATE_KEY} or the key in a file (mode 600) and its path here"
    )


def test_a_signing_key_given_as_the_file_path_is_not_shown() -> None:
    with pytest.raises(ConfigError) as refused:
        load_signing_key({SIGNING_KEY_FILE_ENV: pem(ALICE)})
    assert str(refused.value) == (
        f"{SIGNING_KEY_FILE_ENV}: holds a key, not a file path: put the PEM text in"
        f" {SIGNING_KEY_ENV} or the key in a file (mode 600) and its path here"
    )
