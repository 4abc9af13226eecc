"""course_lib.zoo: the shipped checkpoints load, reproduce their recorded k-NN from the weights,
and the pretrain command writes a checkpoint the zoo can load."""
import functools
import json
import math
import re
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from course_lib import zoo
from course_lib.__main__ import main
from course_lib.backbones import build_vit
from course_lib.data import N_CLASSES, make_shapes, normalize
from course_lib.labs.pretrain import METHODS, POOLING, ZOO_SCALES, shapes_for, shapes_kwargs
from lecture_text import lecture_texts as _lecture_texts

SHIPPED = zoo.available()


@functools.lru_cache(maxsize=4)
def _shapes(data: tuple) -> tuple:
    """The checkpoints share their data: generate it once per session."""
    return shapes_for(dict(data))


def knn_by_loop(bank: torch.Tensor, bank_y: torch.Tensor, queries: torch.Tensor,
                query_y: torch.Tensor, k: int = 20, t: float = 0.07) -> float:
    """Weighted k-NN written out one query at a time (DINO's eval_knn): the independent check."""
    bank, queries = F.normalize(bank.double(), dim=1), F.normalize(queries.double(), dim=1)
    correct = 0
    for q, label in zip(queries, query_y):
        sims = bank @ q
        top = sims.topk(k)
        votes = torch.zeros(N_CLASSES, dtype=torch.float64)
        for s, i in zip(top.values, top.indices):
            votes[bank_y[i]] += torch.exp(s / t)
        correct += int(votes.argmax() == label)
    return correct / len(query_y)


def test_the_course_ships_every_method_of_units_1_to_5():
    assert set(METHODS) <= set(SHIPPED), SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_checkpoint_reproduces_its_recorded_knn_from_the_weights(name):
    model = zoo.load(name)
    meta = model.meta
    for key in zoo.REQUIRED_META:
        assert key in meta, key
    assert meta["method"] == name and meta["pooling"] == POOLING[name]
    assert meta["scale"] == "long" and meta["steps"] >= 1000
    assert len(meta["commit"]) == 40
    train_x, train_y, test_x, test_y = _shapes(tuple(sorted(meta["data"].items())))
    recomputed = knn_by_loop(model.features(train_x), train_y, model.features(test_x), test_y)
    assert recomputed == pytest.approx(meta["metrics"]["knn_accuracy"], abs=0.01)


@pytest.mark.parametrize("name", SHIPPED)
def test_checkpoints_are_half_precision_and_small(name):
    path = zoo.CHECKPOINT_DIR / f"{name}.pt"
    blob = torch.load(path, weights_only=True)
    floats = [v for v in blob["state_dict"].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    assert path.stat().st_size < 2_000_000


def _tiny_meta(pooling="cls"):
    backbone = build_vit("cpu", depth=1)
    meta = {"method": "test", "steps": 0, "seed": 0, "commit": "x" * 40, "pooling": pooling,
            "data": dict(n_train=200, n_test=100, image_size=32, seed=0, clutter=0.0),
            "config": {"vit": asdict(backbone.course_config)}}
    return backbone, meta


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_save_then_load_gives_the_half_precision_model_and_its_metrics(tmp_path, pooling):
    backbone, meta = _tiny_meta(pooling)
    saved = zoo.save(tmp_path / "tiny.pt", backbone, meta, probe_epochs=0)
    assert zoo.available(tmp_path) == ["tiny"]
    loaded = zoo.load("tiny", directory=tmp_path)
    images = make_shapes(8, clutter=0.0)[0]
    half = build_vit("cpu", depth=1)
    half.load_state_dict({k: v.half().float() if v.is_floating_point() else v
                          for k, v in backbone.state_dict().items()})
    half.eval()
    with torch.no_grad():
        tokens = half.forward_features(normalize(images))
        expected = half(normalize(images)) if pooling == "cls" else tokens[:, 1:].mean(1)
    torch.testing.assert_close(loaded.features(images), expected, rtol=1e-5, atol=1e-5)
    assert loaded.meta["metrics"] == saved.meta["metrics"]
    assert 0.0 <= loaded.meta["metrics"]["knn_accuracy"] <= 1.0
    assert zoo.metadata("tiny", directory=tmp_path) == loaded.meta


def test_metadata_reads_each_shipped_meta_without_the_network():
    for name in SHIPPED:
        assert zoo.metadata(name) == zoo.load(name).meta, name


def test_bad_names_images_and_paths_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="name must be one of the checkpoints"):
        zoo.load("no-such-model")
    with pytest.raises(ValueError, match="name must be one of the checkpoints"):
        zoo.metadata("no-such-model")
    backbone, meta = _tiny_meta()
    with pytest.raises(ValueError, match="path must end in .pt"):
        zoo.save(tmp_path / "tiny.pth", backbone, meta)
    model = zoo.Pretrained(backbone, {**meta, "metrics": {}})
    with pytest.raises(ValueError, match=r"images must be uint8 \(n, 3, 32, 32\)"):
        model.features(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"images must be uint8 \(n, 3, 32, 32\)"):
        model.features(torch.zeros(2, 3, 64, 64, dtype=torch.uint8))


@pytest.mark.parametrize("method", ["dino", "mae", "ibot", "ijepa", "dinov2-reg", "dino-fine",
                                    "supervised-patch-plain", "ibot-fine", "dinov2-fine"])
def test_the_pretrain_command_writes_a_checkpoint_the_zoo_loads(method, tmp_path):
    out, report = tmp_path / f"{method}.pt", tmp_path / f"{method}.json"
    assert main(["pretrain", method, "--scale", "cpu", "--steps", "2", "--n-train", "256",
                 "--n-test", "100", "--probe-epochs", "0", "--out", str(out),
                 "--json", str(report)]) == 0
    meta = json.loads(report.read_text())
    assert meta["steps"] == 2 and meta["data"]["n_train"] == 256 and meta["method"] == method
    own = {"ijepa": 1e-3, "supervised-patch-plain": 1e-3, "dinov2-fine": 1e-3}   # METHOD_LR
    lr = own.get(method, ZOO_SCALES["cpu"].recipe.lr)
    assert meta["config"]["train"]["lr"] == meta["config"]["recipe"]["lr"] == lr
    readings = meta.get("collapse", {})              # the teacher's entropies, every log step
    cls_readings = ["batch_mean_entropy", "steps", "teacher_entropy"]
    expected = {"dino": cls_readings, "dino-fine": cls_readings,
                "ibot": [*cls_readings, "patch_batch_mean_entropy", "patch_entropy"],
                "ibot-fine": [*cls_readings, "patch_batch_mean_entropy", "patch_entropy"],
                "dinov2-reg": [*cls_readings, "patch_batch_mean_entropy", "patch_entropy"],
                "dinov2-fine": [*cls_readings, "patch_batch_mean_entropy", "patch_entropy"]}
    assert sorted(readings) == sorted(expected.get(method, []))
    for key, values in readings.items():
        assert len(values) == len(meta["loss"]["steps"])
        if key != "steps":
            assert all(0.0 <= value <= math.log(meta["config"]["method"]["out_dim"]) + 1e-4
                       for value in values), key
    model = zoo.load(method, directory=tmp_path)
    assert model.backbone.course_config.num_register_tokens == (4 if method == "dinov2-reg" else 0)
    plain = method.endswith(("-fine", "-plain"))         # the one-grey, one-size shapes
    assert (model.meta["data"].get("colour"), model.meta["data"].get("area")) == (
        ("grey", 0.2) if plain else (None, None))
    assert tuple(model.backbone.patch_embed.grid_size) == ((4, 4) if method == "dino" else (8, 8))
    assert model.backbone.course_config.stem == ("conv" if method in ("dino", "dino-fine", "ibot-fine", "dinov2-fine")
                                                 else "patch")
    assert model.meta["metrics"]["knn_accuracy"] == pytest.approx(
        zoo.measure(model)["knn_accuracy"], abs=1e-6)


def test_the_pretrain_command_trains_at_the_learning_rate_it_is_given(tmp_path, capsys):
    """``--lr`` replaces the run's own rate (METHOD_LR: 1e-3 for dinov2-plain), for runs such as
    the seeds at another rate of benchmarks/COURSE_SCALE.md; the metadata records it."""
    from course_lib.labs.pretrain import METHOD_LR, method_recipe
    report = tmp_path / "dinov2.json"
    assert main(["pretrain", "dinov2-plain", "--scale", "cpu", "--steps", "2", "--n-train", "256", "--n-test",
                 "100", "--probe-epochs", "0", "--lr", "3e-3", "--json", str(report)]) == 0
    meta = json.loads(report.read_text())
    assert meta["config"]["train"]["lr"] == meta["config"]["recipe"]["lr"] == 3e-3 != METHOD_LR["dinov2-plain"]
    assert (method_recipe("dinov2-plain", "cpu").lr, method_recipe("ibot-plain", "cpu").lr) == (1e-3, 3e-3)
    assert method_recipe("dino", "cpu", 5e-4).lr == 5e-4
    for bad in (0.0, -1e-3, float("nan"), 1, "1e-3"):
        with pytest.raises(ValueError, match="lr must be a positive float or None"):
            method_recipe("dino", "cpu", bad)
    with pytest.raises(SystemExit):
        main(["pretrain", "dino", "--scale", "cpu", "--lr", "-1"])
    assert "--lr" in capsys.readouterr().err


def test_eval_every_records_the_knn_during_training_and_ends_at_the_final_network(tmp_path):
    report = tmp_path / "nokoleo.json"
    assert main(["pretrain", "dinov2-nokoleo-plain", "--scale", "cpu", "--steps", "4", "--n-train", "256",
                 "--n-test", "100", "--probe-epochs", "0", "--eval-every", "2", "--out",
                 str(tmp_path / "dinov2-nokoleo-plain.pt"), "--json", str(report)]) == 0
    meta = json.loads(report.read_text())
    assert meta["knn_trajectory"]["steps"] == [2, 4]
    assert meta["config"]["method"]["koleo_weight"] == 0.0 and meta["data"]["colour"] == "grey"
    # the last point is the network the run returns, in float32, by the loop
    from course_lib.labs.pretrain import pretrain
    backbone, again = pretrain("dinov2-nokoleo-plain", "cpu", steps=4, n_train=256, n_test=100,
                               progress=False, eval_every=2)
    assert again["knn_trajectory"] == meta["knn_trajectory"]
    train_x, train_y, test_x, test_y = shapes_for(again["data"])
    model = zoo.Pretrained(backbone, again)
    assert again["knn_trajectory"]["knn"][-1] == pytest.approx(
        knn_by_loop(model.features(train_x), train_y, model.features(test_x), test_y), abs=1e-9)
    assert "knn_trajectory" not in pretrain("dinov2-plain", "cpu", steps=1, n_train=256, n_test=100,
                                            progress=False)[1]
    with pytest.raises(ValueError, match="eval_every must be"):
        pretrain("dino", "cpu", steps=1, n_train=256, n_test=100, eval_every=-1)


def test_dinov2_variants_differ_from_the_recipe_only_where_named():
    from course_lib.labs.pretrain import DINOV2_CONFIG, ZOO_SCALES, build_method
    for name, registers, koleo in (("dinov2-plain", 0, 0.1), ("dinov2-reg", 4, 0.1),
                                   ("dinov2-nokoleo-plain", 0, 0.0), ("dinov2-lowkoleo-plain", 0, 0.01)):
        method = build_method(name, ZOO_SCALES["cpu"], steps=2)
        assert method.config.koleo_weight == koleo and asdict(method.config) == {
            **asdict(DINOV2_CONFIG), "koleo_weight": koleo}
        assert method.backbone.course_config.num_register_tokens == registers


def test_the_self_distillation_runs_train_on_the_two_views_they_record():
    """DINO, iBOT and DINOv2 take the recipe's two views as their crops: the recorded
    ``n_local_crops`` must be 0, the number of extra crops the runs see (no local crops)."""
    from course_lib.labs.pretrain import ZOO_SCALES, _method_settings, build_method, method_recipe
    images = make_shapes(4, clutter=0.0)[0]
    for name in ("dino-plain", "dino-fine", "ibot-plain", "ibot-fine", "dinov2-plain", "dinov2-fine"):
        method = build_method(name, ZOO_SCALES["long"], steps=2)
        crops = method.crops(images)
        assert [tuple(c.shape) for c in crops] == [(4, 3, 32, 32)] * 2, name
        assert _method_settings(name, method_recipe(name, "long"))["n_local_crops"] == len(crops) - 2, name


def _grey_share(views: torch.Tensor) -> float:
    """The share of normalised views (B, 3, H, W) whose three channels are equal once un-normalised."""
    from course_lib.data import SHAPES_MEAN, SHAPES_STD
    pixels = views * torch.tensor(SHAPES_STD).view(1, 3, 1, 1) + torch.tensor(SHAPES_MEAN).view(1, 3, 1, 1)
    spread = (pixels.amax(dim=1) - pixels.amin(dim=1)).flatten(1).amax(dim=1)      # (B,)
    return (spread < 1e-3).float().mean().item()


def test_the_colourful_runs_make_views_grey_as_often_as_their_recipe_says():
    """The long recipe makes a view grey with p = 0.8, the labelled run's crops included; the
    colourful iBOT and DINOv2 runs keep SimCLR's 0.2 (METHOD_GRAYSCALE_P). Counted on 512 views of
    colourful images, where no view is grey by chance (one standard error about 0.02)."""
    from course_lib.labs.pretrain import METHOD_GRAYSCALE_P, ZOO_SCALES, build_method, method_recipe
    images = make_shapes(256, clutter=0.0)[0]
    assert _grey_share(torch.cat(build_method("simclr-nocolour", ZOO_SCALES["long"], steps=2).views(images))) == 0
    expected = {"simclr": 0.8, "moco": 0.8, "dino": 0.8, "supervised": 0.8, "ibot": 0.2, "dinov2": 0.2}
    for name, p in expected.items():
        method = build_method(name, ZOO_SCALES["long"], steps=2)
        torch.manual_seed(0)
        views = (method.augment(torch.cat([images, images])) if name == "supervised"
                 else torch.cat(list(method.views(images) if hasattr(method, "views") else method.crops(images))))
        assert abs(_grey_share(views) - p) < 0.07, (name, _grey_share(views))
        assert method_recipe(name, "long").grayscale_p == METHOD_GRAYSCALE_P.get(name, 0.8) == p, name
    with pytest.raises(ValueError, match="grayscale_p must be in"):
        build_method("simclr", replace(ZOO_SCALES["long"], recipe=replace(ZOO_SCALES["long"].recipe, grayscale_p=1.5)),
                     steps=2).views(images)


def test_checkpoint_names_say_their_method_and_data():
    from course_lib.labs.pretrain import base_method, plain_data, variant
    names = ("dino", "dino-plain", "dino-fine", "simclr-nocolour", "dinov2-reg", "mae-plain", "supervised-fine",
             "supervised-patch-plain", "dinov2-nokoleo-plain")
    assert [base_method(n) for n in names] == ["dino", "dino", "dino", "simclr-nocolour", "dinov2-reg",
                                               "mae", "supervised", "supervised", "dinov2-nokoleo"]
    assert [plain_data(n) for n in names] == [False, True, True, False, False, True, True, True, True]
    assert variant("supervised-patch-plain") == ("supervised", ("-patch", "-plain"))
    assert variant("supervised-patch") == ("supervised", ("-patch",)) and not plain_data("supervised-patch")
    for bad in ("byol-plain", "dino-fine-plain", "supervised-fine-patch"):
        with pytest.raises(ValueError, match="method must be one of"):
            base_method(bad)


def test_the_pretrain_command_rejects_an_unknown_method_and_scale(capsys):
    for argv in (["pretrain", "byol"], ["pretrain", "dino", "--scale", "huge"]):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_the_lectures_comparison_reads_each_checkpoint_and_scores_attention():
    import matplotlib
    matplotlib.use("Agg")
    from course_lib.labs.shipped import checkpoint_table, compare_checkpoints, plot_checkpoints
    table = compare_checkpoints(["supervised", "dino"], n_attention=40)
    assert list(table) == ["supervised", "dino", "centre bump"]
    for name in ("supervised", "dino"):
        meta = zoo.load(name).meta
        assert table[name]["knn_accuracy"] == meta["metrics"]["knn_accuracy"]
        assert table[name]["steps"] == meta["steps"]
        assert 0.0 <= table[name]["best_head"] <= 1.0
        assert table[name]["best_head"] >= table[name]["mean_over_heads"]
    text = checkpoint_table(table)
    assert all(name in text for name in table)
    ax = plot_checkpoints(table)
    assert len(ax.patches) == 2


# Each self-supervised checkpoint on the one-grey, one-size shapes and the labelled network of the
# same ViT, data and steps: MAE, iBOT, I-JEPA and DINOv2 train on plain 4 px patches (a conv stem
# would leak masked pixels).
SAME_BACKBONE_REFERENCE = {"simclr-plain": "supervised-plain", "moco-plain": "supervised-plain",
                           "dino-plain": "supervised-plain", "mae-plain": "supervised-patch-plain",
                           "dino-fine": "supervised-fine", "ibot-plain": "supervised-patch-plain",
                           "ijepa-plain": "supervised-patch-plain", "dinov2-plain": "supervised-patch-plain",
                           "dinov2-nokoleo-plain": "supervised-patch-plain",
                           "dinov2-lowkoleo-plain": "supervised-patch-plain", "ibot-fine": "supervised-fine",
                           "dinov2-fine": "supervised-fine"}
# What lecture 07 (section 7) and benchmarks/COURSE_SCALE.md say of the 80 % target on these data,
# against the plain-patch labels at their best learning rate (1e-3).
MISSES_80_PERCENT = {"ibot-plain", "dinov2-plain"}


def test_the_labelled_reference_is_the_supervised_run_with_the_same_vit_and_data():
    from course_lib.labs.shipped import labelled_reference
    for name, reference in {**SAME_BACKBONE_REFERENCE, "dino": "supervised", "simclr": "supervised"}.items():
        assert labelled_reference(name) == reference, name
    for name in ("mae", "ibot", "ijepa", "dinov2", "dinov2-reg"):       # the colourful runs on plain patches
        assert labelled_reference(name) == "supervised-patch", name
    assert labelled_reference("supervised-plain") is None
    from course_lib.labs.shipped import same_vit
    assert same_vit(zoo.metadata("ijepa-plain"), zoo.metadata("supervised-patch-plain"))   # CLS token only
    assert same_vit(zoo.metadata("dinov2-reg"), zoo.metadata("supervised-patch"))          # registers only
    assert not same_vit(zoo.metadata("mae-plain"), zoo.metadata("supervised-plain"))       # the stem differs
    assert not same_vit(zoo.metadata("mae"), zoo.metadata("supervised"))


@pytest.mark.parametrize("name", sorted(SAME_BACKBONE_REFERENCE))
def test_plain_checkpoints_against_80_percent_of_labels_on_the_same_backbone(name):
    """The lectures' reading of the target, checked on the recorded metrics (which the test above
    recomputes from the weights): every run reaches it but iBOT on plain patches and DINOv2's own
    recipe (:data:`MISSES_80_PERCENT`)."""
    from course_lib.labs.shipped import same_vit
    model, reference = zoo.metadata(name), zoo.metadata(SAME_BACKBONE_REFERENCE[name])
    for key in ("data", "steps", "seed"):
        assert model[key] == reference[key], key
    assert same_vit(model, reference)                 # I-JEPA's ViT has no CLS token, the labelled one has
    share = model["metrics"]["knn_accuracy"] / reference["metrics"]["knn_accuracy"]
    assert (share >= 0.8) == (name not in MISSES_80_PERCENT), share


RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
COURSE_SCALE = RESULTS.parent / "COURSE_SCALE.md"


def _flat(text: str) -> str:
    """``text`` with each run of whitespace as one space, so that a quote wrapped across lines matches."""
    return re.sub(r"\s+", " ", text)


def _flat_lecture(notebook: str) -> str:
    """The markdown of lecture ``notebook`` (lectures/), flattened by :func:`_flat`."""
    return _flat(" ".join(_lecture_texts(notebook)))


def _run(name: str, seed: int, lr: float) -> dict:
    """The metadata of run ``name`` on ``seed`` at peak rate ``lr`` (1e-3 or 3e-3): the shipped
    checkpoint, or a record in benchmarks/results (``NAME_seedS.json`` at the shipped rate, with
    ``_lr1e-3`` / ``_lr3e-3`` at the other; seed 0's other rate is ``NAME_lrX.json``)."""
    shipped = zoo.metadata(name)
    tag = {1e-3: "1e-3", 3e-3: "3e-3"}[lr]
    own = shipped["config"]["train"]["lr"] == lr
    stem = name.replace("-", "_") + (f"_seed{seed}" if seed else "") + ("" if own else f"_lr{tag}")
    meta = (json.loads(json.dumps(shipped)) if own and seed == 0       # tuples as a record's lists
            else json.loads((RESULTS / f"{stem}.json").read_text()))
    assert meta["method"] == name and meta["seed"] == meta["data"]["seed"] == seed, stem
    assert meta["config"]["train"]["lr"] == meta["config"]["recipe"]["lr"] == lr and meta["steps"] == 1500, stem
    return meta


def _course_scale_row(tag: str) -> dict:
    rows = [row for row in map(json.loads, (RESULTS / "course_scale.jsonl").read_text().splitlines())
            if row.get("tag") == tag]
    assert len(rows) == 1, (tag, len(rows))
    return rows[0]


GREY_VIEW_RUNS = ("supervised", "simclr", "moco", "dino")


def _before_grey_views(name: str) -> dict:
    """Checkpoint ``name``'s metadata as shipped before the recipe made views grey with p = 0.8."""
    return json.loads((RESULTS / f"{name}_grey0.2.json").read_text())


def test_grey_views_take_simclr_and_moco_past_the_labels_on_the_colourful_shapes():
    """COURSE_SCALE.md ("Grey views take the colour away"): with only the probability of a grey
    view raised from 0.2, SimCLR and MoCo at 1500 steps passed 80 % of the supervised checkpoint
    of the time (views grey at 0.2) on the colourful shapes, where that recipe missed; DINO did not.
    These probe runs are why the recipe now makes views grey with p = 0.8."""
    labelled = _before_grey_views("supervised")["metrics"]["knn_accuracy"]              # 0.703
    rows = {tag: _course_scale_row(tag) for tag in ("long-simclr-s03", "long-simclr-g0.5", "long-simclr-g0.8",
                                                    "long-moco-g0.8", "long-dino-g0.8")}
    base = rows["long-simclr-s03"]
    for tag, row in rows.items():
        for key in ("steps", "lr", "n_train", "clutter", "preset", "strength", "hue", "crop", "rotate", "seed",
                    "knn_before", "one_colour"):                      # the colourful data, the same views
            assert row[key] == base[key], (tag, key)
        assert row["knn_curve"][-1] == [1500, row.get("knn_teacher") or row["knn_after"]], tag   # DINO: the teacher
    assert {tag: row["gray"] for tag, row in rows.items()} == {
        "long-simclr-s03": 0.2, "long-simclr-g0.5": 0.5, "long-simclr-g0.8": 0.8, "long-moco-g0.8": 0.8,
        "long-dino-g0.8": 0.8}
    final = {tag: row["knn_after"] for tag, row in rows.items()}
    assert final["long-simclr-s03"] < 0.8 * labelled < final["long-simclr-g0.5"] < final["long-simclr-g0.8"]
    assert (rows["long-moco-g0.8"]["queue"], rows["long-moco-g0.8"]["momentum"]) == (0, 0.5)   # the cpu recipe
    assert final["long-moco-g0.8"] > labelled > _before_grey_views("moco")["metrics"]["knn_accuracy"] + 0.25
    assert rows["long-dino-g0.8"]["knn_teacher"] < 0.3 * labelled                       # DINO: still far off
    for method in ("simclr", "moco"):                 # at the cpu scale's 450 steps: the same lever
        low, high = (_course_scale_row(f"cpu-{method}-g{p}") for p in (0.2, 0.8))
        assert low["steps"] == high["steps"] == 450 and (low["gray"], high["gray"]) == (0.2, 0.8)
        assert high["knn_after"] > low["knn_after"] + 0.2 > low["knn_before"] + 0.3, method
    reading = next(text for text in _lecture_texts("01_infonce.ipynb")
                   if text.startswith("**Reading it.**") and "How often a view is grey" in text)
    assert (f"from {final['long-simclr-s03']:.3f} to {final['long-simclr-g0.5']:.3f} and "
            f"{final['long-simclr-g0.8']:.3f}") in reading
    shipped_labels = zoo.metadata("supervised")["metrics"]["knn_accuracy"]                  # views grey at 0.8
    assert (f"reached {final['long-moco-g0.8']:.3f} at 0.8 (the labelled network reached {labelled:.3f} with its "
            f"views grey 20 % of the time, and {shipped_labels:.3f} at 0.8 as shipped)") in reading
    before = _before_grey_views("simclr")["invariance"]
    assert (f"hue {100 * before['simclr']['colour']:.1f} %" in reading
            and f"({100 * before['simclr']['shape']:.1f} %;" in reading)


def test_a_faster_dino_teacher_does_not_lift_it_on_the_colourful_shapes():
    """COURSE_SCALE.md ("Grey views take the colour away"): the faster key encoder that made MoCo
    learn, tried as DINO's teacher (momentum from 0.96 and 0.9 instead of 0.99), ends below the
    0.99 run with fewer prototypes in use; the table quotes each run's k-NN curve."""
    base = _course_scale_row("long-dino-g0.8")
    doc = COURSE_SCALE.read_text()
    for momentum in (0.96, 0.9):
        row = _course_scale_row(f"long-dino-g0.8-m{momentum}")
        changed = {key for key in base if base[key] != row[key]}
        assert changed <= {"tag", "momentum", "knn_every", "knn_curve", "knn_after", "knn_teacher", "wall_s",
                           "s_per_step", "final_loss", "teacher_entropy", "batch_mean_entropy", "cluster_nmi"}, changed
        assert row["momentum"] == momentum and row["knn_curve"][-1] == [1500, row["knn_teacher"]]
        assert row["knn_teacher"] < base["knn_teacher"]
        assert row["cluster_nmi"]["clusters_used"] < base["cluster_nmi"]["clusters_used"]
        assert row["cluster_nmi"]["background"] > row["cluster_nmi"]["shape"]
        curve = dict(row["knn_curve"])
        share = round(100 * row["knn_teacher"] / _before_grey_views("supervised")["metrics"]["knn_accuracy"])
        assert (f"| 0.8 | {curve[500]:.3f} / {curve[1000]:.3f} / {curve[1500]:.3f}; "
                f"{row['cluster_nmi']['clusters_used']} prototypes used | {share} % | {row['wall_s']:.0f} |") in doc


def test_dinos_solarisation_does_not_lift_it_on_the_colourful_shapes():
    """COURSE_SCALE.md ("Grey views take the colour away"): DINO's solarisation of the second view
    (p 0.2, and 0.5) is the only change from the 0.99 run; at 0.2 the teacher ends 0.021 above it
    (1.3 standard errors of the difference), at 0.5 below it; both use more prototypes and still
    sort by the background before the shape. The table quotes each run's k-NN curve."""
    base = _course_scale_row("long-dino-g0.8")
    doc = COURSE_SCALE.read_text()
    flat = _flat(doc)
    labels = _before_grey_views("supervised")["metrics"]["knn_accuracy"]
    runs = {p: _course_scale_row(f"long-dino-g0.8-sol{p}") for p in (0.2, 0.5)}
    for p, row in runs.items():
        changed = {key for key in row if base.get(key) != row[key]}
        assert changed <= {"tag", "solarize", "knn_every", "knn_curve", "knn_after", "knn_teacher", "wall_s",
                           "s_per_step", "final_loss", "teacher_entropy", "batch_mean_entropy", "cluster_nmi"}, changed
        assert row["solarize"] == p and "solarize" not in base and row["knn_curve"][-1] == [1500, row["knn_teacher"]]
        nmi = row["cluster_nmi"]
        assert nmi["background"] > nmi["shape"] and nmi["clusters_used"] > base["cluster_nmi"]["clusters_used"]
        curve = dict(row["knn_curve"])
        assert (f"| 0.8 | {curve[500]:.3f} / {curve[1000]:.3f} / {curve[1500]:.3f}; {nmi['clusters_used']} prototypes "
                f"used | {round(100 * row['knn_teacher'] / labels)} % | {row['wall_s']:.0f} |") in doc
    low, high = runs[0.2], runs[0.5]
    gain = low["knn_teacher"] - base["knn_teacher"]
    error = math.hypot(*(math.sqrt(a * (1 - a) / base["n_test"]) for a in (low["knn_teacher"], base["knn_teacher"])))
    assert f"{gain:.3f}" == "0.021" and f"{gain / error:.1f}" == "1.3" and high["knn_teacher"] < base["knn_teacher"]
    peak = max(low["knn_curve"], key=lambda point: point[1])
    for quoted in (f"peaks at {peak[1]:.3f} after {peak[0]} steps and ends at {low['knn_teacher']:.3f}",
                   f"with p = 0.5 it ends at {high['knn_teacher']:.3f}",
                   f"({low['cluster_nmi']['clusters_used']} and {high['cluster_nmi']['clusters_used']} against "
                   f"{base['cluster_nmi']['clusters_used']})",
                   f"(NMI {low['cluster_nmi']['background']:.3f} and {high['cluster_nmi']['background']:.3f} against the "
                   f"shape's {low['cluster_nmi']['shape']:.3f} and {high['cluster_nmi']['shape']:.3f})"):
        assert quoted in flat, quoted
    lecture = _flat_lecture("02_dino.ipynb")
    assert (f"{low['knn_teacher']:.3f} against {base['knn_teacher']:.3f} without it, 1.3 standard errors of the "
            f"difference, the background still ahead of the shape (NMI {low['cluster_nmi']['background']:.3f} "
            f"against {low['cluster_nmi']['shape']:.3f}") in lecture


def test_grey_views_are_all_that_changed_from_the_colourful_runs_shipped_before():
    for name in GREY_VIEW_RUNS:
        now, before = json.loads(json.dumps(zoo.metadata(name))), _before_grey_views(name)
        recipe = now["config"]["recipe"]
        assert recipe["grayscale_p"] == 0.8 and "grayscale_p" not in before["config"]["recipe"], name
        assert {key: recipe[key] for key in before["config"]["recipe"]} == before["config"]["recipe"], name
        for key in ("data", "steps", "seed", "pooling", "untrained_knn_accuracy"):
            assert now[key] == before[key], (name, key)
        for part in ("vit", "train"):        # fields added since (the ViT's class_token) are new, not changed
            old = before["config"][part]
            assert {key: now["config"][part][key] for key in old if key != "progress"} == \
                {key: value for key, value in old.items() if key != "progress"}, (name, part)
        method, old_method = now["config"]["method"], before["config"]["method"]
        if name == "dino":                   # DINO_CONFIG now records the 0 local crops the runs see
            assert (method.pop("n_local_crops"), old_method.pop("n_local_crops")) == (0, 8)
        assert method == old_method, name


def test_grey_views_take_the_shipped_simclr_and_moco_past_80_percent_of_labels():
    """On the colourful shapes, against the labelled run of the same recipe: with views grey at
    p = 0.2 SimCLR and MoCo missed 80 % (70 % and 63 %), at 0.8 they meet it; DINO stays far off.
    Lectures 01 and 07 quote these figures."""
    def shares(metas: dict) -> dict:
        labelled = metas["supervised"]["metrics"]["knn_accuracy"]
        return {name: meta["metrics"]["knn_accuracy"] / labelled for name, meta in metas.items()}
    now = shares({name: zoo.metadata(name) for name in GREY_VIEW_RUNS})
    before = shares({name: _before_grey_views(name) for name in GREY_VIEW_RUNS})
    for name in ("simclr", "moco"):
        assert before[name] < 0.8 <= now[name], (name, before[name], now[name])
    assert max(now["dino"], before["dino"]) < 0.3
    knn = {name: zoo.metadata(name)["metrics"]["knn_accuracy"] for name in GREY_VIEW_RUNS}
    old = {name: _before_grey_views(name)["metrics"]["knn_accuracy"] for name in GREY_VIEW_RUNS}
    summary = next(text for text in _lecture_texts("01_infonce.ipynb") if text.startswith("## Summary"))
    assert (f"SimCLR reaches {100 * knn['simclr']:.1f} % k-NN" in summary
            and f"the same ViT reaches with labels ({100 * knn['supervised']:.1f} %)" in summary)
    assert f"{100 * old['simclr']:.1f} % and {100 * old['moco']:.1f} %" in summary
    reading = next(text for text in _lecture_texts("07_evaluation.ipynb")
                   if text.startswith("**Reading.**") and "Take the shortcuts away" in text)
    assert (f"they reach {100 * now['simclr']:.0f} %, {100 * now['moco']:.0f} % and "
            f"{100 * now['dino']:.0f} % of it") in reading


# What a course_scale.py row measured, as against the settings it ran with.
_OUTCOMES = {"tag", "knn_before", "knn_after", "wall_s", "s_per_step", "final_loss", "knn_curve", "knn_teacher",
             "teacher_entropy", "batch_mean_entropy", "cluster_nmi"}


def _settings(row: dict) -> dict:
    """A course_scale.py row's settings, without what the run measured."""
    return {k: v for k, v in row.items() if k not in _OUTCOMES}


def test_grey_views_leave_dino_sorting_by_the_background_and_two_more_levers_do_not_help():
    """Lecture 02 and COURSE_SCALE.md: with grey views DINO's teacher sorts the colourful shapes by
    the background's brightness more than by size or shape; wider crops or Sinkhorn-Knopp targets,
    each the only change, leave its k-NN under 30 % of the labels of the time (0.703)."""
    base = _course_scale_row("long-dino-g0.8")
    changed = {"long-dino-g0.8-crop25": {"crop": [0.25, 1.0]}, "long-dino-g0.8-sk3": {"sinkhorn": 3}}
    for tag, change in changed.items():
        row = _course_scale_row(tag)
        assert _settings(row) == {
            **_settings(base), **change}, tag
        assert row["knn_teacher"] < 0.3 * _before_grey_views("supervised")["metrics"]["knn_accuracy"], tag
    nmi = base["cluster_nmi"]
    assert nmi["background"] > max(nmi["area"], nmi["shape"], nmi["hue"])
    reading = next(text for text in _lecture_texts("02_dino.ipynb") if text.startswith("**What the longer run says.**"))
    assert (f"background's brightness (NMI {nmi['background']:.3f}) more than the object's size "
            f"({nmi['area']:.3f}) or its shape ({nmi['shape']:.3f})") in reading
    assert (f"(k-NN {_course_scale_row('long-dino-g0.8-crop25')['knn_teacher']:.3f} and "
            f"{_course_scale_row('long-dino-g0.8-sk3')['knn_teacher']:.3f}") in reading


def test_stronger_brightness_jitter_does_not_lift_dino_with_grey_views_either():
    """COURSE_SCALE.md ("Grey views take the colour away"): DINO with grey views and the colour
    strength raised to 0.8 or 1.2, the only change, stays under 30 % of the labels of the time;
    at 1.2 its targets go uniform (log K = log 256), at 0.8 the background still leads its sorting."""
    base = _course_scale_row("long-dino-g0.8")
    rows = {strength: _course_scale_row(f"long-dino-g0.8-s{tag}") for strength, tag in ((0.8, "08"), (1.2, "12"))}
    for strength, row in rows.items():
        assert _settings(row) == {
            **_settings(base), "strength": strength}, strength
        assert row["knn_teacher"] < 0.3 * _before_grey_views("supervised")["metrics"]["knn_accuracy"], strength
    assert rows[1.2]["teacher_entropy"] > math.log(256) - 0.01
    nmi = rows[0.8]["cluster_nmi"]
    assert nmi["background"] == max(v for k, v in nmi.items() if k != "clusters_used")


def test_four_thousand_prototypes_do_not_lift_dino_with_grey_views():
    """COURSE_SCALE.md and lecture 02: K = 4096 instead of 256, with the center or with
    Sinkhorn-Knopp, the only change from the shipped recipe, stays under 30 % of the labels of the
    time; the center uses few of the prototypes and still sorts by the background first,
    Sinkhorn-Knopp spreads the images over many more."""
    base = _course_scale_row("long-dino-g0.8")
    changed = {"long-dino-g0.8-k4096": {"out_dim": 4096},
               "long-dino-g0.8-sk3-k4096": {"out_dim": 4096, "sinkhorn": 3}}
    rows = {tag: _course_scale_row(tag) for tag in changed}
    for tag, change in changed.items():
        assert _settings(rows[tag]) == {
            **_settings(base), **change}, tag
        assert rows[tag]["knn_teacher"] < 0.3 * _before_grey_views("supervised")["metrics"]["knn_accuracy"], tag
    centred, spread = (rows[tag]["cluster_nmi"] for tag in changed)
    assert centred["background"] == max(v for k, v in centred.items() if k != "clusters_used")
    assert centred["clusters_used"] < 100 < 4 * centred["clusters_used"] < spread["clusters_used"]
    reading = next(text for text in _lecture_texts("02_dino.ipynb") if text.startswith("**What the longer run says.**"))
    assert (f"(k-NN {rows['long-dino-g0.8-k4096']['knn_teacher']:.3f} with the center, which uses "
            f"{centred['clusters_used']} of them, and {rows['long-dino-g0.8-sk3-k4096']['knn_teacher']:.3f} "
            f"with Sinkhorn-Knopp, which uses {spread['clusters_used']}") in reading

def test_the_cpu_scale_meets_its_target_through_the_command_line_with_grey_views():
    """COURSE_SCALE.md: ``python -m course_lib simclr|moco --scale cpu`` with the recipe's grey views
    end at least 0.20 above the untrained network (0.100 on seed 0's data, the search's reading),
    with the labelled run of the same 450 steps beside them."""
    from course_lib.labs.infonce import PRETRAIN_SCALES
    recipe = PRETRAIN_SCALES["cpu"]
    rows = [json.loads(line) for line in (RESULTS / "cli_cpu_runs.jsonl").read_text().splitlines()]
    grey = {row["method"]: row for row in rows if row.get("grayscale_p") == recipe.grayscale_p}
    assert set(grey) == {"simclr", "moco", "supervised"}
    for row in grey.values():
        assert (row["steps"], row["lr"], row["batch_size"]) == (recipe.steps, recipe.lr, recipe.batch_size)
    assert grey["moco"]["moco"] == asdict(recipe.moco)
    untrained = _course_scale_row("cpu-simclr-g0.8")["knn_before"]
    for method in ("simclr", "moco"):
        assert grey[method]["knn_accuracy"] >= untrained + 0.20, grey[method]
        assert grey[method]["knn_accuracy"] > grey["supervised"]["knn_accuracy"]       # COURSE_SCALE.md's reading


def test_ibot_and_dinov2_without_koleo_differ_in_the_targets_only():
    """Lectures 04 and 06 compare the two runs as iBOT's recipe with and without Sinkhorn-Knopp, at
    each rate and seed both were run at (COURSE_SCALE.md)."""
    knn, gap = {}, {}
    for seed, lr in ((0, 3e-3), (0, 1e-3), (1, 3e-3), (1, 1e-3)):
        ibot, dinov2 = _run("ibot-plain", seed, lr), _run("dinov2-nokoleo-plain", seed, lr)
        for key in ("data", "steps", "seed"):
            assert ibot[key] == dinov2[key], key
        for part in ("vit", "recipe", "train"):
            assert ibot["config"][part] == dinov2["config"][part], part
        a, b = ibot["config"]["method"], dinov2["config"]["method"]
        shared = ("out_dim", "hidden_dim", "bottleneck_dim", "use_bn_in_head", "shared_head", "n_local_crops",
                  "student_temp", "teacher_temp", "momentum_teacher", "mask_ratio_range", "p_unmasked")
        assert {k: a[k] for k in shared} == {k: b[k] for k in shared}
        assert a["teacher_patch_temp"] == b["teacher_temp"] and b["koleo_weight"] == 0.0
        assert (a["lambda_cls"], a["lambda_patch"]) == (b["dino_weight"], b["ibot_weight"]) == (1.0, 1.0)
        assert a["patch_centering"] and b["centering"] == "sinkhorn_knopp"
        knn["ibot", seed, lr], knn["dinov2", seed, lr] = (m["metrics"]["knn_accuracy"] for m in (ibot, dinov2))
        gap[seed, lr] = round(knn["dinov2", seed, lr] - knn["ibot", seed, lr], 3)
    # Sinkhorn-Knopp ahead at 1e-3 on both seeds; at 3e-3 on seed 0 only; each at its shipped rate
    # (DINOv2 1e-3, iBOT 3e-3) ahead on both: 0.703 - 0.514 and 0.641 - 0.511
    assert gap == {(0, 3e-3): 0.102, (0, 1e-3): 0.1, (1, 3e-3): -0.152, (1, 1e-3): 0.361}, gap
    for seed in (0, 1):
        assert knn["dinov2", seed, 1e-3] > knn["ibot", seed, 3e-3] + 0.12, seed


def test_more_seeds_of_the_plain_patch_runs_are_measured_against_labels_of_the_same_seed():
    """benchmarks/COURSE_SCALE.md and lectures 04 to 07: seeds 1 and 2 repeat each shipped recipe on
    other images and initial weights, against the labelled run of the same seed (k-NN shares
    below). iBOT at 1e-3 beat 3e-3 on seed 0 only: on seeds 1 and 2 it stayed near its untrained
    network, so it ships at 3e-3; DINOv2 without KoLeo does better at 1e-3 on both seeds run."""
    from course_lib.labs.shipped import same_vit
    shipped_lr = {name: zoo.metadata(name)["config"]["train"]["lr"]
                  for name in ("supervised-patch-plain", "ijepa-plain", "ibot-plain", "dinov2-nokoleo-plain",
                               "dinov2-lowkoleo-plain", "dinov2-plain")}
    seeds = {"supervised-patch-plain": 3, "ijepa-plain": 3, "ibot-plain": 3, "dinov2-nokoleo-plain": 3,
             "dinov2-lowkoleo-plain": 3, "dinov2-plain": 3}
    runs = {name: [_run(name, seed, shipped_lr[name]) for seed in range(n)] for name, n in seeds.items()}
    knn = {name: [m["metrics"]["knn_accuracy"] for m in group] for name, group in runs.items()}
    labels = knn.pop("supervised-patch-plain")
    for name, group in runs.items():
        for meta, labelled in zip(group, runs["supervised-patch-plain"]):
            assert meta["data"] == labelled["data"] and same_vit(meta, labelled), name
    share = {name: [round(mine / ref, 2) for mine, ref in zip(k, labels)] for name, k in knn.items()}
    assert share == EXPECTED_SHARES, share
    mean_share = {name: sum(k) / sum(labels[:len(k)]) for name, k in knn.items()}
    assert mean_share["ijepa-plain"] >= 0.8 > mean_share["ibot-plain"] and mean_share["dinov2-nokoleo-plain"] >= 0.8
    assert mean_share["dinov2-lowkoleo-plain"] < 0.8 < share["dinov2-lowkoleo-plain"][0]   # one seed's answer
    assert max(share["dinov2-plain"]) < 0.7          # DINOv2's own KoLeo weight misses on every seed
    # iBOT at the other rate: ahead on seed 0, near the untrained network on seeds 1 and 2
    fast = [_run("ibot-plain", seed, 1e-3) for seed in range(3)]
    assert fast[0]["metrics"]["knn_accuracy"] > knn["ibot-plain"][0] + 0.05
    for meta in fast[1:]:
        assert meta["metrics"]["knn_accuracy"] < meta["untrained_knn_accuracy"] + 0.05
    assert sum(m["metrics"]["knn_accuracy"] for m in fast) < sum(knn["ibot-plain"]) - 0.15    # 1.212 / 1.413
    slow = [_run("dinov2-nokoleo-plain", seed, 3e-3) for seed in range(2)]
    assert all(a > b["metrics"]["knn_accuracy"] for a, b in zip(knn["dinov2-nokoleo-plain"], slow))


# k-NN over the labelled run's k-NN on the same seed, at each run's shipped rate (COURSE_SCALE.md)
EXPECTED_SHARES = {"ijepa-plain": [0.9, 1.04, 0.93], "ibot-plain": [0.66, 0.81, 0.58],
                   "dinov2-nokoleo-plain": [0.9, 1.01, 0.64], "dinov2-lowkoleo-plain": [0.96, 0.59, 0.78],
                   "dinov2-plain": [0.57, 0.61, 0.6]}


def _plain_knn_by_lr(name: str) -> dict[float, float]:
    """Held-out k-NN of 1500-step runs of ``name`` on the plain shapes, seed 0, by peak learning
    rate: the probe's rows (float32 weights) and the records of the run at the rate it does not
    ship with (``NAME_lr1e-3.json``, ``NAME_lr3e-3.json``)."""
    stem = name.replace("-", "_")
    rows = [json.loads(line) for line in (RESULTS / f"{stem}_probe.jsonl").read_text().splitlines()]
    knn = {row["lr"]: row["knn"] for row in rows
           if row["steps"] == 1500 and row.get("seed", 0) == 0
           and (row["change"] == "baseline" or row["change"].startswith("lr_"))}
    for earlier in RESULTS.glob(f"{stem}_lr*.json"):
        meta = json.loads(earlier.read_text())
        assert meta["method"] == name and meta["steps"] == 1500 and meta["seed"] == 0
        knn[meta["config"]["train"]["lr"]] = meta["metrics"]["knn_accuracy"]
    return knn


def test_the_plain_patch_runs_train_at_the_best_learning_rate_measured():
    """benchmarks/COURSE_SCALE.md's learning-rate table, seed 0: the labels and I-JEPA ship at 1e-3,
    the best of 5e-4, 1e-3 and 3e-3 for each; both DINOv2 runs at 1e-3, the better of 1e-3 and
    3e-3 for each; MAE at the shared 3e-3, its better of the two. iBOT does better at 1e-3 on seed
    0 but ships at 3e-3, the better rate over three seeds (the test above). The shipped checkpoint
    repeats the probe's run at its rate (float32 k-NN against half precision: within 0.01), where
    that run is the one shipped."""
    from course_lib.labs.pretrain import METHOD_LR
    three, two = [5e-4, 1e-3, 3e-3], [1e-3, 3e-3]
    expected = {"supervised-patch-plain": (three, 1e-3, 1e-3), "ijepa-plain": (three, 1e-3, 1e-3),
                "mae-plain": (two, 3e-3, 3e-3), "ibot-plain": (two, 1e-3, 3e-3),
                "dinov2-plain": (two, 1e-3, 1e-3), "dinov2-nokoleo-plain": (two, 1e-3, 1e-3)}
    for name, (tried, best, ships) in expected.items():
        shipped, runs = zoo.metadata(name), _plain_knn_by_lr(name)
        lr, knn = shipped["config"]["train"]["lr"], shipped["metrics"]["knn_accuracy"]
        if name != "ijepa-plain":            # its rates were compared at the official EMA (below)
            # ibot-plain's probe row at 3e-3 is not the shipped run but a rerun from a later session,
            # 0.022 below it (test_dinos_per_parameter_clipping_does_not_rescue_ibots_cls_objective)
            if lr in runs and name != "ibot-plain":
                assert runs[lr] == pytest.approx(knn, abs=0.01), name
            runs[lr] = knn
        assert sorted(runs) == tried and max(runs, key=runs.get) == best, (name, runs)
        assert lr == METHOD_LR.get(name, 3e-3) == ships, name
    # I-JEPA: the rate chosen with the official EMA start (0.996), then the start at that rate; the
    # shipped run repeats the probe's fast_ema row, 0.086 above the official start's
    rows = {row["change"]: row for row in map(json.loads, (RESULTS / "ijepa_plain_probe.jsonl").read_text().splitlines())
            if row["steps"] == 1500 and row.get("seed", 0) == 0 and row.get("lr") == 1e-3}
    assert rows["lr_1e-3"]["momentum"] == [0.996, 1.0] and rows["fast_ema"]["momentum"] == [0.99, 1.0]
    shipped = zoo.metadata("ijepa-plain")
    assert list(shipped["config"]["method"]["momentum"]) == rows["fast_ema"]["momentum"]
    assert shipped["metrics"]["knn_accuracy"] == pytest.approx(rows["fast_ema"]["knn"], abs=0.01)
    assert rows["fast_ema"]["knn"] > rows["lr_1e-3"]["knn"] + 0.05


def test_koleo_costs_dinov2_what_it_learns_on_the_plain_shapes():
    """Lecture 06, section 7: the two runs differ only in the KoLeo weight. With it the teacher's
    k-NN peaks within 450 steps and falls back; without it it rises to the end, far above. At
    3e-3 (the runs shipped before, kept as records) KoLeo took the run below its untrained
    network. The last point of each trajectory (float32 weights) is the checkpoint's own k-NN
    (half precision)."""
    runs = {name: zoo.metadata(name) for name in ("dinov2-plain", "dinov2-nokoleo-plain")}
    earlier = {name: json.loads((RESULTS / f"{name.replace('-', '_')}_lr3e-3.json").read_text()) for name in runs}
    for group, lr in ((runs, 1e-3), (earlier, 3e-3)):
        settings = [dict(m["config"]["method"]) for m in group.values()]
        assert [c.pop("koleo_weight") for c in settings] == [0.1, 0.0] and settings[0] == settings[1]
        for meta in group.values():
            curve = meta["knn_trajectory"]
            assert meta["config"]["train"]["lr"] == lr and meta["seed"] == 0
            assert curve["steps"] == list(range(150, 1501, 150))
            assert curve["knn"][-1] == pytest.approx(meta["metrics"]["knn_accuracy"], abs=0.01)
    koleo, plain = (m["knn_trajectory"]["knn"] for m in runs.values())
    untrained = runs["dinov2-plain"]["untrained_knn_accuracy"]
    assert max(koleo[:3]) == max(koleo) > untrained + 0.15          # a peak within 450 steps
    assert max(koleo) - koleo[-1] > 0.05 and koleo[-1] > untrained   # falls back, stays above untrained
    assert plain[-1] > max(plain) - 0.01 and plain[-1] > koleo[-1] + 0.2 > untrained + 0.2
    before = earlier["dinov2-plain"]
    assert before["metrics"]["knn_accuracy"] < before["untrained_knn_accuracy"] == untrained


def test_knn_trajectories_start_untrained_and_name_the_labelled_run():
    import matplotlib
    matplotlib.use("Agg")
    from course_lib.labs.shipped import knn_trajectories, plot_knn_trajectories
    table = knn_trajectories(["dinov2-nokoleo-plain"])
    row, meta = table["dinov2-nokoleo-plain"], zoo.metadata("dinov2-nokoleo-plain")
    assert row["steps"] == [0, *meta["knn_trajectory"]["steps"]]
    assert row["knn"] == [meta["untrained_knn_accuracy"], *meta["knn_trajectory"]["knn"]]
    assert (row["final"], row["reference"]) == (meta["metrics"]["knn_accuracy"], "supervised-patch-plain")
    assert row["labelled"] == zoo.metadata("supervised-patch-plain")["metrics"]["knn_accuracy"]
    ax = plot_knn_trajectories(table)
    assert len(ax.lines) == 4                           # the curve, labels, 80 % of them, chance
    with pytest.raises(ValueError, match="'mae' recorded no k-NN during training"):
        knn_trajectories(["mae"])


def test_dino_fine_attention_finds_the_object_where_the_bump_and_the_labelled_vit_do_not():
    """Lecture 02's claim about the shipped 8x8-token pair, on 400 held-out images: DINO's head,
    chosen on the first 200 and scored on the other 200, overlaps the object masks well above a
    fixed centre bump and above the chosen head of the ViT trained with labels."""
    from course_lib.evaluate import centre_bump_jaccard, held_out_head_jaccard
    models = {name: zoo.load(name) for name in ("dino-fine", "supervised-fine")}
    assert all(tuple(m.backbone.patch_embed.grid_size) == (8, 8) for m in models.values())
    assert models["dino-fine"].meta["data"] == models["supervised-fine"].meta["data"]
    images, _, masks = make_shapes(400, split="test", **shapes_kwargs(models["dino-fine"].meta["data"]))
    scores = {name: held_out_head_jaccard(m.backbone, images, masks)["held_out"] for name, m in models.items()}
    bump = centre_bump_jaccard(masks[200:], (8, 8))
    assert scores["dino-fine"] > max(bump, scores["supervised-fine"]) + 0.1, (scores, bump)


def test_the_centre_bump_is_scored_once_per_token_grid():
    from course_lib.evaluate import centre_bump_jaccard
    from course_lib.labs.shipped import compare_checkpoints
    table = compare_checkpoints(["supervised", "mae"], n_attention=40)
    assert list(table) == ["supervised", "mae", "centre bump 4x4", "centre bump 8x8"]
    assert table["supervised"]["grid"] == (4, 4) and table["mae"]["grid"] == (8, 8)
    data = shapes_kwargs(zoo.load("mae").meta["data"])
    _, _, masks = make_shapes(40, split="test", **data)
    for grid in ((4, 4), (8, 8)):
        key = f"centre bump {grid[0]}x{grid[1]}"
        assert table[key]["best_head"] == pytest.approx(centre_bump_jaccard(masks, grid))
    assert table["centre bump 4x4"]["best_head"] != table["centre bump 8x8"]["best_head"]


def test_object_hue_labels_match_colorsys_and_ignore_the_background():
    import colorsys
    from course_lib.labs.shipped import object_hue_labels
    # Hand-made: a red, a green and a blue object on a background of another colour.
    images = torch.zeros(3, 3, 8, 8, dtype=torch.uint8)
    images[:, 2] = 200                                       # blue background everywhere
    masks = torch.zeros(3, 8, 8, dtype=torch.bool)
    masks[:, 2:5, 2:6] = True
    for i, rgb in enumerate(((255, 0, 0), (0, 255, 0), (0, 0, 255))):
        for c, v in enumerate(rgb):
            images[i, c][masks[i]] = v
    assert object_hue_labels(images, masks).tolist() == [0, 2, 4]   # hue 0, 1/3, 2/3 of 6 sectors
    # The shapes data: each object's mean colour through colorsys, one image at a time.
    images, _, masks = make_shapes(200, clutter=1.0)
    got = object_hue_labels(images, masks)
    for i in range(200):
        rgb = (images[i].double() * masks[i]).sum((1, 2)) / masks[i].sum() / 255
        assert got[i] == min(int(colorsys.rgb_to_hsv(*rgb.tolist())[0] * 6), 5)
    with pytest.raises(ValueError, match="masks must be bool"):
        object_hue_labels(images, masks.float())


def test_the_invariance_table_recomputes_shape_and_colour_knn():
    from course_lib.labs.shipped import HUE_BINS, invariance_table, object_hue_labels
    table = invariance_table(["supervised"])
    assert list(table) == ["untrained", "supervised", "colour chance"]
    meta = zoo.load("supervised").meta
    assert table["supervised"]["shape"] == pytest.approx(meta["metrics"]["knn_accuracy"], abs=0.01)
    assert table["untrained"]["shape"] == pytest.approx(meta["untrained_knn_accuracy"], abs=0.01)
    # Colour k-NN of the supervised network, by the loop, on its own data.
    data = shapes_kwargs(meta["data"])
    train_x, _, train_m = make_shapes(meta["data"]["n_train"], **data)
    test_x, _, test_m = make_shapes(meta["data"]["n_test"], split="test", **data)
    model = zoo.load("supervised")
    expected = knn_by_loop(model.features(train_x), object_hue_labels(train_x, train_m),
                           model.features(test_x), object_hue_labels(test_x, test_m))
    assert table["supervised"]["colour"] == pytest.approx(expected, abs=0.01)
    hues = object_hue_labels(test_x, test_m)
    assert table["colour chance"]["colour"] == hues.bincount(minlength=HUE_BINS).max().item() / len(hues)


def test_the_checkpoint_table_lines_up_whatever_the_names():
    from course_lib.labs.shipped import checkpoint_table
    row = dict(steps=1500, train_seconds=600.0, untrained_knn_accuracy=0.4, knn_accuracy=0.9,
               knn_stderr=0.01, linear_probe=0.95, best_head=0.5)
    for names in (["dino"], ["supervised-plain", "dino-plain"]):
        table = {**{name: row for name in names}, "centre bump": {"best_head": 0.35}}
        lines = checkpoint_table(table).splitlines()
        assert len({len(line) for line in lines}) == 1, lines      # every column in its place
        assert all(line.endswith("0.500") for line in lines[1:-1]) and lines[-1].endswith("0.350")


def test_ijepa_plain_starts_its_ema_at_0_99_and_the_colourful_run_at_the_official_0_996():
    """IJEPA_CHANGES: on the plain shapes the target encoder's EMA runs linearly from 0.99 to 1;
    the colourful run keeps the released configs' 0.996. The schedule the method uses, the settings
    the record keeps and the shipped checkpoints agree."""
    from course_lib.labs.pretrain import ZOO_SCALES, _method_settings, build_method, method_recipe
    for name, start in (("ijepa-plain", 0.99), ("ijepa", 0.996)):
        method = build_method(name, ZOO_SCALES["long"], steps=1500)
        schedule = method.momentum_schedule
        assert schedule[0] == pytest.approx(start) and schedule[750] == pytest.approx(start + (1 - start) / 2)
        assert _method_settings(name, method_recipe(name, "long"))["momentum"] == (start, 1.0)
        assert list(zoo.metadata(name)["config"]["method"]["momentum"]) == [start, 1.0], name


def test_ijepa_views_choose_the_labelled_runs_crops_and_are_recorded(monkeypatch):
    """IJEPA_VIEWS "crops" gives I-JEPA the labelled run's view (the same crop, flip and turn for
    the same random numbers); "masks" gives none; the metadata names the choice."""
    from course_lib.labs import pretrain as recipes
    setup = recipes.zoo_scale("cpu")
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    assert recipes.build_method("ijepa-plain", setup, steps=2).augment is None
    monkeypatch.setattr(recipes, "IJEPA_VIEWS", "crops")
    ijepa = recipes.build_method("ijepa-plain", setup, steps=2)
    labelled = recipes.build_method("supervised-patch-plain", setup, steps=2)
    torch.manual_seed(3)
    view = ijepa.augment(images)
    torch.manual_seed(3)
    assert torch.equal(view, labelled.augment(images)) and not torch.allclose(view, normalize(images))
    assert recipes._method_settings("ijepa-plain", setup.recipe)["views"] == "crops"
    monkeypatch.setattr(recipes, "IJEPA_VIEWS", "jitter")
    with pytest.raises(ValueError, match="IJEPA_VIEWS must be one of"):
        recipes.build_method("ijepa-plain", setup, steps=2)


def test_the_installed_collapse_runs_are_the_seed_records_and_obey_the_entropy_bounds():
    """``course_lib/checkpoints/collapse_runs.json`` (lecture 04's figure) is what
    benchmarks/collapse_runs.py builds from the seed records, and each reading obeys what any
    entropy must: 0 <= H <= log K, and the batch mean's entropy at least the mean entropy
    (concavity), so every information is >= 0."""
    import runpy
    from course_lib.labs import shipped
    script = runpy.run_path(str(RESULTS.parent / "collapse_runs.py"))
    runs = shipped.collapse_runs()
    installed = json.loads((zoo.CHECKPOINT_DIR / shipped.COLLAPSE_RUNS).read_text())
    assert installed == script["build"]()
    settings = [(run["method"], run["seed"], run["lr"]) for run in runs.values()]
    assert settings == [("ibot-plain", 1, 1e-3), ("ibot-plain", 1, 3e-3), ("dinov2-nokoleo-plain", 1, 1e-3)]
    runs["shipped"] = shipped.shipped_collapse_run("ibot-plain")           # the checkpoint's own
    assert (runs["shipped"]["seed"], runs["shipped"]["lr"]) == (0, 3e-3)
    with pytest.raises(ValueError, match="checkpoint mae-plain recorded no teacher entropies"):
        shipped.shipped_collapse_run("mae-plain")
    summary = {key: value for key, value in runs["shipped"].items() if not key.endswith("information")}
    cls_only = {**summary, "collapse": {key: values for key, values in summary["collapse"].items()
                                        if not key.startswith("patch_")}}              # as DINO records
    dino_like = shipped.with_information(cls_only)
    assert "patch_information" not in dino_like and dino_like["information"] == runs["shipped"]["information"]
    import matplotlib
    matplotlib.use("Agg")
    assert len(shipped.plot_collapse_runs({"cls only": dino_like, "shipped": runs["shipped"]})) == 3
    for label, run in runs.items():
        record = _run(run["method"], run["seed"], run["lr"])
        assert run["final_knn"] == record["metrics"]["knn_accuracy"], label
        assert run["knn"] == [record["untrained_knn_accuracy"], *record["knn_trajectory"]["knn"]], label
        readings, log_k = run["collapse"], run["log_k"]
        assert log_k == pytest.approx(math.log(record["config"]["method"]["out_dim"]))
        assert readings["steps"] == record["loss"]["steps"] and len(readings["steps"]) == 151
        for mean_key, batch_key, info_key in (("teacher_entropy", "batch_mean_entropy", "information"), (
                "patch_entropy", "patch_batch_mean_entropy", "patch_information")):
            for i, (h, h_mean) in enumerate(zip(readings[mean_key], readings[batch_key])):
                assert 0.0 <= h <= h_mean + 1e-3 <= log_k + 2e-3, (label, mean_key, i)
                assert run[info_key][i] == pytest.approx(h_mean - h), (label, i)


def _information(readings: dict, prefix: str = "") -> list[float]:
    """H(batch-mean target) - mean per-image H at every log step, from a record's ``collapse``
    (``prefix`` "patch_" for the patch targets), written out apart from ``shipped.with_information``."""
    per_image = readings[f"{prefix}entropy" if prefix else "teacher_entropy"]
    return [mean - h for h, mean in zip(per_image, readings[f"{prefix}batch_mean_entropy"])]


def _end_mean(readings: dict, values: list[float]) -> float:
    """The mean of ``values`` over the log steps from 1200 on (the last 300 of a 1500-step run)."""
    last = [i for i, step in enumerate(readings["steps"]) if step >= 1200]
    return sum(values[i] for i in last) / len(last)


def _early_mean(readings: dict, values: list[float]) -> float:
    """The mean of ``values`` over the log steps 200 to 400, where the shipped run's CLS targets flattened."""
    early = [i for i, step in enumerate(readings["steps"]) if 200 <= step <= 400]
    return sum(values[i] for i in early) / len(early)


def _uniform_from(readings: dict) -> int:
    """The first log step after which the CLS targets' information stays under 0.05 nats."""
    cls = _information(readings)
    return readings["steps"][min(i for i in range(len(cls)) if max(cls[i:]) < 0.05)]


def _probe_row(name: str, change: str) -> dict:
    """The one 1500-step seed-0 row of ``change`` in benchmarks/results/<name>_probe.jsonl."""
    lines = (RESULTS / f"{name.replace('-', '_')}_probe.jsonl").read_text().splitlines()
    rows = [row for row in map(json.loads, lines)
            if (row["change"], row.get("seed", 0), row["steps"]) == (change, 0, 1500)]
    assert len(rows) == 1, (name, change, len(rows))
    return rows[0]


def test_the_vit_decides_whether_ibot_keeps_its_cls_objective():
    """Lecture 04 (section 5.3) and COURSE_SCALE.md: three runs on seed 0 at 3e-3 with the same data,
    views, steps, head and teacher. iBOT on plain patches (``ibot-plain``) ends with uniform CLS
    targets; DINO on the same ViT (a probe run, installed by benchmarks/collapse_runs.py) keeps
    them informative and learns more; iBOT on the conv stem (``ibot-fine``) keeps them too and
    meets 80 % of its labels; iBOT with no image masked (``no_masks``) keeps them informative too.
    The probe's conv-stem row of iBOT is the shipped run."""
    import runpy
    from course_lib.labs import shipped
    script = runpy.run_path(str(RESULTS.parent / "collapse_runs.py"))
    assert json.loads((zoo.CHECKPOINT_DIR / shipped.DINO_PATCH_RUN).read_text()) == script["build_dino_patch"]()
    dino, conv_row = _probe_row("dino-patch-plain", "baseline"), _probe_row("ibot-plain", "conv_stem")
    plain, fine = zoo.metadata("ibot-plain"), zoo.metadata("ibot-fine")
    for key in ("data", "steps", "seed"):
        assert fine[key] == plain[key], key
    assert json.loads(json.dumps(fine["config"]["method"])) == json.loads(json.dumps(plain["config"]["method"]))
    assert fine["config"]["train"] == plain["config"]["train"]
    assert (fine["config"]["vit"]["stem"], plain["config"]["vit"]["stem"]) == ("conv", "patch")
    # the DINO run: ibot-plain's ViT (the same untrained k-NN), stem, rate and seed
    assert (dino["stem"], dino["lr"], dino["untrained_knn"]) == ("patch", 3e-3, plain["untrained_knn_accuracy"])
    assert conv_row["stem"] == "conv" and conv_row["trajectory"] == json.loads(json.dumps(fine["knn_trajectory"]))
    end = {name: _end_mean(readings, _information(readings))
           for name, readings in (("ibot-plain", plain["collapse"]), ("dino", dino["collapse"]),
                                  ("ibot-fine", fine["collapse"]))}
    assert end["ibot-plain"] < 0.01 and _uniform_from(plain["collapse"]) == 200
    assert end["dino"] > 1.0 and end["ibot-fine"] > 1.5, end
    labels = {name: zoo.metadata(name)["metrics"]["knn_accuracy"] for name in ("supervised-patch-plain", "supervised-fine")}
    assert dino["knn"] > plain["metrics"]["knn_accuracy"] + 0.05                 # 0.584 against 0.514
    # no image masked (so no patch loss either): the CLS targets recover, as DINO's do
    unmasked = _probe_row("ibot-plain", "no_masks")
    assert (unmasked["p_unmasked"], unmasked["lr"], unmasked["untrained_knn"]) == (1.0, 3e-3, 0.315)
    assert 0.5 < _end_mean(unmasked["collapse"], _information(unmasked["collapse"])) < end["dino"]
    assert unmasked["knn"] == 0.521 and max(_information(unmasked["collapse"])[-30:]) > 0.05
    assert dino["knn"] < 0.8 * labels["supervised-patch-plain"]                  # 75 %: short of the mark too
    assert fine["metrics"]["knn_accuracy"] >= 0.95 * labels["supervised-fine"]   # 0.963 against 0.974


# each conv-stem run's k-NN over supervised-fine's on seeds 0, 1 and 2 (COURSE_SCALE.md)
EXPECTED_FINE_SHARES = {"ibot-fine": [0.99, 1.01, 1.0], "dinov2-fine": [0.96, 0.99, 0.99]}


@pytest.mark.parametrize("name", sorted(EXPECTED_FINE_SHARES))
def test_the_masked_methods_on_the_conv_stem_meet_80_percent_of_labels_on_three_seeds(name):
    """COURSE_SCALE.md ("iBOT: the ViT decides", "DINOv2 on the conv stem"): ``ibot-fine`` and
    ``dinov2-fine`` on seeds 0, 1 and 2, each against ``supervised-fine`` trained on the same
    seed (the records in benchmarks/results), meet 80 % of the labels every time, and their CLS
    targets carry more than a nat over the last 300 steps."""
    from course_lib.labs.shipped import same_vit
    lr = zoo.metadata(name)["config"]["train"]["lr"]              # iBOT 3e-3, DINOv2 1e-3
    runs = {key: [_run(key, seed, rate) for seed in range(3)] for key, rate in ((name, lr), ("supervised-fine", 3e-3))}
    for mine, labelled in zip(runs[name], runs["supervised-fine"]):
        assert mine["data"] == labelled["data"] and same_vit(mine, labelled), mine["seed"]
    shares = [round(mine["metrics"]["knn_accuracy"] / labelled["metrics"]["knn_accuracy"], 2)
              for mine, labelled in zip(runs[name], runs["supervised-fine"])]
    assert shares == EXPECTED_FINE_SHARES[name] and min(shares) >= 0.8, shares
    for meta in runs[name]:
        assert _end_mean(meta["collapse"], _information(meta["collapse"])) > 1.0, meta["seed"]


# SimCLR's and MoCo's k-NN over supervised's, each with views grey at p = 0.8, on seeds 0, 1 and 2
# (COURSE_SCALE.md, "Grey views take the colour away")
EXPECTED_GREY_SHARES = {"simclr": [0.95, 0.92, 0.91], "moco": [1.01, 0.97, 0.93]}


@pytest.mark.parametrize("name", sorted(EXPECTED_GREY_SHARES))
def test_the_contrastive_runs_meet_80_percent_of_labels_on_the_colourful_shapes_on_three_seeds(name):
    """The shipped recipe with grey views, seeds 0 (the checkpoints), 1 and 2 (the records in
    benchmarks/results), each against the labelled run of the same seed, views and data."""
    runs = {key: [_run(key, seed, 3e-3) for seed in range(3)] for key in (name, "supervised")}
    for mine, labelled in zip(runs[name], runs["supervised"]):
        assert mine["data"] == labelled["data"] and mine["config"]["vit"] == labelled["config"]["vit"]
        assert mine["config"]["recipe"]["grayscale_p"] == labelled["config"]["recipe"]["grayscale_p"] == 0.8
    shares = [round(mine["metrics"]["knn_accuracy"] / labelled["metrics"]["knn_accuracy"], 2)
              for mine, labelled in zip(runs[name], runs["supervised"])]
    assert shares == EXPECTED_GREY_SHARES[name] and min(shares) >= 0.8, shares


def test_the_six_ibot_runs_collapse_their_cls_targets_where_the_lecture_says():
    """Lecture 04 (section 5.2) and COURSE_SCALE.md: over the six iBOT runs with readings (seeds
    0-2, lr 1e-3 and 3e-3) the CLS targets end uniform (under 0.05 nats over the last 300 steps)
    in three, seed 0 at 3e-3 and seed 2 at both rates; the two runs with the largest k-NN gain
    keep more than 0.9 nats. The information is recomputed here from the recorded entropies."""
    end, collapsed = {}, set()
    for seed in (0, 1, 2):
        for lr in (1e-3, 3e-3):
            meta = _run("ibot-plain", seed, lr)
            information = _end_mean(meta["collapse"], _information(meta["collapse"]))
            end[seed, lr] = (meta["metrics"]["knn_accuracy"] - meta["untrained_knn_accuracy"], information)
            if information < 0.05:
                collapsed.add((seed, lr))
    assert collapsed == {(0, 3e-3), (2, 1e-3), (2, 3e-3)}, end
    best_two = sorted(end, key=lambda run: end[run][0])[-2:]
    assert sorted(best_two) == [(0, 1e-3), (1, 3e-3)] and all(end[run][1] > 0.9 for run in best_two), end
    assert [round(end[run][0], 3) for run in sorted(collapsed)] == [0.199, 0.037, 0.096]


def test_a_separate_cls_head_a_slower_teacher_or_no_patch_loss_collapse_the_cls_targets_too():
    """Lecture 04 (sections 5.2 and 5.3) and COURSE_SCALE.md: the shipped recipe (seed 0, 3e-3)
    with a head of its own for the CLS token, with the EMA from 0.996, or with its masks but no
    patch loss still sends its CLS targets uniform (from steps 200, 370 and 210, under 0.05 nats
    to the end) and ends below the shipped run's k-NN (without the patch loss below its untrained
    network, 0.193 against 0.315); with its own head the patch targets carry more (2.24 nats
    against 0.60). Recomputed from the probe rows' readings, each checked against the one setting
    it changed."""
    shipped = zoo.metadata("ibot-plain")
    quoted = {"separate_heads": (("shared_head", False), 200, 0.425, 2.24),
              "ema_0.996": (("momentum_teacher", 0.996), 370, 0.398, 0.56),
              "no_mim": (("lambda_patch", 0.0), 210, 0.193, 0.0)}
    for change, ((field, value), uniform_from, knn, patch_information) in quoted.items():
        row = _probe_row("ibot-plain", change)
        assert (row["seed"], row["lr"], row["steps"], row[field]) == (0, 3e-3, 1500, value), change
        assert shipped["config"]["method"][field] != value, change
        readings = row["collapse"]
        assert _uniform_from(readings) == uniform_from, change
        assert round(_end_mean(readings, _information(readings, "patch_")), 2) == patch_information, change
        assert row["knn"] == knn < shipped["metrics"]["knn_accuracy"] - 0.05, change


def test_lecture_07_quotes_each_plain_share_of_labels_as_the_zoo_records_it():
    """Lecture 07 (section 7's reading and the summary) quotes each ``-plain`` checkpoint's k-NN
    (and ``ibot-fine``'s and ``dinov2-fine``'s) as a share of its labelled reference's (same ViT,
    data, steps and seed). Every quoted share is recomputed here from the installed metadata, so a
    retrained checkpoint cannot leave a stale percentage in the text."""
    import re

    from course_lib.labs.shipped import labelled_reference
    cells = _lecture_texts("07_evaluation.ipynb")
    summary = next(text for text in cells if text.startswith("## Summary"))
    reading = next(text for text in cells if "Take the shortcuts away" in text)
    labels = {"dino-plain": "DINO", "mae-plain": "MAE", "dinov2-nokoleo-plain": "DINOv2 without KoLeo",
              "dinov2-lowkoleo-plain": "DINOv2 with KoLeo at 0.01",
              "ijepa-plain": "I-JEPA", "ibot-plain": "iBOT", "dinov2-plain": "DINOv2",
              "ibot-fine": "iBOT on the conv stem", "dinov2-fine": "DINOv2 on the conv stem"}
    for name, label in labels.items():
        knn = zoo.metadata(name)["metrics"]["knn_accuracy"]
        share = round(100 * knn / zoo.metadata(labelled_reference(name))["metrics"]["knn_accuracy"])
        assert re.search(rf"(?<![\w-]){re.escape(label)} {share} %", summary), (name, share)
        if name in ("dinov2-nokoleo-plain", "ijepa-plain", "ibot-plain", "ibot-fine", "dinov2-fine"):
            assert f"{knn:.3f} ({share} %)" in reading, (name, knn, share)


def test_koleos_weight_on_the_plain_shapes_helps_at_a_tenth_on_one_seed_and_fails_on_another():
    """Lecture 06 (section 7) and COURSE_SCALE.md: at lr 1e-3 on seed 0 the k-NN against the KoLeo
    weight 0, 0.01, 0.03, 0.1 reads 0.703, 0.743, 0.692, 0.443 (the shipped runs and the probe's
    float32 rows; the shipped 0.01 run repeats its probe row's curve); on seed 1 the weight 0.01
    sends the CLS targets uniform from step 190 although Sinkhorn-Knopp balances each batch, and
    the run stays near its untrained network while the run without KoLeo learns; on seed 2 the run
    without KoLeo is the one that stalls."""
    by_weight = {0.0: zoo.metadata("dinov2-nokoleo-plain"), 0.01: zoo.metadata("dinov2-lowkoleo-plain"),
                 0.1: zoo.metadata("dinov2-plain")}
    knn = {weight: meta["metrics"]["knn_accuracy"] for weight, meta in by_weight.items()}
    for weight, meta in by_weight.items():
        assert meta["config"]["method"]["koleo_weight"] == weight and meta["seed"] == 0
        assert meta["config"]["train"]["lr"] == 1e-3
    for change, weight in (("koleo_0.01", 0.01), ("koleo_0.03", 0.03)):
        row = _probe_row("dinov2-plain", change)
        assert (row["koleo_weight"], row["lr"], row.get("seed", 0)) == (weight, 1e-3, 0), change
        knn.setdefault(weight, row["knn"])
    assert _probe_row("dinov2-plain", "koleo_0.01")["trajectory"] == by_weight[0.01]["knn_trajectory"]
    assert [knn[w] for w in (0.0, 0.01, 0.03, 0.1)] == [0.703, 0.743, 0.692, 0.443]
    low, without = _run("dinov2-lowkoleo-plain", 1, 1e-3), _run("dinov2-nokoleo-plain", 1, 1e-3)
    readings = low["collapse"]
    assert _uniform_from(readings) == 190
    log_k = math.log(low["config"]["method"]["out_dim"])
    assert all(abs(h - log_k) < 0.07 for h in readings["batch_mean_entropy"])     # balanced every batch
    assert low["metrics"]["knn_accuracy"] < low["untrained_knn_accuracy"] + 0.1 < without["metrics"]["knn_accuracy"] - 0.2
    # Seed 2 turns it round: without KoLeo the CLS targets go uniform from step 980 and the run stalls,
    # at 0.01 they go uniform from step 190 and the run still ends ahead (through its patch objective).
    low, without = _run("dinov2-lowkoleo-plain", 2, 1e-3), _run("dinov2-nokoleo-plain", 2, 1e-3)
    assert (_uniform_from(without["collapse"]), _uniform_from(low["collapse"])) == (980, 190)
    assert without["metrics"]["knn_accuracy"] < without["untrained_knn_accuracy"] + 0.15 < low["metrics"]["knn_accuracy"]


def test_dinov2s_own_recipe_meets_80_percent_of_labels_on_the_conv_stem():
    """Lecture 06 (section 7.1) and COURSE_SCALE.md: DINOv2's recipe with KoLeo at 0.1 (lr 1e-3,
    seed 0), which reaches 57 % of labels on plain patches, meets 80 % of ``supervised-fine`` on
    the conv-stem ViT of ``dino-fine``: the shipped ``dinov2-fine`` and the first, unsaved probe run
    of the same recipe (the same untrained network and first loss), CLS targets informative to the
    end (recomputed from the entropies). The lecture quotes the three seeds as recorded."""
    row, fine = _probe_row("dinov2-plain", "conv_stem"), zoo.metadata("dinov2-fine")
    shipped, labels = zoo.metadata("dinov2-plain"), zoo.metadata("supervised-fine")
    assert (row["stem"], row["koleo_weight"], row["lr"]) == ("conv", 0.1, 1e-3)
    assert (shipped["config"]["vit"]["stem"], shipped["config"]["method"]["koleo_weight"]) == ("patch", 0.1)
    assert fine["config"]["vit"]["stem"] == "conv" and fine["config"]["train"]["lr"] == 1e-3
    plain_settings = json.loads(json.dumps(shipped["config"]["method"]))
    assert json.loads(json.dumps(fine["config"]["method"])) == plain_settings       # the recipe, KoLeo 0.1 included
    assert row["untrained_knn"] == fine["untrained_knn_accuracy"] == labels["untrained_knn_accuracy"] == 0.467
    assert row["loss_first"][0] == fine["loss"]["values"][0]                          # the same first step
    for knn in (row["knn"], fine["metrics"]["knn_accuracy"]):                         # 0.919, 0.938
        assert knn >= 0.8 * labels["metrics"]["knn_accuracy"] > shipped["metrics"]["knn_accuracy"]
    for readings in (row["collapse"], fine["collapse"]):
        assert _end_mean(readings, _information(readings)) > 1.5
    reading = next(text for text in _lecture_texts("06_dinov2.ipynb") if "DINOv2's own recipe meets the mark" in text)
    assert f"to {fine['metrics']['knn_accuracy']:.3f} without a fall" in reading
    for seed in (1, 2):
        mine, labelled = _run("dinov2-fine", seed, 1e-3), _run("supervised-fine", seed, 3e-3)
        share = round(100 * mine["metrics"]["knn_accuracy"] / labelled["metrics"]["knn_accuracy"])
        assert f"{mine['metrics']['knn_accuracy']:.3f} ({share} %)" in reading, seed
    assert f"a first, unsaved one ({row['knn']:.3f}" in reading


def test_ijepa_plain_gains_from_the_faster_ema_on_every_seed_and_the_other_changes_lose():
    """Lecture 05 (section 5.1) and COURSE_SCALE.md: at 1e-3 the EMA from 0.99 beats the released
    0.996 on seeds 0, 1 and 2 (0.698 / 0.612, 0.660 / 0.622, 0.623 / 0.604; the runs from 0.996
    kept as ``*_ema0.996.json``), while a 4-block predictor, a 96-wide one, one crop per image and
    a 150-step warm-up, each from 0.996 on seed 0, end below the unchanged run (0.612)."""
    before = [json.loads((RESULTS / f"ijepa_plain{f'_seed{s}' if s else ''}_ema0.996.json").read_text())
              for s in (0, 1, 2)]
    after = [_run("ijepa-plain", seed, 1e-3) for seed in (0, 1, 2)]
    for seed, (old, new) in enumerate(zip(before, after)):
        start = list(old["config"]["method"]["momentum"])
        assert (old["seed"], start, old["config"]["train"]["lr"]) == (seed, [0.996, 1.0], 1e-3)
        assert list(new["config"]["method"]["momentum"]) == [0.99, 1.0] and old["data"] == new["data"]
    assert [(b["metrics"]["knn_accuracy"], a["metrics"]["knn_accuracy"]) for b, a in zip(before, after)] == [
        (0.613, 0.698), (0.622, 0.66), (0.604, 0.623)]
    rows = {row["change"]: row for row in map(json.loads, (RESULTS / "ijepa_plain_probe.jsonl").read_text().splitlines())
            if row.get("lr") == 1e-3 and row.get("seed", 0) == 0}
    worse = {change: rows[change]["knn"] for change in ("deep_predictor", "wide_predictor", "crops", "warmup_150")}
    assert all(rows[change]["momentum"] == [0.996, 1.0] for change in worse)
    assert worse == {"deep_predictor": 0.572, "wide_predictor": 0.549, "crops": 0.552, "warmup_150": 0.593}
    assert max(worse.values()) < rows["lr_1e-3"]["knn"] == 0.612


def test_the_targets_summary_counts_and_names_every_self_supervised_checkpoint():
    """COURSE_SCALE.md's "Where the targets stand": each self-supervised checkpoint of the zoo is
    named with its share of labels (its labelled reference on the same ViT, or the conv-stem
    ``supervised`` where the zoo has none), and the count of those at 80 % or more is the one the
    table gives. Retraining a checkpoint without updating the summary fails here."""
    from course_lib.labs.shipped import labelled_reference
    doc = COURSE_SCALE.read_text()
    summary = doc.split("## Where the targets stand")[1].split("\n## ")[0]
    summary = " ".join(summary.split())
    shares = {}
    for name in zoo.available():
        if name.startswith("supervised"):
            continue
        reference = labelled_reference(name) or "supervised"
        shares[name] = (zoo.metadata(name)["metrics"]["knn_accuracy"]
                        / zoo.metadata(reference)["metrics"]["knn_accuracy"])
        assert f"`{name}` {round(100 * shares[name])} %" in summary, name
    met = sum(share >= 0.8 for share in shares.values())
    assert f"met by {met} of the {len(shares)}" in summary


def test_the_zoo_table_reads_each_checkpoint_against_its_labels():
    """``labs.shipped.zoo_table`` (``python -m course_lib zoo``), checked row by row against the
    metadata read here: the reference trained on the same data, steps and seed (on the same ViT
    where the zoo has one), the share, and which checkpoints reach 80 %: the misses are the ones
    COURSE_SCALE.md's summary names."""
    from course_lib.labs.shipped import zoo_table
    rows = {row["name"]: row for row in zoo_table()}
    assert sorted(rows) == zoo.available()
    metas = {name: zoo.metadata(name) for name in rows}                  # each file read once here
    for name, row in rows.items():
        meta = metas[name]
        vit = meta["config"]["vit"]
        assert row["knn"] == meta["metrics"]["knn_accuracy"] and row["untrained_knn"] == meta["untrained_knn_accuracy"]
        assert row["data"] == {"grey": "plain", None: "colourful"}[meta["data"].get("colour")], name
        assert row["vit"].split()[0] == {8: "4x4", 4: "8x8"}[vit["patch_size"]], name
        assert row["vit"].endswith("conv") == (vit["stem"] == "conv"), name
        if name.startswith("supervised"):
            assert "reference" not in row, name
            continue
        reference = metas[row["reference"]]
        assert row["reference"].startswith("supervised")
        assert all(reference[key] == meta[key] for key in ("data", "steps", "seed")), name
        strip = lambda m: {k: v for k, v in m["config"]["vit"].items()  # noqa: E731
                           if k not in ("class_token", "num_register_tokens")}
        assert row["same_vit"] == (strip(reference) == strip(meta)), name
        if not row["same_vit"]:                      # only where no labelled run on the same ViT exists
            assert not [other for other, m in metas.items() if other.startswith("supervised")
                        and all(m[key] == meta[key] for key in ("data", "steps", "seed")) and strip(m) == strip(meta)]
        assert math.isclose(row["share"], meta["metrics"]["knn_accuracy"] / reference["metrics"]["knn_accuracy"])
        assert row["meets"] == (row["share"] >= 0.8), name
    misses = {name for name, row in rows.items() if row.get("meets") is False}
    assert misses == {"dino", "mae", "ibot", "ijepa", "dinov2", "dinov2-reg", "simclr-nocolour",
                      "ibot-plain", "dinov2-plain"}
    # every self-supervised run has labels on its own ViT (the colourful plain-patch runs: supervised-patch)
    assert {name for name, row in rows.items() if row.get("same_vit") is False} == set()


def test_a_checkpoint_without_labels_on_its_data_gets_no_share(monkeypatch):
    from course_lib.labs.shipped import zoo_table
    monkeypatch.setattr(zoo, "available", lambda *args, **kwargs: ["dino", "supervised-plain"])
    rows = {row["name"]: row for row in zoo_table()}                  # dino: colourful; the labels: plain
    assert {key: rows["dino"][key] for key in ("reference", "same_vit", "reference_knn", "share", "meets")} == {
        "reference": None, "same_vit": False, "reference_knn": None, "share": None, "meets": None}
    assert rows["dino"]["knn"] == zoo.metadata("dino")["metrics"]["knn_accuracy"]


def test_the_zoo_text_groups_the_rows_and_marks_a_reference_on_another_vit():
    from course_lib.labs.shipped import zoo_text
    common = {"data": "colourful", "vit": "4x4 conv", "untrained_knn": 0.1}
    rows = [{"name": "lab", **common, "knn": 0.75},
            {"name": "miss", **common, "knn": 0.3, "reference": "lab", "same_vit": False, "reference_knn": 0.75,
             "share": 0.4, "meets": False},
            {"name": "alone", **common, "knn": 0.2, "reference": None, "same_vit": False, "reference_knn": None,
             "share": None, "meets": None},
            {"name": "hit", **common, "knn": 0.6, "reference": "lab", "same_vit": True, "reference_knn": 0.75,
             "share": 0.8, "meets": True}]
    lines = [line.split() for line in zoo_text(rows).splitlines()[1:-2]]
    assert lines == [["--", "labelled", "networks", "(the", "references)"],
                     ["lab", "colourful", "4x4", "conv", "0.100", "->", "0.750"],
                     ["--", "self-supervised,", "at", "least", "80", "%", "of", "their", "labels"],
                     ["hit", "colourful", "4x4", "conv", "0.100", "->", "0.600", "lab", "0.750", "80", "%"],
                     ["--", "self-supervised,", "below", "80", "%", "of", "their", "labels"],
                     ["miss", "colourful", "4x4", "conv", "0.100", "->", "0.300", "lab", "0.750", "*", "40", "%"],
                     ["--", "self-supervised,", "no", "labelled", "network", "on", "their", "data"],
                     ["alone", "colourful", "4x4", "conv", "0.100", "->", "0.200"]]


def test_the_zoo_command_prints_the_table_the_readme_shows(capsys, tmp_path):
    """``python -m course_lib zoo`` prints :func:`zoo_text` and writes the rows with ``--json``;
    the README's block is that printout, so a retrained checkpoint without a new README fails."""
    from course_lib.__main__ import main
    from course_lib.labs.shipped import zoo_table, zoo_text
    assert main(["zoo", "--json", str(tmp_path / "zoo.json")]) == 0
    printed = capsys.readouterr().out
    text = zoo_text(zoo_table())
    assert printed.startswith(text + "\n")
    assert json.loads((tmp_path / "zoo.json").read_text())["rows"] == json.loads(json.dumps(zoo_table()))
    lines = text.splitlines()
    assert lines[0].split() == ["checkpoint", "data", "ViT", "k-NN", "->", "labels,", "same", "budget", "share"]
    dino = next(line for line in lines if line.startswith("dino "))
    assert dino.split() == ["dino", "colourful", "4x4", "conv", "0.100", "->", "0.164", "supervised", "0.756", "22", "%"]
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert f"```text\n{text}\n```" in readme


def test_a_longer_warm_up_or_a_frozen_patch_projection_do_not_rescue_ibots_cls_objective():
    """Lecture 04 (section 5.2) and COURSE_SCALE.md: the shipped recipe (seed 0, 3e-3) warmed up
    over 150 steps, or with its patch projection frozen at its random start (MoCo v3's fix), peaks
    after 150 steps (0.401, 0.415) and ends far below the shipped run (0.338, 0.330 against 0.514);
    the warm-up's CLS targets are uniform from step 430, the frozen projection's carry 0.01 nats
    over steps 200-400 and 0.09 over the last 300. Recomputed from the probe rows."""
    shipped = zoo.metadata("ibot-plain")
    warm, frozen = _probe_row("ibot-plain", "warmup_150"), _probe_row("ibot-plain", "frozen_patch_embed")
    assert (warm["warmup_steps"], frozen["warmup_steps"], shipped["config"]["train"]["warmup_steps"]) == (150, 20, 20)
    assert frozen["patch_embed"] == "frozen" and "patch_embed" not in warm
    for row, peak, end in ((warm, 0.401, 0.338), (frozen, 0.415, 0.330)):
        assert (row["seed"], row["lr"], row["steps"]) == (0, 3e-3, 1500)
        curve = row["trajectory"]
        assert curve["steps"][0] == 150 and curve["knn"][0] == peak == max(curve["knn"])
        assert row["knn"] == curve["knn"][-1] == end < shipped["metrics"]["knn_accuracy"] - 0.15
    assert _uniform_from(warm["collapse"]) == 430
    readings = frozen["collapse"]
    cls = _information(readings)
    assert (round(_early_mean(readings, cls), 2), round(_end_mean(readings, cls), 2)) == (0.01, 0.09)
    text = _flat_lecture("04_ibot.ipynb")
    for quoted in ("(0.401 and 0.415)", "to 0.338 and 0.330", "uniform from step 430",
                   "0.01 nats over steps 200-400 and 0.09 over the last 300"):
        assert quoted in text, quoted


def test_frozen_prototypes_keep_ibots_cls_targets_off_uniform_only_while_held_and_do_not_rescue_it():
    """Lecture 04 (sections 5.2, 5.3 and the summary) and COURSE_SCALE.md: the shipped recipe (seed
    0, 3e-3) with the heads' prototypes frozen for one epoch (39 steps, iBOT's default) goes uniform
    from step 320 and ends at 0.377; frozen for 300 steps its CLS targets carry 0.52 nats over steps
    200-400 and 0.18 over the last 300, its k-NN falls to 0.188 at step 600 and ends at 0.490, below
    the shipped run. Recomputed from the probe rows."""
    shipped = zoo.metadata("ibot-plain")
    epoch, held = _probe_row("ibot-plain", "freeze_1_epoch"), _probe_row("ibot-plain", "freeze_300")
    assert shipped["config"]["method"].get("freeze_last_layer_steps", 0) == 0   # older runs record no key
    assert (epoch["freeze_last_layer_steps"], held["freeze_last_layer_steps"]) == (39, 300)
    assert shipped["data"]["n_train"] // shipped["config"]["train"]["batch_size"] == 39   # an epoch, last batch dropped
    for row in (epoch, held):
        assert (row["seed"], row["lr"], row["steps"], row["untrained_knn"]) == (0, 3e-3, 1500, 0.315)
        assert row["knn"] == row["trajectory"]["knn"][-1] < shipped["metrics"]["knn_accuracy"]
    assert _uniform_from(epoch["collapse"]) == 320 and epoch["knn"] == 0.377
    readings = held["collapse"]
    cls = _information(readings)
    assert (round(_early_mean(readings, cls), 2), round(_end_mean(readings, cls), 2)) == (0.52, 0.18)
    assert min(cls) > 0.05                                                    # never uniform
    curve = dict(zip(held["trajectory"]["steps"], held["trajectory"]["knn"]))
    assert min(curve.values()) == curve[600] == 0.188 and held["knn"] == 0.490
    text = _flat_lecture("04_ibot.ipynb")
    doc = _flat(COURSE_SCALE.read_text())
    for quoted in ("uniform from step 320 and the k-NN ends at 0.377", "0.52 nats over steps 200-400",
                   "(0.18 nats over the last 300)", "falls to 0.188 at step 600", "ends at 0.490"):
        assert quoted in text, quoted
    for quoted in ("uniform from step 320 and the k-NN ends at 0.377", "0.52 nats over steps 200-400",
                   "0.18 over the last 300", "0.188 at step 600", "recovers to 0.490",
                   f"{epoch['train_seconds']:.0f} and {held['train_seconds']:.0f} s of training"):
        assert quoted in doc, quoted


def test_dinos_per_parameter_clipping_does_not_rescue_ibots_cls_objective():
    """Lecture 04 (sections 5.2, 5.3 and the summary) and COURSE_SCALE.md: the shipped recipe (seed
    0, 3e-3) with each gradient clipped on its own (DINO's ``clip_gradients``) and, beside it, the
    recipe rerun. Only the clipping differs; in the rerun the joint norm passed 3.0 at 14 steps,
    the last at step 75; the CLS targets go uniform in both (from steps 190 and 210); the clipped run
    ends at 0.534 (69 % of its labels), the rerun at 0.492, 0.022 below the shipped checkpoint.
    Recomputed from the probe rows."""
    shipped, labels = zoo.metadata("ibot-plain"), zoo.metadata("supervised-patch-plain")
    clipped, rerun = _probe_row("ibot-plain", "per_tensor_clip"), _probe_row("ibot-plain", "baseline")
    measured = {"knn", "train_seconds", "loss_first", "loss_last", "trajectory", "collapse", "clipping"}
    assert {key for key in clipped if clipped[key] != rerun.get(key)} == measured | {"change", "grad_clip_mode"}
    assert clipped["grad_clip_mode"] == "per_tensor" and clipped["commit"] == rerun["commit"]
    assert (rerun["seed"], rerun["lr"], rerun["untrained_knn"]) == (0, 3e-3, shipped["untrained_knn_accuracy"])
    counts = rerun["clipping"]
    assert (counts["steps_over_global"], counts["last_step_over_global"]) == (14, 75)
    assert (clipped["clipping"]["steps_over_per_tensor"], clipped["clipping"]["last_step_over_per_tensor"]) == (6, 5)
    assert (_uniform_from(clipped["collapse"]), _uniform_from(rerun["collapse"])) == (190, 210)
    assert (clipped["knn"], rerun["knn"], shipped["metrics"]["knn_accuracy"]) == (0.534, 0.492, 0.514)
    share = clipped["knn"] / labels["metrics"]["knn_accuracy"]
    assert round(100 * share) == 69 and share < 0.8
    gap = shipped["metrics"]["knn_accuracy"] - rerun["knn"]
    assert f"{gap:.3f}" == "0.022" and gap > math.sqrt(0.5 * 0.5 / 1000)   # above one k-NN's standard error
    text = _flat_lecture("04_ibot.ipynb")
    doc = _flat(COURSE_SCALE.read_text())
    for quoted in ("14 steps, none after step 75", "uniform from step 190", "0.534, against 0.492",
                   "69 % of the labels", "ended 0.022 below", "(per-parameter clipping, 0.534)",
                   "DINO's per-parameter clipping"):
        assert quoted in text, quoted
    for quoted in ("was over 3.0 at 14 steps, the last at step 75", "acted at 6 steps (the last at step 5)",
                   "uniform from step 190 (the rerun: 210)", "ended at 0.534, against 0.492",
                   f"69 % of the labels (`supervised-patch-plain`, {labels['metrics']['knn_accuracy']:.3f})",
                   "ended 0.022 below it",
                   f"{clipped['train_seconds']:.0f} and {rerun['train_seconds']:.0f} s of training"):
        assert quoted in doc, quoted


def test_masks_started_late_do_not_bring_back_ibots_cls_targets():
    """Lecture 04 (section 5.2 and the summary) and COURSE_SCALE.md: the shipped recipe (seed 0,
    3e-3) with masked prediction from step 250 or 500 (iBOT's ``--pred_start_epoch``): the CLS
    targets go uniform from step 180, before any crop is masked, and the k-NN ends below the
    untrained network (0.255, 0.262). Recomputed from the probe rows."""
    rerun, unmasked = _probe_row("ibot-plain", "baseline"), _probe_row("ibot-plain", "no_masks")
    late = {start: _probe_row("ibot-plain", f"masks_from_{start}") for start in (250, 500)}
    for start, row in late.items():
        assert (row["pred_start_step"], row["seed"], row["lr"], row["untrained_knn"]) == (start, 0, 3e-3, 0.315)
        assert _uniform_from(row["collapse"]) == 180 < start
        assert row["knn"] == row["trajectory"]["knn"][-1] < row["untrained_knn"] < rerun["knn"] < unmasked["knn"]
    assert "pred_start_step" not in rerun and (late[250]["knn"], late[500]["knn"]) == (0.255, 0.262)
    text = _flat_lecture("04_ibot.ipynb")
    doc = _flat(COURSE_SCALE.read_text())
    for quoted in ("went uniform from step 180, before a single crop was masked", "at 0.255 and 0.262, below the "
                   "untrained network's 0.315", "masks started late"):
        assert quoted in text, quoted
    seconds = f"{late[250]['train_seconds']:.0f} and {late[500]['train_seconds']:.0f} s of training"
    recovered = _end_mean(unmasked["collapse"], _information(unmasked["collapse"]))
    for quoted in ("uniform from step 180, before any crop was masked", "ended at 0.255 and 0.262",
                   f"the recipe's {rerun['knn']:.3f} (rerun) and the run without masks' {unmasked['knn']:.3f}",
                   f"(`no_masks`, {recovered:.2f} nats at the end)", seconds):
        assert quoted in doc, quoted


def test_dino_on_plain_patches_learned_on_one_more_seed_and_went_uniform_on_another():
    """``benchmarks/results/dino_patch_plain_probe.jsonl``: the probe's DINO recipe on the
    plain-patch ViT on seeds 1 and 2; seed 1 keeps informative CLS targets (over a nat at the end)
    and gains 0.25 of k-NN, seed 2's targets carry nothing from step 180 on; lecture 04 quotes both."""
    lines = (RESULTS / "dino_patch_plain_probe.jsonl").read_text().splitlines()
    by_seed = {row["seed"]: row for row in map(json.loads, lines)
               if row["steps"] == 1500 and row["change"] == "baseline"}
    assert sorted(by_seed) == [0, 1, 2]
    learned, collapsed = by_seed[1], by_seed[2]
    end = _end_mean(learned["collapse"], _information(learned["collapse"]))
    assert end > 1.0 and learned["knn"] - learned["untrained_knn"] > 0.25
    assert _uniform_from(collapsed["collapse"]) == 180
    assert collapsed["knn"] - collapsed["untrained_knn"] < 0.07
    text = _flat_lecture("04_ibot.ipynb")
    assert f"k-NN {learned['knn']:.3f} from {learned['untrained_knn']:.3f} untrained, {end:.2f} nats per CLS target" in text
    assert f"uniform from step 180 ({collapsed['knn']:.3f} from {collapsed['untrained_knn']:.3f})" in text


def test_labels_on_the_plain_patch_vit_learn_on_the_colourful_shapes_at_1e3_and_are_their_reference():
    """COURSE_SCALE.md and lecture 03: at 3e-3 the labelled plain-patch ViT stayed at chance on the
    colourful shapes; the probe at 1e-3 and the shipped ``supervised-patch`` (the same run, trained
    again through ``pretrain``) follow the same k-NN curve and end at 0.386 / 0.387. Each colourful
    plain-patch run's share of it is the one the summary gives, and the gaps lecture 03 splits MAE's
    distance to the conv-stem labels into are recomputed here."""
    probe = [json.loads(line) for line in (RESULTS / "supervised_patch_probe.jsonl").read_text().splitlines()]
    assert len(probe) == 1
    row, shipped = probe[0], zoo.metadata("supervised-patch")
    before = json.loads((RESULTS / "supervised_patch_default_data.json").read_text())
    assert before["config"]["train"]["lr"] == 3e-3 and before["metrics"]["knn_accuracy"] < 0.11
    assert (row["lr"], shipped["config"]["train"]["lr"], row["seed"], shipped["seed"]) == (1e-3, 1e-3, 0, 0)
    assert row["trajectory"] == shipped["knn_trajectory"]                      # the same run twice
    assert (row["knn"], row["untrained_knn"]) == (0.386, shipped["untrained_knn_accuracy"]) == (0.386, 0.101)
    curve = dict(zip(row["trajectory"]["steps"], row["trajectory"]["knn"]))
    assert (curve[150], max(curve.values()), curve[1350], curve[1200]) == (0.145, 0.394, 0.394, 0.365)
    metrics = shipped["metrics"]
    assert (metrics["knn_accuracy"], round(metrics["linear_probe"], 3)) == (0.387, 0.431)
    labels, conv = metrics["knn_accuracy"], zoo.metadata("supervised")["metrics"]["knn_accuracy"]
    shares = {name: zoo.metadata(name)["metrics"]["knn_accuracy"] / labels
              for name in ("mae", "ibot", "ijepa", "dinov2", "dinov2-reg")}
    assert {name: round(100 * share) for name, share in shares.items()} == {
        "mae": 33, "ibot": 29, "ijepa": 29, "dinov2": 33, "dinov2-reg": 34}
    assert max(shares.values()) < 0.8
    mae = zoo.metadata("mae")["metrics"]["knn_accuracy"]
    gaps = [f"{gap:.3f}" for gap in (conv - mae, conv - labels, labels - mae)]
    assert gaps == ["0.629", "0.369", "0.260"]
    doc = _flat(COURSE_SCALE.read_text())
    for quoted in ("took the k-NN from 0.101 to 0.386 (0.145 after 150 steps, 0.394 at step 1350",
                   "0.387 from the half-precision weights, linear probe 0.431",
                   "the stem accounts for 0.369 of MAE's gap of 0.629", "0.260 remains",
                   f"{row['train_seconds']:.0f} s of training", f"{shipped['train_seconds']:.0f} s beside"):
        assert quoted in doc, quoted
    text = _flat_lecture("03_mae.ipynb")
    for quoted in ("reach only 38.7 % k-NN and 43.1 % probe", "MAE holds 33 % of the labels' k-NN on its own ViT",
                   "Of the 0.629 between MAE and the conv-stem labels, 0.369 lies between the two labelled "
                   "networks and 0.260 between MAE and the labels on its ViT", "36.5 % at step 1200, 39.4 % at 1350"):
        assert quoted in text, quoted


def test_trained_prototype_gains_keep_ibots_cls_targets_barely_off_uniform_and_flatten_its_patch_targets():
    """Lecture 04 (sections 5.2, 5.3 and the summary) and COURSE_SCALE.md: the shipped recipe (seed
    0, 3e-3) with the prototypes' gains trained (iBOT's ViT-S ``--norm_last_layer false``): the CLS
    targets never go uniform but carry 0.09 / 0.16 nats, the patch targets fall from 0.55 to 0.07,
    the k-NN dips to 0.234 at step 600 and ends at 0.443. Recomputed from the probe row."""
    shipped, row = zoo.metadata("ibot-plain"), _probe_row("ibot-plain", "free_prototype_norm")
    assert row["norm_last_layer"] is False and shipped["config"]["method"].get("norm_last_layer", True) is True
    assert (row["lr"], row["untrained_knn"], row["commit"][:7]) == (3e-3, 0.315, "2b41112")
    readings = row["collapse"]
    cls, patches = _information(readings), _information(readings, "patch_")
    assert all(max(cls[i:]) >= 0.05 for i in range(len(cls)))       # never uniform (_uniform_from's rule)
    assert (round(_early_mean(readings, cls), 2), round(_end_mean(readings, cls), 2)) == (0.09, 0.16)
    assert (round(_early_mean(readings, patches), 2), round(_end_mean(readings, patches), 2)) == (0.55, 0.07)
    curve = dict(zip(row["trajectory"]["steps"], row["trajectory"]["knn"]))
    assert min(curve.values()) == curve[600] == 0.234 and row["knn"] == curve[1500] == 0.443
    gap = shipped["metrics"]["knn_accuracy"] - row["knn"]
    assert f"{gap:.3f}" == "0.071"
    text = _flat_lecture("04_ibot.ipynb")
    for quoted in ("(0.09 nats over steps 200-400, 0.16 over the last 300)", "flattened to 0.07",
                   "fell to 0.234 at step 600 and ended at 0.443", "the trained prototype gains 0.16",
                   "or their gains trained, the targets stayed 0.18 or 0.16 nats off uniform"):
        assert quoted in text, quoted
    doc = _flat(COURSE_SCALE.read_text())
    for quoted in ("0.09 nats over steps 200-400 and 0.16 over the last 300", "carried 0.55 nats over steps "
                   "200-400, flattened to 0.07", "ended at 0.443, 0.071 below", f"{row['train_seconds']:.0f} s of "
                   "training beside another run", "prototypes with trainable gains"):
        assert quoted in doc, quoted


def test_per_parameter_clipping_gains_nothing_over_three_seeds():
    """COURSE_SCALE.md and lecture 04 (section 5.2): ``per_tensor_clip`` on seeds 1 and 2 against
    the recipe's runs of the same seeds (``benchmarks/results/ibot_plain_seed{1,2}.json``) and, on
    seed 0, against the shipped checkpoint; the summed k-NN over the three seeds and its share of
    the labels' sum are recomputed from the rows."""
    lines = (RESULTS / "ibot_plain_probe.jsonl").read_text().splitlines()
    clipped = {row["seed"]: row for row in map(json.loads, lines)
               if row["change"] == "per_tensor_clip" and row["steps"] == 1500}
    assert sorted(clipped) == [0, 1, 2] and all(row["grad_clip_mode"] == "per_tensor" for row in clipped.values())
    recipe = {0: zoo.metadata("ibot-plain"), **{s: json.loads((RESULTS / f"ibot_plain_seed{s}.json").read_text())
                                                 for s in (1, 2)}}
    labels = {0: zoo.metadata("supervised-patch-plain"),
              **{s: json.loads((RESULTS / f"supervised_patch_plain_seed{s}.json").read_text()) for s in (1, 2)}}
    for seed in (0, 1, 2):
        assert recipe[seed]["seed"] == labels[seed]["seed"] == clipped[seed]["seed"] == seed
        assert recipe[seed]["config"]["train"].get("grad_clip_mode", "global") == "global"
        assert clipped[seed]["lr"] == recipe[seed]["config"]["train"]["lr"] == 3e-3
        if seed:                                  # the seed-0 row predates the rows' record of their data
            assert clipped[seed]["data"] == recipe[seed]["data"]
    knn = {seed: (clipped[seed]["knn"], recipe[seed]["metrics"]["knn_accuracy"]) for seed in (0, 1, 2)}
    assert [f"{a - b:+.3f}" for a, b in knn.values()] == ["+0.020", "-0.031", "+0.032"]
    assert all(abs(a - b) < 1.5 * math.sqrt(2 * 0.5 * 0.5 / 1000) for a, b in knn.values())   # 1.5 se of a difference
    sums = [sum(pair[i] for pair in knn.values()) for i in (0, 1)]
    total = sum(labels[seed]["metrics"]["knn_accuracy"] for seed in (0, 1, 2))
    assert [f"{value:.3f}" for value in (*sums, total)] == ["1.434", "1.413", "2.082"]
    assert [round(100 * value / total) for value in sums] == [69, 68]
    assert _uniform_from(clipped[1]["collapse"]) == 140
    kept = _end_mean(recipe[1]["collapse"], _information(recipe[1]["collapse"]))
    assert f"{kept:.2f}" == "0.99"
    doc = _flat(COURSE_SCALE.read_text())
    for quoted in ("ended at 0.480 and 0.420, against 0.511 and 0.388", "+0.020 (against the shipped run), "
                   "-0.031 and +0.032", "1.434 against 1.413: 69 % and 68 % of the labels' summed k-NN (2.082)",
                   "uniform from step 140, where the recipe's kept 0.99 nats",
                   f"({clipped[1]['train_seconds']:.0f} and {clipped[2]['train_seconds']:.0f} s of training"):
        assert quoted in doc, quoted
    text = _flat_lecture("04_ibot.ipynb")
    assert ("On seeds 1 and 2 per-parameter clipping ended at 0.480 and 0.420, against the recipe's 0.511 "
            "and 0.388 on those seeds: over the three seeds 69 % of the labels against 68 %, no gain") in text


def test_mae_on_the_colourful_shapes_does_not_gain_from_the_labels_rate():
    """COURSE_SCALE.md and lecture 03: MAE on the colourful shapes at 1e-3 (the rate at which the
    labels on its ViT learn) against a rerun of its recipe at 3e-3 beside it; the shipped
    checkpoint trained at 3e-3 too. Recomputed from ``benchmarks/results/mae_probe.jsonl``."""
    rows = {row["change"]: row for row in map(json.loads, (RESULTS / "mae_probe.jsonl").read_text().splitlines())}
    assert sorted(rows) == ["baseline", "lr_1e-3"]
    low, rerun, shipped = rows["lr_1e-3"], rows["baseline"], zoo.metadata("mae")
    assert (low["lr"], rerun["lr"], shipped["config"]["train"]["lr"]) == (1e-3, 3e-3, 3e-3)
    assert low["data"] == rerun["data"] == shipped["data"] and low["commit"] == rerun["commit"]
    assert low["untrained_knn"] == rerun["untrained_knn"] == shipped["untrained_knn_accuracy"] == 0.104
    assert (low["knn"], rerun["knn"], shipped["metrics"]["knn_accuracy"]) == (0.108, 0.140, 0.127)
    assert low["knn"] < rerun["knn"] and low["knn"] - low["untrained_knn"] < 0.01
    doc = _flat(COURSE_SCALE.read_text())
    for quoted in (f"ended at 0.108 (untrained 0.104; {low['train_seconds']:.0f} s of training)",
                   f"(`... mae baseline`, 0.140, {rerun['train_seconds']:.0f} s; the shipped checkpoint 0.127)"):
        assert quoted in doc, quoted
    assert "10.8 % k-NN at 1e-3, against 14.0 % for a rerun of its recipe at 3e-3" in _flat_lecture("03_mae.ipynb")
