"""A run's model for other runtimes, needing nothing from mnistlab to use it.

Every format takes raw pixels, (N, 28, 28) in 0-255 (uint8 or float; ONNX: float32), with any
batch size, and includes the run's input normalisation, so that a consumer only has to
prepare the image as the dataset's own (mnistlab.preprocess says how) and read the argmax:
- onnx: a graph for ONNX Runtime (and the runtimes built on it: C++, mobile, the browser);
- torchscript: a file `torch.jit.load` runs in any Python with PyTorch, mnistlab or not;
- safetensors: the weights, named so that they load into a plain nn.Sequential of
  nn.Linear and activation layers, and a JSON sidecar (layer sizes, activation,
  normalisation, classes) that says how to build it.
The exporters (onnx, onnxscript, safetensors) are the optional extra 'mnistlab[export]'.
"""

import json
from pathlib import Path

import torch
from torch import nn

from mnistlab import calibration, checkpoint
from mnistlab.config import EXPORT_FORMATS
from mnistlab.errors import ConfigError, Setting
from mnistlab.files import atomic_write
from mnistlab.models.modules import ACTIVATIONS
from mnistlab.resident import to_inputs
from mnistlab.runfiles import is_run

FORMATS = dict(zip(EXPORT_FORMATS, (".onnx", ".pt2", ".pt", ".safetensors"), strict=True))


class Pixels(nn.Module):
    """Raw pixels (N, 28, 28) in 0-255 -> the normalised (N, 784) the network was trained on."""

    def __init__(self, mean: float, std: float):
        super().__init__()
        self.mean, self.std = float(mean), float(std)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return to_inputs(pixels, self.mean, self.std)


def sequential(state: dict, sizes, activation: str) -> nn.Sequential:
    """The network as nn.Sequential(Linear, activation, ..., Linear), weights loaded; its
    state_dict names are those of the safetensors file ("0.weight", "0.bias", "2.weight"...)."""
    layers = []
    for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(fan_in, fan_out))
        if index < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    network = nn.Sequential(*layers)
    network.load_state_dict(_sequential_names(state, len(sizes) - 1))
    return network.eval()


def _sequential_names(state: dict, count: int) -> dict:
    """mnistlab's names (hidden.0.weight, ..., output.bias) -> nn.Sequential's (0.weight, ...)."""
    names = [f"hidden.{index}" for index in range(count - 1)] + ["output"]
    return {
        f"{2 * position}.{kind}": state[f"{name}.{kind}"].detach().float().contiguous()
        for position, name in enumerate(names)
        for kind in ("weight", "bias")
    }


def _saved(run):
    # Loaded into the model its config describes: weights of another shape are refused here,
    # in one line, before any exporter sees them.
    saved, _ = checkpoint.load_model(run)
    config = saved["config"]
    from mnistlab.datasets import get_spec

    return saved, config, list(get_spec(config.dataset).classes)


def model(run) -> tuple[nn.Module, dict]:
    """The whole model, pixels in and logits out, and what the sidecar describes."""
    saved, config, classes = _saved(run)
    network = sequential(saved["model"], config.layer_sizes, config.activation)
    mean, std = saved["normalization"]
    description = {
        "layers": list(config.layer_sizes),
        "activation": config.activation if config.model == "mlp" else "none",
        # The mean and std are of pixels scaled to [0, 1]: applied to 0-255 pixels they are
        # wrong by 255x, and a model silently loses accuracy. The formula says so.
        "normalization": {
            "mean": mean,
            "std": std,
            "applies_to": "pixels scaled to [0, 1] (pixel / 255)",
            "formula": "x = (pixels / 255 - mean) / std",
        },
        "input": "pixels (N, 28, 28) in 0-255, prepared as the data set's (mnistlab.preprocess): "
        "white ink on black, the digit in a 20x20 box centred by its centre of mass",
        "exported_input": "the ONNX, TorchScript and torch.export models take the 0-255 pixels "
        "and normalise them themselves; the safetensors weights take x",
        "classes": classes,
        "dataset": config.dataset,
        "output": "logits (N, classes); softmax(logits / temperature) for probabilities",
        # Calibrated on held-out digits when the run was trained (mnistlab.calibration):
        # below `unfamiliar_below` an image is unlike the training images.
        "calibration": calibration.read(checkpoint.resolve(run).parent).as_dict(),
    }
    return nn.Sequential(Pixels(mean, std), network).eval(), description


def export(run, format: str, out: str | Path | None = None) -> Path:
    """Write the run's model in `format` (onnx, torchscript, safetensors); returns the path
    (default: RUN/model.EXT, with model.json beside a safetensors file)."""
    folder = checkpoint.resolve(run).parent
    out = _target(folder, out, format)
    whole, description = model(run)
    example = torch.zeros(2, 28, 28)
    try:
        if format == "export":  # torch.export's program: TorchScript's successor in PyTorch
            batch = torch.export.Dim("batch", min=1)
            program = torch.export.export(whole, (example,), dynamic_shapes=({0: batch},))
            atomic_write(out, lambda handle: torch.export.save(program, handle))
        elif format == "torchscript":
            scripted = torch.jit.trace(whole, example)
            atomic_write(out, lambda handle: torch.jit.save(scripted, handle))
        elif format == "onnx":
            _onnx(whole, example, out, description)
        else:
            from safetensors.torch import save

            weights = dict(whole[1].state_dict())
            atomic_write(out, save(weights, metadata={"mnistlab": json.dumps(description)}))
            atomic_write(out.with_suffix(".json"), json.dumps(description, indent=2) + "\n")
    except OSError as error:
        raise ConfigError(
            (Setting("out"), f": cannot write {out}: {error.strerror or error}")
        ) from None
    return out


def _target(folder: Path, out: str | Path | None, format: str) -> Path:
    """Where an export goes: RUN/model.EXT, or `out`, which must not replace a file export did
    not write (anything but the run's own model.EXT and model.json) nor land in another
    run's folder."""
    default = folder / f"model{FORMATS[format]}"
    out = Path(out) if out else default
    written = [out, out.with_suffix(".json")] if format == "safetensors" else [out]
    if len({path.resolve() for path in written}) < len(written):
        # (a safetensors file named *.json: its description would be written over it)
        raise ConfigError(
            (
                Setting("out"),
                f": {out} is where the weights' description goes; name the weights file "
                "model.safetensors (the description is written beside it as model.json)",
            ),
        )
    mine = {default.resolve(), default.with_suffix(".json").resolve()}
    if out.is_dir():
        raise ConfigError((Setting("out"), f": {out} is a folder; give the file to write"))
    if not out.parent.is_dir():
        raise ConfigError((Setting("out"), f": the folder {out.parent} does not exist"))
    if out.parent.resolve() != folder.resolve() and is_run(out.parent):
        raise ConfigError(
            (
                Setting("out"),
                f": {out.parent} is another run's folder; export into a folder of your own",
            ),
        )
    for path in written:
        if (path.exists() or path.is_symlink()) and path.resolve() not in mine:
            raise ConfigError(
                (
                    Setting("out"),
                    f": {path} exists and export did not write it; nothing was written: "
                    "remove it first, or give another file",
                ),
            )
    return out


def _onnx(whole: nn.Module, example: torch.Tensor, out: Path, description: dict) -> None:
    """The ONNX file, its description (classes, normalisation, input) in its metadata; the
    exporter's notes on operators this model does not use (torchvision's) left unsaid."""
    import logging
    import tempfile
    import warnings

    import onnx

    batch = torch.export.Dim("batch", min=1)
    exporter = logging.getLogger("torch.onnx")
    level = exporter.level
    with tempfile.TemporaryDirectory(dir=out.parent) as scratch, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        exporter.setLevel(logging.ERROR)
        try:
            # The exporter writes files of its own; the result is moved into place whole.
            program = torch.onnx.export(
                whole,
                (example,),
                input_names=["pixels"],
                output_names=["logits"],
                dynamic_shapes=({0: batch},),
                dynamo=True,
                external_data=False,
                verbose=False,
            )
        finally:
            exporter.setLevel(level)
        path = Path(scratch) / out.name
        program.save(str(path))
        proto = onnx.load(str(path))
        onnx.helper.set_model_props(proto, {"mnistlab": json.dumps(description)})
        atomic_write(out, proto.SerializeToString())
