"""Write the README's results table (markdown) from the experiments' results JSON.

    python paper_figures/readme_table.py [--results DIR] [--out FILE] [--readme README.md]

``--out`` defaults to experiments/results/TABLE.md; ``--readme`` also replaces the generated blocks of the README
(between ``<!-- results:ID -->`` and ``<!-- /results:ID -->``; ID an experiment such as ``e3``, ``run_all``, or
``others`` for the rest).

One section per ``eN.json`` that has a ``results.table`` (a list of rows) and/or ``results.tables``
(``{caption: rows}``). Rows with ``method`` and
``rmse_meV`` whose other values are all labels (strings or integers) are pivoted: one column per method (in order
of appearance), the other keys index the rows.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"
    return str(v)


def _markdown(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def table(rows: list[dict]) -> str:
    """Markdown for one experiment's rows (pivoted by method when they have ``method`` and ``rmse_meV``)."""
    if rows and all("method" in r and "rmse_meV" in r for r in rows):
        methods = list(dict.fromkeys(r["method"] for r in rows))
        index_keys = [k for k in rows[0] if k not in ("method", "rmse_meV")]
        labels_only = all(isinstance(r[k], (str, int)) or r[k] is None for r in rows for k in index_keys)
        if all(set(r) == set(rows[0]) for r in rows) and labels_only:
            out: dict[tuple, dict] = {}
            for r in rows:
                out.setdefault(tuple(r[k] for k in index_keys), {})[r["method"]] = r["rmse_meV"]
            header = index_keys + [f"{m} (meV)" for m in methods]
            return _markdown(header, [list(k) + [v.get(m) for m in methods] for k, v in out.items()])
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return _markdown(keys, [[r.get(k) for k in keys] for r in rows])


def _mean_summary(res: dict) -> list[dict]:
    """One row per case with each method's ``mean (max)`` RMSE, for results whose cases carry
    ``mean_rmse_meV`` per method (E3); empty otherwise."""
    cases = res.get("cases") or {}
    labels = res.get("labels") or {}
    rows = []
    for key, case in cases.items():
        methods = case.get("methods") or {}
        if not methods or not all("mean_rmse_meV" in m for m in methods.values()):
            return []
        row = {"case": key}
        for name, m in methods.items():
            row[labels.get(name, name)] = f"{m['mean_rmse_meV']:.1f} ({m['max_rmse_meV']:.0f})"
        rows.append(row)
    return rows


def sections(results: Path) -> dict[str, str]:
    """Markdown per experiment id (``"e3"`` ...) for every ``eN.json`` in ``results`` with a table, plus
    ``"run_all"`` (the whole run's time) when ``run_all.json`` exists."""
    out: dict[str, str] = {}
    files = sorted(results.glob("e[0-9]*.json"), key=lambda p: int(p.stem[1:]))
    for path in files:
        rec = json.loads(path.read_text())
        res = rec.get("results") or {}
        tables = dict(res.get("tables") or {})
        summary = _mean_summary(res)
        if summary:
            tables = {"mean (max) RMSE over the bands, meV": summary, **tables}
        if res.get("table") and not summary:
            tables = {"": res["table"], **tables}
        if not tables:
            continue
        m = rec.get("machine", {})
        body = "\n\n".join((f"{name}:\n\n" if name else "") + table(rows) for name, rows in tables.items())
        if summary and res.get("table"):  # the long per-band table folds away under its summary
            body += f"\n\n<details><summary>per band</summary>\n\n{table(res['table'])}\n\n</details>"
        out[path.stem] = (f"### {rec['title']}\n\nWall time {rec['wall_time_s']:.0f} s on {m.get('cpu_count', '?')} "
                          f"CPU cores ({m.get('jax_backend', '?')}), diffbands {rec['versions'].get('diffbands')}, "
                          f"jax {rec['versions'].get('jax')}, {rec['created']}.\n\n{body}")
    run_all = results / "run_all.json"
    r = json.loads(run_all.read_text()) if run_all.exists() else {}
    if r and not r.get("only"):  # a partial run (--only) says nothing about the whole
        out["run_all"] = f"Whole run (`python -m experiments`): {r['total_wall_time_s'] / 60:.1f} min."
    return out


def fill_readme(readme: Path, parts: dict[str, str]) -> None:
    """Replace the text between ``<!-- results:ID -->`` and ``<!-- /results:ID -->`` in ``readme`` by the section
    ``ID`` (``others``: every section not placed on its own). Markers without results are left as they are."""
    text = readme.read_text()
    placed = set(re.findall(r"<!-- results:(\w+) -->", text))
    parts = dict(parts)
    parts["others"] = "\n\n".join(v for k, v in parts.items() if k not in placed)
    for key in placed:
        if not parts.get(key):
            continue
        pattern = re.compile(rf"(<!-- results:{key} -->).*?(<!-- /results:{key} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"{readme}: <!-- results:{key} --> has no closing <!-- /results:{key} -->")
        body = parts[key]
        text = pattern.sub(lambda m, body=body: f"{m.group(1)}\n{GENERATED}\n\n{body}\n{m.group(2)}", text)
    readme.write_text(text)


GENERATED = "<!-- generated by paper_figures/readme_table.py from experiments/results/*.json; do not edit -->"


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(ROOT / "experiments" / "results"))
    parser.add_argument("--out", default=None)
    parser.add_argument("--readme", default=None, help="also fill the <!-- results:ID --> blocks of this file")
    args = parser.parse_args(argv)
    results = Path(args.results)
    parts = sections(results)
    out = Path(args.out) if args.out else results / "TABLE.md"
    out.write_text("\n\n".join([GENERATED, *parts.values()]) + "\n")
    print(f"wrote {out}")
    if args.readme:
        fill_readme(Path(args.readme), parts)
        print(f"filled the results blocks of {args.readme}")
    return out


if __name__ == "__main__":
    main()
