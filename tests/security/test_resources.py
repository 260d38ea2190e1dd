"""Bounded resources against a lying registry or BSR: peak memory of the fetch process stays
under 200 MB against a 4 GiB gzip bomb, an endless blob, a 100 MB manifest and an endless
Download body; a server that sends one byte every 5 s is abandoned within the deadline."""

from __future__ import annotations

import json
import sys
import tarfile
import time
import zlib
from pathlib import Path

import pytest

from bsr_team_cache.oci import open_registry
from bsr_team_cache.oci.artifact import encode_module, module_repository
from bsr_team_cache.oci.base import OCI_MANIFEST, sha256_digest
from bsr_team_cache.oci.compression import GZIP_LAYER_MEDIA_TYPE, ZSTD_LAYER_MEDIA_TYPE, zstd_module
from bsr_team_cache.oci.devregistry import DistributionServer
from tests.security.conftest import (
    TEAM,
    Legit,
    _base_env,
    fetch,
    fetch_args,
    hits,
    one_line_error,
    publish,
)
from tests.security.hostile import HostileRegistry, Machine, peak_rss_mb

pytestmark = pytest.mark.slow

RSS_LIMIT_MB = 200
GiB = 1 << 30


def _fetch_rss(machine: Machine, registry: str, ca: Path, *extra: str):
    argv = [sys.executable, "-m", "bsr_team_cache", *fetch_args(machine, registry, *extra)]
    env = {**_base_env(), **machine.env(SSL_CERT_FILE=str(ca))}
    before = machine.snapshot_outside()
    measured = peak_rss_mb(argv, env)
    assert machine.snapshot_outside() == before, "written outside its roots"
    return measured


BOMB_CODECS = {
    GZIP_LAYER_MEDIA_TYPE: lambda: zlib.compressobj(9, zlib.DEFLATED, 31),
    ZSTD_LAYER_MEDIA_TYPE: lambda: zstd_module().ZstdCompressor(level=3),
}


@pytest.fixture(scope="module", params=sorted(BOMB_CODECS), ids=["gzip", "zstd"])
def bomb(request: pytest.FixtureRequest) -> tuple[str, bytes]:
    """A files layer that expands to 4 GiB: 64 tar members of 64 MiB of zeros each (every
    member within the module limit on its own), compressed to ~4 MiB (gzip) or ~130 KB (zstd);
    with its media type."""
    compressor = BOMB_CODECS[request.param]()
    zeros = bytes(1 << 20)
    parts = []
    for i in range(64):
        info = tarfile.TarInfo(f"bomb/v1/part{i}.proto")
        info.size = 64 << 20
        parts.append(compressor.compress(info.tobuf(tarfile.PAX_FORMAT)))
        for _ in range(64):
            parts.append(compressor.compress(zeros))
    parts.append(compressor.compress(bytes(1024)))
    parts.append(compressor.flush())
    layer = b"".join(parts)
    assert len(layer) < 5 << 20
    return request.param, layer


def test_a_bomb_layer_is_refused_early(
    machine: Machine, legit: Legit, distribution_url: str, bomb: tuple[str, bytes]
) -> None:
    media_type, layer = bomb
    publish(distribution_url, legit.artifacts)
    pets = legit.artifact("acme/pets")
    encoded = encode_module(pets)
    manifest = json.loads(encoded.manifest)
    manifest["layers"][0].update(mediaType=media_type, digest=sha256_digest(layer), size=len(layer))
    registry = open_registry(distribution_url)
    repo = module_repository(TEAM, pets.module)
    registry.push_blob(repo, layer, sha256_digest(layer))
    registry.push_manifest(repo, pets.commit, json.dumps(manifest).encode(), OCI_MANIFEST)

    rss, _seconds, out, err, code = _fetch_rss(machine, distribution_url, legit.ca)

    assert code == 0, err
    assert json.loads(out)["hits"] == {"local": 0, "team": 5, "bsr": 1}
    assert "a decompression bomb" in err
    assert rss < RSS_LIMIT_MB, f"peak RSS {rss} MB"


@pytest.mark.parametrize("mode", ["endless-blob", "huge-manifest"])
def test_an_endless_blob_or_a_huge_manifest_is_cut_off(
    machine: Machine,
    legit: Legit,
    distribution: DistributionServer,
    distribution_url: str,
    mode: str,
) -> None:
    publish(distribution_url, legit.artifacts)
    namespace = distribution_url.rsplit("/", 1)[1]
    front = HostileRegistry(distribution.url, mode).start()
    try:
        rss, _seconds, out, err, code = _fetch_rss(
            machine, f"{front.url}/{namespace}", legit.ca, "--no-bundles"
        )
    finally:
        front.stop()

    assert code == 0, err
    assert json.loads(out)["hits"] == {"local": 0, "team": 0, "bsr": 6}
    expected = "is larger than" if mode == "endless-blob" else "over the 4194304 limit"
    if mode == "huge-manifest":
        expected = "exceeds the 4194304 byte limit"
    assert err.count(expected) == 6, err
    assert rss < RSS_LIMIT_MB, f"peak RSS {rss} MB"


def test_an_endless_download_body_is_cut_off(
    machine: Machine, hostile_bsr, layout_url: str
) -> None:
    _host, ca, _ = hostile_bsr("endless-download", "acme/pets")

    rss, _seconds, _out, err, code = _fetch_rss(machine, layout_url, ca)

    assert code == 1
    assert "exceeds the 536870912 byte limit" in err
    assert "Traceback" not in err
    assert rss < RSS_LIMIT_MB, f"peak RSS {rss} MB"


def test_a_gzip_bomb_from_the_bsr_is_refused_as_it_inflates(
    machine: Machine, hostile_bsr, layout_url: str
) -> None:
    """0.5 MB of gzip that inflates to 510 MiB, just under the response cap: refused by its
    ratio long before the cap, in bounded memory."""
    _host, ca, _ = hostile_bsr("gzip-bomb-download", "acme/pets")

    rss, _seconds, _out, err, code = _fetch_rss(machine, layout_url, ca)

    assert code == 1
    assert "times its compressed size (a decompression bomb)" in err
    assert "Traceback" not in err
    assert rss < RSS_LIMIT_MB, f"peak RSS {rss} MB"


def test_a_trickling_registry_is_abandoned_and_the_bsr_serves(
    machine: Machine, legit: Legit, distribution: DistributionServer, distribution_url: str
) -> None:
    publish(distribution_url, legit.artifacts)
    namespace = distribution_url.rsplit("/", 1)[1]
    front = HostileRegistry(distribution.url, "trickle", interval=5.0).start()
    try:
        started = time.monotonic()
        result = fetch(machine, f"{front.url}/{namespace}", legit.ca)
        seconds = time.monotonic() - started
    finally:
        front.stop()

    assert hits(result) == {"local": 0, "team": 0, "bsr": 6}
    assert "less than 1024 bytes in 30 s: abandoned" in result.stderr
    assert seconds < 45, seconds  # the 30 s minimum-rate window, once, not per retry


@pytest.mark.parametrize("timeout", [None, 8])
def test_a_trickling_bsr_is_abandoned_within_the_deadline(
    machine: Machine, hostile_bsr, layout_url: str, timeout: int | None
) -> None:
    _host, ca, app = hostile_bsr("trickle", "acme/pets")
    extra = ("--timeout", str(timeout)) if timeout else ()
    started = time.monotonic()
    result = fetch(machine, layout_url, ca, *extra)
    seconds = time.monotonic() - started

    assert result.returncode == 1
    error = one_line_error(result)
    if timeout:
        assert f"the fetch did not finish within {timeout} s (--timeout)" in error
        assert seconds < timeout + 10, seconds
    else:
        assert "less than 1024 bytes in 30 s: abandoned" in error
        assert seconds < 45, seconds
    assert len(app.calls) == 1  # abandoned, not retried
