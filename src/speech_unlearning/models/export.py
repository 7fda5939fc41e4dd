"""Exporting a toolkit model to run elsewhere, on 16 kHz waveforms, with the toolkit's outputs.

`export_model(model, metadata, fmt, out)` writes one of:

- "onnx": `model.onnx`, one graph from waveforms (batch, samples) to logits (batch, classes):
  the clip is padded or cropped to the checkpoint's clip length, the front end runs inside the
  graph (models/frontends.py), then the network. Opset 17; batch and length are dynamic.
- "torchscript": `model.torchscript`, the same graph traced (`torch.jit.load` runs it).
- "hf": a transformers `save_pretrained` folder (config.json with id2label, model.safetensors)
  and the feature extractor beside it (preprocessor_config.json), so `pipeline("audio-
  classification", DIR)` or AutoModelForAudioClassification + AutoFeatureExtractor load it.
  Possible for imported Hugging Face classifiers and for the registry's transformer backbones
  (wav2vec 2.0, HuBERT, Whisper: the same network as a *ForSequenceClassification /
  WhisperForAudioClassification whose projector is the identity); the small CNN / TDNN models
  are not transformers architectures (export them as onnx or torchscript).

Every format also writes `labels.json` (class names in output order) and `export.json`: the
source checkpoint's sha256, the input the export takes, and the largest difference between its
logits and the toolkit's on a probe batch, measured by running the exported artefact (ONNX with
onnxruntime, TorchScript loaded back, hf through transformers and its feature extractor) and
required to be within `TOLERANCE`. The folder is built under a temporary name and moved into
place when complete.

The "hf" export reproduces the toolkit's numbers when fed what the toolkit feeds: clips padded
or cropped to the checkpoint's clip length (the ONNX and TorchScript graphs do that themselves).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..data.features import FeatureSpec, featurise
from ..io import atomic_directory
from .base import SpeechClassifier
from .frontends import FitLength, LogMelFrontEnd
from .hf_classifier import HFAudioClassifier, feature_extractor_object, hf_network, quiet_transformers

FORMATS: tuple[str, ...] = ("hf", "onnx", "torchscript")
ONNX_FILE = "model.onnx"
TORCHSCRIPT_FILE = "model.torchscript"
LABELS_FILE = "labels.json"
REPORT_FILE = "export.json"
OPSET = 17
PROBE_CLIPS = 2
# Largest accepted |logit difference| to the toolkit: float32 reorderings (the DFT front end,
# fused kernels in onnxruntime) stay near 1e-5 on our models; 1e-3 leaves room for deeper ones.
TOLERANCE = 1e-3


class ExportError(ValueError):
    """A model cannot be exported in the asked format; the message says why and what to use instead."""


class WaveformGraph(nn.Module):
    """Waveforms (B, samples) -> fit to the clip length -> the model's input -> logits (B, C)."""

    def __init__(self, model: SpeechClassifier, spec: FeatureSpec):
        super().__init__()
        self.fit = FitLength(spec.clip_samples)
        self.front_end = LogMelFrontEnd(spec) if spec.kind == "logmel" else nn.Identity()
        self.model = model

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        return self.model(self.front_end(self.fit(waveforms)))


@dataclass(frozen=True)
class ExportResult:
    folder: Path
    files: list[str]
    max_abs_difference: float


def toolkit_logits(model: SpeechClassifier, waveforms: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """What the toolkit computes for clips already fitted to the clip length (NumPy front end)."""
    inputs = torch.from_numpy(np.ascontiguousarray(featurise(waveforms, spec)))
    with torch.no_grad():
        return model.eval()(inputs).numpy()


def probe_waveforms(spec: FeatureSpec) -> np.ndarray:
    """(2, clip_samples) seeded noise bursts with a silent tail, like a zero-padded short recording."""
    rng = np.random.default_rng(0)
    clips = (0.1 * rng.standard_normal((PROBE_CLIPS, spec.clip_samples))).astype(np.float32)
    clips[:, (3 * spec.clip_samples) // 4 :] = 0.0
    return clips


def export_model(model: SpeechClassifier, metadata: dict, fmt: str, out: str | Path, source_sha256: str = "") -> ExportResult:
    """Write `model` (from a checkpoint with `metadata`) to the folder `out` in format `fmt`."""
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r}: valid formats are {', '.join(FORMATS)}")
    spec = FeatureSpec(**metadata["feature_spec"])
    labels = list(metadata["label_names"])
    model = model.cpu().eval()
    writer = {"onnx": write_onnx, "torchscript": write_torchscript, "hf": write_hf}[fmt]
    probe = probe_waveforms(spec)
    expected = toolkit_logits(model, probe, spec)
    out = Path(out)
    with atomic_directory(out) as building, quiet_transformers():
        run_exported = writer(model, spec, labels, building)
        difference = float(np.abs(run_exported(probe) - expected).max())
        if not difference <= TOLERANCE:
            raise ExportError(f"the {fmt} export differs from the toolkit by {difference:.2e} (> {TOLERANCE:g}); not written")
        (building / LABELS_FILE).write_text(json.dumps(labels, indent=2) + "\n", encoding="utf-8")
        report = {
            "format": fmt,
            "source_checkpoint_sha256": source_sha256,
            "model": metadata["model"]["name"],
            "input": {"kind": "waveform", "sample_rate": spec.sample_rate, "clip_samples": spec.clip_samples,
                      "note": input_note(fmt)},
            "labels": labels,
            "check": {"max_abs_logit_difference": difference, "tolerance": TOLERANCE, "probe_clips": PROBE_CLIPS},
        }  # fmt: skip
        (building / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        files = sorted(path.name for path in building.iterdir())
    return ExportResult(out, files, difference)


def input_note(fmt: str) -> str:
    if fmt == "hf":
        return "16 kHz mono through the saved feature extractor; pad or crop clips to clip_samples first"
    return "16 kHz mono float32 (batch, samples); the graph pads or crops to clip_samples itself"


# --- ONNX and TorchScript ------------------------------------------------------------------------


def write_onnx(model: SpeechClassifier, spec: FeatureSpec, labels: list[str], folder: Path) -> Callable:
    import onnxruntime

    graph = WaveformGraph(model, spec).eval()
    example = torch.from_numpy(probe_waveforms(spec))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer notes on shape arithmetic inside transformers
        # Traced first: the ONNX exporter's own tracer cannot enter an imported TorchScript module.
        traced = torch.jit.trace(graph, (example,), check_trace=False)
        torch.onnx.export(
            traced, (example,), str(folder / ONNX_FILE), dynamo=False, opset_version=OPSET,
            input_names=["waveform"], output_names=["logits"],
            dynamic_axes={"waveform": {0: "batch", 1: "samples"}, "logits": {0: "batch"}},
        )  # fmt: skip
    session = onnxruntime.InferenceSession(str(folder / ONNX_FILE), providers=["CPUExecutionProvider"])
    return lambda waveforms: session.run(None, {"waveform": waveforms})[0]


def write_torchscript(model: SpeechClassifier, spec: FeatureSpec, labels: list[str], folder: Path) -> Callable:
    graph = WaveformGraph(model, spec).eval()
    example = torch.from_numpy(probe_waveforms(spec))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer notes, and TorchScript's upstream deprecation
        traced = torch.jit.trace(graph, (example,), check_trace=False)
        traced.save(str(folder / TORCHSCRIPT_FILE))
        loaded = torch.jit.load(str(folder / TORCHSCRIPT_FILE))

    def run(waveforms: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return loaded(torch.from_numpy(waveforms)).numpy()

    return run


# --- transformers ----------------------------------------------------------------------------------


def write_hf(model: SpeechClassifier, spec: FeatureSpec, labels: list[str], folder: Path) -> Callable:
    if isinstance(model, HFAudioClassifier):
        network, extractor = hf_network(model), feature_extractor_object(model)
    else:
        network, extractor = registry_backbone_as_hf(model, spec, labels)
    network.save_pretrained(str(folder))
    extractor.save_pretrained(str(folder))
    return hf_runner(folder)


def hf_runner(folder: Path) -> Callable:
    """Logits of the saved folder, loaded back through transformers with its feature extractor."""
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    network = AutoModelForAudioClassification.from_pretrained(str(folder), use_safetensors=True).eval()
    extractor = AutoFeatureExtractor.from_pretrained(str(folder))

    def run(waveforms: np.ndarray) -> np.ndarray:
        inputs = extractor(list(waveforms), sampling_rate=extractor.sampling_rate, return_tensors="pt")
        with torch.no_grad():
            return network(**inputs).logits.numpy()

    return run


def registry_backbone_as_hf(model: SpeechClassifier, spec: FeatureSpec, labels: list[str]) -> tuple[nn.Module, object]:
    """A registry transformer model as the transformers classifier computing the same function."""
    from .transformer import TransformerClassifier

    if not isinstance(model, TransformerClassifier):
        name = getattr(model, "build_args", {}).get("name", type(model).__name__)
        raise ExportError(f"{name} is not a transformers architecture; export it with --format onnx or torchscript")
    import transformers

    family = model.family
    backbone_config = model.backbone.config.to_dict()
    label_maps = {"id2label": dict(enumerate(labels)), "label2id": {name: i for i, name in enumerate(labels)}}
    common = {**backbone_config, **label_maps, "num_labels": len(labels), "use_weighted_layer_sum": False,
              "classifier_proj_size": model.embedding_dim}  # fmt: skip
    if family == "whisper":
        if spec.clip_samples % spec.sample_rate:
            raise ExportError(f"Whisper's feature extractor pads to whole seconds; this model reads {spec.clip_seconds:g} s clips")
        config = transformers.WhisperConfig.from_dict(common)
        network = transformers.WhisperForAudioClassification(config)
        extractor = transformers.WhisperFeatureExtractor(
            feature_size=config.num_mel_bins, chunk_length=spec.clip_samples // spec.sample_rate
        )
        base = "encoder"
    else:
        config_class = transformers.Wav2Vec2Config if family == "wav2vec2" else transformers.HubertConfig
        model_class = (transformers.Wav2Vec2ForSequenceClassification if family == "wav2vec2"
                       else transformers.HubertForSequenceClassification)  # fmt: skip
        network = model_class(config_class.from_dict(common))
        extractor = transformers.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False)
        base = network.base_model_prefix
    state = {f"{base}.{name}": tensor for name, tensor in model.backbone.state_dict().items()}
    state["projector.weight"] = torch.eye(model.embedding_dim)  # mean pooling commutes with the identity
    state["projector.bias"] = torch.zeros(model.embedding_dim)
    state.update({f"classifier.{name}": tensor for name, tensor in model.head.state_dict().items()})
    network.load_state_dict(state, strict=True)
    network.config.architectures = [type(network).__name__]
    return network.eval(), extractor
