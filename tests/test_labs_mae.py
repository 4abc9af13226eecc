"""Tests of course_lib.labs.mae: the full-sequence baseline's token count, the speed-up record,
the pooled features, and the sweep's plumbing on a tiny run; the CLI commands end to end (slow)."""
import json
import subprocess
import sys

import pytest
import torch

from course_lib.backbones import build_vit, use_fused_attention
from course_lib.evaluate import Pooled
from course_lib.labs.mae import masking_sweep, measure_speedup, plot_information, plot_sweep
from course_lib.mae import MAE, MAEConfig, full_sequence_loss


# --- the speed-up ---------------------------------------------------------------------------------
def test_full_sequence_baseline_runs_the_encoder_on_every_token():
    torch.manual_seed(0)
    mae = MAE(build_vit("cpu", stem="patch", patch_size=8, depth=1),
              MAEConfig(decoder_dim=32, decoder_depth=1, decoder_heads=2))
    seen = []
    mae.encoder.blocks[0].register_forward_hook(lambda m, i, o: seen.append(i[0].shape[1]))
    images = torch.randn(2, 3, 32, 32)
    loss = full_sequence_loss(mae, images, 0.75, torch.zeros(96))
    assert seen == [17] and torch.isfinite(loss)
    mae(images, 0.75)
    assert seen == [17, 5]                                         # MAE: CLS + 4 visible


def test_measure_speedup_reports_ratios_of_its_own_medians():
    result = measure_speedup("cpu", repeats=1)
    assert result["n_tokens"] == 65 and result["n_visible_tokens"] == 17      # 8x8 patches of 4 px
    assert result["token_ratio"] == pytest.approx(65 / 17)
    seconds = result["median_seconds"]
    assert result["encoder_speedup"] == pytest.approx(seconds["encoder_all"] / seconds["encoder_visible"])
    assert result["step_speedup"] == pytest.approx(seconds["full_sequence_step"] / seconds["mae_step"])
    assert all(value > 0 for value in seconds.values())


# --- features -------------------------------------------------------------------------------------
def test_mean_pooled_is_the_mean_of_the_patch_tokens_and_fusion_changes_nothing():
    torch.manual_seed(0)
    encoder = build_vit("cpu", stem="patch", patch_size=8, depth=2).eval()
    images = torch.randn(3, 3, 32, 32)
    tokens = encoder.forward_features(images)
    torch.testing.assert_close(Pooled(encoder, "mean")(images), tokens[:, 1:].mean(1))
    fused = Pooled(encoder, "mean")(images)
    use_fused_attention(encoder, False)
    assert all(not b.attn.fused_attn for b in encoder.blocks)
    torch.testing.assert_close(Pooled(encoder, "mean")(images), fused, rtol=1e-5, atol=1e-5)


# --- the sweep ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_tiny_sweep_has_every_run_and_reuses_random_075(tmp_path):
    result = masking_sweep("cpu", ratios=(0.5, 0.75), strategies=("random", "grid"), steps=2,
                           finetune_steps=2, n_train=256, n_test=128, progress=False)
    assert (result["settings"]["n_train"], result["settings"]["n_test"]) == (256, 128)
    assert set(result["ratios"]) == {"0.5", "0.75"} and set(result["strategies"]) == {"random", "grid"}
    assert result["strategies"]["random"] is result["ratios"]["0.75"]
    for run in [*result["ratios"].values(), result["strategies"]["grid"], result["random_init"]]:
        for key in ("knn_accuracy", "linear_probe", "finetune_accuracy"):
            assert 0.0 <= run[key] <= 1.0
    assert result["ratios"]["0.5"]["curves"]["step"] and result["best_ratio"] in (0.5, 0.75)
    json.dumps(result)                                              # JSON-able
    import matplotlib
    matplotlib.use("Agg")
    plot_sweep(result).savefig(tmp_path / "sweep.png")
    plot_information({"text": 6.7, "images": 4 / 3}).savefig(tmp_path / "info.png")
    with pytest.raises(ValueError, match="ratios"):
        masking_sweep("cpu", ratios=(1.0,), steps=1)
    with pytest.raises(ValueError, match="strategies"):
        masking_sweep("cpu", strategies=("checkerboard",), steps=1)
    with pytest.raises(ValueError, match="n_train must be a positive int, got 0"):
        masking_sweep("cpu", n_train=0, steps=1)


@pytest.mark.slow
def test_mae_cli_commands_write_their_json(tmp_path):
    from course_lib.__main__ import main
    env_cmd = [sys.executable, "-m", "course_lib"]   # the sweep runs as `python -m course_lib`
    speed = tmp_path / "speed.json"
    assert main(["mae-speedup", "--scale", "cpu", "--repeats", "1", "--json", str(speed)]) == 0
    figures = json.loads(speed.read_text())
    assert {"encoder_speedup", "token_ratio", "step_speedup"} <= set(figures)
    sweep = tmp_path / "sweep.json"
    out = subprocess.run([*env_cmd, "mae-sweep", "--scale", "cpu", "--steps", "2",
                          "--finetune-steps", "2", "--n-train", "256", "--n-test", "128",
                          "--ratios", "0.25", "0.9", "--strategies", "block", "--json", str(sweep)],
                         check=True, capture_output=True, text=True, timeout=300)
    result = json.loads(sweep.read_text())
    assert set(result["ratios"]) == {"0.25", "0.9"} and set(result["strategies"]) == {"block"}
    assert result["settings"]["n_test"] == 128
    assert "block @ 0.75" in out.stdout and "best ratio" in out.stdout


# --- redundancy and the widget's figure ---------------------------------------------------------------
def test_neighbour_fill_error_matches_a_patch_loop():
    from course_lib.data import make_shapes, normalize
    from course_lib.mae import random_masking
    from course_lib.labs.mae import neighbour_fill_error
    images, _, _ = make_shapes(3, seed=0)
    p, g, ratio = 8, 4, 0.5
    got = neighbour_fill_error(images, ratio, patch_size=p, seed=5)
    _, mask, _ = random_masking(torch.zeros(3, g * g, 1), ratio, torch.Generator().manual_seed(5))
    x = normalize(images).double()
    fill_sq = mean_sq = count = 0.0
    for b in range(3):
        colour = {(i, j): x[b, :, i * p:(i + 1) * p, j * p:(j + 1) * p].mean(dim=(1, 2))
                  for i in range(g) for j in range(g)}
        visible = [(i, j) for (i, j) in colour if mask[b, i * g + j] == 0]
        visible_mean = sum(colour[v] for v in visible) / len(visible)
        for (i, j) in colour:
            if mask[b, i * g + j] == 0:
                continue
            near = [colour[(a, c)] for (a, c) in visible
                    if (a, c) != (i, j) and abs(a - i) <= 1 and abs(c - j) <= 1]
            guess = sum(near) / len(near) if near else visible_mean
            block = x[b, :, i * p:(i + 1) * p, j * p:(j + 1) * p]
            fill_sq += (block - guess.view(3, 1, 1)).square().mean().item()
            mean_sq += (block - visible_mean.view(3, 1, 1)).square().mean().item()
            count += 1
    assert got["neighbour_fill_mse"] == pytest.approx(fill_sq / count, rel=1e-5)
    assert got["visible_mean_mse"] == pytest.approx(mean_sq / count, rel=1e-5)
    assert got["explained"] == pytest.approx(1 - fill_sq / mean_sq, rel=1e-4)


def test_masking_figure_rows():
    import matplotlib
    matplotlib.use("Agg")
    from course_lib.data import make_shapes
    from course_lib.viz import masking_figure
    images, _, _ = make_shapes(3, seed=0)
    for masking in ("random", "block", "grid"):
        fig = masking_figure(images, 0.75, masking, patch_size=4)
        assert len(fig.axes) == 2 * 3                        # original and masked rows only
    torch.manual_seed(0)
    mae = MAE(build_vit("cpu", stem="patch", patch_size=8, depth=1),
              MAEConfig(decoder_dim=32, decoder_depth=1, decoder_heads=2))
    fig = masking_figure(images, 0.5, "random", model=mae)
    assert len(fig.axes) == 4 * 3                            # two reconstruction rows
    assert [fig.axes[row * 3].get_title(loc="left") for row in range(4)] == [
        "original", "masked", "model alone", "true patch stats"]


def test_unit_3_model_answer_quotes_the_course_run_of_the_three_strategies():
    """The model answer on random, block-wise and grid masking quotes the command it tells students
    to run (``benchmarks/results/mae_strategies_seed0.json``): the loss order it argues for holds
    there, and each figure it gives is the file's."""
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    run = json.loads((root / "benchmarks" / "results" / "mae_strategies_seed0.json").read_text())
    assert run["scale"] == "cpu" and run["seed"] == 0 and run["settings"]["train"]["steps"] == 800
    rows = run["strategies"]
    loss = {name: rows[name]["reconstruction_loss"] for name in ("random", "block", "grid")}
    assert loss["grid"] < loss["random"] < loss["block"]
    cells = json.loads((root / "solutions" / "03_mae" / "mae.ipynb").read_text())["cells"]
    text = " ".join(" ".join("".join(cell["source"]).split()) for cell in cells)
    knn = [rows[name]["knn_accuracy"] for name in rows]
    for quote in (f"grid {loss['grid']:.3f}, random {loss['random']:.3f}, block {loss['block']:.3f}",
                  f"k-NN {min(knn):.3f} to {max(knn):.3f}",
                  f"linear probe ({rows['random']['linear_probe']:.3f} against {rows['grid']['linear_probe']:.3f} "
                  f"for grid and {rows['block']['linear_probe']:.3f} for block)",
                  f"fine-tune ({rows['random']['finetune_accuracy']:.3f} against "
                  f"{rows['grid']['finetune_accuracy']:.3f} and {rows['block']['finetune_accuracy']:.3f})"):
        assert quote in text, quote
