"""Run the benchmarks: `python -m bench [--quick]`."""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from bench import pipeline

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
    parser.add_argument("--quick", action="store_true", help="small sizes, a minute or so")
    parser.add_argument("--engines", action="store_true",
                        help="also through Kafka, PostgreSQL and Neo4j (started if needed)")
    args = parser.parse_args()
    rows = pipeline.run(quick=args.quick)
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


if __name__ == "__main__":
    main()
