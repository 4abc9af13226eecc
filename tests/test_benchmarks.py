"""The benchmark scripts run end to end at a toy size and print the rows they promise (their
figures are read by people, not asserted: timings on a shared machine are noise)."""
import importlib.util
import math
import runpy
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_script(name: str, *args: str, monkeypatch) -> None:
    """``python benchmarks/NAME ARGS`` in this process (each subprocess would import torch again)."""
    monkeypatch.setattr(sys, "argv", [str(BENCHMARKS / name), *args])
    runpy.run_path(str(BENCHMARKS / name), run_name="__main__")


def test_dino_step_prints_course_lib_and_the_lightly_rows_or_how_to_get_them(monkeypatch, capsys):
    run_script("dino_step.py", "--batch-size", "4", "--local-crops", "2", "--out-dim", "64",
               "--repeats", "1", monkeypatch=monkeypatch)
    out = capsys.readouterr().out
    assert "course_lib" in out and "ratio to course_lib  1.00x" in out
    if importlib.util.find_spec("lightly") is not None:
        assert "lightly grouped" in out and "lightly per-view" in out
    else:
        assert "make bench-deps" in out


def test_course_scale_search_runs_a_method_and_appends_its_row(tmp_path, monkeypatch):
    import json
    out = tmp_path / "rows.jsonl"
    extras = {"dino": ["--remap", "1", "--local", "2", "--knn-every", "1", "--sinkhorn", "3", "--solarize", "0.2"],
              "simclr": ["--one-colour", "--one-size", "0.2", "--library-views"]}
    for method in ("simclr", "dino"):
        run_script("course_scale.py", "--method", method, "--steps", "2", "--warmup", "1",
                   "--batch", "16", "--n-train", "64", "--n-test", "32", "--rotate", "90",
                   "--out-dim", "32", "--threads", "1", "--out", str(out),
                   *extras.get(method, []), monkeypatch=monkeypatch)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["method"] for r in rows] == ["simclr", "dino"]
    assert rows[0]["one_colour"] and rows[0]["library_views"] and not rows[1]["library_views"]
    assert rows[0]["one_size"] == 0.2 and rows[1]["one_size"] == 0.0
    assert (rows[0]["solarize"], rows[1]["solarize"]) == (0.0, 0.2)
    with pytest.raises(SystemExit):                             # local crops are DINO's alone
        run_script("course_scale.py", "--method", "simclr", "--local", "2", "--out", str(out),
                   monkeypatch=monkeypatch)
    for row in rows:
        assert 0.0 <= row["knn_before"] <= 1.0 and 0.0 <= row["knn_after"] <= 1.0
        assert row["steps"] == 2 and row["wall_s"] > 0
    assert "knn_teacher" in rows[1] and "teacher_entropy" in rows[1]
    assert [step for step, _ in rows[1]["knn_curve"]] == [1, 2]
    nmi = rows[1]["cluster_nmi"]
    assert set(nmi) == {"shape", "hue", "background", "area", "position", "clusters_used"}
    assert all(0.0 <= nmi[k] <= 1.0 for k in nmi if k != "clusters_used")
    assert 1 <= nmi["clusters_used"] <= 32


def _course_scale():
    spec = importlib.util.spec_from_file_location("course_scale", BENCHMARKS / "course_scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_course_scale_solarises_the_second_view_only():
    """``--solarize 1``: in the second view every pixel at 128/255 or above becomes 255 minus it
    (200 -> 55, 100 stays); the first view and the plain evaluation view keep 200."""
    from types import SimpleNamespace

    import torch
    from course_lib.data import SHAPES_MEAN, SHAPES_STD
    module = _course_scale()
    args = SimpleNamespace(image_size=8, crop=[1.0, 1.0], strength=0.0, hue=0.0, gray=0.0, local_crop=[0.1, 0.4],
                           seed=0, rotate=0.0, remap=0.0, library_views=False, solarize=1.0)
    images = torch.full((4, 3, 8, 8), 200, dtype=torch.uint8)
    images[:, 1] = 100                                   # green below the threshold: never inverted
    mean, std = torch.tensor(SHAPES_MEAN).view(1, 3, 1, 1), torch.tensor(SHAPES_STD).view(1, 3, 1, 1)

    def pixels(view):
        return (view * std + mean) * 255
    first, second = map(pixels, module.make_views(args)(images))
    [plain] = map(pixels, module.make_views(args, n_views=1, colour=False)(images))
    for view, red in ((first, 200), (second, 55), (plain, 200)):
        assert torch.allclose(view[:, 0], torch.full_like(view[:, 0], red), atol=1e-3)
        assert torch.allclose(view[:, 1], torch.full_like(view[:, 1], 100), atol=1e-3)


def test_course_scale_colour_remap_keeps_each_pixels_length_and_every_edge():
    import torch
    module = _course_scale()
    views = torch.randn(6, 3, 8, 8)
    generator = torch.Generator().manual_seed(0)
    mixed = module.remap_colours(views, 1.0, generator)
    assert torch.allclose(mixed.norm(dim=1), views.norm(dim=1), atol=1e-5)   # orthogonal per pixel
    assert not torch.allclose(mixed, views)
    flat = torch.zeros(1, 3, 8, 8)
    flat[..., 4:] = torch.tensor([0.9, -0.2, 0.4]).view(1, 3, 1, 1)        # two flat halves
    edge = module.remap_colours(flat, 1.0, generator)
    assert torch.allclose(edge[..., :4], torch.zeros(1, 3, 8, 4))           # still flat ...
    assert (edge[..., 4:] - edge[..., 4:5]).abs().max() < 1e-6               # ... on both sides
    assert torch.equal(module.remap_colours(views, 0.0, generator), views)  # p = 0: untouched


def test_mae_ratio_long_trains_at_the_asked_ratio_and_appends_one_row_per_ratio(tmp_path,
                                                                                monkeypatch):
    import json
    out = tmp_path / "ratios.jsonl"
    run_script("mae_ratio_long.py", "--ratios", "0.3", "0.6", "--steps", "2", "--finetune-steps",
               "1", "--n-train", "128", "--n-test", "64", "--out", str(out), "--save-dir",
               str(tmp_path / "family"), monkeypatch=monkeypatch)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["mask_ratio"] for r in rows] == [0.3, 0.6]        # read back from the run's config
    from course_lib.labs.mae_ratios import family
    saved = family(tmp_path / "family")                         # one encoder per ratio, by name
    assert list(saved) == [0.3, 0.6] and saved[0.6].meta["steps"] == 2
    for row in rows:
        assert row["steps"] == 2 and row["finetune_steps"] == 1
        for key in ("knn_accuracy", "linear_probe", "finetune_accuracy", "untrained_knn_accuracy"):
            assert 0.0 <= row[key] <= 1.0, key


def test_the_long_mae_model_is_written_whole_with_its_losses(tmp_path, monkeypatch, capsys):
    from course_lib.labs.mae_ratios import load_mae
    out = tmp_path / "model.pt"
    run_script("mae_long_model.py", "--steps", "2", "--n-train", "160", "--ratio", "0.5",
               "--out", str(out), monkeypatch=monkeypatch)
    mae, meta = load_mae(out)
    assert meta["steps"] == 2 and meta["n_train"] == 160 and mae.config.mask_ratio == 0.5
    assert len(meta["loss"]["values"]) >= 1 and meta["held_out_loss"] > 0
    assert "2 steps at r = 0.5" in capsys.readouterr().out


def test_lecture_05_quotes_three_seeds_of_fine_tuning_and_calls_them_level():
    """Lecture 05's fine-tuned I-JEPA and MAE are the means of the three seeded runs of
    ``benchmarks/jepa_vs_mae.py``, and "level" holds: the mean lead is smaller than the largest
    seed-by-seed difference, and the seeds do not agree on its sign."""
    import json
    runs = [json.loads((BENCHMARKS / "results" / name).read_text())
            for name in ("jepa_vs_mae.json", "jepa_vs_mae_seed1.json", "jepa_vs_mae_seed2.json")]
    assert [run["seed"] for run in runs] == [0, 1, 2]
    assert {run["finetune_steps"] for run in runs} == {300}
    tuned = {name: [run["table"][name]["finetune_accuracy"] for run in runs]
             for name in ("ijepa", "mae", "untrained")}
    mean = {name: sum(values) / 3 for name, values in tuned.items()}
    lead = [a - b for a, b in zip(tuned["ijepa"], tuned["mae"])]
    assert abs(mean["ijepa"] - mean["mae"]) < max(map(abs, lead))
    assert min(lead) < 0 < max(lead)
    from lecture_text import lecture_texts
    text = " ".join(lecture_texts("05_ijepa.ipynb"))
    assert ("I-JEPA {:.3f} ({:.3f}, {:.3f}, {:.3f}), MAE {:.3f} ({:.3f}, {:.3f}, {:.3f}), the "
            "untrained network {:.3f}").format(mean["ijepa"], *tuned["ijepa"], mean["mae"],
                                              *tuned["mae"], mean["untrained"]) in text
    assert f"level ({mean['ijepa']:.3f} against {mean['mae']:.3f} over three seeds" in text


def test_lecture_05_reads_the_longer_ablation_and_the_share_of_large_errors_from_its_file():
    """Lecture 05's answers to "smooth L1 or L2 under the loop's clip?" and "does the EMA stop the
    collapse or delay it?" come from ``benchmarks/results/ijepa_ablation_checks.json``: the clip
    never acted, the 80-step pair agrees, the 400-step no-EMA run kept falling while I-JEPA's held,
    and every figure the lecture quotes is the file's."""
    import json
    checks = json.loads((BENCHMARKS / "results" / "ijepa_ablation_checks.json").read_text())
    rows = {(r["variant"], r["steps"], r["grad_clip"]): r for r in checks["rows"]}
    short = [rows[(name, 80, clip)] for name in ("ijepa", "l2") for clip in (3.0, None)]
    assert all(r["steps_clipped"] == 0 for r in checks["rows"] if r["grad_clip"])
    assert all(abs(r["final_target_std"] - short[0]["final_target_std"]) < 0.001 for r in short)
    ijepa, l2, no_ema, neither = (rows[(name, 400, 3.0)] for name in ("ijepa", "l2", "no_ema", "no_ema_no_stopgrad"))
    assert neither["final_target_std"] < no_ema["final_target_std"] < 0.25 * ijepa["final_target_std"]
    assert ijepa["final_target_std"] > ijepa["first_target_std"]
    large = round(100 * short[0]["share_errors_at_least_1"])
    from lecture_text import lecture_texts
    text = " ".join(lecture_texts("05_ijepa.ipynb"))
    for quote in (f"in section 4's runs {large} % of them are 1 or more",
                  f"Not 2: {large} % of the errors are 1 or more",
                  f"never acted (0 of {short[0]['norms_recorded']} steps)",
                  f"std {ijepa['final_target_std']:.3f} against {l2['final_target_std']:.3f}, "
                  f"k-NN {ijepa['knn_accuracy']:.3f} against {l2['knn_accuracy']:.3f}",
                  f"without the EMA the std keeps falling, to {no_ema['final_target_std']:.3f}, and "
                  f"without both to {neither['final_target_std']:.3f}, while with the EMA it rises to "
                  f"{ijepa['final_target_std']:.3f}"):
        assert quote in text, quote


def test_jepa_against_mae_reads_both_checkpoints_and_an_untrained_network(tmp_path, monkeypatch,
                                                                          capsys):
    import json
    out = tmp_path / "jvm.json"
    run_script("jepa_vs_mae.py", "--n-images", "20", "--finetune-steps", "1", "--out", str(out),
               monkeypatch=monkeypatch)
    table = json.loads(out.read_text())["table"]
    assert list(table) == ["ijepa", "mae", "untrained"]
    assert table["ijepa"]["steps"] == table["mae"]["steps"] and table["untrained"]["steps"] == 0
    assert all(0.0 <= row["finetune_accuracy"] <= 1.0 for row in table.values())
    assert "fine-tune" in capsys.readouterr().out


def test_feature_batch_times_each_batch_size_against_512(monkeypatch, capsys):
    run_script("feature_batch.py", "--images", "64", "--repeats", "1", monkeypatch=monkeypatch)
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {"mae", "simclr"}
    assert "65 tokens" in rows["mae"] and "17 tokens" in rows["simclr"]
    assert all("512:" in row and "(1.00x)" in row and " 64:" in row for row in rows.values())


def test_temperature_sweep_appends_one_row_per_temperature(tmp_path, monkeypatch, capsys):
    import json
    import torch
    out, threads = tmp_path / "sweep.jsonl", torch.get_num_threads()
    try:
        run_script("temperature_sweep.py", "--steps", "2", "--n-train", "100", "--n-test", "60",
                   "--temperatures", "0.05,1.0", "--threads", "2", "--out", str(out),
                   monkeypatch=monkeypatch)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)       # the script sets the process's threads
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["threads"], r["temperature"], r["steps"], r["gray"]) for r in rows] == [(2, 0.05, 2, 0.8),
                                                                                     (2, 1.0, 2, 0.8)]
    assert all(0.0 <= r["knn_accuracy"] <= 1.0 and r["final_loss"] > 0 for r in rows)
    assert "2 runs x 2 steps at batch 64, clutter 0.0, grey views 0.8, 2 thread(s)" in capsys.readouterr().out


def test_dino_attention_writes_one_row_per_length(tmp_path, monkeypatch, capsys):
    import json
    out = tmp_path / "attention.jsonl"
    run_script("dino_attention.py", "--steps", "1", "2", "--n-attention", "20", "--threads", "1",
               "--supervised", "--out", str(out), monkeypatch=monkeypatch)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["steps"] for row in rows] == [1, 2]
    for row in rows:
        assert 0.0 <= row["centre_bump"] <= 1.0 and 0.0 <= row["knn"] <= 1.0
        assert row["best_head"] == max(row["per_head"]) and len(row["per_head"]) == 2   # 2 heads
        assert 0.0 <= row["supervised_best_head"] <= 1.0
    assert capsys.readouterr().out.count('"steps"') == 2


def test_dino_attention_takes_named_settings_from_the_shipped_recipe_and_nothing_else():
    """``--shipped`` swaps exactly the named settings of the ablation for dino-plain's."""
    from dataclasses import asdict

    from course_lib.labs import pretrain as recipe
    from course_lib.labs.dino import ablation_scale
    with_shipped = runpy.run_path(str(BENCHMARKS / "dino_attention.py"))["with_shipped"]
    base = ablation_scale("cpu")
    assert with_shipped(base, []) == base
    both = with_shipped(base, ["momentum", "batch"])
    assert both.dino.momentum_teacher == recipe.DINO_CONFIG.momentum_teacher == 0.99 != base.dino.momentum_teacher
    assert both.train.batch_size == recipe.ZOO_SCALES["long"].recipe.batch_size == 128
    changed = {key for key, value in asdict(both.train).items() if value != asdict(base.train)[key]}
    assert changed == {"batch_size"} and both.vit == base.vit and both.data == base.data
    assert with_shipped(base, ["vit"]).vit == recipe.VIT
    assert with_shipped(base, ["warmup"]).train.warmup_steps == recipe.WARMUP_STEPS
    with pytest.raises(ValueError, match="settings must be among"):
        with_shipped(base, ["lr"])


def test_the_plain_recipe_probe_changes_one_setting_and_restores_the_recipe(tmp_path, monkeypatch, capsys):
    import json

    import course_lib.labs.pretrain as recipes
    before = (recipes.MAE_VIT, recipes.DINOV2_CONFIG, recipes.IJEPA_CONFIG, recipes.IJEPA_VIEWS,
              recipes.METHOD_LR, recipes.WARMUP_STEPS, recipes.IJEPA_CHANGES)
    pretrain, warmups = recipes.pretrain, []

    def pretrain_noting_the_warmup(*args, **kwargs):     # the warm-up cap the run trained under
        warmups.append(recipes.WARMUP_STEPS)
        return pretrain(*args, **kwargs)
    monkeypatch.setattr(recipes, "pretrain", pretrain_noting_the_warmup)
    out = tmp_path / "rows.jsonl"
    run_script("plain_recipe_probe.py", "dinov2-plain", "no_koleo", "--steps", "2", "--n-train", "256",
               "--n-test", "64", "--out", str(out), monkeypatch=monkeypatch)
    run_script("plain_recipe_probe.py", "ijepa-plain", "fast_ema", "--steps", "2", "--n-train", "256",
               "--n-test", "64", "--eval-every", "1", "--out", str(out), monkeypatch=monkeypatch)
    for method, change in (("ijepa-plain", "crops"), ("ijepa-plain", "lr_3e-3"), ("supervised-patch-plain", "lr_1e-3")):
        run_script("plain_recipe_probe.py", method, change, "--steps", "2", "--n-train", "256",
                   "--n-test", "64", "--out", str(out), monkeypatch=monkeypatch)
    run_script("plain_recipe_probe.py", "ijepa-plain", "warmup_150", "--steps", "2", "--seed", "1",
               "--n-train", "256", "--n-test", "64", "--out", str(out), monkeypatch=monkeypatch)
    run_script("plain_recipe_probe.py", "ibot-plain", "teacher_temp_0.02", "--steps", "2", "--lr", "1e-3",
               "--n-train", "256", "--n-test", "64", "--out", str(out), monkeypatch=monkeypatch)
    run_script("plain_recipe_probe.py", "ijepa-plain", "official_ema", "--steps", "2", "--n-train", "256",
               "--n-test", "64", "--out", str(out), monkeypatch=monkeypatch)
    dinov2, fast_ema, crops, lr_3e3, labels, warmup, ibot, official = map(json.loads, out.read_text().splitlines())
    # a change of ijepa-plain starts from its own EMA (0.99) and a momentum change is not overridden
    assert [row["momentum"] for row in (crops, lr_3e3, warmup, official)] == [[0.99, 1.0]] * 3 + [[0.996, 1.0]]
    assert (ibot["lr"], ibot["teacher_temp"], ibot["teacher_patch_temp"]) == (1e-3, 0.02, 0.02)
    assert ibot["collapse"]["steps"] == [0, 1] and "collapse" not in fast_ema
    assert 0.0 < ibot["collapse"]["patch_entropy"][0] <= round(math.log(256), 3)
    assert (fast_ema["views"], fast_ema["lr"], dinov2["lr"]) == ("masks", recipes.METHOD_LR["ijepa-plain"], 1e-3)
    assert (crops["views"], crops["lr"], lr_3e3["views"], lr_3e3["lr"]) == ("crops", fast_ema["lr"], "masks", 3e-3)
    assert labels["method"] == "supervised-patch-plain" and labels["lr"] == 1e-3
    assert dinov2["change"] == "no_koleo" and dinov2["steps"] == 2 and 0.0 <= dinov2["knn"] <= 1.0
    assert (dinov2["koleo_weight"], dinov2["ibot_weight"], dinov2["centering"], dinov2["stem"]) == (
        0.0, 1.0, "sinkhorn_knopp", "patch")
    assert fast_ema["momentum"] == [0.99, 1.0] and fast_ema["pred_depth"] == recipes.IJEPA_CONFIG.pred_depth
    assert fast_ema["trajectory"]["steps"] == [1, 2] and fast_ema["trajectory"]["knn"][-1] == fast_ema["knn"]
    assert warmups == [20, 20, 20, 20, 20, 150, 20, 20]   # only warmup_150 moves the cap
    assert [row["seed"] for row in (dinov2, warmup)] == [0, 1] and warmup["warmup_steps"] == 0  # 2 // 10
    assert warmup["untrained_knn"] != fast_ema["untrained_knn"] or warmup["loss_first"] != fast_ema["loss_first"]
    monkeypatch.undo()
    assert (recipes.MAE_VIT, recipes.DINOV2_CONFIG, recipes.IJEPA_CONFIG, recipes.IJEPA_VIEWS,
            recipes.METHOD_LR, recipes.WARMUP_STEPS, recipes.IJEPA_CHANGES) == before
    assert '"change": "no_koleo"' in capsys.readouterr().out
    with pytest.raises(SystemExit):                       # a change of another method
        run_script("plain_recipe_probe.py", "ijepa-plain", "no_koleo", monkeypatch=monkeypatch)
    with pytest.raises(SystemExit):                       # two rates for one run
        run_script("plain_recipe_probe.py", "ijepa-plain", "lr_3e-3", "--lr", "1e-3", monkeypatch=monkeypatch)


def test_the_probe_trains_dino_on_the_patch_vit_and_ibot_on_the_conv_stem(tmp_path, monkeypatch):
    """``dino-patch-plain`` is a name only the probe knows: it trains DINO on iBOT's plain-patch ViT
    and leaves ``labs.pretrain``'s names as it found them; ``conv_stem`` moves iBOT to the conv-stem
    ViT and ``no_masks`` / ``no_mim`` switch off the masks and the patch loss (lecture 04, 5.3)."""
    import json

    import course_lib.labs.pretrain as recipes
    before = (recipes.METHODS, dict(recipes.POOLING), recipes.MAE_VIT, recipes.IBOT_CONFIG)
    out = tmp_path / "rows.jsonl"
    for method, change in (("dino-patch-plain", "baseline"), ("ibot-plain", "conv_stem"),
                           ("ibot-plain", "no_masks"), ("ibot-plain", "no_mim"),
                           ("ibot-plain", "free_prototype_norm"), ("supervised-patch", "lr_1e-3"),
                           ("mae", "lr_1e-3")):
        run_script("plain_recipe_probe.py", method, change, "--steps", "1", "--n-train", "128",
                   "--n-test", "32", "--out", str(out), monkeypatch=monkeypatch)
    dino, conv, unmasked, no_mim, free, labels, mae = map(json.loads, out.read_text().splitlines())
    assert (dino["method"], dino["stem"], dino["lr"]) == ("dino-patch-plain", "patch", 3e-3)
    assert "patch_entropy" not in dino["collapse"] and "patch_entropy" in conv["collapse"]
    assert (conv["stem"], unmasked["stem"]) == ("conv", "patch") and dino["untrained_knn"] == unmasked["untrained_knn"]
    assert (unmasked["p_unmasked"], unmasked["lambda_patch"]) == (1.0, 1.0)
    assert (no_mim["p_unmasked"], no_mim["lambda_patch"]) == (recipes.IBOT_CONFIG.p_unmasked, 0.0)
    assert (free["norm_last_layer"], no_mim["norm_last_layer"]) == (False, True)
    # labels on the plain-patch ViT, on the colourful shapes (the -plain runs' data are one grey)
    assert (labels["method"], labels["stem"], labels["lr"]) == ("supervised-patch", "patch", 1e-3)
    assert labels["data"].get("colour") != "grey" and dino["data"]["colour"] == "grey"
    assert (mae["method"], mae["stem"], mae["lr"]) == ("mae", "patch", 1e-3) and mae["data"] == labels["data"]
    assert (recipes.METHODS, recipes.POOLING, recipes.MAE_VIT, recipes.IBOT_CONFIG) == before
    assert "dino-patch-plain" not in recipes.METHODS


def _probe_rows(method: str, changes: tuple[str, ...], tmp_path, monkeypatch) -> list[dict]:
    """Two-step runs of ``plain_recipe_probe.py`` on 128 images, one per change: their rows."""
    import json
    out = tmp_path / "rows.jsonl"
    for change in changes:
        run_script("plain_recipe_probe.py", method, change, "--steps", "2", "--n-train", "128",
                   "--n-test", "32", "--out", str(out), monkeypatch=monkeypatch)
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_per_tensor_clip_trains_with_dinos_clipping_and_restores_the_loop_config(tmp_path, monkeypatch):
    """``per_tensor_clip``: the probe's run clips each gradient alone (the row and the loop say so),
    the baseline's clips one norm over all, and ``labs.pretrain.TrainConfig`` is restored."""
    import course_lib.labs.pretrain as recipes
    import course_lib.train as loop
    clip, modes = loop.clip_gradients, []

    def recording(parameters, max_norm, mode="global"):
        modes.append((max_norm, mode))
        clip(parameters, max_norm, mode)
    monkeypatch.setattr(loop, "clip_gradients", recording)
    clipped, baseline = _probe_rows("ibot-plain", ("per_tensor_clip", "baseline"), tmp_path, monkeypatch)
    assert modes == [(3.0, "per_tensor")] * 2 + [(3.0, "global")] * 2
    assert clipped["grad_clip_mode"] == "per_tensor" and "grad_clip_mode" not in baseline
    assert recipes.TrainConfig is loop.TrainConfig and loop.clip_gradients is recording
    for row in (clipped, baseline):          # the counts of two steps, the last step 0 or 1 or None
        counts = row["clipping"]
        assert 0 <= counts["steps_over_per_tensor"] <= counts["steps_over_global"] <= 2   # one over: all over
        assert counts["last_step_over_per_tensor"] in ((None,) if not counts["steps_over_per_tensor"] else (0, 1))


def test_the_clip_counter_counts_the_steps_each_kind_of_clipping_acts_on():
    """Gradient norms 5 and 1 against 2: both kinds act; against 5.05: only the global norm
    (sqrt 26 = 5.10) is over; against 6, neither. The wrapped clipping still runs."""
    import runpy

    import torch
    counter_class = runpy.run_path(str(BENCHMARKS / "plain_recipe_probe.py"))["ClipCounter"]
    calls = []
    counter = counter_class(lambda parameters, max_norm, mode: calls.append((len(parameters), max_norm, mode)))
    for max_norm in (2.0, 5.05, 6.0):
        a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
        a.grad, b.grad = torch.tensor([3.0, 4.0]), torch.tensor([0.6, 0.8])
        counter([a, b], max_norm, "per_tensor")
    assert counter.record() == {"steps_over_global": 2, "steps_over_per_tensor": 1,
                                "last_step_over_global": 1, "last_step_over_per_tensor": 0}
    assert calls == [(2, 2.0, "per_tensor"), (2, 5.05, "per_tensor"), (2, 6.0, "per_tensor")]


def test_frozen_patch_embed_keeps_every_patch_projection_where_it_started(tmp_path, monkeypatch):
    """MoCo v3's change (``frozen_patch_embed``): the patch projection stays at its initialisation
    (the teacher's moves by the EMA's float rounding only) while the blocks train; the baseline's
    projection moves; ``build_method`` is restored; a method without a ViT is refused."""
    import runpy

    import torch

    import course_lib.labs.pretrain as recipes
    build, pretrain, trained = recipes.build_method, recipes.pretrain, []

    def pretrain_keeping_the_network(*args, **kwargs):
        backbone, meta = pretrain(*args, **kwargs)
        trained.append(dict(backbone.named_parameters()))
        return backbone, meta
    monkeypatch.setattr(recipes, "pretrain", pretrain_keeping_the_network)
    frozen, baseline = _probe_rows("ibot-plain", ("frozen_patch_embed", "baseline"), tmp_path, monkeypatch)
    start = dict(build("ibot-plain", recipes.zoo_scale("long"), steps=2).teacher.backbone.named_parameters())

    def moved(params: dict, name: str) -> float:
        return (params[name] - start[name]).abs().max().item()
    assert moved(trained[0], "patch_embed.proj.weight") < 1e-6 < moved(trained[1], "patch_embed.proj.weight")
    assert moved(trained[0], "patch_embed.proj.bias") < 1e-6
    assert moved(trained[0], "blocks.0.attn.qkv.weight") > 1e-6
    assert frozen["patch_embed"] == "frozen" and "patch_embed" not in baseline
    assert frozen["untrained_knn"] == baseline["untrained_knn"]
    assert recipes.build_method is build
    probe = runpy.run_path(str(BENCHMARKS / "plain_recipe_probe.py"))
    with pytest.raises(ValueError, match="Linear has no ViT with a patch_embed"):
        probe["_frozen_patch_embed"](lambda: torch.nn.Linear(2, 2))()


def test_zoo_pooling_reads_a_checkpoint_through_its_cls_and_its_mean_patch_token(monkeypatch, capsys):
    """The recorded pooling's column repeats the k-NN the checkpoint recorded; the other column is
    the same protocol on the other token (checked against Pooled by hand on the same features)."""
    import torch

    from course_lib import zoo
    from course_lib.evaluate import extract_features, knn_accuracy
    from course_lib.data import normalize
    from course_lib.labs.pretrain import shapes_for
    # dinov2-plain: its two tokens differ by 0.1 (ibot-plain's agreed to within 0.001, so a
    # test that they differ turned on the host's float rounding)
    run_script("zoo_pooling.py", "dinov2-plain", monkeypatch=monkeypatch)
    row = capsys.readouterr().out.splitlines()[-1].split()
    assert row[:2] == ["dinov2-plain", "cls"]
    recorded, cls, mean = map(float, row[2:])
    assert cls == pytest.approx(recorded, abs=0.01)
    model = zoo.load("dinov2-plain")
    train_x, train_y, test_x, test_y = shapes_for(model.meta["data"])

    class MeanPatch(torch.nn.Module):          # every token after the CLS token, averaged
        def __init__(self) -> None:
            super().__init__()
            self.vit = model.backbone

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return self.vit.forward_features(images)[:, 1:].mean(1)
    mean_patch = MeanPatch()
    assert model.backbone.num_prefix_tokens == 1                        # the CLS token, no registers
    by_hand = knn_accuracy(extract_features(mean_patch, train_x, transform=normalize), train_y,
                           extract_features(mean_patch, test_x, transform=normalize), test_y)
    assert mean == pytest.approx(by_hand, abs=0.0015) and abs(mean - cls) > 0.05
    with pytest.raises(SystemExit):
        run_script("zoo_pooling.py", "no-such-checkpoint", monkeypatch=monkeypatch)
    assert "NAME must be one of the checkpoints" in capsys.readouterr().err


def test_finetune_rate_fine_tunes_each_name_at_each_rate_beside_the_tables_own_run(tmp_path, monkeypatch):
    """``finetune_rate.py`` fine-tunes each checkpoint at each rate asked for, on the data of the
    shipped plain table, and puts the table's own probe and 1e-3 fine-tune of that seed beside them
    (here at a tiny stand-in scale, so only the bookkeeping is checked)."""
    import json

    import torch

    from course_lib.labs import evaluation as lab
    monkeypatch.setitem(lab.COMPARE_SCALES, "long", lab.CompareScale(
        n_train=64, n_test=32, seeds=(0,), finetune_steps=1, probe_epochs=1, dense_images=8))
    out = tmp_path / "rates.json"
    run_script("finetune_rate.py", "--names", "mae-plain", "--rates", "1e-4", "--seed", "1", "--out", str(out),
               monkeypatch=monkeypatch)
    result = json.loads(out.read_text())
    row, shipped = result["rows"]["mae-plain"], lab.shipped_table("plain")["rows"]["mae-plain"]["runs"]
    assert (result["seed"], result["steps"], result["threads"]) == (1, 1, torch.get_num_threads())
    assert row["probe"] == shipped["probe"][1] and row["protocol_finetune"] == shipped["finetune"][1]
    assert list(row["finetune"]) == ["0.0001"] and 0.0 <= row["finetune"]["0.0001"] <= 1.0
    assert result["head_first"] is False and result["rotation"] == [0.0, 0.0]
    import course_lib.evaluate
    rotations, real_finetune = [], course_lib.evaluate.finetune

    def finetune_noting_the_rotation(*args, **kwargs):
        rotations.append(kwargs["rotation"])
        return real_finetune(*args, **kwargs)
    monkeypatch.setattr(course_lib.evaluate, "finetune", finetune_noting_the_rotation)
    run_script("finetune_rate.py", "--names", "mae-plain", "--rates", "1e-3", "--head-first", "--out", str(out),
               monkeypatch=monkeypatch)
    assert json.loads(out.read_text())["head_first"] is True
    run_script("finetune_rate.py", "--names", "mae-plain", "--rates", "1e-3", "--rotation", "--out", str(out),
               monkeypatch=monkeypatch)
    assert json.loads(out.read_text())["rotation"] == [-180.0, 180.0]
    assert rotations == [(0.0, 0.0), (-180.0, 180.0)]


def test_two_later_dino_runs_on_plain_patches_went_uniform_and_the_lectures_say_so():
    """``benchmarks/results/dino_patch_plain_pretrain_runs.json``: DINO on the plain-patch ViT,
    trained twice for the zoo (3e-3 and 1e-3), sat at log 256 (uniform teacher and student) from
    step 270 until stopped; lectures 04 and 07 qualify the one run that recovered."""
    import json
    import math

    from lecture_text import lecture_texts
    runs = json.loads((BENCHMARKS / "results" / "dino_patch_plain_pretrain_runs.json").read_text())["runs"]
    assert sorted(runs) == ["1e-3", "3e-3"]
    for run in runs.values():
        late = [loss for step, loss in zip(run["steps"], run["loss"]) if step >= 270]
        assert len(late) >= 6 and all(abs(loss - math.log(256)) < 0.005 for loss in late)
    for lecture in ("04_ibot.ipynb", "07_evaluation.ipynb"):
        assert any("uniform" in text and ("dino_patch_plain_pretrain_runs.json" in text or "two runs of DINO" in text)
                   for text in lecture_texts(lecture)), lecture



def test_ijepa_ablation_checks_count_large_errors_and_clipped_steps_and_restore_both(tmp_path, monkeypatch, capsys):
    """The recorder's two counts against a hand count, the library restored after it, and a
    two-step run writing a row per run."""
    import json

    import torch

    import course_lib.ijepa as ijepa_module
    Recorder = runpy.run_path(str(BENCHMARKS / "ijepa_ablation_checks.py"))["Recorder"]
    loss, clip = ijepa_module.jepa_loss, torch.nn.utils.clip_grad_norm_
    pred, target = torch.tensor([[0.0, 1.5, -2.0, 0.5]]), torch.zeros(1, 4)   # errors 0, 1.5, 2, 0.5
    weight = torch.nn.Parameter(torch.zeros(2))
    weight.grad = torch.tensor([3.0, 4.0])                                        # norm 5
    with Recorder() as recorder:
        value = ijepa_module.jepa_loss(pred, target)
        torch.nn.utils.clip_grad_norm_([weight], 3.0)
        torch.nn.utils.clip_grad_norm_([weight], 3.0)                             # now norm 3
    assert value.item() == pytest.approx((0 + 1.0 + 1.5 + 0.125) / 4)             # smooth L1 by hand
    assert (recorder.large, recorder.total) == (2, 4)
    summary = recorder.summary(3.0)
    assert summary["share_errors_at_least_1"] == 0.5 and summary["norms_recorded"] == 2
    assert summary["grad_norm_max"] == pytest.approx(5.0) and summary["steps_clipped"] == 1
    assert ijepa_module.jepa_loss is loss and torch.nn.utils.clip_grad_norm_ is clip

    out = tmp_path / "checks.json"
    run_script("ijepa_ablation_checks.py", "--steps", "2", "--long-steps", "3", "--n-train", "256",
               "--n-test", "64", "--out", str(out), monkeypatch=monkeypatch)
    rows = json.loads(out.read_text())["rows"]
    assert [(r["variant"], r["steps"], r["grad_clip"]) for r in rows] == [
        ("ijepa", 2, 3.0), ("l2", 2, 3.0), ("ijepa", 2, None), ("l2", 2, None),
        ("ijepa", 3, 3.0), ("l2", 3, 3.0), ("no_ema", 3, 3.0), ("no_ema_no_stopgrad", 3, 3.0)]
    assert [r["norms_recorded"] for r in rows] == [2, 2, 0, 0, 3, 3, 3, 3]
    assert all(0 <= r["share_errors_at_least_1"] <= 1 for r in rows)
    with pytest.raises(SystemExit):
        run_script("ijepa_ablation_checks.py", "--long-steps", "0", monkeypatch=monkeypatch)
    assert "--long-steps must be a positive integer, got 0" in capsys.readouterr().err
