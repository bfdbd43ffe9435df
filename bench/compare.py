#!/usr/bin/env python3
"""Shows what changed since the last run that measured the same thing.

    python3 bench/compare.py                       # newest entry of bench/RESULTS.md
    python3 bench/compare.py --new target/bench/last-run.md   # a run not recorded
    python3 bench/compare.py --entry 2026-12-07    # the newest entry of that date
    python3 bench/compare.py --all --threshold 5   # every figure; 5 % counts

`bash bench/run` calls it after each run. Each table of the new entry is
matched with the newest earlier entry holding a table of the same section,
the same command (its `- command:` line) and the same columns; figures are
then compared row by row (rows by their first cell). A figure whose column or
row is a time, a size, a CPU share, a ratio to a peer or an error (MASE) is
better lower; a throughput (samples/s) is better higher; counts (series,
requests, samples per scrape) are shown but never judged. Bullet figures such
as the XOR benchmark's `- xor/gauge/next_bits: 142.0 M samples/s per core`
are compared by their name.

The machine's load moves single figures by 10 % and more from run to run
(the entry's first lines give the load); ratios against the peer measured in
the same run move less. A change beyond --threshold is listed as better or
WORSE; --fail-on-worse makes the exit status 1 when any is WORSE.
"""

import argparse
import re
import sys
from dataclasses import dataclass, field

NUMBER = re.compile(r"^-?[0-9][0-9,]*(\.[0-9]+)?$|^-?\.[0-9]+$")
BULLET_FIGURE = re.compile(r"^- ([A-Za-z0-9_./-]+): (-?[0-9][0-9,]*(?:\.[0-9]+)?) ([^(;=,]*)(?:\(|$)")
LABELLED_FIGURE = re.compile(r"^([A-Za-z][A-Za-z ]*?) (-?[0-9][0-9,]*(?:\.[0-9]+)?)$")

# Bullets that describe a run rather than measure it.
DESCRIPTIVE = ("- data:", "- machine:", "- versions:", "- code:")
# Words that make a figure a count: shown, never judged.
COUNT_WORDS = ("measured", "requests", "samples per scrape", "points", "cycles")
# Words that make a figure better when higher.
HIGHER_WORDS = ("samples/s", "over what prometheus serves")
# Units and words that make a figure better when lower: times, sizes, CPU,
# ratios to a peer, forecast errors.
LOWER = re.compile(
    r"(?<![a-z])(s|ms|µs|mib|kib|mb|gib|bytes|cpu|share|mase|smape|msis|latency|rss|memory|wall)(?![a-z])"
    r"| / "
)


@dataclass
class Table:
    """One markdown table: its header cells and its rows by first cell."""

    header: tuple
    rows: dict = field(default_factory=dict)


@dataclass
class Section:
    """A `###` section of an entry: its command, tables and bullet figures."""

    title: str
    command: str = ""
    tables: list = field(default_factory=list)
    figures: dict = field(default_factory=dict)


@dataclass
class Entry:
    """A `##` entry of RESULTS.md: one run, with its title line."""

    title: str
    line: int
    sections: list = field(default_factory=list)


def cells(line):
    """The cells of a markdown table row."""
    return tuple(c.strip() for c in line.strip().strip("|").split("|"))


def parse(text):
    """The entries of a RESULTS.md text, oldest first."""
    entries = []
    entry = section = table = None
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if line.startswith("## "):
            entry = Entry(line[3:].strip(), n)
            entries.append(entry)
            section = table = None
        elif entry is None:
            continue
        elif line.startswith("### "):
            section = Section(line[4:].strip())
            entry.sections.append(section)
            table = None
        elif section is None:
            continue
        elif line.startswith("|"):
            row = cells(line)
            if table is None:
                table = Table(row)
                section.tables.append(table)
            elif not all(set(c) <= set("-:") for c in row):
                # Rows are keyed by their first cell; a repeated key (not
                # seen in bench's tables) keeps the first row.
                table.rows.setdefault(row[0], row)
        else:
            table = None
            if line.startswith("- command:"):
                section.command = line[len("- command:") :].strip().strip("`")
            elif not line.startswith(DESCRIPTIVE):
                section.figures.update(bullet_figures(line))
    return entries


def bullet_figures(line):
    """The figures of a bullet line, by name: `- NAME: 142.0 M samples/s ...`
    (one figure and its unit) or `- NAME: wall 0.12, CPU 0.12, MASE 1.02`
    (several, each named by the word before it; their unit is that word)."""
    m = BULLET_FIGURE.match(line)
    if m:
        return {m.group(1): (m.group(2), m.group(3).strip())}
    name, sep, rest = line[2:].partition(": ")
    if not line.startswith("- ") or not sep:
        return {}
    found = {}
    for part in rest.split(", "):
        m = LABELLED_FIGURE.match(part.strip())
        if m is None:
            return {}
        found[f"{name} · {m.group(1)}"] = (m.group(2), m.group(1))
    return found


def number(cell):
    """The cell's value when it is one plain number, else None."""
    c = cell.strip().replace("*", "")
    if not NUMBER.match(c):
        return None
    return float(c.replace(",", ""))


def direction(label):
    """+1 when a higher figure is better, -1 when lower is, 0 when neither."""
    text = " " + label.lower() + " "
    if any(w in text for w in COUNT_WORDS):
        return 0
    if any(w in text for w in HIGHER_WORDS):
        return 1
    if LOWER.search(text):
        return -1
    return 0


def sense(header, row):
    """The direction of a table cell: its column's, or, where the column
    names no unit (the exporter's table: imd, the peer, their ratio), its
    row's; a count in either is not judged."""
    if any(w in (header + " " + row).lower() for w in COUNT_WORDS):
        return 0
    return direction(header) or direction(row)


@dataclass
class Change:
    """One figure of a new entry beside the same figure of an earlier one."""

    what: str
    before: str
    now: str
    change: float  # relative, or nan for a text cell that changed
    verdict: str  # "better", "WORSE", "changed" or ""


def judge(what, before, now, better, threshold):
    """A Change for two cells, or None when they cannot be compared."""
    a, b = number(before), number(now)
    if a is None or b is None:
        words = a is None and b is None and not any(ch.isdigit() for ch in before + now)
        if words and before != now and before and now:
            # A verdict cell such as "yes" → "NO" (cells of several numbers,
            # such as ranges, are left out).
            worse = before.lower() == "yes" and now.lower() == "no"
            return Change(what, before, now, float("nan"), "WORSE" if worse else "changed")
        return None
    if a == 0:
        rel = 0.0 if b == 0 else float("inf") * (1 if b > 0 else -1)
    else:
        rel = (b - a) / abs(a)
    verdict = ""
    if better != 0 and abs(rel) > threshold:
        verdict = "better" if rel * better > 0 else "WORSE"
    return Change(what, before, now, rel, verdict)


def baseline(earlier, section, table=None, figure=None):
    """The newest earlier entry with this section, command and table (or
    bullet figure), and the matching table or figure."""
    for entry in reversed(earlier):
        for s in entry.sections:
            if s.title != section.title or s.command != section.command:
                continue
            if table is not None:
                for t in s.tables:
                    if t.header == table.header:
                        return entry, t
            elif figure in s.figures:
                return entry, s.figures[figure]
    return None, None


def compare(earlier, new, threshold):
    """Every comparable figure of `new`, grouped by table as (section title,
    table label, baseline entry title or None, [Change])."""
    groups = []
    for section in new.sections:
        for table in section.tables:
            entry, old = baseline(earlier, section, table=table)
            if entry is None:
                groups.append((section.title, table_label(table), None, []))
                continue
            changes = []
            for key, row in table.rows.items():
                prev = old.rows.get(key)
                if prev is None:
                    continue
                for col, (b, n) in enumerate(zip(prev, row)):
                    if col == 0 or col >= len(table.header):
                        continue
                    head = table.header[col]
                    what = f"{key} · {head}" if key else head
                    c = judge(what, b, n, sense(head, key), threshold)
                    if c is not None:
                        changes.append(c)
            groups.append((section.title, table_label(table), entry.title, changes))
        # Bullet figures, grouped by the entry each was last measured in.
        by_base = {}
        for name, (value, unit) in section.figures.items():
            entry, old = baseline(earlier, section, figure=name)
            base = entry.title if entry is not None else None
            c = None if entry is None else judge(name, old[0], value, direction(unit), threshold)
            by_base.setdefault(base, [])
            if c is not None:
                by_base[base].append(c)
        for base, changes in by_base.items():
            groups.append((section.title, "figures", base, changes))
    return groups


def pick(entries, which):
    """The index of the entry asked for: the newest, or the newest whose
    title starts with `which`."""
    if not entries:
        return None
    if which is None:
        return len(entries) - 1
    for i in range(len(entries) - 1, -1, -1):
        if entries[i].title.startswith(which):
            return i
    return None


def fmt_change(c):
    if c.change != c.change:  # nan: a text cell
        return f"{c.before} → {c.now}"
    pct = "new" if c.change in (float("inf"), float("-inf")) else f"{c.change * 100:+.1f} %"
    return f"{c.before} → {c.now} ({pct})"


def table_label(table):
    """A table's name in the report: its first columns."""
    cols = table.header[:3]
    return "[" + " | ".join(cols) + (" | …]" if len(table.header) > 3 else "]")


def report(groups, threshold, show_all, out):
    """Prints the comparison; returns how many figures are WORSE."""
    worse = compared = 0
    section = None
    for title, part, base, changes in groups:
        if title != section:
            print(f"### {title}", file=out)
            section = title
        if base is None:
            print(f"  {part}: no earlier entry with the same command and columns", file=out)
            continue
        shown = [c for c in changes if show_all or c.verdict]
        compared += len(changes)
        print(f"  {part} against {base}", file=out)
        for c in shown:
            mark = f"  {c.verdict}" if c.verdict else ""
            print(f"    {c.what}: {fmt_change(c)}{mark}", file=out)
        quiet = len(changes) - len(shown)
        if quiet:
            print(f"    ({quiet} more within {threshold * 100:g} % or not judged)", file=out)
        worse += sum(1 for c in changes if c.verdict == "WORSE")
    print(
        f"{compared} figures compared; {worse} WORSE by more than {threshold * 100:g} %",
        file=out,
    )
    return worse


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--results", default="bench/RESULTS.md", help="the results file (default %(default)s)")
    ap.add_argument(
        "--new",
        help="a run's entry not (yet) in the results file, e.g. target/bench/last-run.md "
        "after `bash bench/run --no-record`; it is compared with every entry of --results",
    )
    ap.add_argument(
        "--entry",
        help="compare the newest entry whose title starts with this (e.g. a date, "
        "`2026-12-07 00:04`) instead of the newest",
    )
    ap.add_argument(
        "--threshold",
        type=float,
        default=10.0,
        help="a change counts when above this many percent (default %(default)s)",
    )
    ap.add_argument("--all", action="store_true", help="list every compared figure, not only the changes")
    ap.add_argument("--fail-on-worse", action="store_true", help="exit 1 when a figure is WORSE")
    args = ap.parse_args(argv)
    if args.threshold < 0:
        ap.error("--threshold must be 0 or above")

    try:
        with open(args.results, encoding="utf-8") as f:
            entries = parse(f.read())
        if args.new:
            with open(args.new, encoding="utf-8") as f:
                fresh = parse(f.read())
            if not fresh:
                print(f"compare: {args.new}: no entry (a line starting with '## ')", file=sys.stderr)
                return 2
            earlier, new = entries, fresh[-1]
        else:
            i = pick(entries, args.entry)
            if i is None:
                what = f"whose title starts with {args.entry!r}" if args.entry else "(a line starting with '## ')"
                print(f"compare: {args.results}: no entry {what}", file=sys.stderr)
                return 2
            earlier, new = entries[:i], entries[i]
    except OSError as e:
        print(f"compare: {e}", file=sys.stderr)
        return 2

    where = args.new or f"{args.results} line {new.line}"
    print(f"## {new.title} ({where})")
    threshold = args.threshold / 100
    worse = report(compare(earlier, new, threshold), threshold, args.all, sys.stdout)
    return 1 if worse and args.fail_on_worse else 0


if __name__ == "__main__":
    sys.exit(main())
