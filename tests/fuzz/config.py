"""A bounded, seeded fuzzer for the config loader (``kubeloop.config.load``).

Every case is made from (seed, index) alone, so any case replays by its number. Cases
run in a worker process; the parent gives each one a time limit, so a hang is caught,
named and the worker restarted. A case fails when ``load`` raises anything but
``KubeloopError`` (a traceback the user would see) or takes longer than the limit.

    python -m tests.fuzz.config --cases 100000 --seed 7        # a long run by hand
    python -m tests.fuzz.config --seed 7 --show 1234           # print case 1234's input

Failing inputs are written to ``--out`` (default ``/tmp/kubeloop-fuzz``) for replay.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import traceback
from pathlib import Path

from tests.fuzz import runner as fuzz_runner
from tests.fuzz.runner import Report, worker_line

SEEDS = [
    b"name: shop\nartifacts:\n  - image: web\n    context: web\nmanifests:\n"
    b"  templates: [k8s/*.j2]\nvalues:\n  replicas: 1\n  db: {host: local}\n"
    b"environments:\n  staging:\n    namespace: shop-staging\n    values:\n"
    b"      replicas: 3\n      db: {port: 5432}\n",
    b"apiVersion: kubeloop/v1\nname: add\nnamespace: add\nartifacts:\n  - image: add\n"
    b"    context: .\nmanifests:\n  raw: [k8s/*.yaml]\nportForward:\n  - resource: service/add\n"
    b"    port: 80\n    localPort: 8000\ndeploy:\n  timeout: 90\nenvironments:\n  local: {}\n"
    b"  staging:\n    namespace: add-staging\nsync:\n  - selector: {app: add}\n    src: app\n"
    b"    dest: /app\n    restart: process\n",
    b"name: p\nmanifests: {helm: [{chart: c, set: {a: '1'}, valuesFiles: [v.yaml]}]}\n"
    b"dev: {cleanup: false, debounceMs: 50, ignore: [docs]}\n",
    b"base: &base {replicas: 1, db: {host: h}}\nname: a\nmanifests: {raw: [x]}\n"
    b"values:\n  <<: *base\n  more: *base\n",
]
# Fragments that reach the loader's corners: anchors, aliases, merges, tags, numbers
# past Python's digit limit, impossible dates, encodings, nesting, document markers.
TOKENS = [
    b"&a ",
    b"*a",
    b"&b ",
    b"*b",
    b"<<: *a\n",
    b"<<: ",
    b"!!binary ",
    b"!!python/object:os.system ",
    b"!!set ",
    b"!!omap ",
    b"!!timestamp ",
    b"!!int ",
    b"!!float ",
    b"!!str ",
    b"!!map ",
    b"!foo ",
    b"? ",
    b"[",
    b"]",
    b"{",
    b"}",
    b",",
    b": ",
    b"- ",
    b"---\n",
    b"...\n",
    b"%YAML 1.1\n",
    b"%TAG ! tag:x,2000:\n",
    b"\t",
    b"'",
    b'"',
    b"|\n",
    b">-\n",
    b"#",
    b"\\",
    b"\x00",
    b"\xff",
    b"\xfe\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\r",
    b"\x85",
    b"\xe2\x80\xa8",
    b"~",
    b"null",
    b"9" * 5000,
    b"0x" + b"f" * 5000,
    b"1e999999",
    b"-.inf",
    b".nan",
    b"2001-13-45",
    b"2001-02-29 25:61:61",
    b"0o777",
    b"0b102",
    b"1_000",
    b"-0",
    b"yes",
    b"=",
    b'"\\uD800"',
    b'"\\x"',
    b'"\\U0010FFFF"',
    b'"\\UFFFFFFFF"',
    b"environments:\n  e: ",
    b"values: ",
    b"name: ",
    b"manifests: ",
    b"artifacts: ",
    b"sync: ",
    b"portForward: ",
]


def billion_laughs(rng: random.Random) -> bytes:
    width, depth = rng.randint(2, 10), rng.randint(8, 40)
    lines = [b"a0: &a0 [lol]"]
    for level in range(1, depth):
        refs = b", ".join([b"*a%d" % (level - 1)] * width)
        lines.append(b"a%d: &a%d [%s]" % (level, level, refs))
    return b"\n".join(
        [b"name: x", b"manifests: {raw: [a]}", b"values:", *[b"  " + x for x in lines]]
    )


def recursive_alias(rng: random.Random) -> bytes:
    shape = rng.choice([b"&r [*r]", b"&r {k: *r}", b"&r {<<: *r}", b"&r [a, [b, *r]]",
                        b"&r {a: [*r, {b: *r}]}"])  # fmt: skip
    return b"name: x\nmanifests: {raw: [a]}\nvalues: " + shape + b"\n"


def deep(rng: random.Random) -> bytes:
    n = rng.choice([50, 500, 5000, 50000])
    opener, closer = rng.choice([(b"[", b"]"), (b"{a: ", b"}")])
    return b"name: x\nmanifests: {raw: [a]}\nvalues: {v: " + opener * n + closer * n + b"}\n"


def reencode(data: bytes, rng: random.Random) -> bytes:
    text = data.decode("utf-8", "replace")
    codec = rng.choice(["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "latin-1",
                        "utf-8-sig", "cp1252"])  # fmt: skip
    return text.encode(codec, "replace")


def mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 3, 6])):
        at = rng.randint(0, len(buf))
        op = rng.randrange(8)
        if op == 0 and buf:  # flip a bit
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1:  # insert a token
            buf[at:at] = rng.choice(TOKENS)
        elif op == 2 and buf:  # delete a span
            del buf[at : at + rng.randint(1, 16)]
        elif op == 3:  # insert a random byte
            buf[at:at] = bytes([rng.randrange(256)])
        elif op == 4:  # duplicate a line, maybe indented deeper
            lines = bytes(buf).split(b"\n")
            i = rng.randrange(len(lines))
            lines.insert(i, b"  " * rng.randint(0, 3) + lines[i])
            buf = bytearray(b"\n".join(lines))
        elif op == 5:  # splice in part of another seed
            other = rng.choice(SEEDS)
            start = rng.randrange(len(other))
            buf[at:at] = other[start : start + rng.randint(1, 80)]
        elif op == 6:  # replace a value after a colon
            i = bytes(buf).find(b": ", at)
            if i >= 0:
                end = bytes(buf).find(b"\n", i)
                buf[i + 2 : end if end >= 0 else len(buf)] = rng.choice(TOKENS)
        else:  # swap two lines
            lines = bytes(buf).split(b"\n")
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
            buf = bytearray(b"\n".join(lines))
    return bytes(buf)


def case(seed: int, index: int) -> bytes:
    """The input of case ``index``: from (seed, index) alone."""
    rng = random.Random(f"{seed}:{index}")
    kind = rng.random()
    if kind < 0.03:
        return billion_laughs(rng)
    if kind < 0.06:
        return recursive_alias(rng)
    if kind < 0.09:
        return deep(rng)
    data = mutate(rng.choice(SEEDS), rng)
    if kind < 0.15:
        data = reencode(data, rng)
    return data


def run_case(data: bytes, path: Path, environment: str | None) -> tuple[str, str]:
    """('loaded' | 'refused', '') when the loader behaved; ('crash', traceback) when it
    raised anything but kubeloop's error."""
    from kubeloop.config import load
    from kubeloop.errors import KubeloopError

    path.write_bytes(data)
    try:
        load(path, environment)
    except KubeloopError:
        return "refused", ""
    except BaseException:  # this is what we hunt: any other exception
        return "crash", traceback.format_exc()
    return "loaded", ""


def worker(seed: int, start: int, stop: int) -> None:
    """Run cases [start, stop); one line per case on stdout: 'INDEX loaded',
    'INDEX refused' or 'INDEX crash BASE64-TRACEBACK'."""
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "kubeloop.yaml"
        for index in range(start, stop):
            # Every other case also applies an environment's overrides (the seeds' name).
            environment = "staging" if index % 2 else None
            status, failure = run_case(case(seed, index), path, environment)
            worker_line(index, status, failure)


def fuzz(cases: int, seed: int, limit: float = 2.0, out: Path | None = None) -> Report:
    """Run ``cases`` cases (see tests/fuzz/runner.py); failing inputs go to ``out``."""
    report = fuzz_runner.fuzz("tests.fuzz.config", cases, seed, limit)
    if out is not None and report.failing():
        out.mkdir(parents=True, exist_ok=True)
        for index in report.failing():
            (out / f"case-{seed}-{index}.yaml").write_bytes(case(seed, index))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.config", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--limit", type=float, default=2.0, help="seconds per case")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "kubeloop-fuzz")
    parser.add_argument("--show", type=int, help="print one case's input and exit")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.show is not None:
        sys.stdout.buffer.write(case(args.seed, args.show))
        return 0
    if args.worker:
        worker(args.seed, args.start, args.cases)
        return 0
    report = fuzz(args.cases, args.seed, args.limit, args.out)
    print(report.summary(kind=lambda line: line.split(":")[0]))
    for index, tb in sorted(report.crashes.items())[:3]:
        print(f"--- case {index} (replay: --seed {args.seed} --show {index})\n{tb}")
    if report.crashes or report.hangs:
        print(f"failing inputs written to {args.out}")
    return 1 if report.crashes or report.hangs else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
