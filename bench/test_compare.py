"""Tests of bench/compare.py (run by .ci/test: python3 -m unittest discover -s bench)."""

import io
import os
import sys
import tempfile
import unittest
from contextlib import redirect_stderr, redirect_stdout

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

OLD = """# Benchmark results

## 2026-01-01 10:00 UTC — bash bench/run

### engine at scale

- command: python3 bench/engine.py --series 100

| models | series measured | fit CPU s | peak RSS, MiB | under 1 GiB |
|---|---:|---:|---:|---|
| mad,drift | 100 | 10.0 | 200 | yes |
| auto,auto | 100 | 50.0 | 900 | yes |

### XOR chunk decoding

- xor/gauge/next_bits: 140.0 M samples/s per core (9.64 bytes/sample, best of 15)
- imd / peer: wall 0.50, CPU 0.40

"""

NEW = """## 2026-01-02 10:00 UTC — bash bench/run

### engine at scale

- command: python3 bench/engine.py --series 100

| models | series measured | fit CPU s | peak RSS, MiB | under 1 GiB |
|---|---:|---:|---:|---|
| mad,drift | 300 | 12.0 | 150 | yes |
| auto,auto | 100 | 50.5 | 1100 | NO |

### XOR chunk decoding

- xor/gauge/next_bits: 100.0 M samples/s per core (9.64 bytes/sample, best of 15)
- imd / peer: wall 0.30, CPU 0.41

"""


def changes(text, threshold=0.10):
    entries = compare.parse(text)
    groups = compare.compare(entries[:-1], entries[-1], threshold)
    return {(g[0], c.what): c for g in groups for c in g[3]}, groups


class CompareTest(unittest.TestCase):
    def test_judges_each_figure_by_its_unit(self):
        got, _ = changes(OLD + NEW)
        fit = got[("engine at scale", "mad,drift · fit CPU s")]
        self.assertAlmostEqual(fit.change, 0.2)
        self.assertEqual(fit.verdict, "WORSE")
        self.assertEqual(got[("engine at scale", "mad,drift · peak RSS, MiB")].verdict, "better")
        # Within the threshold: listed with --all, not judged.
        self.assertEqual(got[("engine at scale", "auto,auto · fit CPU s")].verdict, "")
        # A count moves without a verdict.
        self.assertEqual(got[("engine at scale", "mad,drift · series measured")].verdict, "")
        # A target met before and missed now.
        self.assertEqual(got[("engine at scale", "auto,auto · under 1 GiB")].verdict, "WORSE")
        # Throughput is better higher; a ratio to a peer better lower.
        self.assertEqual(got[("XOR chunk decoding", "xor/gauge/next_bits")].verdict, "WORSE")
        self.assertEqual(got[("XOR chunk decoding", "imd / peer · wall")].verdict, "better")
        self.assertEqual(got[("XOR chunk decoding", "imd / peer · CPU")].verdict, "")

    def test_compares_only_the_same_command_and_columns(self):
        other = NEW.replace("--series 100", "--series 10000")
        got, groups = changes(OLD + other)
        self.assertFalse(any(s == "engine at scale" for s, _ in got))
        self.assertIn(("engine at scale", "[models | series measured | fit CPU s | …]", None, []), groups)
        wider = NEW.replace("| under 1 GiB |\n|---|---:|---:|---:|---|", "| under 1 GiB | x |\n|---|---:|---:|---:|---|---|")
        got, _ = changes(OLD + wider)
        self.assertFalse(any(s == "engine at scale" for s, _ in got))

    def test_takes_the_newest_earlier_entry(self):
        middle = NEW.replace("2026-01-02", "2026-01-01 12:00").replace("12.0", "6.0")
        got, groups = changes(OLD + middle + NEW)
        self.assertEqual(got[("engine at scale", "mad,drift · fit CPU s")].before, "6.0")
        self.assertTrue(groups[0][2].startswith("2026-01-01 12:00"))

    def test_bullet_figures_name_the_entry_each_was_last_measured_in(self):
        a = "## a\n\n### x\n\n- f/one: 10.0 M samples/s per core\n- f/two: 10.0 M samples/s per core\n\n"
        b = "## b\n\n### x\n\n- f/two: 20.0 M samples/s per core\n\n"
        c = "## c\n\n### x\n\n- f/one: 5.0 M samples/s per core\n- f/two: 30.0 M samples/s per core\n\n"
        entries = compare.parse(a + b + c)
        groups = compare.compare(entries[:-1], entries[-1], 0.10)
        got = {g[2]: [(ch.what, ch.before, ch.verdict) for ch in g[3]] for g in groups}
        self.assertEqual(got, {"a": [("f/one", "10.0", "WORSE")], "b": [("f/two", "20.0", "better")]})

    def test_cells_that_are_not_one_number_are_left_out(self):
        for cell in ("0.79–2.59", "21.02 / 2.12", "0.15 (0.29)", "1000 / 250", ""):
            self.assertIsNone(compare.number(cell), cell)
        self.assertEqual(compare.number("1,008.5"), 1008.5)
        self.assertIsNone(compare.judge("x", "0.79–2.59", "0.80–2.60", -1, 0.1))

    def test_descriptive_bullets_are_not_figures(self):
        entry = compare.parse(
            "## t\n\n### s\n\n- data: 1000 series x 7 days at 15 s = 40,320,000 samples\n"
            "- machine: 2 CPUs\n- 3 runs per path, imd and curl alternating: medians\n"
        )[0]
        self.assertEqual(entry.sections[0].figures, {})

    def test_the_command_line_fails_on_worse_only_when_asked(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "RESULTS.md")
            with open(path, "w", encoding="utf-8") as f:
                f.write(OLD + NEW)
            out = io.StringIO()
            with redirect_stdout(out):
                self.assertEqual(compare.main(["--results", path]), 0)
                self.assertEqual(compare.main(["--results", path, "--fail-on-worse"]), 1)
                # The first entry has nothing before it.
                self.assertEqual(compare.main(["--results", path, "--entry", "2026-01-01", "--fail-on-worse"]), 0)
            self.assertIn("WORSE", out.getvalue())
            self.assertIn("no earlier entry", out.getvalue())
            err = io.StringIO()
            with redirect_stderr(err), redirect_stdout(io.StringIO()):
                self.assertEqual(compare.main(["--results", path, "--entry", "1999"]), 2)
                self.assertEqual(compare.main(["--results", os.path.join(d, "missing.md")]), 2)
            self.assertIn("no entry whose title starts with '1999'", err.getvalue())
            self.assertIn("missing.md", err.getvalue())

    def test_reads_the_recorded_results(self):
        # The real file's tables and bullets, as bench/run and the scripts
        # write them: an entry of `bash bench/run --only engine,forecast`
        # finds the one before it and compares its engine and forecast
        # tables figure by figure.
        with open(os.path.join(HERE, "RESULTS.md"), encoding="utf-8") as f:
            entries = compare.parse(f.read())
        i = compare.pick(entries, "2026-12-07 00:04")
        self.assertIsNotNone(i)
        groups = compare.compare(entries[:i], entries[i], 0.10)
        compared = {g[0] for g in groups if g[2] is not None and g[3]}
        self.assertEqual(compared, {"engine at scale", "forecast/score vs statsforecast"})
        self.assertGreater(sum(len(g[3]) for g in groups), 50)


if __name__ == "__main__":
    unittest.main()
