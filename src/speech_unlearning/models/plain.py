"""Plain PyTorch classifiers as toolkit models: a TorchScript archive, or `module:factory` + weights.

A deployed model that is not a transformers classifier comes in one of two ways:

- `torchscript`: a `torch.jit.save` archive. The archive is the architecture; the checkpoint
  keeps it beside the weights (`module.torchscript`, hashed in the metadata) and the weights
  themselves in model.safetensors, as for every other model.
- `torch-factory`: `package.module:function` (called with recorded keyword arguments, it builds
  the architecture) plus a safetensors state dict of the deployed weights.

Either way the model reads the toolkit's inputs, declared at import: 16 kHz waveforms (B,
samples) or the toolkit's log-mel (B, 40, frames), and returns logits (B, classes).

Running code. Loading these checkpoints runs code that is not the toolkit's: the TorchScript
program (which may read or write files), or the named Python function. A checkpoint never does
that on its own: the archive's sha256 or the `module:function` must be listed in
$SPEECH_UNLEARNING_TRUSTED_CODE (comma-separated), or have been imported in the same process
(importing is the explicit act of trust). Otherwise UntrustedCodeError says exactly what to add.

Head and embedding. Methods that train the head alone or mask its rows, and the representation
probe, need `head` (the final nn.Linear, one row per class) and `embed` (what it reads). `head`
is the submodule named at import (default: the first of head, classifier, fc, linear, output
that is a Linear with one output per class); `embed` is the network's own `embed` method
(`@torch.jit.export` it in a TorchScript module), or, for a factory-built module, the input the
head receives (a forward hook). The import checks head(embed(x)) == forward(x) on a probe input.

Labels. The class names in output order come from `--labels` (or a `label_names` attribute of
the module); they must be the corpus's names, and the head rows are put in the corpus's order.

Retrain's starting point (`init`): "scratch" (the factory called again, or the TorchScript
module re-initialised layer by layer with torch's default rules), a .safetensors state dict of
the weights training started from, or unknown (Retrain refuses and says how to record it).
"""

from __future__ import annotations

import copy
import importlib
import io
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import torch
from torch import nn

from ..config import ConfigError, require
from ..io import sha256_file
from .base import SpeechClassifier
from .registry import IMPORTED_MODELS, model_file, record_build_args, remember_model_file, resolve_options

TORCHSCRIPT_KIND = "torchscript"
FACTORY_KIND = "torch-factory"
ARCHIVE_FILE = "module.torchscript"
TRUST_VARIABLE = "SPEECH_UNLEARNING_TRUSTED_CODE"
HEAD_NAMES = ("head", "classifier", "fc", "linear", "output")
FACTORY_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
NORM_LAYERS = ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LayerNorm", "GroupNorm", "InstanceNorm1d",
               "InstanceNorm2d")  # fmt: skip

TRUSTED_IN_PROCESS: set[str] = set()  # archives and factories imported by this process


class UntrustedCodeError(ConfigError):
    """A checkpoint would run code nobody allowed; the message names it and how to allow it."""


def trust(entry: str) -> None:
    """Allow `entry` (an archive sha256 or `module:function`) for the rest of this process."""
    TRUSTED_IN_PROCESS.add(entry)


def require_trusted(entry: str, what: str) -> None:
    """UntrustedCodeError unless `entry` was imported here or is listed in $SPEECH_UNLEARNING_TRUSTED_CODE."""
    listed = {item.strip() for item in os.environ.get(TRUST_VARIABLE, "").split(",") if item.strip()}
    if entry not in TRUSTED_IN_PROCESS | listed:
        raise UntrustedCodeError(
            f"{what} runs code from outside the toolkit, which checkpoints never do unasked; if you trust it, "
            f"add it to ${TRUST_VARIABLE} (comma-separated): {TRUST_VARIABLE}={entry}"
        )


# --- options ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlainOptions:
    """What every imported plain PyTorch model records."""

    input_kind: Literal["waveform", "logmel"] = field(
        default="waveform", metadata={"help": "waveform: 16 kHz (B, samples); logmel: the toolkit's (B, 40, frames)"}
    )
    head: str | None = field(default=None, metadata={"help": "the final Linear's attribute path (e.g. 'fc')"})
    init: str | None = field(
        default=None, metadata={"help": "Retrain's starting point: 'scratch' or a .safetensors state dict; none: unknown"}
    )
    init_sha256: str | None = field(default=None, metadata={"help": "sha256 of the init file, checked when read"})


@dataclass(frozen=True)
class TorchScriptOptions(PlainOptions):
    archive_sha256: str | None = field(default=None, metadata={"help": "sha256 of the TorchScript archive"})

    def __post_init__(self) -> None:
        require(bool(self.archive_sha256), "archive_sha256", "the TorchScript archive's sha256 is required")


@dataclass(frozen=True)
class FactoryOptions(PlainOptions):
    factory: str | None = field(default=None, metadata={"help": "package.module:function that builds the model"})
    factory_args: dict = field(default_factory=dict, metadata={"help": "keyword arguments of the factory"})

    def __post_init__(self) -> None:
        require(
            isinstance(self.factory, str) and bool(FACTORY_PATTERN.match(self.factory)),
            "factory",
            f"expected package.module:function, got {self.factory!r}",
        )


# --- the model ----------------------------------------------------------------------------------


class PlainClassifier(SpeechClassifier):
    """An imported nn.Module or ScriptModule: logits from its forward, head and embed as declared."""

    def __init__(self, network: nn.Module, input_kind: str, head_path: str, archive: bytes | None = None):
        # Not SpeechClassifier.__init__: the head is a layer of the network, not a new Linear.
        nn.Module.__init__(self)
        self.network = network
        self.input_kind = input_kind
        self.head_path = head_path
        self.archive = archive  # the TorchScript program, None for a factory-built module
        weight = self.head.weight
        self.num_classes, self.embedding_dim = int(weight.shape[0]), int(weight.shape[1])

    @property
    def head(self) -> nn.Module:
        return submodule(self.network, self.head_path)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.network(inputs)

    def embed(self, inputs: torch.Tensor) -> torch.Tensor:
        if hasattr(self.network, "embed"):
            return self.network.embed(inputs)
        if isinstance(self.network, torch.jit.ScriptModule):
            raise ValueError(
                "this TorchScript model has no `embed` method, which head-only unlearning and the representation "
                "probe need; add one (@torch.jit.export def embed(self, x): ...) and import it again"
            )
        captured: list[torch.Tensor] = []
        handle = self.head.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
        try:
            self.network(inputs)
        finally:
            handle.remove()
        return captured[0]

    def checkpoint_files(self) -> dict[str, bytes]:
        """The TorchScript archive, written beside the weights by save_checkpoint."""
        return {ARCHIVE_FILE: self.archive} if self.archive is not None else {}

    def __deepcopy__(self, memo: dict) -> "PlainClassifier":
        # A deep copy of a ScriptModule trains no more (its parameters stop being leaves):
        # copy TorchScript models by loading the archive again.
        if self.archive is None:
            copied = PlainClassifier.__new__(PlainClassifier)
            memo[id(self)] = copied
            for key, value in self.__dict__.items():
                copied.__dict__[key] = copy.deepcopy(value, memo)
            return copied
        copied = PlainClassifier(load_archive(self.archive), self.input_kind, self.head_path, self.archive)
        copied.load_state_dict(self.state_dict())
        for (_, mine), (_, theirs) in zip(self.named_parameters(), copied.named_parameters()):
            theirs.requires_grad_(mine.requires_grad)
        copied.train(self.training)
        if hasattr(self, "build_args"):
            copied.build_args = copy.deepcopy(self.build_args)
        return copied.to(next(self.parameters()).device)

    def starting_point(self) -> "PlainClassifier":
        """The model Retrain trains from: re-initialised ("scratch") or the recorded initial weights."""
        options = self.build_args["options"]
        init = options.get("init")
        if init is None:
            raise ConfigError(
                "Retrain of an imported PyTorch model needs its starting point, which the import did not record: "
                "import it again with --init scratch (trained from random weights) or --init FILE.safetensors "
                "(the weights its training started from)"
            )
        fresh = IMPORTED_MODELS.get(self.build_args["name"])(self.num_classes, **copy.deepcopy(options))
        if init != "scratch":
            fresh.load_state_dict(read_init_state(init, options.get("init_sha256"), fresh))
        return fresh.to(next(self.parameters()).device)


# --- building -----------------------------------------------------------------------------------


def submodule(network: nn.Module, path: str) -> nn.Module:
    """The layer at dotted attribute `path` ("fc", "head.out"); ScriptModules lack get_submodule."""
    module = network
    for part in path.split("."):
        module = getattr(module, part)
    return module


def load_archive(archive: bytes) -> torch.jit.ScriptModule:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated upstream; still read
            return torch.jit.load(io.BytesIO(archive), map_location="cpu")
    except RuntimeError as error:
        raise ConfigError(f"not a TorchScript archive ({str(error).splitlines()[0]})") from None


def call_factory(factory: str, arguments: dict) -> nn.Module:
    """Import `package.module` and call its `function(**arguments)`; ConfigError naming what failed."""
    module_name, function_name = factory.split(":")
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as error:
        raise ConfigError(f"factory {factory}: cannot be imported ({error})") from None
    network = function(**arguments)
    if not isinstance(network, nn.Module):
        raise ConfigError(f"factory {factory}: returned {type(network).__name__}, not a torch.nn.Module")
    return network


def module_type(module: nn.Module) -> str:
    """The layer's class name, for modules and ScriptModules alike ("Linear", "Conv1d", ...)."""
    return getattr(module, "original_name", None) or type(module).__name__


@torch.no_grad()
def reinitialise(network: nn.Module) -> None:
    """Fresh random weights with torch's default rules, for layers given as ScriptModules too.

    Normalisation layers: weight 1, bias 0, running statistics reset. Embeddings: N(0, 1). Any
    other weight (2-D and up): Kaiming-uniform with a = sqrt(5), its bias uniform within
    1 / sqrt(fan_in), as nn.Linear and nn.Conv*d draw them; any other vector: zeros.
    """
    for module in network.modules():
        kind = module_type(module)
        parameters = dict(module.named_parameters(recurse=False))
        if kind in NORM_LAYERS:
            for name, parameter in parameters.items():
                parameter.fill_(1.0 if name == "weight" else 0.0)
            for name, buffer in module.named_buffers(recurse=False):
                buffer.fill_(1 if name == "running_var" else 0)
            continue
        fan_in = None
        for parameter in parameters.values():
            if kind == "Embedding":
                nn.init.normal_(parameter)
            elif parameter.dim() >= 2:
                nn.init.kaiming_uniform_(parameter, a=math.sqrt(5))
                fan_in = parameter[0].numel()
        for name, parameter in parameters.items():
            if parameter.dim() < 2 and kind != "Embedding":
                if fan_in and name == "bias":
                    nn.init.uniform_(parameter, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
                else:
                    parameter.zero_()


def finish(model: PlainClassifier, kind: str, num_classes: int, options: Any) -> PlainClassifier:
    if model.num_classes != num_classes:
        raise ConfigError(f"model {kind}: the head {model.head_path!r} has {model.num_classes} outputs, not {num_classes}")
    return record_build_args(model, kind, num_classes, options)


@IMPORTED_MODELS.register(TORCHSCRIPT_KIND)
def create_torchscript_model(num_classes: int, **options: Any) -> PlainClassifier:
    """The archive's architecture with fresh random weights (the archive must be trusted)."""
    resolved = resolve_options(TorchScriptOptions, options, TORCHSCRIPT_KIND)
    require_trusted(resolved.archive_sha256, f"TorchScript archive {resolved.archive_sha256[:12]}...")
    archive = model_file(resolved.archive_sha256, "TorchScript archive")
    network = load_archive(archive)
    reinitialise(network)
    model = PlainClassifier(network, resolved.input_kind, resolved.head or find_head(network, num_classes), archive)
    return finish(model, TORCHSCRIPT_KIND, num_classes, resolved)


@IMPORTED_MODELS.register(FACTORY_KIND)
def create_factory_model(num_classes: int, **options: Any) -> PlainClassifier:
    """What the (trusted) factory builds, with the weights it initialises."""
    resolved = resolve_options(FactoryOptions, options, FACTORY_KIND)
    require_trusted(resolved.factory, f"factory {resolved.factory}")
    network = call_factory(resolved.factory, dict(resolved.factory_args))
    model = PlainClassifier(network, resolved.input_kind, resolved.head or find_head(network, num_classes))
    return finish(model, FACTORY_KIND, num_classes, resolved)


def find_head(network: nn.Module, num_classes: int) -> str:
    """The first of HEAD_NAMES that is a Linear with `num_classes` outputs; ConfigError otherwise."""
    for name in HEAD_NAMES:
        module = getattr(network, name, None)
        weight = getattr(module, "weight", None)
        if module is not None and module_type(module) == "Linear" and weight is not None and weight.shape[0] == num_classes:
            return name
    layers = [name for name, module in network.named_modules() if module_type(module) == "Linear"]
    raise ConfigError(
        f"no classification head found (a Linear with {num_classes} outputs named {', '.join(HEAD_NAMES)}); "
        f"name it with --head (Linear layers: {', '.join(layers) or 'none'})"
    )


# --- importing ----------------------------------------------------------------------------------


def import_torchscript(
    path: str | Path, label_names: Sequence[str], input_shape: tuple[int, ...], input_kind: str,
    model_labels: Sequence[str] | None = None, head: str | None = None, init: str | None = None,
) -> PlainClassifier:  # fmt: skip
    """The TorchScript archive at `path` as a toolkit model (trusted for this process; see the module docstring).

    `input_shape` is one example's shape (for the probe checks); `model_labels` the class names
    in output order (default: the module's `label_names` attribute).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"--torchscript {path}: file not found")
    archive = path.read_bytes()
    network = load_archive(archive)
    digest = remember_model_file(archive)
    trust(digest)
    options = TorchScriptOptions(input_kind, head, *resolve_init(init), archive_sha256=digest)
    model = PlainClassifier(network, input_kind, head or find_head(network, len(label_names)), archive)
    return checked_import(model, TORCHSCRIPT_KIND, options, label_names, model_labels, input_shape)


def import_factory(
    factory: str, weights: str | Path, label_names: Sequence[str], input_shape: tuple[int, ...], input_kind: str,
    factory_args: dict | None = None, model_labels: Sequence[str] | None = None, head: str | None = None,
    init: str | None = None,
) -> PlainClassifier:  # fmt: skip
    """`factory(**factory_args)` with the safetensors state dict `weights` loaded (trusted for this process)."""
    from safetensors.torch import load_file

    options = FactoryOptions(input_kind, head, *resolve_init(init), factory=factory, factory_args=dict(factory_args or {}))
    trust(factory)
    network = call_factory(factory, options.factory_args)
    weights = Path(weights).expanduser()
    if not weights.is_file():
        raise ConfigError(f"--weights {weights}: file not found")
    try:
        network.load_state_dict(load_file(str(weights)), strict=True)
    except (RuntimeError, OSError, ValueError) as error:
        raise ConfigError(f"--weights {weights}: does not fit {factory} ({str(error).splitlines()[0]})") from None
    model = PlainClassifier(network, input_kind, head or find_head(network, len(label_names)))
    return checked_import(model, FACTORY_KIND, options, label_names, model_labels, input_shape)


def checked_import(
    model: PlainClassifier, kind: str, options: Any, label_names: Sequence[str], model_labels: Sequence[str] | None,
    input_shape: tuple[int, ...],
) -> PlainClassifier:  # fmt: skip
    """Labels matched (head rows in corpus order), outputs and the head / embed split checked."""
    model.eval()
    labels = list(model_labels) if model_labels is not None else declared_labels(model.network)
    order = matched_order(labels, list(label_names))
    probe = torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model(probe)
        if tuple(before.shape) != (2, len(labels)):
            raise ConfigError(f"the model returns shape {tuple(before.shape)} for 2 inputs, expected (2, {len(labels)})")
        head = model.head
        head.weight.copy_(head.weight[order].clone())
        if getattr(head, "bias", None) is not None:
            head.bias.copy_(head.bias[order].clone())
        after = model(probe)
        if not torch.allclose(after, before[:, order], rtol=1e-4, atol=1e-5):
            raise ConfigError(f"reordering the rows of {model.head_path!r} does not reorder the outputs: is it the final layer?")
        if has_embedding(model) and not torch.allclose(head(model.embed(probe)), after, rtol=1e-4, atol=1e-5):
            raise ConfigError(f"head(embed(x)) differs from the model's output: is {model.head_path!r} the final layer?")
    model.source_label_order = labels
    return record_build_args(model, kind, len(label_names), options)


def has_embedding(model: PlainClassifier) -> bool:
    """Whether `embed` works: an `embed` method, or a Python module whose head input can be hooked."""
    return hasattr(model.network, "embed") or not isinstance(model.network, torch.jit.ScriptModule)


def declared_labels(network: nn.Module) -> list[str]:
    labels = getattr(network, "label_names", None)
    if not labels:
        raise ConfigError("the model does not say its class names: pass --labels NAME,NAME,... in output order")
    return [str(label) for label in labels]


def matched_order(model_labels: list[str], label_names: list[str]) -> list[int]:
    """For each corpus label, the model's output index of that name; ConfigError listing both sides."""
    if sorted(model_labels) != sorted(label_names) or len(set(model_labels)) != len(model_labels):
        raise ConfigError(
            "the model's labels do not match the corpus's.\n"
            f"  model ({len(model_labels)}): {', '.join(model_labels)}\n"
            f"  corpus ({len(label_names)}): {', '.join(label_names)}\n"
            f"  only in the model: {', '.join(sorted(set(model_labels) - set(label_names))) or '-'}; "
            f"only in the corpus: {', '.join(sorted(set(label_names) - set(model_labels))) or '-'}"
        )
    return [model_labels.index(name) for name in label_names]


def resolve_init(init: str | None) -> tuple[str | None, str | None]:
    """(recorded init, its sha256): None and "scratch" as given, a .safetensors path made absolute and hashed."""
    if init is None or init == "scratch":
        return init, None
    path = Path(init).expanduser()
    if not path.is_file() or path.suffix != ".safetensors":
        raise ConfigError(f"--init {init}: expected 'scratch' or an existing .safetensors state dict")
    return str(path.resolve()), sha256_file(path)


def read_init_state(init: str, expected_sha256: str | None, model: PlainClassifier) -> dict[str, torch.Tensor]:
    """The recorded initial weights, under the toolkit model's names (network.*), checked by sha256."""
    from safetensors.torch import load_file

    path = Path(init)
    if not path.is_file():
        raise ConfigError(f"init {init}: the initial weights are gone (moved or deleted since the import)")
    if expected_sha256 is not None and sha256_file(path) != expected_sha256:
        raise ConfigError(f"init {init}: the weights changed since the import (sha256 differs)")
    state = {f"network.{name}": tensor for name, tensor in load_file(str(path)).items()}
    missing = sorted(set(model.state_dict()) - set(state))
    if missing:
        raise ConfigError(f"init {init}: lacks {', '.join(missing[:3])}")
    return state
