"""The kaio-ort command line: `kaio-ort info`, `kaio-ort rewrite`."""
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


def _dims(items) -> dict:
    dims = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not value.isdigit():
            raise SystemExit(f"kaio-ort rewrite: --dim takes NAME=SIZE, got {item!r}")
        dims[name] = int(value)
    return dims


def _rewrite(args) -> int:
    import json
    import time

    import onnx_ir as ir

    from . import rewrites

    rules = None if args.rules is None else [r.strip() for r in args.rules.split(",") if r.strip()]
    if args.dense:
        rules = list(rewrites.DEFAULT_RULES if rules is None else rules)
        rules += [] if "dense" in rules else ["dense"]
    unknown = [r for r in rules or [] if r not in rewrites.RULES]
    if unknown:
        print(f"kaio-ort rewrite: unknown rules {unknown}; the rules are {', '.join(rewrites.RULES)}", file=sys.stderr)
        return 2
    dims = _dims(args.dim)
    t0 = time.monotonic()
    model = ir.load(args.input)
    external = rewrites.has_external_data(model)
    last = [0.0]

    def progress(rule: str, done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 2.0 or done == total:
            last[0] = now
            print(f"  {rule}: {done}/{total} nodes ({now - t0:.0f} s)", file=sys.stderr, flush=True)

    model, report = rewrites.rewrite_model(model, rules, cast_float32=args.cast_float32, progress=progress)
    data = rewrites.save_model(model, args.output, external_data=True if external else None)
    print(report.format())
    where = f" (weights in {data})" if data else ""
    print(f"wrote {args.output}{where} in {time.monotonic() - t0:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report.as_dict(), f, indent=1)
    if args.verify:
        import kaio_ort

        providers = kaio_ort.default_providers()
        errors = rewrites.compare_models(args.input, args.output, providers=providers, dims=dims)
        print(f"verify on {providers[0]} (max |rewritten - original| / max |original| per output):")
        worst = 0.0
        for name, err in errors.items():
            print(f"  {name}: {err:.3e}")
            worst = max(worst, err)
        if worst > args.tolerance:
            print(f"verify: error {worst:.3e} above --tolerance {args.tolerance}", file=sys.stderr)
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kaio-ort", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="library path, runtime, and the ops with their execution providers")
    rw = sub.add_parser("rewrite", help="put com.kaio ops into a model (MatMulNBits, fused Q/K/V projections, attention)")
    rw.add_argument("input", help="the model to rewrite (.onnx; external data next to it is read too)")
    rw.add_argument("output", help="where to write the rewritten model (external data beside it when the input "
                                   "had some or the weights reach 2 GB)")
    rw.add_argument("--rules", help="comma-separated rule families (default: matmulnbits, qkv, attention); "
                                    "dense (opt-in) too")
    rw.add_argument("--dense", action="store_true",
                    help="also run the opt-in dense rule: float16/bfloat16 MatMul with constant weights -> "
                         "MatmulTcAsync/MatmulTcBf16Async (same as adding dense to --rules)")
    rw.add_argument("--cast-float32", action="store_true",
                    help="rewrite float32 MatMulNBits too, casting A to float16 (approximate)")
    rw.add_argument("--verify", action="store_true",
                    help="run both models on the same random inputs (CUDA if usable, else CPU) and print the max "
                         "relative error per output")
    rw.add_argument("--dim", action="append", metavar="NAME=SIZE",
                    help="--verify: size of a symbolic input dimension (default 1); repeatable")
    rw.add_argument("--tolerance", type=float, default=1e-2, help="--verify: exit 1 above this error (default 1e-2)")
    rw.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    args = parser.parse_args(argv)
    return {"info": _info, "rewrite": _rewrite}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
