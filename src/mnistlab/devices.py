"""Where computation runs: the device a run, a search or the server uses."""

import torch

from mnistlab.errors import ConfigError, Setting


def resolve(name: str = "auto") -> torch.device:
    """auto picks cuda, then mps, then cpu; an asked-for device that is absent is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
    }
    if not available.get(name, False):
        raise ConfigError(
            (
                Setting("device"),
                f" {name}: no such device is available here; use device auto or cpu",
            )
        )
    return torch.device(name)


def bf16_native(cpuinfo: str = "/proc/cpuinfo") -> bool | None:
    """Whether this CPU multiplies bf16 natively (AVX512_BF16 or AMX); None where its flags
    cannot be read. Elsewhere torch emulates bf16, slower than fp32."""
    try:
        with open(cpuinfo) as handle:
            flags = next((line for line in handle if line.startswith("flags")), "")
    except OSError:
        return None
    return bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))


def precision(name: str, device: torch.device) -> str:
    """The precision a run trains in on `device`: fp32 or bf16 as asked, and for auto, bf16
    where the device multiplies it natively (a CPU with AVX512_BF16 or AMX, a CUDA GPU that
    supports it) and fp32 elsewhere, where emulated bf16 would be slower than fp32."""
    if name != "auto":
        return name
    if device.type == "cuda":  # (with emulation, older GPUs say yes too: Ampere on)
        native = torch.cuda.is_bf16_supported(including_emulation=False)
    else:
        native = device.type == "cpu" and bool(bf16_native())
    return "bf16" if native else "fp32"
