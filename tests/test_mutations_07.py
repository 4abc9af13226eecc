"""The mistakes evaluation.ipynb's test cells must catch: the common evaluation mistakes, each a
plausible wrong answer (a MUTANT) for one answer cell, and the keyword the failed check's message
must contain.
Each must also be caught by the hidden part of its test cell alone (the random-input tests do not
lean on the worked example).
The notebook runs in-process (``notebook_harness``); what every graded notebook promises (the
solution passes silently, the release fails, the points add up) is ``test_notebook_contract.py``.
Run with ``-s`` to see the table: mistake -> test cell -> first line of the message.
"""
from __future__ import annotations


from notebook_harness import REPO, Notebook, Template, fn, mutation_tests

NOTEBOOK = Notebook(REPO / "solutions" / "07_evaluation" / "evaluation.ipynb")


KNN = Template(fn('''
    def weighted_knn(train_x, train_y, test_x, k=20, temperature=0.07):
        {checks}
        train_unit = {train}
        test_unit = {test}
        similarity, index = (test_unit @ train_unit.T).topk({k}, dim=1)
        weights = {weights}
        votes = torch.zeros(test_x.shape[0], int(train_y.max()) + 1)
        votes.scatter_add_(1, train_y[index], weights)
        return votes.argmax(dim=1)
'''), checks=fn('''
        if train_y.shape != (train_x.shape[0],):
            raise ValueError("train_y: one label per training row")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= train_x.shape[0]:
            raise ValueError(f"k must be an int in [1, n], got {k!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature!r}")
''').replace("\n", "\n    ").rstrip(), train="F.normalize(train_x.float(), dim=1)",
    test="F.normalize(test_x.float(), dim=1)", k="k", weights="torch.exp(similarity / temperature)")

SPLIT = Template(fn('''
    def balanced_split(labels, fraction, *, seed=0):
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {{fraction!r}}")
        classes = labels.unique()
        per_class = {per_class}
        generator = torch.Generator().manual_seed({seed})
        chosen = []
        for label in classes:
            members = (labels == label).nonzero().flatten()
            if members.numel() < per_class:
                raise ValueError(f"class {{int(label)}} has too few rows")
            draw = {draw}
            chosen.append(members[draw])
        return {result}
'''), per_class="max(1, round(fraction * labels.numel() / classes.numel()))", seed="seed",
    draw="torch.randperm(members.numel(), generator=generator)[:per_class]",
    result="torch.cat(chosen).sort().values")

FROZEN = Template(fn('''
    def frozen_features(backbone, images, batch_size=256):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {{batch_size!r}}")
        was_training = backbone.training
        {eval}
        with {grad}:
            chunks = [{forward} for start in {starts}]
        {restore}
        return {result}
'''), eval="backbone.eval()", grad="torch.no_grad()",
    forward="backbone(images[start:start + batch_size]).float().cpu()",
    starts="range(0, images.shape[0], batch_size)", restore="backbone.train(was_training)",
    result="torch.cat(chunks)")

CHOOSE = Template(fn('''
    def choose_weight_decay(train_x, train_y, weight_decays, *, probe=probe_accuracy,
                            val_fraction=0.2, seed=0):
        if len(weight_decays) == 0:
            raise ValueError("no candidate")
        held_out = {held_out}
        fit = torch.ones(len(train_y), dtype=torch.bool)
        fit[held_out] = False
        {features}
        accuracy = {{}}
        for wd in weight_decays:
            {split}
            accuracy[wd] = probe({fit_rows}, {eval_rows}, wd)
        best = {best}
        return {pick}
'''), held_out="balanced_split(train_y, val_fraction, seed=seed)", features="pass",
    split="pass", fit_rows="train_x[fit], train_y[fit]",
    eval_rows="train_x[held_out], train_y[held_out]", best="max(accuracy.values())",
    pick="min(wd for wd in weight_decays if accuracy[wd] == best)")

FAIR = Template(fn('''
    def fair_probe_accuracy(train_x, train_y, test_x, test_y, weight_decays, *,
                            probe=probe_accuracy, val_fraction=0.2, seed=0):
        {prepare}
        chosen = {choose}
        held_out = balanced_split(train_y, val_fraction, seed=seed)
        rest = torch.ones(len(train_y), dtype=torch.bool)
        rest[held_out] = False
        accuracy = {final}
        return accuracy, chosen
'''), prepare="pass", choose="choose_weight_decay(train_x, train_y, weight_decays, probe=probe, "
                             "val_fraction=val_fraction, seed=seed)",
    final="probe(train_x, train_y, test_x, test_y, chosen)")

RECOMMEND = Template(fn('''
    def recommend(table, use, *, grid=None):
        protocols = {{"frozen_classification": "probe", "retrieval": "knn",
                      "fine_tuning": "finetune", "few_labels": {few}, "dense": "dense"}}
        if use not in protocols:
            raise ValueError(f"unknown use {{use!r}}")
        if use == "dense" and grid is None:
            raise ValueError("dense needs a grid")
        protocol = {protocol}
        rows = {{name: row for name, row in table["rows"].items()
                if {keep}}}
        if not rows:
            raise ValueError("no row of that grid")

        def mean(name):
            return rows[name]["mean"][protocol]

        def bar(name):
            return {bar}

        best = max(rows, key=mean)
        tied = [name for name in rows if {tie}]
        return {result}
'''), few='"probe_1pct"', protocol="protocols[use]",
    keep='grid is None or tuple(row["grid"]) == tuple(grid)',
    bar='{"knn": rows[name]["knn_stderr"], "dense": rows[name]["dense_stderr"]}.get('
        'protocol, rows[name]["sd"][protocol])',
    tie="mean(best) - mean(name) <= bar(best) + bar(name)",
    result='sorted(tied, key=lambda name: (rows[name]["steps"], -mean(name), name))')

KNN_CELLS = ("solution_weighted_knn", "test_weighted_knn")
SPLIT_CELLS = ("solution_balanced_split", "test_balanced_split")
FROZEN_CELLS = ("solution_frozen_features", "test_frozen_features")
CHOOSE_CELLS = ("solution_choose_weight_decay", "test_choose_weight_decay")
FAIR_CELLS = ("solution_fair_probe_accuracy", "test_fair_probe_accuracy")
RECOMMEND_CELLS = ("solution_recommend", "test_recommend")

# Standardising every feature with statistics of the test set (or of all rows) before the probe.
TEST_STATISTICS = fn('''
        mean, std = test_x.mean(dim=0), test_x.std(dim=0)
        train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
''').replace("\n", "\n    ").rstrip()
ALL_STATISTICS = fn('''
        every = torch.cat([train_x, test_x])
        mean, std = every.mean(dim=0), every.std(dim=0)
        train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
''').replace("\n", "\n    ").rstrip()


# (mistake, solution cell replaced, test cell that must fail, keyword in the message, mutant)
MUTANTS = [
    # --- 1. weighted_knn -------------------------------------------------------------------------
    ("knn: features not normalised (raw dot products)", *KNN_CELLS, "not normalised",
     KNN.format(train="train_x.float()", test="test_x.float()")),
    ("knn: only the training features normalised", *KNN_CELLS, "not normalised",
     KNN.format(test="test_x.float()")),
    ("knn: votes not weighted (a plain majority)", *KNN_CELLS, "not weighted",
     KNN.format(weights="torch.ones_like(similarity)")),
    ("knn: votes weighted by rank (k, ..., 1)", *KNN_CELLS, "rank",
     KNN.format(weights="torch.arange(k, 0, -1, dtype=similarity.dtype).expand_as(similarity)")),
    ("knn: votes weighted by the cosine itself", *KNN_CELLS, "exp(s / T)",
     KNN.format(weights="similarity")),
    ("knn: temperature ignored, exp(s)", *KNN_CELLS, "temperature ignored",
     KNN.format(weights="torch.exp(similarity)")),
    ("knn: temperature multiplied, exp(s * T)", *KNN_CELLS, "temperature multiplied",
     KNN.format(weights="torch.exp(similarity * temperature)")),
    ("knn: k ignored (always 20)", *KNN_CELLS, "k ignored",
     KNN.format(k="min(20, train_x.shape[0])")),
    ("knn: no argument checks", *KNN_CELLS, "raise ValueError", KNN.format(checks="pass")),
    ("knn: calls course_lib.labs.evaluation.knn_variant per query", *KNN_CELLS, "reference",
     fn('''
        from course_lib.labs.evaluation import knn_variant

        def weighted_knn(train_x, train_y, test_x, k=20, temperature=0.07):
            if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= train_x.shape[0]:
                raise ValueError("k")
            if not temperature > 0 or train_y.shape != (train_x.shape[0],):
                raise ValueError("temperature")
            n_classes = int(train_y.max()) + 1
            answers = []
            for row in test_x.float():
                scores = [knn_variant(train_x, train_y, row[None], torch.tensor([c]), k=k,
                                      temperature=temperature) for c in range(n_classes)]
                answers.append(max(range(n_classes), key=lambda c: scores[c]))
            return torch.tensor(answers)
     ''')),
    # --- 2. balanced_split -----------------------------------------------------------------------
    ("split: a plain random subset (not class-balanced)", *SPLIT_CELLS, "balanced", fn('''
        def balanced_split(labels, fraction, *, seed=0):
            if not 0.0 < fraction <= 1.0:
                raise ValueError("fraction")
            classes = labels.unique()
            size = classes.numel() * max(1, round(fraction * labels.numel() / classes.numel()))
            generator = torch.Generator().manual_seed(seed)
            return torch.randperm(labels.numel(), generator=generator)[:size].sort().values
     ''')),
    ("split: stratified, the same fraction of every class", *SPLIT_CELLS, "not class-balanced",
     fn('''
        def balanced_split(labels, fraction, *, seed=0):
            if not 0.0 < fraction <= 1.0:
                raise ValueError("fraction")
            generator = torch.Generator().manual_seed(seed)
            chosen = []
            for label in labels.unique():
                members = (labels == label).nonzero().flatten()
                per_class = max(1, round(fraction * members.numel()))
                chosen.append(members[torch.randperm(members.numel(), generator=generator)]
                              [:per_class])
            return torch.cat(chosen).sort().values
     ''')),
    ("split: r floored, not rounded", *SPLIT_CELLS, "round",
     SPLIT.format(per_class="max(1, int(fraction * labels.numel() / classes.numel()))")),
    ("split: no row of a class (at least one missing)", *SPLIT_CELLS, "no row at all",
     SPLIT.format(per_class="round(fraction * labels.numel() / classes.numel())")),
    ("split: classes counted as max label + 1", *SPLIT_CELLS, "C the number of distinct",
     SPLIT.format(per_class="max(1, round(fraction * labels.numel() / (int(labels.max()) + 1)))")),
    ("split: seed ignored (the first r rows of each class)", *SPLIT_CELLS, "seed ignored",
     SPLIT.format(draw="torch.arange(per_class)")),
    ("split: seed ignored (a fixed seed)", *SPLIT_CELLS, "seed ignored", SPLIT.format(seed="0")),
    ("split: the global random state", *SPLIT_CELLS, "global random state",
     SPLIT.format(draw="torch.randperm(members.numel())[:per_class]")),
    ("split: torch.manual_seed(seed) inside", *SPLIT_CELLS, "torch.manual_seed",
     SPLIT.format(draw="(torch.manual_seed(seed), torch.randperm(members.numel()))[1]"
                       "[:per_class]")),
    ("split: indices not sorted", *SPLIT_CELLS, "sorted",
     SPLIT.format(result="torch.cat(chosen)")),
    ("split: no argument checks", *SPLIT_CELLS, "raise ValueError", fn('''
        def balanced_split(labels, fraction, *, seed=0):
            classes = labels.unique()
            per_class = max(1, round(fraction * labels.numel() / classes.numel()))
            generator = torch.Generator().manual_seed(seed)
            chosen = []
            for label in classes:
                members = (labels == label).nonzero().flatten()
                chosen.append(members[torch.randperm(members.numel(), generator=generator)]
                              [:per_class])
            return torch.cat(chosen).sort().values
     ''')),
    ("split: calls course_lib.labs.evaluation.balanced_subset", *SPLIT_CELLS, "reference", fn('''
        from course_lib.labs.evaluation import balanced_subset

        def balanced_split(labels, fraction, *, seed=0):
            return balanced_subset(labels, fraction, seed=seed)
     ''')),
    # --- 3. frozen_features --------------------------------------------------------------------
    ("frozen: no torch.no_grad (the features carry gradient)", *FROZEN_CELLS,
     "the probe would train the backbone", FROZEN.format(grad="torch.enable_grad()")),
    ("frozen: left in train mode (dropout active, BatchNorm statistics updated)", *FROZEN_CELLS,
     "left in train mode", FROZEN.format(eval="pass")),
    ("frozen: mode not restored (left in eval mode)", *FROZEN_CELLS, "mode not restored",
     FROZEN.format(restore="pass")),
    ("frozen: always set to train mode afterwards", *FROZEN_CELLS, "always set to train",
     FROZEN.format(restore="backbone.train()")),
    ("frozen: batches ignored (one forward of all images)", *FROZEN_CELLS, "batches ignored",
     FROZEN.format(starts="[0]", forward="backbone(images).float().cpu()")),
    ("frozen: batches not concatenated in order", *FROZEN_CELLS, "not concatenated in order",
     FROZEN.format(result="torch.cat(chunks[::-1])")),
    ("frozen: no argument check", *FROZEN_CELLS, "raise ValueError", fn('''
        def frozen_features(backbone, images, batch_size=256):
            was_training = backbone.training
            backbone.eval()
            with torch.no_grad():
                chunks = [backbone(images[start:start + max(batch_size, 1)]).float().cpu()
                          for start in range(0, images.shape[0], max(batch_size, 1))]
            backbone.train(was_training)
            return torch.cat(chunks)
     ''')),
    ("frozen: calls course_lib.evaluate.extract_features", *FROZEN_CELLS, "reference", fn('''
        from course_lib.evaluate import extract_features

        def frozen_features(backbone, images, batch_size=256):
            if batch_size < 1:
                raise ValueError("batch_size")
            flat = torch.nn.Sequential(torch.nn.Flatten(), backbone)    # (n, 4, 1, 1) -> (n, 4)
            return extract_features(flat, images[:, :, None, None], batch_size=batch_size)
     ''')),
    # --- 4. choose_weight_decay ------------------------------------------------------------------
    ("choose: no held-out rows (scored on the rows it was fitted on)", *CHOOSE_CELLS,
     "fitted on", CHOOSE.format(fit_rows="train_x, train_y", eval_rows="train_x, train_y")),
    ("choose: fitted on all training rows, scored on the held-out ones", *CHOOSE_CELLS,
     "fitted on", CHOOSE.format(fit_rows="train_x, train_y")),
    ("choose: held-out split not class-balanced (plain random)", *CHOOSE_CELLS,
     "not class-balanced", fn('''
        def choose_weight_decay(train_x, train_y, weight_decays, *, probe=probe_accuracy,
                                val_fraction=0.2, seed=0):
            n = len(train_y)
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
            held_out, fit = order[:round(val_fraction * n)], order[round(val_fraction * n):]
            accuracy = {wd: probe(train_x[fit], train_y[fit], train_x[held_out],
                                  train_y[held_out], wd) for wd in weight_decays}
            best = max(accuracy.values())
            return min(wd for wd in weight_decays if accuracy[wd] == best)
     ''')),
    ("choose: a new split for every candidate", *CHOOSE_CELLS, "new split",
     CHOOSE.format(split="held_out = balanced_split(train_y, val_fraction, seed=seed + "
                         "len(accuracy)); fit = torch.ones(len(train_y), dtype=torch.bool); "
                         "fit[held_out] = False")),
    ("choose: held-out and fit rows swapped", *CHOOSE_CELLS, "held-out",
     CHOOSE.format(fit_rows="train_x[held_out], train_y[held_out]",
                   eval_rows="train_x[fit], train_y[fit]")),
    ("choose: features standardised over all training rows first", *CHOOSE_CELLS,
     "features changed", CHOOSE.format(features="train_x = (train_x - train_x.mean(0)) / "
                                                "train_x.std(0)")),
    ("choose: the largest decay on a tie", *CHOOSE_CELLS, "largest decay",
     CHOOSE.format(pick="max(wd for wd in weight_decays if accuracy[wd] == best)")),
    ("choose: the first candidate on a tie", *CHOOSE_CELLS, "first candidate",
     CHOOSE.format(pick="max(weight_decays, key=lambda wd: accuracy[wd])")),
    ("choose: the lowest accuracy", *CHOOSE_CELLS, "lowest accuracy",
     CHOOSE.format(best="min(accuracy.values())")),
    ("choose: val_fraction ignored (always 0.2)", *CHOOSE_CELLS, "val_fraction",
     CHOOSE.format(held_out="balanced_split(train_y, 0.2, seed=seed)")),
    ("choose: seed ignored", *CHOOSE_CELLS, "seed ignored",
     CHOOSE.format(held_out="balanced_split(train_y, val_fraction)")),
    ("choose: labels not split with the features", *CHOOSE_CELLS, "train_y[rows]",
     CHOOSE.format(fit_rows="train_x[fit], train_y[:int(fit.sum())]")),
    ("choose: held out with course_lib.labs.evaluation.balanced_subset", *CHOOSE_CELLS,
     "reference", "from course_lib.labs.evaluation import balanced_subset\n\n"
     + CHOOSE.format(held_out="balanced_subset(train_y, val_fraction, seed=seed)")),
    # --- 5. fair_probe_accuracy ------------------------------------------------------------------
    ("fair: tuned on the test set", *FAIR_CELLS, "tuned on the test set",
     FAIR.format(choose="max(weight_decays, key=lambda wd: (probe(train_x, train_y, test_x, "
                        "test_y, wd), -wd))")),
    ("fair: the best test accuracy over the decays reported", *FAIR_CELLS, "tuned on the test",
     FAIR.format(final="max(probe(train_x, train_y, test_x, test_y, wd) for wd in "
                       "weight_decays)")),
    ("fair: not retrained on all the training data (the fit rows only)", *FAIR_CELLS,
     "not retrained", FAIR.format(final="probe(train_x[rest], train_y[rest], test_x, test_y, "
                                        "chosen)")),
    ("fair: final probe trained on the held-out split only", *FAIR_CELLS, "held-out split only",
     FAIR.format(final="probe(train_x[held_out], train_y[held_out], test_x, test_y, chosen)")),
    ("fair: the held-out accuracy reported", *FAIR_CELLS, "held-out accuracy reported",
     FAIR.format(final="probe(train_x[rest], train_y[rest], train_x[held_out], "
                       "train_y[held_out], chosen)")),
    ("fair: standardisation statistics from the test set", *FAIR_CELLS, "statistics",
     FAIR.format(prepare=TEST_STATISTICS)),
    ("fair: standardisation statistics from all rows", *FAIR_CELLS, "statistics",
     FAIR.format(prepare=ALL_STATISTICS)),
    ("fair: the chosen decay not used for the final probe", *FAIR_CELLS, "chosen decay",
     FAIR.format(final="probe(train_x, train_y, test_x, test_y, weight_decays[0])")),
    ("fair: the test set scored before choosing", *FAIR_CELLS, "scored once", fn('''
        def fair_probe_accuracy(train_x, train_y, test_x, test_y, weight_decays, *,
                                probe=probe_accuracy, val_fraction=0.2, seed=0):
            first = probe(train_x, train_y, test_x, test_y, weight_decays[0])
            chosen = choose_weight_decay(train_x, train_y, weight_decays, probe=probe,
                                         val_fraction=val_fraction, seed=seed)
            if chosen == weight_decays[0]:
                return first, chosen
            return probe(train_x, train_y, test_x, test_y, chosen), chosen
     ''')),
    ("fair: the protocol around course_lib.labs.evaluation.balanced_subset", *FAIR_CELLS,
     "reference", fn('''
        from course_lib.labs.evaluation import balanced_subset

        def fair_probe_accuracy(train_x, train_y, test_x, test_y, weight_decays, *,
                                probe=probe_accuracy, val_fraction=0.2, seed=0):
            held_out = balanced_subset(train_y, val_fraction, seed=seed)
            fit = torch.ones(len(train_y), dtype=torch.bool)
            fit[held_out] = False
            accuracy = {wd: probe(train_x[fit], train_y[fit], train_x[held_out],
                                  train_y[held_out], wd) for wd in weight_decays}
            chosen = min(wd for wd in weight_decays if accuracy[wd] == max(accuracy.values()))
            return probe(train_x, train_y, test_x, test_y, chosen), chosen
     ''')),
    # --- 6. recommend ----------------------------------------------------------------------------
    ("recommend: the use ignored (always the probe)", *RECOMMEND_CELLS, "use ignored",
     RECOMMEND.format(protocol='"probe"')),
    ("recommend: few_labels read from probe_10pct", *RECOMMEND_CELLS, "probe_1pct",
     RECOMMEND.format(few='"probe_10pct"')),
    ("recommend: error bars ignored (the best row only)", *RECOMMEND_CELLS, "error bars ignored",
     RECOMMEND.format(tie="mean(name) == mean(best)")),
    ("recommend: sd as the bar of k-NN and dense (0 for one run)", *RECOMMEND_CELLS, "sd",
     RECOMMEND.format(bar='rows[name]["sd"][protocol]')),
    ("recommend: only the best's bar", *RECOMMEND_CELLS, "only the best's bar",
     RECOMMEND.format(tie="mean(best) - mean(name) <= bar(best)")),
    ("recommend: ties ordered by mean, not by cost", *RECOMMEND_CELLS, "ordered by mean",
     RECOMMEND.format(result="sorted(tied, key=lambda name: (-mean(name), name))")),
    ("recommend: dense IoU compared across grids", *RECOMMEND_CELLS, "grid ignored",
     RECOMMEND.format(keep="True")),
    ("recommend: the lowest mean as the best", *RECOMMEND_CELLS, "highest mean",
     RECOMMEND.format(tie="mean(name) - mean(min(rows, key=mean)) <= bar(min(rows, key=mean)) "
                          "+ bar(name)")),
    ("recommend: no argument checks", *RECOMMEND_CELLS, "raise ValueError", fn('''
        def recommend(table, use, *, grid=None):
            protocol = {"frozen_classification": "probe", "retrieval": "knn",
                        "fine_tuning": "finetune", "few_labels": "probe_1pct"}.get(use, "dense")
            rows = {name: row for name, row in table["rows"].items()
                    if grid is None or tuple(row["grid"]) == tuple(grid)} or table["rows"]

            def mean(name):
                return rows[name]["mean"][protocol]

            def bar(name):
                return {"knn": rows[name]["knn_stderr"], "dense": rows[name]["dense_stderr"]}.get(
                    protocol, rows[name]["sd"][protocol])

            best = max(rows, key=mean)
            tied = [name for name in rows if mean(best) - mean(name) <= bar(best) + bar(name)]
            return sorted(tied, key=lambda name: (rows[name]["steps"], -mean(name), name))
     ''')),
    ("recommend: returns the best name, not a list", *RECOMMEND_CELLS, "list of",
     RECOMMEND.format(result='sorted(tied, key=lambda name: (rows[name]["steps"], '
                             '-mean(name), name))[0]')),
]

# Right answers written another way: every test cell must pass them (the tests check the
# method, not one way of coding it).
ALTERNATIVES = [
    ("weighted_knn with one-hot votes, float64 and a shifted exponential", "solution_weighted_knn",
     fn('''
        def weighted_knn(train_x, train_y, test_x, k=20, temperature=0.07):
            n = train_x.shape[0]
            if type(k) is not int or k < 1 or k > n:
                raise ValueError(f"k must be an int between 1 and {n}, got {k}")
            if temperature <= 0:
                raise ValueError("temperature must be > 0")
            if len(train_y) != n:
                raise ValueError("train_y needs one label per row of train_x")
            a = train_x.double() / train_x.double().norm(dim=1, keepdim=True)
            b = test_x.double() / test_x.double().norm(dim=1, keepdim=True)
            sims = b @ a.T
            top, idx = torch.sort(sims, dim=1, descending=True)
            top, idx = top[:, :k], idx[:, :k]
            w = torch.exp((top - top[:, :1]) / temperature)              # same ratios, no overflow
            one_hot = F.one_hot(train_y[idx], int(train_y.max()) + 1).double()   # (m, k, C)
            return (w.unsqueeze(-1) * one_hot).sum(dim=1).argmax(dim=1)
     ''')),
    ("balanced_split with a boolean mask per class and torch.multinomial",
     "solution_balanced_split", fn('''
        def balanced_split(labels, fraction, *, seed=0):
            if fraction <= 0 or fraction > 1:
                raise ValueError("fraction must be in (0, 1]")
            values = sorted(set(labels.tolist()))
            r = max(1, round(fraction * len(labels) / len(values)))
            g = torch.Generator()
            g.manual_seed(seed)
            picked = []
            for v in values:
                rows = torch.where(labels == v)[0]
                if len(rows) < r:
                    raise ValueError(f"class {v}: {len(rows)} rows < {r}")
                picked += rows[torch.multinomial(torch.ones(len(rows)), r, generator=g)].tolist()
            return torch.tensor(sorted(picked), dtype=torch.long)
     ''')),
    ("frozen_features with torch.inference_mode, .detach() and a while loop",
     "solution_frozen_features", fn('''
        def frozen_features(backbone, images, batch_size=256):
            if not batch_size >= 1:
                raise ValueError("batch_size must be at least 1")
            mode = backbone.training
            backbone.train(False)
            parts, i = [], 0
            try:
                with torch.inference_mode():
                    while i < len(images):
                        parts.append(backbone(images[i:i + batch_size]).detach().to("cpu",
                                                                                  torch.float32))
                        i += batch_size
            finally:
                backbone.train(mode)
            return torch.cat(parts, dim=0)
     ''')),
    ("choose_weight_decay with index lists and a sorted scan", "solution_choose_weight_decay",
     fn('''
        def choose_weight_decay(train_x, train_y, weight_decays, *, probe=probe_accuracy,
                                val_fraction=0.2, seed=0):
            if not weight_decays:
                raise ValueError("weight_decays is empty")
            held = balanced_split(train_y, val_fraction, seed=seed)
            keep = torch.tensor([i for i in range(len(train_y)) if i not in set(held.tolist())])
            scores = []
            for wd in weight_decays:
                scores.append((probe(train_x[keep], train_y[keep], train_x[held], train_y[held],
                                     wd), wd))
            return sorted(scores, key=lambda s: (-s[0], s[1]))[0][1]
     ''')),
    ("recommend with explicit loops and a bar helper", "solution_recommend", fn('''
        def recommend(table, use, *, grid=None):
            column = dict(frozen_classification="probe", retrieval="knn", fine_tuning="finetune",
                          few_labels="probe_1pct", dense="dense").get(use)
            if column is None:
                raise ValueError(f"unknown use {use}")
            if column == "dense" and grid is None:
                raise ValueError("use 'dense' needs grid=(gh, gw)")
            picked = []
            for name, row in table["rows"].items():
                if grid is not None and list(row["grid"]) != list(grid):
                    continue
                if column == "knn":
                    err = row["knn_stderr"]
                elif column == "dense":
                    err = row["dense_stderr"]
                else:
                    err = row["sd"][column]
                picked.append((row["mean"][column], err, row["steps"], name))
            if len(picked) == 0:
                raise ValueError(f"no row has grid {grid}")
            top_mean, top_err, _, _ = max(picked)
            close = [p for p in picked if p[0] + p[1] >= top_mean - top_err]
            close.sort(key=lambda p: (p[2], -p[0], p[3]))
            return [p[3] for p in close]
     ''')),
]


globals().update(mutation_tests(NOTEBOOK, MUTANTS, alternatives=ALTERNATIVES))
