"""Regenerate the Python code for proto/trunkline/v1/*.proto into libs/proto/src/trunkline/v1/.

    .venv/bin/python scripts/gen_proto.py           # rewrite the checked-in stubs
    .venv/bin/python scripts/gen_proto.py --check   # exit 1 when they are stale (CI)

Both modes generate into a temporary directory first, so a protoc failure never leaves a
half-written package behind, and files generated from a proto that no longer exists are
found (and removed, or reported) too. Output: message classes (`*_pb2.py`), gRPC stubs
(`*_pb2_grpc.py`) and mypy-protobuf type stubs for both (`*_pb2.pyi`, `*_pb2_grpc.pyi`), so
services type-check against the generated code under mypy --strict.

The result depends on the grpcio-tools and mypy-protobuf versions, which uv.lock pins; run
this with the workspace interpreter so the check in CI compares like with like.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PACKAGE = Path("trunkline") / "v1"
OUT_ROOT = ROOT / "libs" / "proto" / "src"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def _plugin(name: str) -> Path:
    # The mypy-protobuf plugins are console scripts beside the interpreter; naming them
    # explicitly keeps a different protoc-gen-mypy on PATH from being picked up.
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} not found: run `uv sync` (mypy-protobuf is a dev dependency)")
    return Path(found)


def _is_generated(path: Path) -> bool:
    return path.is_file() and path.name.endswith(GENERATED_SUFFIXES)


def generate(out_root: Path) -> list[Path]:
    """Run protoc over every proto of the package; return the generated files' relative paths."""
    protos = sorted((PROTO_ROOT / PACKAGE).glob("*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files in {PROTO_ROOT / PACKAGE}")
    (out_root / PACKAGE).mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",  # adds the bundled google/protobuf/*.proto include path itself
        f"-I{PROTO_ROOT}",
        f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--python_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--mypy_out={out_root}",
        f"--mypy_grpc_out={out_root}",
        *(str(proto.relative_to(PROTO_ROOT)) for proto in protos),
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        sys.stderr.write(result.stderr)
        raise SystemExit(f"protoc failed with exit code {result.returncode}")
    return sorted(
        p.relative_to(out_root) for p in (out_root / PACKAGE).iterdir() if _is_generated(p)
    )


def checked_in() -> list[Path]:
    return sorted(
        p.relative_to(OUT_ROOT) for p in (OUT_ROOT / PACKAGE).iterdir() if _is_generated(p)
    )


def differences(fresh_root: Path, fresh: list[Path]) -> list[tuple[str, Path]]:
    """(kind, relative path) for every generated file that is missing, differs or is orphaned."""
    found: list[tuple[str, Path]] = []
    for rel in fresh:
        current = OUT_ROOT / rel
        if not current.exists():
            found.append(("missing", rel))
        elif not filecmp.cmp(fresh_root / rel, current, shallow=False):
            found.append(("differs", rel))
    # Generated from a .proto that was deleted or renamed: importable but wrong.
    found.extend(("orphaned", rel) for rel in sorted(set(checked_in()) - set(fresh)))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="generate into a temporary directory and exit 1 if the checked-in files differ",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="trunkline-proto-") as tmp:
        fresh_root = Path(tmp)
        fresh = generate(fresh_root)
        changes = differences(fresh_root, fresh)
        if args.check:
            if changes:
                print("generated protobuf code is out of date; run scripts/gen_proto.py:")
                for kind, rel in changes:
                    print(f"  {kind}: {(OUT_ROOT / rel).relative_to(ROOT)}")
                return 1
            print(f"generated protobuf code is up to date ({len(fresh)} files)")
            return 0
        done = {"missing": "written", "differs": "updated", "orphaned": "removed"}
        for kind, rel in changes:
            if kind == "orphaned":
                (OUT_ROOT / rel).unlink()
            else:
                shutil.copyfile(fresh_root / rel, OUT_ROOT / rel)
            print(f"{done[kind]}: {(OUT_ROOT / rel).relative_to(ROOT)}")
        print(f"{len(fresh)} generated files in {(OUT_ROOT / PACKAGE).relative_to(ROOT)}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
