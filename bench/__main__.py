"""Run the benchmarks: `python -m bench [--quick] [--engines] [--no-mlflow]`."""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from bench import client_overhead, pipeline

RESULTS = Path(__file__).parent / "results"


def table(rows: list[dict]) -> str:
    headers = list(rows[0])
    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    for row in rows:
        cells = [f"{v:,}" if isinstance(v, int) else str(v) for v in row.values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="small sizes, a few minutes")
    parser.add_argument("--engines", action="store_true",
                        help="also through Kafka, PostgreSQL and Neo4j (started if needed)")
    parser.add_argument("--no-mlflow", dest="mlflow", action="store_false",
                        help="skip the comparison with MLflow (bench/mlflow_compare.py)")
    args = parser.parse_args()
    rows = pipeline.run(quick=args.quick)
    rows += client_overhead.run(quick=args.quick)  # what tracking costs the training code
    if args.engines:
        from bench import engines

        rows += engines.run(quick=args.quick)
    mode = ("quick" if args.quick else "full") + ("-engines" if args.engines else "")
    header = (f"ModelDB pipeline benchmark ({mode}), {time.strftime('%Y-%m-%d %H:%M')}, "
              f"Python {platform.python_version()}, {platform.machine()}")
    text = f"{header}\n\n{table(rows)}\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"pipeline-{mode}.md").write_text(text)
    (RESULTS / f"pipeline-{mode}.json").write_text(json.dumps({"header": header, "rows": rows},
                                                              indent=2))
    if args.mlflow:  # side by side with MLflow 3.17.2: bench/results/latest.md (mlflow-quick.md)
        from bench import mlflow_compare

        report = mlflow_compare.run(args.quick, args.engines)
        print(mlflow_compare.write(report, args.quick, args.engines))


if __name__ == "__main__":
    main()
