"""The kaio-ort command line: `kaio-ort info`, `kaio-ort bench`."""
from __future__ import annotations

import argparse
import sys


def _info(args) -> int:
    import onnxruntime as ort

    import kaio_ort

    desc = kaio_ort.library_description()
    print(f"kaio_ort {kaio_ort.__version__}: {kaio_ort.library_path()}")
    print(f"onnxruntime {ort.__version__}, providers: {', '.join(ort.get_available_providers())}")
    print(f"library built with CUDA kernels: {desc['cuda']}")
    for name, op in sorted(kaio_ort.ops().items()):
        print(f"  {kaio_ort.DOMAIN}.{name:20s} {', '.join(p.replace('ExecutionProvider', '') for p in op.providers)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kaio-ort", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="library path, runtime, and the ops with their execution providers")
    args = parser.parse_args(argv)
    return {"info": _info}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
