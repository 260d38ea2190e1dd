"""Sample BSR modules for the demo and the tests.

``acme/*`` are small hand-written modules with transitive deps; ``grpc/grpc`` (labels main and
v1.5.0) holds a health-checking API written for these samples; ``googleapis/googleapis`` (labels
main and v1.0.0) is made from the .proto files that ``googleapis-common-protos`` ships.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

SAMPLES_DIR = Path(__file__).parent


def googleapis_proto_root() -> Path:
    """The directory holding ``google/api/*.proto`` from googleapis-common-protos."""
    spec = importlib.util.find_spec("google.api")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("googleapis-common-protos is not installed")
    for location in spec.submodule_search_locations:
        root = Path(location).parent.parent
        if any((root / "google" / "api").glob("*.proto")):
            return root
    raise RuntimeError("googleapis-common-protos ships no .proto files here")


def write_googleapis_module(dest: Path) -> int:
    """Copy googleapis-common-protos' .proto files to ``dest``; return the file count."""
    root = googleapis_proto_root()
    count = 0
    for proto in sorted((root / "google").rglob("*.proto")):
        rel = proto.relative_to(root)
        if rel.parts[1] == "protobuf":  # well-known types come with buf and protoc
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(proto, target)
        count += 1
    (dest / "README.md").write_text(
        "# googleapis\n\nCommon Google API protos, as shipped by googleapis-common-protos.\n"
    )
    return count


def write_sample_data(dest: Path) -> Path:
    """Lay out a dev-bsr data directory (``DEST/<owner>/<module>/<label>/``) and return it."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(SAMPLES_DIR / "acme", dest / "acme", dirs_exist_ok=True)
    shutil.copytree(SAMPLES_DIR / "grpc", dest / "grpc", dirs_exist_ok=True)
    write_googleapis_module(dest / "googleapis" / "googleapis" / "main")
    # The labels the seed document uses; same content, so the same commit as main.
    shutil.copytree(
        dest / "googleapis" / "googleapis" / "main",
        dest / "googleapis" / "googleapis" / "v1.0.0",
        dirs_exist_ok=True,
    )
    return dest
