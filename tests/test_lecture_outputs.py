"""What a saved lecture shows without a kernel: no widget state (ipywidgets 8's state cannot be
shown by ipywidgets 7 on Colab, nor by viewers without a widget manager), and under every widget
cell the static figure it draws first. ``tools/execute_lectures.py`` saves lectures that way."""
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LECTURES = sorted((ROOT / "lectures").glob("*.ipynb"))
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
spec = importlib.util.spec_from_file_location("execute_lectures", ROOT / "tools" / "execute_lectures.py")
execute_lectures = importlib.util.module_from_spec(spec)
spec.loader.exec_module(execute_lectures)


@pytest.mark.parametrize("path", LECTURES, ids=lambda p: p.name)
def test_saved_lecture_keeps_no_widget_state_and_a_figure_under_each_widget(path):
    notebook = json.loads(path.read_text())
    assert "widgets" not in notebook["metadata"], f"{path.name}: saved widget state; run tools/execute_lectures.py"
    for index, cell in enumerate(notebook["cells"]):
        outputs = cell.get("outputs", [])
        assert not outputs or cell.get("execution_count") is not None, (
            f"{path.name} cell {index}: outputs without an execution count (nbval fails such a cell)")
        assert not any(WIDGET_VIEW in o.get("data", {}) for o in outputs), f"{path.name} cell {index}: a widget view"
        if cell["cell_type"] == "code" and "widgets.interact(" in "".join(cell["source"]):
            assert any("image/png" in o.get("data", {}) for o in outputs), (
                f"{path.name} cell {index}: a widget cell with no static figure saved")


def test_strip_widgets_drops_state_and_views_and_keeps_everything_else():
    figure = {"output_type": "display_data", "data": {"image/png": "iVBOR"}, "metadata": {}}
    view = {"output_type": "display_data", "metadata": {},
            "data": {WIDGET_VIEW: {"model_id": "x"}, "text/plain": "interactive(...)"}}
    text = {"output_type": "stream", "name": "stdout", "text": "k-NN 0.49\n"}
    notebook = {"metadata": {"widgets": {"state": {}}, "kernelspec": {"name": "python3"}},
                "cells": [{"cell_type": "code", "outputs": [figure, view, text], "source": "show()"},
                          {"cell_type": "markdown", "source": "text"}]}
    assert execute_lectures.strip_widgets(notebook) == 1
    assert notebook["metadata"] == {"kernelspec": {"name": "python3"}}
    assert notebook["cells"][0]["outputs"] == [figure, text]
