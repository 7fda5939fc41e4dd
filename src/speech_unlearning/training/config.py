"""What `fit` is told and what it reports: `TrainConfig` (every field settable with
`--set key=value`, validated on construction) and `TrainResult` (one history row per epoch).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from ..config import require
from .optim import OPTIMIZERS, SCHEDULES

KEEP_CHOICES: tuple[str, ...] = ("best", "last")


def _is_device_string(name: str) -> bool:
    if name == "auto":
        return True
    try:
        torch.device(name)
    except (RuntimeError, ValueError):
        return False
    return True


@dataclass
class TrainConfig:
    """How `fit` trains. Every field can be set from the command line with `--set key=value`."""

    epochs: int = field(default=30, metadata={"help": "maximum passes over the training set"})
    batch_size: int = field(default=64, metadata={"help": "examples per optimisation step"})
    lr: float = field(default=3e-3, metadata={"help": "peak learning rate"})
    weight_decay: float = field(default=1e-4, metadata={"help": "weight decay (decoupled for adamw)"})
    optimizer: str = field(default="adamw", metadata={"help": "adamw | adam | sgd"})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum (ignored by adam/adamw)"})
    patience: int = field(
        default=5,
        metadata={"help": "stop after this many epochs in which neither validation accuracy nor loss improved; 0 = never"},
    )
    seed: int = field(default=0, metadata={"help": "seed for initialisation order, shuffling and dropout"})
    device: str = field(default="auto", metadata={"help": "auto (GPU if present) | cpu | cuda | cuda:N"})
    max_seconds: float | None = field(
        default=None, metadata={"help": "wall-clock cap on training; None = no cap"}
    )
    progress: bool = field(default=True, metadata={"help": "show a progress bar on stderr"})
    label_smoothing: float = field(default=0.0, metadata={"help": "cross-entropy label smoothing in [0, 1)"})
    eval_batch_size: int = field(default=256, metadata={"help": "batch size for validation passes"})
    log_every: int = field(default=10, metadata={"help": "steps between progress-bar updates"})
    schedule: str = field(default="constant", metadata={"help": "learning-rate schedule: constant | linear | cosine"})
    warmup_ratio: float = field(
        default=0.0, metadata={"help": "fraction of the planned steps spent warming the lr up linearly"}
    )
    max_grad_norm: float | None = field(
        default=None, metadata={"help": "clip the gradient norm to this value; None = no clipping"}
    )
    deterministic: bool = field(
        default=True, metadata={"help": "use deterministic kernels (repeatable GPU runs, slower there)"}
    )
    threads: int = field(
        default=0,
        metadata={"help": "CPU threads torch may use while training; 0 = torch's default (all cores)"},
    )
    keep: str = field(
        default="best",
        metadata={"help": "weights fit returns: best (the best validation epoch) | last (the end of the schedule)"},
    )
    shift_ms: float = field(default=0.0, metadata={"help": "augmentation: random time shift of up to this many ms"})
    noise_prob: float = field(
        default=0.0, metadata={"help": "augmentation: chance of mixing in background noise (needs a noise folder)"}
    )
    noise_snr_db_low: float = field(default=5.0, metadata={"help": "augmentation: lowest SNR of mixed-in noise, dB"})
    noise_snr_db_high: float = field(default=20.0, metadata={"help": "augmentation: highest SNR of mixed-in noise, dB"})
    freq_masks: int = field(default=0, metadata={"help": "augmentation: SpecAugment frequency masks per clip"})
    freq_mask_bins: int = field(default=7, metadata={"help": "augmentation: widest frequency mask, in mel bins"})
    time_masks: int = field(default=0, metadata={"help": "augmentation: SpecAugment time masks per clip"})
    time_mask_frames: int = field(default=10, metadata={"help": "augmentation: widest time mask, in frames"})

    def __post_init__(self) -> None:
        require(self.epochs >= 1, "epochs", f"must be at least 1, got {self.epochs}")
        require(self.batch_size >= 1, "batch_size", f"must be at least 1, got {self.batch_size}")
        require(self.lr > 0, "lr", f"must be positive, got {self.lr}")
        require(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        require(
            self.optimizer in OPTIMIZERS,
            "optimizer",
            f"{self.optimizer!r} is not one of {', '.join(OPTIMIZERS.names())}",
        )
        require(0 <= self.momentum < 1, "momentum", f"must be in [0, 1), got {self.momentum}")
        require(self.patience >= 0, "patience", f"must be >= 0, got {self.patience}")
        require(0 <= self.seed < 2**32, "seed", f"must be in [0, 2**32), got {self.seed}")
        require(_is_device_string(self.device), "device", f"{self.device!r} is not auto, cpu, cuda or cuda:N")
        require(
            self.max_seconds is None or self.max_seconds > 0,
            "max_seconds",
            f"must be positive or None, got {self.max_seconds}",
        )
        require(0 <= self.label_smoothing < 1, "label_smoothing", f"must be in [0, 1), got {self.label_smoothing}")
        require(self.eval_batch_size >= 1, "eval_batch_size", f"must be at least 1, got {self.eval_batch_size}")
        require(self.log_every >= 1, "log_every", f"must be at least 1, got {self.log_every}")
        require(self.schedule in SCHEDULES, "schedule", f"{self.schedule!r} is not one of {', '.join(SCHEDULES)}")
        require(0 <= self.warmup_ratio < 1, "warmup_ratio", f"must be in [0, 1), got {self.warmup_ratio}")
        require(
            self.max_grad_norm is None or self.max_grad_norm > 0,
            "max_grad_norm",
            f"must be positive or None, got {self.max_grad_norm}",
        )
        require(self.threads >= 0, "threads", f"must be >= 0, got {self.threads}")
        require(self.keep in KEEP_CHOICES, "keep", f"{self.keep!r} is not one of {', '.join(KEEP_CHOICES)}")
        require(self.shift_ms >= 0, "shift_ms", f"must be >= 0, got {self.shift_ms}")
        require(0 <= self.noise_prob <= 1, "noise_prob", f"must be in [0, 1], got {self.noise_prob}")
        require(
            self.noise_snr_db_low <= self.noise_snr_db_high,
            "noise_snr_db_low",
            f"must be <= noise_snr_db_high ({self.noise_snr_db_high}), got {self.noise_snr_db_low}",
        )
        for name in ("freq_masks", "freq_mask_bins", "time_masks", "time_mask_frames"):
            require(getattr(self, name) >= 0, name, f"must be >= 0, got {getattr(self, name)}")

    @property
    def augments(self) -> bool:
        """Whether any training-time augmentation is switched on."""
        return self.shift_ms > 0 or self.noise_prob > 0 or self.freq_masks > 0 or self.time_masks > 0


@dataclass
class TrainResult:
    """What `fit` did. `history` has one row per epoch (see `fit`)."""

    seconds: float
    epochs_run: int
    best_epoch: int  # 1-based epoch whose weights the model holds on return
    history: list[dict]
    stopped_early: bool  # patience ran out
    budget_exhausted: bool  # max_seconds ran out
    steps: int = 0
    examples: int = 0  # training examples processed (all epochs)
    data_seconds: float = 0.0  # assembling batches from the feature arrays
    compute_seconds: float = 0.0  # forward, backward and optimiser step

    @property
    def compute_share(self) -> float:
        """Fraction of step time spent in forward/backward/update rather than waiting for data."""
        total = self.data_seconds + self.compute_seconds
        return self.compute_seconds / total if total > 0 else float("nan")

    def to_dict(self) -> dict:
        return {**asdict(self), "compute_share": self.compute_share}

