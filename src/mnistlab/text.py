"""The plain-text lines and tables the commands print. Each returns a string; the CLI prints."""

from mnistlab.config import TrainConfig, describe, model_name


def escaped(line: str) -> str:
    """A line as the terminal shows it: a control character a user's value carried (a newline
    in a file name) written as an escape, so that one error stays one line."""
    return "".join(
        char if char.isprintable() or char == "\t" else repr(char)[1:-1] for char in line
    )


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def percent(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def epoch_line(record: dict, epochs: int) -> str:
    line = f"epoch {record['epoch']}/{epochs}  train loss {record['train_loss']:.4f}"
    if "test_loss" in record:  # (a search's trials never read the test set)
        line += (
            f"  test loss {record['test_loss']:.4f}  test acc {percent(record['test_accuracy'])}"
        )
    if "val_accuracy" in record:
        line += f"  val acc {percent(record['val_accuracy'])}"
    line += f"  {record['seconds']:.1f} s  ({record['samples_per_second']:,.0f} samples/s"
    # bf16 is said where it trained (auto chose it, or it was asked for); fp32 goes without.
    return line + (", bf16)" if record.get("precision") == "bf16" else ")")


def run_end(folder, history: list[dict], pictures) -> str:
    """What a finished run wrote, and its test accuracy."""
    final, seconds = history[-1], sum(record["seconds"] for record in history)
    lines = [f"wrote {', '.join(path.name for path in pictures)} in {folder}"] if pictures else []
    lines.append(
        f"test accuracy {percent(final['test_accuracy'])} after {plural(final['epoch'], 'epoch')}"
        f" ({seconds:.1f} s of training); run saved in {folder}"
    )
    return "\n".join(lines)


def data_info(dataset, spec, class_counts) -> str:
    """Where each file is, and the images per class in each split."""
    lines = [
        f"{dataset.name}: {len(dataset.train):,} training and {len(dataset.test):,} test "
        f"images of {tuple(dataset.train.images.shape[1:])}, {len(dataset.classes)} classes"
    ]
    for key, path in dataset.files.items():
        lines.append(f"  {spec.files[key].name:28} sha256 OK  {path}")
    width = max(len("class"), *(len(name) for name in dataset.classes))
    lines.append(f"  {'class':{width}}  {'train':>6}  {'test':>6}")
    counts = zip(class_counts(dataset.train), class_counts(dataset.test), strict=True)
    for name, (train_count, test_count) in zip(dataset.classes, counts, strict=True):
        lines.append(f"  {name:{width}}  {train_count:6}  {test_count:6}")
    return "\n".join(lines)


def parameters(config: TrainConfig, model, total: int, baseline: int) -> str:
    """Layer by layer, the total, and the short answer against logistic regression."""
    rows = [(n, "x".join(map(str, v.shape)), v.numel()) for n, v in model.named_parameters()]
    width = max(len(name) for name, _, _ in rows)
    lines = [
        f"trainable parameters of the {model_name(config)}",
        f"  {'parameter':{width}}  {'shape':>9}  {'count':>11}",
    ]
    lines += [f"  {name:{width}}  {shape:>9}  {count:11,}" for name, shape, count in rows]
    lines.append(f"  {'total':{width}}  {'':9}  {total:11,}")
    ratio = "as many" if total == baseline else f"{total / baseline:.1f}x as many"
    lines.append(f"logistic regression (784-10): {baseline:,} parameters; this model has {ratio}")
    return "\n".join(lines)


def evaluation(config: TrainConfig, result, classes, count: int) -> str:
    """Loss and accuracy, per-class accuracy and the confusion matrix."""
    lines = [
        describe(config),
        f"test loss {result.loss:.4f}  test accuracy {100 * result.accuracy:.2f}% "
        f"on {count:,} images",
    ]
    width = max(len("class"), *(len(name) for name in classes))
    lines.append(f"{'class':{width}}  accuracy")
    for name, accuracy in zip(classes, result.per_class_accuracy, strict=True):
        lines.append(f"{name:{width}}  {100 * accuracy:7.2f}%")
    lines.append("confusion matrix (rows: true class, columns: predicted)")
    lines.append("      " + "".join(f"{index:>6}" for index in range(len(classes))))
    for index, row in enumerate(result.confusion.tolist()):
        lines.append(f"{index:>6}" + "".join(f"{count:>6}" for count in row))
    return "\n".join(lines)


def comparison(rows: list[dict]) -> str:
    lines = [
        f"{'impl':8}  {'test acc':>8}  {'train loss':>10}  {'seconds':>7}  "
        f"{'max |param - module param|':>26}  {'(after 1 step)':>14}"
    ]
    for row in rows:
        lines.append(
            f"{row['impl']:8}  {100 * row['test_accuracy']:7.2f}%  {row['train_loss']:10.4f}  "
            f"{row['seconds']:7.1f}  {row['difference']:26.2e}  "
            f"{row['first_step_difference']:14.2e}"
        )
    lines.append(
        f"trained in {rows[0]['precision']}; seconds: one measurement each, and on a busy "
        "machine --threads 1 steadies them"
    )
    return "\n".join(lines)


def bench(config: TrainConfig, report: dict) -> str:
    lines = [
        f"{describe(config)}; {report['device']}, {report['threads']} threads, "
        f"{report['epoch_gflop']:.1f} GFLOP of matmuls per epoch",
        f"{'':30}  {'s/epoch':>8}  {'samples/s':>10}  {'GFLOP/s':>8}  {'x bound':>7}  slowest",
    ]
    for row in report["rows"]:
        slowest = f"{max(row['times']) / row['seconds'] - 1:+7.0%}" if len(row["times"]) > 1 else ""
        lines.append(
            f"{row['name']:30}  {row['seconds']:8.3f}  {row['samples_per_second']:10,.0f}  "
            f"{row['gflops']:8.1f}  {row['ratio_to_bound']:7.2f}  {slowest:>7}"
        )
    count = len(report["rows"][0]["times"])
    if count > 1:
        lines.append(
            f"best of {count}, taken in turns; slowest: the slowest of the {count} "
            "against the best, how much the machine moved meanwhile"
        )
    rows = {row["name"]: row["seconds"] for row in report["rows"]}
    if "module epoch bf16" in rows:
        own = rows["module epoch bf16"] / rows["bound bf16 (matmuls only)"]
        faster = rows["module epoch"] / rows["module epoch bf16"] if "module epoch" in rows else 0
        lines.append(
            f"bf16 (native on this CPU): the epoch is {own:.2f}x its own bound"
            + (f", {faster:.2f}x as fast as fp32's" if faster else "")
            + (
                "; precision auto (the default and best recipes') trains in bf16 here"
                if faster >= 1.1
                else "; bf16 does not pay here (under 10% faster): give --precision fp32"
                if faster
                else ""
            )
        )
    elif report.get("bf16_native") is False:
        lines.append(
            "bf16: not native on this CPU (no AVX512_BF16 or AMX): precision auto trains in fp32"
        )
    breakdowns = {"module epoch": "where_time_goes", "bf16 module epoch": "where_time_goes_bf16"}
    for epoch, key in breakdowns.items():
        if "module epoch" in rows and report.get(key):
            lines.append(_where_time_goes(epoch, report[key]))
    if "module epoch" in rows and "notebook pipeline (batch 64)" in rows:
        ratio = rows["notebook pipeline (batch 64)"] / rows["module epoch"]
        lines.append(f"module epoch is {ratio:.1f}x faster than the notebook pipeline")
    return "\n".join(lines)


def _where_time_goes(epoch: str, parts: dict) -> str:
    """bench's breakdown of an epoch by torch's profiler, in one line."""
    parts = dict(parts)
    profiled, alike = parts.pop("epoch"), parts.pop("bound's matmuls", None)
    named = ", ".join(
        f"{part} {seconds:.3f}"
        + (f" (the bound's, profiled alike: {alike:.3f})" if part == "matmuls" and alike else "")
        for part, seconds in parts.items()
    )
    return (
        f"where a {epoch}'s time goes, by torch's profiler (the epoch {profiled:.3f} s under "
        f"it): {named}"
    )


def number_line(reading: dict) -> str:
    """A number's reading (predict.number's answer): '42?7  (4 digits: 4 99.1%, 2 97.0%, 1
    61.0% not sure, 7 98.3%)', the doubtful digits marked in its verdict and said why."""
    parts = []
    for digit in reading["digits"]:
        doubt = "unlike a digit" if digit["unfamiliar"] else "not sure" if digit["unsure"] else ""
        parts.append(f"{digit['name']} {100 * digit['confidence']:.1f}% {doubt}".rstrip())
    return f"{reading['verdict']}  ({len(parts)} digits: {', '.join(parts)})"


def check_report(report) -> str:
    """Each finding on a line (PASS, FAIL with its fix beneath, or INFO), then the verdict."""
    marks = {True: "PASS", False: "FAIL", None: "INFO"}
    lines = []
    for finding in report.findings:
        mark = "ERROR" if finding.error else marks[finding.passed]
        lines.append(f"{mark}  {finding.check}: {finding.message}")
        if finding.passed is False and finding.fix:
            lines.append(f"      fix: {finding.fix}")
    failed = list(dict.fromkeys(report.failed()))
    lines.append(
        "all checks passed"
        if not failed
        else f"{plural(len(failed), 'check')} failed: {', '.join(failed)}"
    )
    return "\n".join(lines)


def trial_line(trial) -> str | None:
    """An Optuna trial as one line; None for an idle one (a worker that found nothing left)."""
    if trial.user_attrs.get("idle"):
        return None
    return _trial(trial.number, trial.state.name.lower(), trial.value, trial.params)


def _trial(number: int, state: str, value: float | None, params: dict) -> str:
    accuracy = "" if value is None else f" val acc {percent(value)}"
    settings = " ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )
    return f"trial {number}: {state}{accuracy} {settings}"


def trial_counts(summary: dict) -> str:
    """A study's trials by state: '3 complete, 1 pruned', or 'no trials'."""
    counts = ", ".join(f"{count} {state}" for state, count in sorted(summary["counts"].items()))
    return counts or "no trials"


def standard_error(error: float) -> str:
    """What a study's standard error means, in the one sentence the summary and report say."""
    return (
        f"one standard error of the best's validation accuracy is {100 * error:.2f} points: "
        "trials closer than that are not told apart"
    )


def study(summary: dict) -> str:
    """A study: trials by state, the best, parameter importances, the best's test accuracy."""
    lines = [f"study {summary['study']}: {trial_counts(summary)}"]
    if summary["best"]:
        lines.append("best trials (validation accuracy):")
        for entry in summary["best"]:
            settings = " ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in entry["params"].items()
            )
            lines.append(f"  {entry['trial']:>4}  {percent(entry['val_accuracy'])}  {settings}")
    error = summary.get("standard_error")
    if error:
        lines.append(standard_error(error))
    baseline = summary.get("baseline")
    if baseline:
        score = percent(baseline["val_accuracy"]) if baseline["val_accuracy"] is not None else "-"
        trial, state = baseline["trial"], baseline["state"]
        lines.append(f"the base settings (trial {trial}, {state}): validation {score}")
    if summary["importances"]:
        shares = ", ".join(f"{name} {share:.2f}" for name, share in summary["importances"].items())
        lines.append(f"parameter importances: {shares}")
    best = summary.get("best_test")
    if best:
        lines.append(
            f"test accuracy of the best (trial {best['trial']}), measured once after the search: "
            f"{percent(best['test_accuracy'])} (validation {percent(best['val_accuracy'])})"
        )
    return "\n".join(lines)
