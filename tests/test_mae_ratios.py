"""course_lib.labs.mae_ratios: the fine-tune curve over seeds against hand-worked figures, the
shipped family of encoders (one per mask ratio) and its judging, and the committed data itself."""
import json
import math
from dataclasses import replace

import pytest
import torch

from course_lib import zoo
from course_lib.labs import mae_ratios
from course_lib.labs.pretrain import MAE_CONFIG, pretrain, shapes_for
from test_zoo import knn_by_loop


def write_rows(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def row(ratio, seed, accuracy, steps=1500):
    return {"mask_ratio": ratio, "seed": seed, "steps": steps, "finetune_accuracy": accuracy,
            "linear_probe": accuracy / 2, "knn_accuracy": 0.1}


def test_the_curve_gives_mean_sd_and_standard_error_over_seeds(tmp_path):
    rows = [row(0.75, 2, 0.30), row(0.1, 0, 0.10), row(0.75, 0, 0.10), row(0.75, 1, 0.20),
            row(0.1, 1, 0.14), row(0.75, 0, 0.18, steps=1)]
    curve = mae_ratios.ratio_curve(write_rows(tmp_path / "rows.jsonl", rows))
    assert list(curve["ratios"]) == [0.1, 0.75] and curve["steps"] == 1500
    high = curve["ratios"][0.75]
    # by hand: 0.1, 0.2, 0.3 -> mean 0.2, sample sd 0.1, se 0.1 / sqrt 3
    assert high["mean"] == pytest.approx(0.2) and high["sd"] == pytest.approx(0.1)
    assert high["se"] == pytest.approx(0.1 / math.sqrt(3)) and high["n"] == 3
    assert high["seeds"] == [0, 1, 2] and high["values"] == pytest.approx([0.1, 0.2, 0.3])
    low = curve["ratios"][0.1]      # 0.10, 0.14: sd = 0.04 / sqrt 2
    assert low["sd"] == pytest.approx(0.04 / math.sqrt(2)) and low["se"] == pytest.approx(0.02)
    assert curve["untrained"]["mean"] == pytest.approx(0.18) and math.isnan(curve["untrained"]["sd"])
    probe = mae_ratios.ratio_curve(tmp_path / "rows.jsonl", metric="linear_probe")
    assert probe["ratios"][0.75]["mean"] == pytest.approx(0.1)


@pytest.mark.parametrize("rows, message", [
    ([row(0.5, 0, 0.2), {"mask_ratio": 0.5, "seed": 1, "steps": 1500}], "line 2 lacks"),
    ([row(0.5, 0, 0.2), row(0.5, 0, 0.3)], "a second row for ratio 0.5 and seed 0"),
    ([row(0.5, 0, 0.2), row(0.9, 0, 0.3, steps=800)], r"mixes runs of \[800, 1500\] steps"),
])
def test_the_curve_refuses_rows_it_cannot_summarise(tmp_path, rows, message):
    with pytest.raises(ValueError, match=message):
        mae_ratios.ratio_curve(write_rows(tmp_path / "rows.jsonl", rows))


def test_the_curve_names_a_bad_path_or_metric(tmp_path):
    with pytest.raises(ValueError, match="path must be a JSON-lines file"):
        mae_ratios.ratio_curve(tmp_path / "missing.jsonl")
    with pytest.raises(ValueError, match="metric must be one of"):
        mae_ratios.ratio_curve(mae_ratios.CURVE_FILE, metric="accuracy")


def test_the_committed_curve_has_three_seeds_at_every_ratio_of_one_length():
    curve = mae_ratios.ratio_curve()
    assert list(curve["ratios"]) == [0.1, 0.25, 0.5, 0.75, 0.9] and curve["steps"] == 1500
    for ratio, summary in curve["ratios"].items():
        assert summary["n"] >= 3, ratio
    assert curve["untrained"]["n"] >= 3           # one untrained start per seed, to pair with


@pytest.fixture(scope="module")
def tiny_family(tmp_path_factory):
    """Two encoders of two steps each, saved as the benchmark saves them."""
    directory = tmp_path_factory.mktemp("family")
    metas = {}
    for ratio in (0.3, 0.6):
        backbone, meta = pretrain("mae", "cpu", steps=2, seed=3, n_train=160, n_test=48,
                                  progress=False, mae_config=replace(MAE_CONFIG, mask_ratio=ratio))
        zoo.save(directory / f"r{ratio:g}.pt", backbone, meta, probe_epochs=5)
        metas[ratio] = meta
    return directory, metas


def test_the_family_is_keyed_by_the_recorded_ratio_and_starts_from_the_seeded_encoder(tiny_family):
    directory, metas = tiny_family
    models = mae_ratios.family(directory)
    assert list(models) == [0.3, 0.6]
    table = mae_ratios.judge_family(models, probe_epochs=5)
    assert list(table) == ["untrained", 0.3, 0.6]
    # pretrain measured the encoder before its first step: the rebuilt one must be that encoder
    assert table["untrained"]["knn_accuracy"] == metas[0.3]["untrained_knn_accuracy"]
    for ratio in (0.3, 0.6):
        assert table[ratio]["knn_accuracy"] == pytest.approx(models[ratio].meta["metrics"]["knn_accuracy"])
    text = mae_ratios.family_table(table)
    assert text.splitlines()[1].startswith("untrained") and "r = 0.6" in text


def test_the_family_refuses_a_misnamed_checkpoint_or_an_empty_directory(tiny_family, tmp_path):
    directory, _ = tiny_family
    (tmp_path / "r0.9.pt").write_bytes((directory / "r0.3.pt").read_bytes())
    with pytest.raises(ValueError, match="'r0.9' .* was trained at mask ratio 0.3"):
        mae_ratios.family(tmp_path)
    with pytest.raises(ValueError, match="holds no checkpoints"):
        mae_ratios.family(tmp_path / "nothing")
    with pytest.raises(ValueError, match="models must hold at least one encoder"):
        mae_ratios.judge_family({})
    models = mae_ratios.family(directory)
    models[0.6].meta = {**models[0.6].meta, "seed": 4}
    with pytest.raises(ValueError, match="models must share one seed, scale, number of steps and data"):
        mae_ratios.judge_family(models)


def test_the_shipped_family_is_one_seed_at_five_ratios_and_its_weights_give_its_knn():
    models = mae_ratios.family()
    assert list(models) == [0.1, 0.25, 0.5, 0.75, 0.9]
    assert {(m.meta["seed"], m.meta["steps"], m.meta["method"]) for m in models.values()} == {(1, 1500, "mae")}
    model = models[0.1]
    train_x, train_y, test_x, test_y = shapes_for(model.meta["data"])
    recomputed = knn_by_loop(model.features(train_x), train_y, model.features(test_x), test_y)
    assert recomputed == pytest.approx(model.meta["metrics"]["knn_accuracy"], abs=0.01)


def test_the_plot_draws_one_error_bar_per_ratio_and_every_seed(tmp_path):
    rows = [row(r, s, 0.1 + r / 10 + s / 100) for r in (0.1, 0.5) for s in range(3)] + [row(0.5, 0, 0.1, steps=1)]
    curve = mae_ratios.ratio_curve(write_rows(tmp_path / "rows.jsonl", rows))
    ax = mae_ratios.plot_ratio_curve(curve)
    dots = [line for line in ax.lines if line.get_linestyle() == "None" and len(line.get_xdata()) == 3]
    assert len(dots) == 2 and sorted(dots[1].get_ydata()) == pytest.approx(curve["ratios"][0.5]["values"])
    assert any("3 seeds" in text.get_text() for text in ax.get_legend().get_texts())


def test_a_saved_mae_loads_back_whole_and_predicts_as_before(tmp_path):
    from course_lib.backbones import build_vit
    from course_lib.mae import MAE, MAEConfig, reconstruction_loss
    from course_lib.data import make_shapes
    torch.manual_seed(0)
    mae = MAE(build_vit("cpu", stem="patch", patch_size=4), MAEConfig(decoder_dim=32, decoder_depth=1,
                                                                     decoder_heads=2)).eval()
    mae_ratios.save_mae(tmp_path / "m.pt", mae, {"steps": 0})
    loaded, meta = mae_ratios.load_mae(tmp_path / "m.pt")
    assert meta["steps"] == 0 and meta["mae"]["decoder_dim"] == 32 and meta["vit"]["patch_size"] == 4
    assert not loaded.training
    images, _, _ = make_shapes(16, image_size=32, seed=0)
    before = reconstruction_loss(mae, images, 0.75, seed=0)
    after = reconstruction_loss(loaded, images, 0.75, seed=0)
    assert after == pytest.approx(before, rel=1e-2)          # the weights went through float16
    with pytest.raises(ValueError, match="path must be a file written by save_mae"):
        mae_ratios.load_mae(tmp_path / "none.pt")
    with pytest.raises(ValueError, match="mae must be a course_lib.mae.MAE"):
        mae_ratios.save_mae(tmp_path / "x.pt", mae.encoder, {})


def test_the_shipped_long_model_gives_its_recorded_held_out_loss():
    from course_lib.data import make_shapes
    from course_lib.mae import reconstruction_loss
    mae, meta = mae_ratios.load_mae()
    assert meta["steps"] == 1500 and meta["mae"]["mask_ratio"] == 0.75 and len(meta["commit"]) == 40
    test_images, _, _ = make_shapes(2000, image_size=32, seed=meta["seed"], split="test")
    loss = reconstruction_loss(mae, test_images, 0.75, seed=meta["seed"])
    assert loss == pytest.approx(meta["held_out_loss"], abs=0.01)
    assert loss < 0.8 * meta["loss"]["values"][0]           # and it trained: well below step 0
