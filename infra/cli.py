"""The `modeldb` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from modeldb.infra.settings import Settings
from modeldb.infra.system import CONSUMERS, PROJECTIONS, System


def _serve(args: argparse.Namespace, **parts: object) -> int:
    import uvicorn

    from modeldb.infra.ops import log_config
    from modeldb.infra.security_cli import check_exposure
    from modeldb.infra.server import create_app

    settings = Settings.load(args.data_dir)
    refused = check_exposure(settings, args.host, args.insecure_no_auth)
    if refused:
        print(refused, file=sys.stderr)
        return 2
    app = create_app(settings, **parts)  # type: ignore[arg-type]
    print(f"ModelDB on http://{args.host}:{args.port}  (data: {settings.home}, "
          f"auth: {settings.auth})", flush=True)
    # On SIGTERM uvicorn stops accepting, finishes the requests in flight (ingest batches
    # among them) within the grace period, then closes the system: nothing acknowledged is lost.
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level,
                log_config=log_config(settings.log_format, args.log_level)
                or uvicorn.config.LOGGING_CONFIG, timeout_graceful_shutdown=30)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    return _serve(args, webhooks=True)


def cmd_writer(args: argparse.Namespace) -> int:
    return _serve(args, query=False, projections=())


def cmd_api(args: argparse.Namespace) -> int:
    return _serve(args, ingest=False, projections=())


def cmd_project(args: argparse.Namespace) -> int:
    from modeldb.infra.ops import bound_malloc_heap, freeze_startup_heap

    async def run() -> None:
        bound_malloc_heap()
        system = await System.open(Settings.load(args.data_dir))
        names = CONSUMERS if args.projection == "all" else (args.projection,)
        system.start_projectors(names)
        freeze_startup_heap()
        print(f"projecting {', '.join(names)} from {system.log.url}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await system.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


def cmd_redact(args: argparse.Namespace) -> int:
    from modeldb.infra.server import local_principal
    from modeldb.writer.registry import CommandRefused

    async def run() -> dict:
        system = await System.open(Settings.load(args.data_dir))
        try:
            done = await system.execute("redact_run", {"run_id": args.run_id, "reason": args.reason},
                                        local_principal(), source="cli")
        finally:
            await system.close()
        return done.result

    try:
        result = asyncio.run(run())
    except CommandRefused as exc:
        print(f"refused: {exc.message}", file=sys.stderr)
        return 1
    paths = ", ".join(result["redacted"]) or "nothing new (already redacted)"
    print(f"redacted {paths}; {result['keys_destroyed']} data key(s) destroyed")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    async def run() -> None:
        system = await System.open(Settings.load(args.data_dir))
        try:
            names = PROJECTIONS if args.projection == "all" else (args.projection,)
            # All of them in one pass over the log: each batch is read and decoded once.
            with tqdm(desc=f"replay {', '.join(names)}", unit=" events", file=sys.stderr) as bar:
                count = await system.rebuild(names, bar.update)
            for name in names:
                print(f"{name}: rebuilt from {count} events, digest "
                      f"{await system.projections[name].digest()}")
        finally:
            await system.close()

    asyncio.run(run())
    return 0


async def _log_records(system: System) -> AsyncIterator:
    from modeldb.writer.sqlite_log import SQLiteEventLog

    log = system.log
    assert isinstance(log, SQLiteEventLog)
    position = 0
    while True:
        records = await log.read(position, 5000)
        if not records:
            return
        for record in records:
            yield record
        position = records[-1].position


def cmd_verify(args: argparse.Namespace) -> int:
    import orjson

    from modeldb.projectors import checkpoints

    async def run() -> int:
        system = await System.open(Settings.load(args.data_dir))
        try:
            await system.catch_up(["audit"])
            embedded = system.settings.embedded
            records = _log_records(system) if embedded else system.log.records()  # type: ignore[attr-defined]
            verdict = await system.audit.verify(records, dense=embedded)
            for path in args.checkpoint or []:
                if not verdict.ok:
                    break
                doc = orjson.loads(Path(path).read_bytes())
                verdict = await checkpoints.check(system.audit, doc, system.key, verdict.checked)
                if not verdict.ok:
                    print(f"checkpoint {path}:", end=" ")
        finally:
            await system.close()
        print(verdict)
        return 0 if verdict.ok else 1

    return asyncio.run(run())


def cmd_checkpoint(args: argparse.Namespace) -> int:
    import orjson

    from modeldb.projectors.checkpoints import make_checkpoint

    async def run() -> bytes:
        system = await System.open(Settings.load(args.data_dir))
        try:
            await system.catch_up(["audit"])
            doc = await make_checkpoint(system.audit, system.key)
        finally:
            await system.close()
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)

    text = asyncio.run(run())
    if args.out:
        Path(args.out).write_bytes(text + b"\n")
        print(f"checkpoint written to {args.out}")
    else:
        print(text.decode())
    return 0


def _instant(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    # Stored times are UTC ISO strings, compared as text: bring the moment to UTC too.
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def cmd_audit(args: argparse.Namespace) -> int:
    from modeldb.infra.report import audit_report

    async def run() -> str:
        system = await System.open(Settings.load(args.data_dir))
        try:
            await system.catch_up()
            return await audit_report(system, args.id, args.format, args.at)
        finally:
            await system.close()

    print(asyncio.run(run()))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from modeldb.projectors.db import create_engine
    from modeldb.projectors.migrations import HEAD, migrate

    async def run() -> list[int]:
        engine = create_engine(Settings.load(args.data_dir).read_db)
        try:
            return await migrate(engine)
        finally:
            await engine.dispose()

    applied = asyncio.run(run())
    print(f"applied migrations {applied}; schema at version {HEAD}" if applied
          else f"schema already at version {HEAD}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from modeldb.infra.demo import run_demo

    run_demo(args.url)
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    from modeldb._sync import sync  # offline logging's upload (see its docstring)

    result = sync(args.folder, args.url, batch_size=args.batch_size)
    print(f"synced {result.sent} events and {result.artifacts} artifacts to {args.url} "
          f"(log position {result.position}; {result.skipped} registry events skipped)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modeldb", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def data_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", type=Path, default=None,
                       help="embedded storage folder (default $MODELDB_HOME or ~/.modeldb)")

    for name, fn, text in [("serve", cmd_serve, "the whole system in one process"),
                           ("writer", cmd_writer, "the ingest API alone"),
                           ("api", cmd_api, "the query API and UI alone")]:
        p = sub.add_parser(name, help=text)
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, default=8000)
        p.add_argument("--log-level", default="warning")
        p.add_argument("--insecure-no-auth", action="store_true",
                       help="listen beyond loopback although MODELDB_AUTH=local checks no one")
        data_dir(p)
        p.set_defaults(fn=fn)

    p = sub.add_parser("project", help="run projections (or the webhook outbox) as a separate process")
    p.add_argument("--projection", choices=[*CONSUMERS, "all"], default="all")
    data_dir(p)
    p.set_defaults(fn=cmd_project)

    p = sub.add_parser("replay", help="rebuild projections from the log")
    p.add_argument("--projection", choices=[*PROJECTIONS, "all"], default="all")
    data_dir(p)
    p.set_defaults(fn=cmd_replay)

    p = sub.add_parser("verify", help="check the audit hash chain against the log")
    p.add_argument("--checkpoint", action="append", metavar="FILE",
                   help="also require the chain to match this signed checkpoint (repeatable)")
    data_dir(p)
    p.set_defaults(fn=cmd_verify)

    p = sub.add_parser("checkpoint", help="a signed checkpoint of the audit chain, for auditors")
    p.add_argument("--out", metavar="FILE", help="write it here (default: print it)")
    data_dir(p)
    p.set_defaults(fn=cmd_checkpoint)

    from modeldb.infra.browse import add_parsers
    from modeldb.infra.search_cli import add_parser as add_search_parser

    add_parsers(sub, data_dir)
    add_search_parser(sub, data_dir)  # `modeldb search TEXT`

    from modeldb.infra.security_cli import add_parsers as add_security_parsers

    add_security_parsers(sub, data_dir)  # `modeldb token …`, `modeldb grant …`

    p = sub.add_parser("audit", help="the audit report of one entity")
    p.add_argument("id")
    p.add_argument("--format", choices=["md", "json", "html"], default="md")
    p.add_argument("--at", type=_instant, default=None,
                   help="the report as of this time (ISO 8601; UTC unless it says otherwise)")
    data_dir(p)
    p.set_defaults(fn=cmd_audit)

    p = sub.add_parser("redact", help="erase a run's sensitive values (destroys its data keys; "
                       "the log and verify stay intact)")
    p.add_argument("run_id")
    p.add_argument("--reason", required=True, help="why: kept in the audit trail")
    data_dir(p)
    p.set_defaults(fn=cmd_redact)

    p = sub.add_parser("migrate", help="bring the read database to this version's schema")
    data_dir(p)
    p.set_defaults(fn=cmd_migrate)

    p = sub.add_parser("demo", help="train a few small real models into ModelDB")
    p.add_argument("--url", default=None, help="server URL or embedded folder")
    p.set_defaults(fn=cmd_demo)

    p = sub.add_parser("sync", help="upload an offline (embedded) folder's log to a server")
    p.add_argument("folder", type=Path)
    p.add_argument("--url", required=True, help="the server, http://host:port")
    p.add_argument("--batch-size", type=int, default=500)
    p.set_defaults(fn=cmd_sync)

    from modeldb.ingest_adapters.mlflow_import import add_parsers as add_import_parsers

    add_import_parsers(sub, data_dir)  # `modeldb import mlflow …`

    # `modeldb infra …` hands its arguments to the launcher's own parser (see main()).
    sub.add_parser("infra", help="real Kafka, PostgreSQL and Neo4j on loopback: "
                   "up [SERVICE…] | down [--purge] | status [--json] | env", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["infra"]:
        from modeldb.infra import launcher

        return launcher.main(argv[1:])
    args = build_parser().parse_args(argv)
    return int(args.fn(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
