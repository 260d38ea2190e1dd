"""Encrypted layers (ocicrypt's JWE scheme): round trips, refusals of altered or hostile
annotations, rewrapping, and interoperability with skopeo against a real Distribution."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from bsr_team_cache.domain.digest import b5_from_contents
from bsr_team_cache.domain.moduleref import parse_module_name
from bsr_team_cache.errors import (
    ConfigError,
    ContentTooLargeError,
    DigestMismatchError,
    InvalidContentError,
)
from bsr_team_cache.oci.artifact import (
    ENCRYPTED_LAYER_MEDIA_TYPE,
    LAYER_MEDIA_TYPE,
    ModuleArtifact,
    module_repository,
    pull_module,
    push_module,
    read_layer_descriptor,
    rewrap_module,
)
from bsr_team_cache.oci.base import OCI_MANIFEST, sha256_digest
from bsr_team_cache.oci.compression import GZIP_LAYER_MEDIA_TYPE, zstd_module
from bsr_team_cache.oci.encryption import (
    ANN_KEYS_JWE,
    ANN_PUBOPTS,
    CIPHER,
    ENV_PRIVATE_KEY,
    ENV_PRIVATE_KEY_FILE,
    MAX_RECIPIENTS,
    _keys_annotation,
    _PrivateOptions,
    decrypt_layer,
    encrypt_layer,
    generate_private_key,
    key_fingerprint,
    load_private_key,
    load_public_key,
    private_key_pem,
    private_keys_from_env,
    public_key_pem,
    recipient_count,
    rewrap,
)
from bsr_team_cache.oci.http import HTTPRegistry
from bsr_team_cache.oci.layer import files_layer
from bsr_team_cache.oci.layout import OCILayoutRegistry
from bsr_team_cache.team.bundles import (
    bundle_repository,
    layer_sources,
    new_bundle,
    pull_members,
    push_bundle,
    read_bundle,
    rewrap_members,
    stored_layers,
)

LAYER = files_layer({"acme/pets/v1/pets.proto": b'syntax = "proto3";\n' * 50, "LICENSE": b"MIT\n"})
# The same tar as gzip: the standard OCI layer type's compression, and our layers' before zstd.
GZIP_LAYER = gzip.compress(zstd_module().decompress(LAYER), mtime=0)
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
BUF_LAYER = LAYER_MEDIA_TYPE
WHERE = "registry/repo:tag"


@pytest.fixture(scope="module")
def keys() -> dict[str, object]:
    return {
        "rsa": generate_private_key("rsa", 2048),
        "rsa2": generate_private_key("rsa", 2048),
        "p256": generate_private_key("ec"),
        "p384": ec.generate_private_key(ec.SECP384R1()),
        "p521": ec.generate_private_key(ec.SECP521R1()),
    }


def _decoded_json(annotation: str) -> dict:
    return json.loads(base64.b64decode(annotation))


def _with_json(annotations: dict[str, str], name: str, change) -> dict[str, str]:
    """The annotations with ``name``'s base64 JSON changed by ``change(value)``."""
    value = _decoded_json(annotations[name])
    change(value)
    return {**annotations, name: base64.b64encode(json.dumps(value).encode()).decode()}


@pytest.mark.parametrize("kind", ["rsa", "p256", "p384", "p521"])
def test_round_trip_for_each_key_type(keys, kind):
    layer = encrypt_layer(LAYER, BUF_LAYER, [public_key_pem(keys[kind])])
    assert layer.media_type == "application/vnd.buf.module.files.v1.tar+zstd+encrypted"
    assert len(layer.data) == len(LAYER)  # CTR: no padding
    assert layer.data != LAYER
    assert sorted(layer.annotations) == [ANN_KEYS_JWE, ANN_PUBOPTS]
    assert decrypt_layer(layer.data, layer.media_type, layer.annotations, [keys[kind]], WHERE) == (
        LAYER
    )


def test_annotations_have_ocicrypts_shape(keys):
    layer = encrypt_layer(LAYER, OCI_LAYER, [keys["rsa"].public_key(), keys["p256"].public_key()])
    pubopts = _decoded_json(layer.annotations[ANN_PUBOPTS])
    assert list(pubopts) == ["cipher", "hmac", "cipheroptions"]
    assert pubopts["cipher"] == CIPHER == "AES_256_CTR_HMAC_SHA256"
    assert pubopts["cipheroptions"] == {}
    assert len(base64.b64decode(pubopts["hmac"])) == 32
    jwe = _decoded_json(layer.annotations[ANN_KEYS_JWE])
    assert sorted(jwe) == ["ciphertext", "iv", "protected", "recipients", "tag"]
    assert base64.urlsafe_b64decode(jwe["protected"] + "==") == b'{"enc":"A256GCM"}'
    headers = [r["header"] for r in jwe["recipients"]]
    assert headers[0] == {"alg": "RSA-OAEP"}
    assert headers[1]["alg"] == "ECDH-ES+A256KW"
    assert sorted(headers[1]["epk"]) == ["crv", "kty", "x", "y"]
    assert headers[1]["epk"]["crv"] == "P-256"
    assert layer.media_type == "application/vnd.oci.image.layer.v1.tar+gzip+encrypted"


def test_every_recipient_decrypts(keys):
    names = ["rsa", "rsa2", "p256", "p384"]
    layer = encrypt_layer(LAYER, BUF_LAYER, [keys[n].public_key() for n in names])
    assert recipient_count(layer.annotations) == 4
    for name in names:
        plain = decrypt_layer(layer.data, layer.media_type, layer.annotations, [keys[name]], WHERE)
        assert plain == LAYER
    # one of several private keys is enough
    both = [keys["p521"], keys["rsa2"]]
    assert decrypt_layer(layer.data, layer.media_type, layer.annotations, both, WHERE) == LAYER


def test_the_same_recipient_twice_is_wrapped_once(keys):
    pem = public_key_pem(keys["p256"])
    layer = encrypt_layer(LAYER, BUF_LAYER, [pem, keys["p256"].public_key(), pem])
    assert recipient_count(layer.annotations) == 1
    with pytest.raises(ConfigError) as error:
        encrypt_layer(LAYER, BUF_LAYER, [])
    assert str(error.value) == (
        "encryption_keys: no public key to encrypt for: add the members' encryption keys to the"
        " team config"
    )


def test_a_non_recipient_is_told_to_ask_for_access(keys):
    layer = encrypt_layer(LAYER, BUF_LAYER, [keys["rsa"].public_key()])
    fingerprint = key_fingerprint(keys["p256"])[:19]
    for outsider in (keys["p256"], keys["rsa2"]):
        with pytest.raises(InvalidContentError) as error:
            decrypt_layer(layer.data, layer.media_type, layer.annotations, [outsider], WHERE)
        assert "not encrypted for your key" in str(error.value)
        assert "ask a team admin to add your public key" in str(error.value)
    with pytest.raises(InvalidContentError) as error:
        decrypt_layer(layer.data, layer.media_type, layer.annotations, [keys["p256"]], WHERE)
    assert str(error.value) == (
        f"{WHERE}: not encrypted for your key ({fingerprint}): ask a team admin to add your"
        " public key to the team and rewrap"
    )


def test_without_a_private_key_the_message_names_the_setting(keys):
    layer = encrypt_layer(LAYER, BUF_LAYER, [keys["rsa"].public_key()])
    with pytest.raises(InvalidContentError, match=ENV_PRIVATE_KEY_FILE):
        decrypt_layer(layer.data, layer.media_type, layer.annotations, [], WHERE)


def test_altered_layer_bytes_fail_the_hmac(keys):
    layer = encrypt_layer(LAYER, BUF_LAYER, [keys["p256"].public_key()])
    altered = bytearray(layer.data)
    altered[100] ^= 1
    with pytest.raises(InvalidContentError) as error:
        decrypt_layer(bytes(altered), layer.media_type, layer.annotations, [keys["p256"]], WHERE)
    assert str(error.value) == (
        f"{WHERE}: the encrypted layer does not match its HMAC (altered layer or pubopts)"
    )
    truncated = layer.data[:-1]
    with pytest.raises(InvalidContentError, match="does not match its HMAC"):
        decrypt_layer(truncated, layer.media_type, layer.annotations, [keys["p256"]], WHERE)


def test_altered_public_options_are_refused(keys):
    layer = encrypt_layer(LAYER, BUF_LAYER, [keys["p256"].public_key()])
    other_mac = base64.b64encode(bytes(32)).decode()
    cases = {
        "does not match its HMAC": lambda v: v.update(hmac=other_mac),
        "unsupported layer cipher 'AES_128_CTR_HMAC_SHA256'": lambda v: v.update(
            cipher="AES_128_CTR_HMAC_SHA256"
        ),
        "unexpected public cipher options": lambda v: v.update(
            cipheroptions={"nonce": base64.b64encode(bytes(16)).decode()}
        ),
        "the layer HMAC is not 32 bytes": lambda v: v.update(hmac=other_mac[:24]),
    }
    for message, change in cases.items():
        annotations = _with_json(layer.annotations, ANN_PUBOPTS, change)
        with pytest.raises(InvalidContentError, match=message):
            decrypt_layer(layer.data, layer.media_type, annotations, [keys["p256"]], WHERE)
    missing = {ANN_KEYS_JWE: layer.annotations[ANN_KEYS_JWE]}
    with pytest.raises(InvalidContentError, match=f"encrypted layer without {ANN_PUBOPTS}"):
        decrypt_layer(layer.data, layer.media_type, missing, [keys["p256"]], WHERE)


def test_altered_wrapped_keys_are_refused(keys):
    layer = encrypt_layer(LAYER, BUF_LAYER, [keys["rsa"].public_key()])

    def flip_first(field: str):
        def change(jwe: dict) -> None:
            raw = bytearray(base64.urlsafe_b64decode(jwe[field] + "=="))
            raw[0] ^= 1
            jwe[field] = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()

        return change

    for field in ("ciphertext", "tag", "iv"):
        annotations = _with_json(layer.annotations, ANN_KEYS_JWE, flip_first(field))
        with pytest.raises(InvalidContentError) as error:
            decrypt_layer(layer.data, layer.media_type, annotations, [keys["rsa"]], WHERE)
        assert str(error.value) == (
            f"{WHERE}: the layer's wrapped keys ({ANN_KEYS_JWE}) were altered: the JWE does not"
            " authenticate"
        )
    # an altered protected header changes the AES-GCM associated data
    annotations = _with_json(
        layer.annotations,
        ANN_KEYS_JWE,
        lambda j: j.update(protected=base64.urlsafe_b64encode(b'{"enc": "A256GCM"}').decode()),
    )
    with pytest.raises(InvalidContentError, match="were altered"):
        decrypt_layer(layer.data, layer.media_type, annotations, [keys["rsa"]], WHERE)
    # an altered wrapped key is no longer ours
    annotations = _with_json(layer.annotations, ANN_KEYS_JWE, lambda j: None)
    jwe = _decoded_json(annotations[ANN_KEYS_JWE])
    flip_first("encrypted_key")(jwe["recipients"][0])
    annotations[ANN_KEYS_JWE] = base64.b64encode(json.dumps(jwe).encode()).decode()
    with pytest.raises(InvalidContentError, match="not encrypted for your key"):
        decrypt_layer(layer.data, layer.media_type, annotations, [keys["rsa"]], WHERE)


def test_wrapped_options_must_name_the_plain_digest(keys):
    """A member who can wrap keys cannot make another layer's bytes pass: the plain digest in
    the wrapped options is checked after decryption."""
    layer = encrypt_layer(LAYER, BUF_LAYER, [keys["p256"].public_key()])
    real = _unwrapped(layer.annotations, keys["p256"])
    forged = _PrivateOptions(real.symkey, real.nonce, sha256_digest(b"another layer"))
    annotations = {
        **layer.annotations,
        ANN_KEYS_JWE: _keys_annotation(forged, [keys["p256"].public_key()]),
    }
    with pytest.raises(InvalidContentError) as error:
        decrypt_layer(layer.data, layer.media_type, annotations, [keys["p256"]], WHERE)
    assert str(error.value) == (
        f"{WHERE}: the decrypted layer does not hash to {sha256_digest(b'another layer')} as"
        " its wrapped options say"
    )


def _unwrapped(annotations: dict[str, str], key) -> _PrivateOptions:
    from bsr_team_cache.oci.encryption import _unwrap_options

    return _unwrap_options(annotations, [key], WHERE)


def test_wrong_media_types_and_sizes_are_refused(keys):
    layer = encrypt_layer(LAYER, BUF_LAYER, [keys["p256"].public_key()])
    own = [keys["p256"]]
    with pytest.raises(InvalidContentError, match="is not an encrypted media type"):
        decrypt_layer(layer.data, BUF_LAYER, layer.annotations, own, WHERE)
    with pytest.raises(InvalidContentError, match="unexpected encrypted media type"):
        decrypt_layer(
            layer.data,
            layer.media_type,
            layer.annotations,
            own,
            WHERE,
            plain_media_types=[OCI_LAYER],
        )
    with pytest.raises(ContentTooLargeError, match=f"of {len(LAYER)} bytes exceeds 100"):
        decrypt_layer(layer.data, layer.media_type, layer.annotations, own, WHERE, 100)


def test_hostile_annotations_are_bounded(keys):
    layer = encrypt_layer(LAYER, BUF_LAYER, [keys["p256"].public_key()])
    own = [keys["p256"]]
    huge = {**layer.annotations, "org.example.padding": "x" * (1 << 20)}
    with pytest.raises(ContentTooLargeError, match="encryption annotations exceed 1048576 bytes"):
        decrypt_layer(layer.data, layer.media_type, huge, own, WHERE)
    crowd = _with_json(
        layer.annotations,
        ANN_KEYS_JWE,
        lambda j: j.update(recipients=j["recipients"] * (MAX_RECIPIENTS + 1)),
    )
    with pytest.raises(ContentTooLargeError, match="JWE has more than 1000 recipients"):
        decrypt_layer(layer.data, layer.media_type, crowd, own, WHERE)
    bad = {
        "not base64": {**layer.annotations, ANN_KEYS_JWE: "%%%"},
        "JWE is not JSON": {**layer.annotations, ANN_KEYS_JWE: base64.b64encode(b"[").decode()},
        "unsupported JWE content encryption": _with_json(
            layer.annotations,
            ANN_KEYS_JWE,
            lambda j: j.update(
                protected=base64.urlsafe_b64encode(b'{"enc":"A256CBC-HS512"}').decode()
            ),
        ),
        "compression or critical extensions": _with_json(
            layer.annotations,
            ANN_KEYS_JWE,
            lambda j: j["recipients"][0]["header"].update(zip="DEF"),
        ),
        "header parameters repeat": _with_json(
            layer.annotations,
            ANN_KEYS_JWE,
            lambda j: j["recipients"][0]["header"].update(enc="A256GCM"),
        ),
        f"encrypted layer without {ANN_KEYS_JWE}": {ANN_PUBOPTS: layer.annotations[ANN_PUBOPTS]},
    }
    for message, altered in bad.items():
        with pytest.raises(InvalidContentError, match=message):
            decrypt_layer(layer.data, layer.media_type, altered, own, WHERE)


def test_unknown_key_wrapping_algorithms_are_not_used(keys):
    layer = encrypt_layer(LAYER, BUF_LAYER, [keys["p256"].public_key()])
    annotations = _with_json(
        layer.annotations, ANN_KEYS_JWE, lambda j: j["recipients"][0]["header"].update(alg="dir")
    )
    with pytest.raises(InvalidContentError, match="not encrypted for your key"):
        decrypt_layer(layer.data, layer.media_type, annotations, [keys["p256"]], WHERE)


def test_rewrap_changes_recipients_not_the_layer(keys):
    layer = encrypt_layer(LAYER, BUF_LAYER, [keys["rsa"].public_key(), keys["p256"].public_key()])
    rewrapped = rewrap(
        layer.annotations, keys["rsa"], [keys["rsa"].public_key(), keys["p384"].public_key()]
    )
    assert rewrapped[ANN_PUBOPTS] == layer.annotations[ANN_PUBOPTS]
    assert rewrapped[ANN_KEYS_JWE] != layer.annotations[ANN_KEYS_JWE]
    assert recipient_count(rewrapped) == 2
    for member in ("rsa", "p384"):  # kept and added
        assert decrypt_layer(layer.data, layer.media_type, rewrapped, [keys[member]], WHERE) == (
            LAYER
        )
    with pytest.raises(InvalidContentError, match="not encrypted for your key"):  # removed
        decrypt_layer(layer.data, layer.media_type, rewrapped, [keys["p256"]], WHERE)
    with pytest.raises(InvalidContentError, match="not encrypted for your key"):
        rewrap(layer.annotations, [keys["p384"]], [keys["p384"].public_key()])


def test_comma_separated_jwes_are_read(keys):
    """ocicrypt appends a JWE, comma-separated, when recipients are added to an encrypted
    layer."""
    layer = encrypt_layer(LAYER, BUF_LAYER, [keys["rsa"].public_key()])
    added = rewrap(layer.annotations, keys["rsa"], [keys["p521"].public_key()])
    joined = {
        **layer.annotations,
        ANN_KEYS_JWE: layer.annotations[ANN_KEYS_JWE] + "," + added[ANN_KEYS_JWE],
    }
    assert recipient_count(joined) == 2
    for member in ("rsa", "p521"):
        assert decrypt_layer(layer.data, layer.media_type, joined, [keys[member]], WHERE) == LAYER


def test_key_loading(tmp_path, keys):
    key_file = tmp_path / "member.pem"
    key_file.write_bytes(private_key_pem(keys["p256"]))
    with pytest.raises(ConfigError, match=r"readable by others \(mode 0644\)"):
        load_private_key(key_file)  # every private key file is read as _fs.read_private_file
    key_file.chmod(0o600)
    loaded = load_private_key(key_file)
    assert key_fingerprint(loaded) == key_fingerprint(keys["p256"])
    assert key_fingerprint(load_public_key(public_key_pem(keys["rsa"]))) == key_fingerprint(
        keys["rsa"]
    )
    # PKCS#1 RSA and SEC1 EC keys (openssl's traditional formats) load too
    for name in ("rsa", "p384"):
        traditional = keys[name].private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        assert key_fingerprint(load_private_key(traditional)) == key_fingerprint(keys[name])

    protected = tmp_path / "protected.pem"
    protected.touch(mode=0o600)
    protected.write_bytes(
        keys["p256"].private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(ConfigError) as error:
        load_private_key(protected)
    assert str(error.value) == (
        f"{protected}: the private key is protected by a passphrase: export it without one"
    )
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ConfigError, match="RSA public key of 1024 bits"):
        load_public_key(weak.public_key())
    secp256k1 = ec.generate_private_key(ec.SECP256K1())
    with pytest.raises(ConfigError, match="EC private key on secp256k1"):
        load_private_key(private_key_pem(secp256k1))
    with pytest.raises(ConfigError, match="cannot read the private key"):
        load_private_key(tmp_path / "absent.pem")
    not_a_key = tmp_path / "notes.txt"
    not_a_key.touch(mode=0o600)
    not_a_key.write_text("-----BEGIN NOTHING-----\n")
    with pytest.raises(ConfigError) as error:
        load_private_key(not_a_key)
    assert str(error.value) == f"{not_a_key}: not a PEM or DER private key"


def test_private_keys_from_env_never_shows_the_key(tmp_path, keys):
    key_file = tmp_path / "k.pem"
    key_file.write_bytes(private_key_pem(keys["rsa"]))
    key_file.chmod(0o600)
    pem = private_key_pem(keys["p256"]).decode()
    found = private_keys_from_env({ENV_PRIVATE_KEY_FILE: str(key_file), ENV_PRIVATE_KEY: pem})
    assert [key_fingerprint(k) for k in found] == [
        key_fingerprint(keys["rsa"]),
        key_fingerprint(keys["p256"]),
    ]
    assert private_keys_from_env({}) == []
    broken = pem.replace(pem.splitlines()[1], "A" * 64)
    with pytest.raises(ConfigError) as error:
        private_keys_from_env({ENV_PRIVATE_KEY: broken})
    assert str(error.value) == f"{ENV_PRIVATE_KEY}: not a PEM or DER private key"
    assert "A" * 64 not in str(error.value)


# --- skopeo 1.9 against a real Distribution ---------------------------------------------------


def _skopeo(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    policy = cwd / "policy.json"
    policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}')
    return subprocess.run(
        ["skopeo", "--policy", str(policy), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def _host(distribution) -> str:
    return distribution.url.removeprefix("http://")


def _image_config(layer: bytes) -> bytes:
    plain = gzip.decompress(layer) if layer[:2] == b"\x1f\x8b" else zstd_module().decompress(layer)
    diff_id = "sha256:" + hashlib.sha256(plain).hexdigest()
    return json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        },
        sort_keys=True,
    ).encode()


def _manifest(config: bytes, config_type: str, layers: list[dict], **extra: object) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": config_type,
                "digest": sha256_digest(config),
                "size": len(config),
            },
            "layers": layers,
            **extra,
        }
    ).encode()


def _write_oci_layout(root: Path, layer: bytes, layer_type: str, config_type: str) -> None:
    """An OCI image layout holding one image (tag ``latest``) with one layer."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    config = _image_config(layer)
    layer_desc = {"mediaType": layer_type, "digest": sha256_digest(layer), "size": len(layer)}
    manifest = _manifest(config, config_type, [layer_desc])
    for blob in (config, layer, manifest):
        (blobs / sha256_digest(blob).removeprefix("sha256:")).write_bytes(blob)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    ref = {"org.opencontainers.image.ref.name": "latest"}
    (root / "index.json").write_text(
        json.dumps(
            {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": OCI_MANIFEST,
                        "digest": sha256_digest(manifest),
                        "size": len(manifest),
                        "annotations": ref,
                    }
                ],
            }
        )
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "layer_type,config_type,plain",
    [
        (OCI_LAYER, "application/vnd.oci.image.config.v1+json", GZIP_LAYER),
        (BUF_LAYER, "application/vnd.buf.module.config.v1+json", LAYER),
        (GZIP_LAYER_MEDIA_TYPE, "application/vnd.buf.module.config.v1+json", GZIP_LAYER),
    ],
    ids=["oci-gzip", "ours-zstd", "ours-gzip"],
)
def test_skopeo_decrypts_our_layers(distribution, tmp_path, keys, layer_type, config_type, plain):
    """We encrypt for an RSA and an EC member; skopeo copy --decryption-key with either
    private key writes the plain layer (also for our own module layer media types)."""
    registry = HTTPRegistry(distribution.url)
    repo = f"interop/ours-{layer_type.rsplit('.', 2)[-2]}-{layer_type.rsplit('+', 1)[-1]}"
    layer = encrypt_layer(plain, layer_type, [keys["rsa"].public_key(), keys["p256"].public_key()])
    config = _image_config(plain)
    registry.push_blob(repo, config, sha256_digest(config))
    registry.push_blob(repo, layer.data, layer.digest)
    descriptor = {
        "mediaType": layer.media_type,
        "digest": layer.digest,
        "size": len(layer.data),
        "annotations": layer.annotations,
    }
    registry.push_manifest(repo, "v1", _manifest(config, config_type, [descriptor]), OCI_MANIFEST)
    for name in ("rsa", "p256"):
        key_file = tmp_path / f"{name}.pem"
        key_file.write_bytes(private_key_pem(keys[name]))
        out = tmp_path / f"out-{name}"
        result = _skopeo(
            "copy",
            "--src-tls-verify=false",
            "--decryption-key",
            str(key_file),
            f"docker://{_host(distribution)}/{repo}:v1",
            f"dir:{out}",
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr
        plain_hex = sha256_digest(plain).removeprefix("sha256:")
        assert (out / plain_hex).read_bytes() == plain
        copied = json.loads((out / "manifest.json").read_text())
        assert copied["layers"] == [
            {"mediaType": layer_type, "digest": sha256_digest(plain), "size": len(plain)}
        ]
    # a key that is not a recipient gets nothing
    outsider = tmp_path / "outsider.pem"
    outsider.write_bytes(private_key_pem(keys["p384"]))
    result = _skopeo(
        "copy",
        "--src-tls-verify=false",
        "--decryption-key",
        str(outsider),
        f"docker://{_host(distribution)}/{repo}:v1",
        f"dir:{tmp_path / 'out-outsider'}",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "no suitable key unwrapper found or none of the private keys could be used" in (
        result.stderr
    )


@pytest.mark.slow
def test_we_decrypt_what_skopeo_encrypts(distribution, tmp_path, keys):
    """skopeo copy --encryption-key jwe:<pub> for an RSA and an EC key; we read the manifest
    and the layer from the registry and decrypt them with either private key."""
    source = tmp_path / "layout"
    _write_oci_layout(source, GZIP_LAYER, OCI_LAYER, "application/vnd.oci.image.config.v1+json")
    pubs = []
    for name in ("rsa", "p256"):
        path = tmp_path / f"{name}.pub.pem"
        path.write_bytes(public_key_pem(keys[name]))
        pubs += ["--encryption-key", f"jwe:{path}"]
    repo = "interop/skopeo-encrypted"
    result = _skopeo(
        "copy",
        "--dest-tls-verify=false",
        *pubs,
        f"oci:{source}:latest",
        f"docker://{_host(distribution)}/{repo}:v1",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    registry = HTTPRegistry(distribution.url)
    manifest = json.loads(registry.read_manifest(repo, "v1")[0])
    (descriptor,) = manifest["layers"]
    assert descriptor["mediaType"] == OCI_LAYER + "+encrypted"
    assert recipient_count(descriptor["annotations"]) == 2
    data = registry.read_blob(repo, descriptor["digest"])
    assert data != GZIP_LAYER
    for name in ("rsa", "p256"):
        plain = decrypt_layer(
            data,
            descriptor["mediaType"],
            descriptor["annotations"],
            [keys[name]],
            WHERE,
            plain_media_types=[OCI_LAYER],
        )
        assert plain == GZIP_LAYER
    # rewrapped by us for another member, skopeo's layer still decrypts for them
    rewrapped = rewrap(descriptor["annotations"], keys["p256"], [keys["p521"].public_key()])
    plain = decrypt_layer(data, descriptor["mediaType"], rewrapped, [keys["p521"]], WHERE)
    assert plain == GZIP_LAYER


@pytest.mark.slow
def test_skopeo_does_not_encrypt_our_module_media_type(distribution, tmp_path, keys):
    """skopeo 1.9 (containers/image) encrypts only the standard layer media types: this is
    why our own publish encrypts module layers itself."""
    source = tmp_path / "layout"
    _write_oci_layout(source, LAYER, BUF_LAYER, "application/vnd.buf.module.config.v1+json")
    pub = tmp_path / "p256.pub.pem"
    pub.write_bytes(public_key_pem(keys["p256"]))
    result = _skopeo(
        "copy",
        "--dest-tls-verify=false",
        "--encryption-key",
        f"jwe:{pub}",
        f"oci:{source}:latest",
        f"docker://{_host(distribution)}/interop/skopeo-custom:v1",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert (
        'encryption specified but no counterpart for mediatype: \\"' + BUF_LAYER + '\\"'
    ) in result.stderr


# --- module artifacts and bundles -----------------------------------------------------------

FILES = {
    "acme/pets/v1/pets.proto": b'syntax = "proto3";\npackage acme.pets.v1;\n',
    "LICENSE": b"MIT\n",
}
PETS = parse_module_name("localhost:8443/acme/pets")
MONEY = parse_module_name("localhost:8443/acme/money")


def _artifact(module=PETS, files=FILES, commit="ab" * 16) -> ModuleArtifact:
    return ModuleArtifact(module, commit, b5_from_contents(files), (), dict(files), "2024-01-01")


def _stored_blobs(root: Path) -> list[bytes]:
    return [p.read_bytes() for p in root.rglob("blobs/sha256/*") if p.is_file()]


def test_encrypted_module_round_trip(tmp_path, keys):
    registry = OCILayoutRegistry(tmp_path)
    repo = "teams/t/dependencies/x/acme/pets"
    artifact = _artifact()
    push_module(registry, repo, artifact, encryption=[public_key_pem(keys["p256"]), keys["rsa"]])
    manifest = json.loads(registry.read_manifest(repo, artifact.commit)[0])
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == ENCRYPTED_LAYER_MEDIA_TYPE
    assert sorted(layer["annotations"]) == [
        ANN_KEYS_JWE,
        ANN_PUBOPTS,
        "org.opencontainers.image.title",
    ]
    # the config stays readable: names, commit, b5
    config = json.loads(base64.b64decode(manifest["config"]["data"]))
    assert (config["name"], config["commit"]) == (str(PETS), artifact.commit)
    assert config["digest"] == str(artifact.digest)
    # no stored blob is the plain files layer
    assert artifact.files_layer() not in _stored_blobs(tmp_path)
    for member in ("p256", "rsa"):
        pulled = pull_module(registry, repo, PETS, artifact.commit, private_keys=[keys[member]])
        assert pulled == artifact
        assert pulled.files_layer() == artifact.files_layer()
    with pytest.raises(InvalidContentError) as error:
        pull_module(registry, repo, PETS, artifact.commit)
    assert str(error.value) == (
        f"oci-layout:{tmp_path}/{repo}:{artifact.commit}: the team encrypts its modules: set"
        f" {ENV_PRIVATE_KEY_FILE} to your private key file"
    )
    with pytest.raises(InvalidContentError, match="not encrypted for your key"):
        pull_module(registry, repo, PETS, artifact.commit, private_keys=[keys["p384"]])


def test_encrypted_module_with_wrong_files_fails_b5(tmp_path, keys):
    registry = OCILayoutRegistry(tmp_path)
    bad = replace(_artifact(), files={"other.proto": b"x"})
    push_module(registry, "r/x", bad, encryption=[keys["p256"]])
    with pytest.raises(DigestMismatchError, match="files hash to"):
        pull_module(registry, "r/x", PETS, bad.commit, private_keys=[keys["p256"]])


def test_rewrap_module_keeps_the_blobs(tmp_path, keys):
    registry = OCILayoutRegistry(tmp_path)
    repo = "teams/t/dependencies/x/acme/pets"
    artifact = _artifact()
    push_module(registry, repo, artifact, encryption=[keys["rsa"], keys["p256"]])
    before = json.loads(registry.read_manifest(repo, artifact.commit)[0])
    blobs = sorted(_stored_blobs(tmp_path))
    rewrap_module(registry, repo, artifact.commit, [keys["rsa"]], [keys["rsa"], keys["p384"]])
    after = json.loads(registry.read_manifest(repo, artifact.commit)[0])
    assert after["layers"][0]["digest"] == before["layers"][0]["digest"]
    assert after["config"] == before["config"]
    # the only new blob is the new manifest
    assert len(_stored_blobs(tmp_path)) == len(blobs) + 1
    for member in ("rsa", "p384"):
        assert pull_module(registry, repo, PETS, artifact.commit, private_keys=[keys[member]]) == (
            artifact
        )
    with pytest.raises(InvalidContentError, match="not encrypted for your key"):
        pull_module(registry, repo, PETS, artifact.commit, private_keys=[keys["p256"]])
    plain_repo = "teams/t/dependencies/x/acme/plain"
    push_module(registry, plain_repo, artifact)
    assert rewrap_module(registry, plain_repo, artifact.commit, [keys["rsa"]], [keys["rsa"]]) is (
        None
    )


def test_encrypted_bundle(tmp_path, keys):
    """Bundle members are the module repositories' encrypted layers (mounted, wrapped keys
    carried); small ones are embedded encrypted; a module stored plain is published again
    encrypted before it is bundled."""
    registry = OCILayoutRegistry(tmp_path)
    pets = _artifact()
    money = _artifact(MONEY, {"acme/money/v1/money.proto": b'syntax = "proto3";\n'}, "cd" * 16)

    def repo_of(module):
        return module_repository("t", module)

    recipients = [keys["p256"].public_key(), keys["rsa"].public_key()]
    push_module(registry, repo_of(PETS), pets, encryption=recipients)
    push_module(registry, repo_of(MONEY), money)  # published before the team encrypted
    stored = stored_layers(registry, [pets, money], repo_of, recipients)
    money_layer = read_layer_descriptor(registry, repo_of(MONEY), money.commit)
    assert money_layer.media_type == ENCRYPTED_LAYER_MEDIA_TYPE
    assert stored[f"{MONEY}:{money.commit}"].digest == money_layer.digest

    bundle = new_bundle("shop", "t", "", "alice", "v1", [pets, money], stored=stored)
    assert [m.encrypted for m in bundle.members] == [True, True]
    repo = bundle_repository("t", "shop")
    push_bundle(
        registry,
        repo,
        bundle,
        sources=layer_sources(bundle, repo_of),
        tags=("v1", "latest"),
        require_encrypted=True,
    )
    manifest = json.loads(registry.read_manifest(repo, "latest")[0])
    for layer in manifest["layers"]:
        assert layer["mediaType"] == ENCRYPTED_LAYER_MEDIA_TYPE
        assert ANN_KEYS_JWE in layer["annotations"]
        assert base64.b64decode(layer["data"]) not in (pets.files_layer(), money.files_layer())
    read, _ = read_bundle(registry, repo)
    pulled = pull_members(registry, repo, read.members, private_keys=[keys["rsa"]])
    assert sorted(pulled, key=lambda a: a.commit) == [pets, money]
    with pytest.raises(InvalidContentError, match="the team encrypts its modules"):
        pull_members(registry, repo, read.members)
    for layer in (pets.files_layer(), money.files_layer()):  # only in money's old manifest
        assert _stored_blobs(tmp_path).count(layer) == (1 if layer == money.files_layer() else 0)

    # shared with another team's member: rewrapped, the same layers mounted
    shared = rewrap_members(read, [keys["p256"]], [*recipients, keys["p521"].public_key()])
    assert [m.layer_digest for m in shared.members] == [m.layer_digest for m in read.members]
    shared_repo = "shared/organization/bundles/shop"
    push_bundle(
        registry,
        shared_repo,
        shared,
        sources={m.layer_digest: repo for m in shared.members},
        tags=("v1",),
        require_encrypted=True,
    )
    other, _ = read_bundle(registry, shared_repo, "v1")
    outsider = pull_members(registry, shared_repo, other.members, private_keys=[keys["p521"]])
    assert sorted(outsider, key=lambda a: a.commit) == [pets, money]

    plain = new_bundle("plain", "t", "", "alice", "v1", [pets])
    with pytest.raises(InvalidContentError) as error:
        push_bundle(
            registry, bundle_repository("t", "plain"), plain, sources={}, require_encrypted=True
        )
    assert str(error.value) == (
        f"bundle plain: the team encrypts its modules but {PETS}:{pets.commit} would be"
        " bundled in plain text; publish them encrypted first"
    )


@pytest.mark.slow
def test_skopeo_decrypts_our_module_artifact(distribution, tmp_path, keys):
    """A module artifact published encrypted reads with skopeo --decryption-key: the layer
    it writes is our plain files layer."""
    registry = HTTPRegistry(distribution.url)
    artifact = _artifact()
    repo = module_repository("interop", PETS)
    push_module(registry, repo, artifact, encryption=[keys["p256"], keys["rsa"]])
    key_file = tmp_path / "member.pem"
    key_file.write_bytes(private_key_pem(keys["rsa"]))
    result = _skopeo(
        "copy",
        "--src-tls-verify=false",
        "--decryption-key",
        str(key_file),
        f"docker://{_host(distribution)}/{repo}:{artifact.commit}",
        f"dir:{tmp_path / 'out'}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    plain = artifact.files_layer()
    assert (tmp_path / "out" / sha256_digest(plain).removeprefix("sha256:")).read_bytes() == plain
    copied = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert copied["layers"][0]["mediaType"] == LAYER_MEDIA_TYPE
    # and we read our own artifact back from the real registry
    assert pull_module(registry, repo, PETS, artifact.commit, private_keys=[keys["p256"]]) == (
        artifact
    )


@pytest.mark.parametrize("kind", ["rsa", "p256"])
def test_a_planted_recipient_entry_in_front_of_ours_is_skipped(keys, kind):
    """Anyone with the team's public keys can wrap some other content key for a member and put
    that entry first: it unwraps but does not authenticate, and the member's real entry is
    still used."""
    real = encrypt_layer(LAYER, BUF_LAYER, [keys[kind].public_key()])
    other = encrypt_layer(b"something else", BUF_LAYER, [keys[kind].public_key()])
    planted = _decoded_json(other.annotations[ANN_KEYS_JWE])["recipients"][0]
    annotations = _with_json(
        real.annotations, ANN_KEYS_JWE, lambda j: j["recipients"].insert(0, planted)
    )
    assert recipient_count(annotations) == 2
    plain = decrypt_layer(real.data, real.media_type, annotations, [keys[kind]], WHERE)
    assert plain == LAYER
    # Only planted entries: the JWE does not authenticate for this key, said as such.
    only_planted = _with_json(
        real.annotations, ANN_KEYS_JWE, lambda j: j.update(recipients=[planted])
    )
    with pytest.raises(InvalidContentError, match="were altered"):
        decrypt_layer(real.data, real.media_type, only_planted, [keys[kind]], WHERE)
