"""The results-table script: aggregation over seeds and the RESULTS.md section it rewrites."""

from __future__ import annotations

import importlib.util
import statistics
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "synth_table.py"


def _module():
    spec = importlib.util.spec_from_file_location("synth_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _summary(model: str, seed: int, miou: float) -> dict:
    m = {"mIoU": miou, "mAP_weighted": 0.5, "AUROC_weighted": 0.75}
    return {"model": model, "seed": seed, "params": 2_500_000, "trainable": 250_000,
            "train_seconds": 10.0 + seed, "val": m, "test": m, "test_novel": m}  # fmt: skip


def test_table_means_and_stds_over_seeds() -> None:
    st = _module()
    rows = [_summary("a_tiny", 0, 0.40), _summary("a_tiny", 1, 0.50), _summary("oracle_x", 0, 0.9)]
    text = st.table(rows, {"prior": {"test": {"mIoU": 0.1}}}, n_seeds=2)
    lines = text.splitlines()
    std = 100 * statistics.stdev([0.40, 0.50])
    assert f"| a_tiny | 2/2 | 45.0 ± {std:.1f} |" in lines[2]
    assert "oracle_x (oracle) | 1/2 | 90.0 |" in lines[3]
    assert lines[4].startswith("| baseline: prior | - | - |")  # no val numbers for it
    assert "10.0" in lines[4]
    assert all(line.count("|") == lines[0].count("|") for line in lines)


def test_write_section_replaces_only_between_markers(tmp_path) -> None:
    st = _module()
    path = tmp_path / "RESULTS.md"
    path.write_text("# Results\n\nkept above\n")
    st.write_section(path, "first")
    st.write_section(path, "second")
    text = path.read_text()
    assert "kept above" in text and "second" in text and "first" not in text
    assert text.count(st.START) == 1 and text.count(st.END) == 1


def test_header_names_the_machine_of_each_run() -> None:
    st = _module()
    a0, a1, b0 = _summary("a_tiny", 0, 0.4), _summary("a_tiny", 1, 0.4), _summary("b_tiny", 0, 0.4)
    a0["machine"] = a1["machine"] = "box A"
    assert st.machines([a0, a1]) == "Machine: box A."
    assert st.machines([a0, a1, b0]) == "Machines: box A (`a_tiny`); not recorded (`b_tiny`)."
