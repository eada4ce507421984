"""`infoscope export`: a run's tables as parquet or csv files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from diagnostics.cli.base import CLIError, Handler, command


@command("export", help="export a run's tables to parquet or csv files")
def _export(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("run", type=Path, help="run directory")
    p.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    p.add_argument("--out", type=Path, help="output folder (default: RUN/export)")

    def run(args: argparse.Namespace) -> int:
        import pandas as pd

        from diagnostics.runlog import RunLogError, open_run

        try:
            reader = open_run(args.run)
        except RunLogError as exc:
            raise CLIError(str(exc)) from None
        out = args.out or (reader.run_dir / "export")
        out.mkdir(parents=True, exist_ok=True)
        with reader:
            tables = {
                "scalars": reader.scalars(),
                "distributions": reader.distributions(),
                "alerts": reader.alerts(),
                "events": reader.events(),
            }
            meta = reader.meta
        for name, df in tables.items():
            df = df.copy()
            for col in ("data", "evidence", "detail"):
                if col in df:
                    df[col] = [json.dumps(v) for v in df[col]]
            for col in ("metric", "layer"):
                if col in df and isinstance(df[col].dtype, pd.CategoricalDtype):
                    df[col] = df[col].astype(object)
            path = out / f"{name}.{args.format}"
            if args.format == "csv":
                df.to_csv(path, index=False)
            else:
                df.to_parquet(path, index=False)
            print(f"{path} ({len(df)} rows)")
        (out / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
        print(out / "meta.json")
        return 0

    return run
