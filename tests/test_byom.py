"""Bring your own model and data: Hugging Face and PyTorch imports, manifest and `datasets`
corpora, export to hf / ONNX / TorchScript, `predict`, and the GPU benchmark script on CPU.

Every model is tiny and random (tests/byom_models.py); the audio is real FSDD speech. The
imported models are checked against transformers itself (logits from its own feature extractor
and forward), and every export against the toolkit by running the exported artefact.
"""

from __future__ import annotations

import contextlib
import csv
import importlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from byom_models import save_classifier, save_pretrained_base, tiny_classifier
from speech_unlearning.cli.main import main
from speech_unlearning.config import ConfigError
from speech_unlearning.data.audio import AudioError, fit_length, read_wav
from speech_unlearning.data.corpus import CorpusError
from speech_unlearning.data.features import FeatureSpec, feature_spec_for, featurise, load_features
from speech_unlearning.data.loaders import load_corpus
from speech_unlearning.methods import METHODS, unlearn
from speech_unlearning.methods.base import dataclass_fields
from speech_unlearning.models import plain, registry
from speech_unlearning.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from speech_unlearning.models.export import ExportError, export_model
from speech_unlearning.models.hf_classifier import ARCHITECTURES, HFImportError, hf_network
from speech_unlearning.models.hf_import import import_hf_classifier
from speech_unlearning.models.registry import create_model
from speech_unlearning.training.config import TrainConfig
from speech_unlearning.training.data import ArrayData
from speech_unlearning.training.recipes import checkpoint_metadata

DIGIT_WORDS = {"0": "zero", "1": "one", "2": "two"}
SPEAKERS = ("george", "jackson", "theo")
TAKES = {10: "train", 11: "train", 12: "train", 5: "validation", 0: "test"}
MODEL_ORDER = ["two", "zero", "one"]  # the deployed models' output order, not the corpus's (sorted)
LENIENT = [
    "--threshold", "forget_tolerance_pp=100", "--threshold", "mia_tolerance_pp=50",
    "--threshold", "max_test_drop_pp=100", "--threshold", "max_remaining_drop_pp=100",
]  # fmt: skip
TOLERANCE = 1e-4  # logits are O(1) (byom_models.LOGIT_SCALE)
ONE_EPOCH = TrainConfig(epochs=1, batch_size=8, lr=1e-3, patience=0, progress=False, threads=1)
# Deployed TorchScript models are still made and run with torch.jit, which torch now calls deprecated.
pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning"),
]


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """The real CLI in this process: (exit code, stdout, stderr)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = main([str(arg) for arg in argv])
    return status, stdout.getvalue(), stderr.getvalue()


def write_manifest(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "speaker", "split"])
        writer.writerows(rows)
    return path


def fsdd_rows(fsdd_root: Path) -> list[list[str]]:
    """45 real recordings: digits 0-2 by three speakers, three training takes, one validation, one test."""
    return [
        [str(fsdd_root / "recordings" / f"{digit}_{speaker}_{take}.wav"), word, speaker, split]
        for digit, word in DIGIT_WORDS.items()
        for speaker in SPEAKERS
        for take, split in TAKES.items()
    ]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("byom")


@pytest.fixture(scope="module")
def manifest(workspace, fsdd_root) -> Path:
    return write_manifest(workspace / "clips.csv", fsdd_rows(fsdd_root))


@pytest.fixture(scope="module")
def corpus(manifest, cache_dir):
    return load_corpus(f"manifest:{manifest}", "kws", cache_dir=cache_dir)


@pytest.fixture(scope="module")
def waveforms(corpus, cache_dir) -> np.ndarray:
    """(N, 16000) clips of the manifest corpus, as the toolkit feeds waveform models."""
    return np.asarray(load_features(corpus, feature_spec_for(corpus, "waveform"), cache_dir, progress=False))


@pytest.fixture(scope="module")
def hf_folders(workspace) -> dict[str, Path]:
    """Deployed tiny classifiers (labels in MODEL_ORDER) and the pretrained base they were tuned from."""
    folders = {"base": workspace / "wav2vec2-base"}
    save_pretrained_base(folders["base"])
    for name, architecture in (("wav2vec2", "Wav2Vec2ForSequenceClassification"), ("whisper", "WhisperForAudioClassification")):
        folders[name] = workspace / f"deployed-{name}"
        save_classifier(folders[name], architecture, MODEL_ORDER)
    return folders


def toolkit_logits(model, inputs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.eval()(torch.tensor(np.asarray(inputs))).numpy()


def transformers_logits(network, extractor, clips: np.ndarray) -> np.ndarray:
    inputs = extractor(list(clips), sampling_rate=16_000, return_tensors="pt")
    with torch.no_grad():
        return network.eval()(**inputs).logits.numpy()


def corpus_order(logits_in_model_order: np.ndarray, corpus) -> np.ndarray:
    return logits_in_model_order[:, [MODEL_ORDER.index(name) for name in corpus.label_names]]


# --- importing Hugging Face classifiers --------------------------------------------------------------


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_an_imported_classifier_computes_what_transformers_computes(architecture, corpus, waveforms, tmp_path):
    torch.manual_seed(0)
    network, extractor = tiny_classifier(architecture, MODEL_ORDER)
    network.save_pretrained(tmp_path)
    extractor.save_pretrained(tmp_path)
    model = import_hf_classifier(tmp_path, corpus.label_names)
    clips = waveforms[:4]
    expected = corpus_order(transformers_logits(network, extractor, clips), corpus)
    assert np.abs(toolkit_logits(model, clips) - expected).max() < TOLERANCE
    # The weights go back out unchanged, the head's rows in the corpus's order.
    order = [MODEL_ORDER.index(name) for name in corpus.label_names]
    exported = hf_network(model).state_dict()
    for name, tensor in network.state_dict().items():
        is_head = name.startswith("classifier") and "layernorm" not in name
        assert torch.equal(exported[name], tensor[order] if is_head else tensor), name
    assert model.head.weight.shape == (3, model.embedding_dim)
    assert np.allclose(model.head(model.embed(torch.tensor(clips))).detach().numpy(), expected, atol=TOLERANCE)


def test_weighted_layer_sum_classifiers_are_reproduced(corpus, waveforms, tmp_path):
    torch.manual_seed(0)
    network, extractor = tiny_classifier("HubertForSequenceClassification", MODEL_ORDER, use_weighted_layer_sum=True)
    with torch.no_grad():
        network.layer_weights.copy_(torch.tensor([0.5, -1.0, 2.0]))  # not the uniform start
    network.save_pretrained(tmp_path)
    extractor.save_pretrained(tmp_path)
    model = import_hf_classifier(tmp_path, corpus.label_names)
    expected = corpus_order(transformers_logits(network, extractor, waveforms[:3]), corpus)
    assert np.abs(toolkit_logits(model, waveforms[:3]) - expected).max() < TOLERANCE


def test_labels_that_differ_are_refused_listing_both_sides(corpus, tmp_path):
    save_classifier(tmp_path, "Wav2Vec2ForSequenceClassification", ["zero", "one", "three"])
    with pytest.raises(HFImportError) as error:
        import_hf_classifier(tmp_path, corpus.label_names)
    message = str(error.value)
    assert "model (3): zero, one, three" in message and "corpus (3): one, two, zero" in message
    assert "only in the model: three" in message and "only in the corpus: two" in message


def test_incomplete_folders_are_refused_naming_what_is_missing(corpus, tmp_path):
    network = save_classifier(tmp_path / "deployed", "Wav2Vec2ForSequenceClassification", MODEL_ORDER)
    pickled = tmp_path / "pickled"  # the same model with pickled weights only: never unpickled
    pickled.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        (pickled / name).write_bytes((tmp_path / "deployed" / name).read_bytes())
    torch.save(network.state_dict(), pickled / "pytorch_model.bin")
    with pytest.raises(HFImportError, match="missing model.safetensors \\(a pickled pytorch_model.bin is not read\\)"):
        import_hf_classifier(pickled, corpus.label_names)
    (tmp_path / "deployed" / "preprocessor_config.json").unlink()
    with pytest.raises(HFImportError, match="missing preprocessor_config.json"):
        import_hf_classifier(tmp_path / "deployed", corpus.label_names)


def test_an_unsupported_architecture_lists_the_supported_ones(corpus, tmp_path):
    save_pretrained_base(tmp_path)  # a base model: no classification head
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"feature_extractor_type": "Wav2Vec2FeatureExtractor"}))
    with pytest.raises(HFImportError, match="Wav2Vec2Model is not a supported audio classifier; supported: AST"):
        import_hf_classifier(tmp_path, corpus.label_names)


def test_retrain_starts_from_the_recorded_pretrained_encoder(corpus, hf_folders):
    from transformers import Wav2Vec2Model

    model = import_hf_classifier(hf_folders["wav2vec2"], corpus.label_names, init=str(hf_folders["base"]))
    torch.manual_seed(0)
    start = model.starting_point()
    base = Wav2Vec2Model.from_pretrained(hf_folders["base"])
    for name, tensor in base.state_dict().items():
        assert torch.equal(start.encoder.state_dict()[name], tensor), name  # the pretrained encoder ...
    assert not torch.equal(start.head.weight, model.head.weight)  # ... under a fresh head
    assert not torch.equal(start.encoder.encoder.layers[0].attention.k_proj.weight,
                           model.encoder.encoder.layers[0].attention.k_proj.weight)  # fmt: skip


def test_an_imported_checkpoint_reloads_with_identical_outputs(corpus, hf_folders, waveforms, tmp_path):
    model = import_hf_classifier(hf_folders["whisper"], corpus.label_names, init="scratch")
    metadata = checkpoint_metadata(corpus, feature_spec_for(corpus, "waveform"), model, ONE_EPOCH, {})
    save_checkpoint(tmp_path / "ckpt", model, metadata)
    loaded, stored = load_checkpoint(tmp_path / "ckpt", expect_label_names=corpus.label_names)
    assert np.array_equal(toolkit_logits(loaded, waveforms[:3]), toolkit_logits(model, waveforms[:3]))
    assert stored["model"]["options"]["config"]["id2label"] == {"0": "one", "1": "two", "2": "zero"}
    assert sorted(path.name for path in (tmp_path / "ckpt").iterdir()) == ["metadata.json", "model.safetensors"]


def test_retrain_without_a_recorded_starting_point_says_how_to_record_one(corpus, hf_folders):
    model = import_hf_classifier(hf_folders["wav2vec2"], corpus.label_names)
    with pytest.raises(ConfigError, match="--init DIR .* or --init scratch"):
        model.starting_point()


def test_every_method_unlearns_an_imported_classifier(corpus, hf_folders, cache_dir):
    """Parametrizing would rebuild the inputs per method; one loop keeps this test a few seconds."""
    from transformers import Wav2Vec2Model

    spec = feature_spec_for(corpus, "waveform")
    features = load_features(corpus, spec, cache_dir, progress=False)
    george = np.flatnonzero((corpus.speakers == "george") & np.isin(np.arange(len(corpus)), corpus.indices("train")))
    forget = ArrayData(features, corpus.labels, george)
    retain = ArrayData(features, corpus.labels, np.setdiff1d(corpus.indices("train"), george))
    validation = ArrayData(features, corpus.labels, corpus.indices("validation"))
    original = import_hf_classifier(hf_folders["wav2vec2"], corpus.label_names, init=str(hf_folders["base"]))
    before = {name: tensor.clone() for name, tensor in original.state_dict().items()}
    base_front_end = Wav2Vec2Model.from_pretrained(hf_folders["base"]).feature_extractor.state_dict()
    probe = torch.from_numpy(np.asarray(features[corpus.indices("test")]))
    for name in METHODS.names():
        fields = dataclass_fields(METHODS.get(name).config_class)
        # pull_tolerance 0: Calibrated would otherwise stop at once, finding Df already like unseen data.
        overrides = {key: value for key, value in {"batch_size": 8, "pull_tolerance": 0.0}.items() if key in fields}
        result = unlearn(name, original, forget, retain, overrides=overrides, seed=0, validation=validation,
                         train_config=ONE_EPOCH, budget_steps=3)  # fmt: skip
        after = result.model.state_dict()
        assert result.steps > 0 and any(not torch.equal(after[key], before[key]) for key in before), name
        if name == "retrain":  # from the recorded pretrained encoder: its frozen front end is the base model's
            start = result.model.encoder.feature_extractor.state_dict()
            assert all(torch.equal(start[key], base_front_end[key]) for key in base_front_end)
            assert not all(torch.equal(start[key], original.encoder.feature_extractor.state_dict()[key]) for key in start)
        with torch.no_grad():
            assert torch.isfinite(result.model(probe)).all(), name
    assert all(torch.equal(original.state_dict()[key], before[key]) for key in before)  # never modified


# --- the whole path on the command line ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["wav2vec2", "whisper"])
def test_import_forget_export_predict(kind, hf_folders, manifest, corpus, waveforms, cache_dir, workspace, fsdd_root):
    """Import a deployed classifier, unlearn a speaker from a manifest corpus, export to ONNX and
    hf, and check both exports against the toolkit's own logits on real recordings."""
    import onnxruntime
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    run = workspace / f"run-{kind}"
    init = hf_folders["base"] if kind == "wav2vec2" else "scratch"
    common = ["--cache-dir", cache_dir, "--no-progress"]
    status, out, err = run_cli(["import", "--hf", hf_folders[kind], "--data", f"manifest:{manifest}", "--task", "kws",
                                "--init", init, "--out", run / "imported", *common])  # fmt: skip
    assert status == 0, err
    assert "3 classes of manifest-clips-kws" in out
    status, out, err = run_cli(["forget", "--checkpoint", run / "imported", "--out", run / "forgot", "--speaker", "george",
                                "--method", "neggrad+", "--set", "epochs=1", "--verify-retrain", *LENIENT, *common])  # fmt: skip
    assert status == 0, err + out
    assert "9 training item(s)" in out
    forgotten, metadata = load_checkpoint(run / "forgot", expect_label_names=corpus.label_names)
    assert [entry["method"] for entry in metadata["history"]] == ["neggrad+"]
    status, out, err = run_cli(["evaluate", "--checkpoint", run / "forgot", "--original", run / "imported",
                                "--out", run / "report", "--cache-dir", cache_dir, "--no-progress"])  # fmt: skip
    assert status == 0, err
    report = json.loads((run / "report" / "report.json").read_text())
    assert {"accuracy", "loss_mia", "probe", "relearn"} <= set(report["metrics"]) - set(report["skipped"])
    for fmt in ("onnx", "hf"):
        status, out, err = run_cli(["export", run / "forgot", "--format", fmt, "--out", run / fmt])
        assert status == 0, err
    test_rows = corpus.indices("test")
    expected = toolkit_logits(forgotten, waveforms[test_rows])
    # ONNX: the raw recordings, unpadded; the graph pads them to 1 s itself.
    session = onnxruntime.InferenceSession(str(run / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    for row, logits in zip(test_rows, expected):
        recording = read_wav(corpus.utterances[row].path)[None, :]
        assert np.abs(session.run(None, {"waveform": recording})[0][0] - logits).max() < TOLERANCE
    network = AutoModelForAudioClassification.from_pretrained(run / "hf")
    extractor = AutoFeatureExtractor.from_pretrained(run / "hf")
    assert network.config.id2label == dict(enumerate(corpus.label_names))
    assert np.abs(transformers_logits(network, extractor, waveforms[test_rows]) - expected).max() < TOLERANCE
    assert json.loads((run / "onnx" / "labels.json").read_text()) == list(corpus.label_names)
    # predict: the label and confidence of the toolkit's own forward pass.
    files = [corpus.utterances[row].path for row in test_rows[:3]]
    status, out, err = run_cli(["predict", run / "forgot", *files, "--json", "--top", "3"])
    assert status == 0, err
    probabilities = torch.softmax(torch.from_numpy(expected[:3]), dim=1).numpy()
    for record, row in zip(json.loads(out), probabilities):
        assert record["label"] == corpus.label_names[row.argmax()]
        assert record["confidence"] == pytest.approx(row.max(), abs=1e-5)
        assert [entry["label"] for entry in record["top"]] == [corpus.label_names[i] for i in np.argsort(-row)]


def test_torchscript_model_is_imported_and_forgets(manifest, corpus, cache_dir, workspace, monkeypatch):
    from byom_models import LogMelKeywordSpotter

    torch.manual_seed(0)
    archive = workspace / "kws.torchscript"
    torch.jit.script(LogMelKeywordSpotter(classes=3)).save(str(archive))
    run = workspace / "run-torchscript"
    common = ["--cache-dir", cache_dir, "--no-progress"]
    status, out, err = run_cli(["import", "--torchscript", archive, "--input", "logmel", "--labels", ",".join(MODEL_ORDER),
                                "--data", f"manifest:{manifest}", "--task", "kws", "--init", "scratch",
                                "--out", run / "imported", *common])  # fmt: skip
    assert status == 0, err
    assert "SPEECH_UNLEARNING_TRUSTED_CODE=" in err
    status, out, err = run_cli(["forget", "--checkpoint", run / "imported", "--out", run / "forgot", "--speaker", "theo",
                                "--method", "scrub", "--set", "epochs=2", "--set", "max_steps=1", "--verify-retrain", *LENIENT, *common])  # fmt: skip
    assert status == 0, err + out
    assert (run / "forgot" / "module.torchscript").read_bytes() == archive.read_bytes()
    imported, _ = load_checkpoint(run / "imported")
    forgotten, _ = load_checkpoint(run / "forgot")
    assert any(not torch.equal(a, b) for a, b in zip(imported.state_dict().values(), forgotten.state_dict().values()))
    # unlearn and evaluate read it as any checkpoint (the probe uses the archive's exported `embed`).
    status, out, err = run_cli(["unlearn", "--checkpoint", run / "forgot", "--method", "gradascent", "--set", "epochs=1",
                                "--forget-speaker", "jackson", "--out", run / "unlearned", *common])  # fmt: skip
    assert status == 0, err
    status, out, err = run_cli(["evaluate", "--checkpoint", run / "unlearned", "--original", run / "forgot",
                                "--out", run / "report", "--cache-dir", cache_dir, "--no-progress"])  # fmt: skip
    assert status == 0, err
    report = json.loads((run / "report" / "report.json").read_text())
    assert {"probe", "relearn", "svc_mia"} <= set(report["metrics"]) - set(report["skipped"])
    assert 0 <= report["models"]["unlearned"]["probe"]["auc"] <= 1
    status, out, err = run_cli(["export", run / "unlearned", "--format", "onnx", "--out", run / "onnx"])
    assert status == 0, err
    assert json.loads((run / "onnx" / "export.json").read_text())["check"]["max_abs_logit_difference"] < TOLERANCE
    # In a new process nothing is trusted: loading runs the archive's code only once allowed.
    monkeypatch.setattr(plain, "TRUSTED_IN_PROCESS", set())
    monkeypatch.setattr(registry, "MODEL_FILES", {})
    monkeypatch.delenv(plain.TRUST_VARIABLE, raising=False)
    digest = forgotten.build_args["options"]["archive_sha256"]
    with pytest.raises(CheckpointError, match=f"SPEECH_UNLEARNING_TRUSTED_CODE={digest}"):
        load_checkpoint(run / "forgot")
    monkeypatch.setenv(plain.TRUST_VARIABLE, f"something-else,{digest}")
    reloaded, _ = load_checkpoint(run / "forgot")
    features = load_features(corpus, feature_spec_for(corpus, "logmel"), cache_dir, progress=False)
    inputs = np.asarray(features[:5])
    assert np.array_equal(toolkit_logits(reloaded, inputs), toolkit_logits(forgotten, inputs))


def test_torchscript_checkpoints_refuse_a_changed_archive(corpus, tmp_path):
    from byom_models import LogMelKeywordSpotter

    torch.jit.script(LogMelKeywordSpotter(classes=3)).save(str(tmp_path / "kws.pt"))
    spec = feature_spec_for(corpus, "logmel")
    model = plain.import_torchscript(tmp_path / "kws.pt", corpus.label_names, spec.shape, "logmel", MODEL_ORDER)
    save_checkpoint(tmp_path / "ckpt", model, checkpoint_metadata(corpus, spec, model, ONE_EPOCH, {}))
    assert sorted(path.name for path in (tmp_path / "ckpt").iterdir()) == ["metadata.json", "model.safetensors", "module.torchscript"]
    (tmp_path / "ckpt" / "module.torchscript").write_bytes(b"not the archive")
    with pytest.raises(CheckpointError, match="module.torchscript has sha256 .* the file was changed or corrupted"):
        load_checkpoint(tmp_path / "ckpt")


def test_factory_model_with_weights_is_imported_retrained_and_predicts(manifest, corpus, cache_dir, workspace, tmp_path):
    from safetensors.torch import save_file

    from byom_models import build_waveform_classifier

    torch.manual_seed(3)
    network = build_waveform_classifier(classes=3)
    save_file({name: tensor.contiguous() for name, tensor in network.state_dict().items()}, str(tmp_path / "w.safetensors"))
    (tmp_path / "labels.txt").write_text("# output order\n" + "\n".join(MODEL_ORDER) + "\n")
    status, out, err = run_cli(["import", "--torch-factory", "byom_models:build_waveform_classifier",
                                "--factory-args", '{"classes": 3}', "--weights", tmp_path / "w.safetensors",
                                "--input", "waveform", "--labels-file", tmp_path / "labels.txt",
                                "--data", f"manifest:{manifest}", "--task", "kws", "--init", "scratch",
                                "--out", tmp_path / "ckpt", "--cache-dir", cache_dir, "--no-progress"])  # fmt: skip
    assert status == 0, err
    model, metadata = load_checkpoint(tmp_path / "ckpt")
    assert metadata["model"]["options"]["factory"] == "byom_models:build_waveform_classifier"
    recording = fit_length(read_wav(corpus.utterances[0].path), 16_000)[None, :]
    with torch.no_grad():
        expected = network(torch.from_numpy(recording)).numpy()[0]
    assert np.allclose(toolkit_logits(model, recording)[0], expected[[MODEL_ORDER.index(n) for n in corpus.label_names]])
    assert model.embed(torch.from_numpy(recording)).shape == (1, 8)  # the head's input, hooked
    start = model.starting_point()  # "scratch": the factory builds a fresh model
    assert not torch.equal(start.head.weight, model.head.weight)
    status, out, err = run_cli(["predict", tmp_path / "ckpt", corpus.utterances[0].path])
    assert status == 0 and out.split("\t")[1] == corpus.label_names[int(np.argmax(toolkit_logits(model, recording)))]


def test_plain_model_labels_must_match(manifest, cache_dir, workspace, tmp_path):
    from byom_models import LogMelKeywordSpotter

    torch.jit.script(LogMelKeywordSpotter(classes=3)).save(str(tmp_path / "kws.pt"))
    status, out, err = run_cli(["import", "--torchscript", tmp_path / "kws.pt", "--input", "logmel", "--labels", "a,b,c",
                                "--data", f"manifest:{manifest}", "--task", "kws", "--out", tmp_path / "ckpt",
                                "--cache-dir", cache_dir, "--no-progress"])  # fmt: skip
    assert status == 2
    assert "model (3): a, b, c" in err and "corpus (3): one, two, zero" in err
    assert not (tmp_path / "ckpt").exists()


# --- exporting and predicting with the toolkit's own models ---------------------------------------------


# The registry's keyword CNNs, small enough to export in a second.
SMALL_LOG_MEL_MODELS = {"kws-resnet": {"channels": 8, "blocks": 1}, "kws-tcresnet": {"width": 0.5}}


def small_checkpoint(name: str, corpus, workspace) -> Path:
    torch.manual_seed(0)
    model = create_model(name, corpus.num_classes, **SMALL_LOG_MEL_MODELS[name])
    spec = feature_spec_for(corpus, "logmel")
    metadata = checkpoint_metadata(corpus, spec, model, ONE_EPOCH, {}, corpus_spec="manifest")
    return save_checkpoint(workspace / name, model.eval(), metadata)


@pytest.fixture(scope="module")
def kws_resnet_checkpoint(corpus, workspace):
    return small_checkpoint("kws-resnet", corpus, workspace)


@pytest.mark.parametrize("name", sorted(SMALL_LOG_MEL_MODELS))
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_a_log_mel_model_exports_with_its_front_end_inside(fmt, name, corpus, workspace, waveforms, tmp_path):
    model, metadata = load_checkpoint(small_checkpoint(name, corpus, workspace))
    result = export_model(model, metadata, fmt, tmp_path / fmt)
    spec = FeatureSpec(**metadata["feature_spec"])
    expected = toolkit_logits(model, featurise(np.array(waveforms[:6]), spec))  # the NumPy front end, outside
    recordings = [read_wav(u.path)[None, :] for u in corpus.utterances[:6]]  # unpadded, some longer than 1 s
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(result.folder / "model.onnx"), providers=["CPUExecutionProvider"])
        exported = np.concatenate([session.run(None, {"waveform": r})[0] for r in recordings])
    else:
        graph = torch.jit.load(str(result.folder / "model.torchscript"))
        with torch.no_grad():
            exported = np.concatenate([graph(torch.from_numpy(r)).numpy() for r in recordings])
    assert np.abs(exported - expected).max() < TOLERANCE
    assert json.loads((result.folder / "export.json").read_text())["check"]["max_abs_logit_difference"] < TOLERANCE


def test_hf_export_of_a_non_transformer_model_says_which_formats_work(kws_resnet_checkpoint, tmp_path):
    model, metadata = load_checkpoint(kws_resnet_checkpoint)
    with pytest.raises(ExportError, match="not a transformers architecture; export it with --format onnx or torchscript"):
        export_model(model, metadata, "hf", tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


@pytest.mark.parametrize("name", ["tiny-wav2vec2", "tiny-whisper"])
def test_registry_transformers_export_as_hf_classifiers(name, corpus, waveforms, tmp_path):
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    torch.manual_seed(0)
    model = create_model(name, corpus.num_classes).eval()
    metadata = checkpoint_metadata(corpus, feature_spec_for(corpus, "waveform"), model, ONE_EPOCH, {})
    export_model(model, metadata, "hf", tmp_path)
    network = AutoModelForAudioClassification.from_pretrained(tmp_path)
    extractor = AutoFeatureExtractor.from_pretrained(tmp_path)
    expected = toolkit_logits(model, waveforms[:4])
    assert np.abs(transformers_logits(network, extractor, waveforms[:4]) - expected).max() < 1e-4


def test_predict_prints_label_and_confidence_of_a_trained_checkpoint(kws_resnet_checkpoint, corpus, cache_dir):
    model, _ = load_checkpoint(kws_resnet_checkpoint)
    features = load_features(corpus, feature_spec_for(corpus, "logmel"), cache_dir, progress=False)
    rows = [0, 7, 20]
    probabilities = torch.softmax(torch.from_numpy(toolkit_logits(model, np.asarray(features[rows]))), dim=1).numpy()
    status, out, err = run_cli(["predict", kws_resnet_checkpoint, *[corpus.utterances[r].path for r in rows]])
    assert status == 0, err
    for line, row in zip(out.strip().splitlines(), probabilities):
        path, label, confidence = line.split("\t")
        assert label == corpus.label_names[row.argmax()] and float(confidence) == pytest.approx(row.max(), abs=1e-4)


def test_predict_names_an_unreadable_file(kws_resnet_checkpoint, tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....not audio")
    status, out, err = run_cli(["predict", kws_resnet_checkpoint, broken])
    assert status == 2 and str(broken) in err and "not a readable audio file" in err


# --- your own data: manifests ------------------------------------------------------------------------------


def write_tone(path: Path, frequency: float, rate: int = 16_000, seconds: float = 0.5) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    time = np.arange(int(rate * seconds)) / rate
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * frequency * time)).astype(np.float32), rate)
    return path


@pytest.fixture
def tone_manifest(tmp_path) -> Path:
    """Six generated recordings listed with paths relative to the manifest, one at 8 kHz in FLAC."""
    rows = []
    for index, (label, speaker, split) in enumerate(
        [("up", "ann", "train"), ("down", "ann", "train"), ("up", "bo", "train"), ("down", "bo", "validation"),
         ("up", "cy", "test"), ("down", "cy", "test")]
    ):  # fmt: skip
        name = f"audio/{speaker}/{label}_{index}.wav"
        write_tone(tmp_path / name, 300 + 100 * index)
        rows.append([name, label, speaker, split])
    write_tone(tmp_path / "audio/cy/up_8k.flac", 440, rate=8_000)
    rows.append(["audio/cy/up_8k.flac", "up", "cy", "train"])
    return write_manifest(tmp_path / "manifest.csv", rows)


def test_a_manifest_corpus_resolves_relative_paths_and_reads_any_format(tone_manifest, cache_dir):
    corpus = load_corpus(f"manifest:{tone_manifest}", "kws", cache_dir=cache_dir)
    assert corpus.label_names == ("down", "up")
    assert corpus.root == tone_manifest.parent
    assert corpus.utterances[0].utt_id == "audio/ann/up_0"
    assert corpus.utterances[0].path == str(tone_manifest.parent / "audio/ann/up_0.wav")
    assert list(corpus.speakers) == ["ann", "ann", "bo", "bo", "cy", "cy", "cy"]
    assert corpus.info["counts"] == {"train": 4, "validation": 1, "test": 2}
    features = load_features(corpus, feature_spec_for(corpus, "waveform"), cache_dir, progress=False)
    flac = np.asarray(features[-1])
    assert np.abs(flac[:8000]).max() > 0.2 and np.all(flac[8000:] == 0)  # 0.5 s at 8 kHz -> 8,000 samples at 16 kHz
    sid = load_corpus(f"manifest:{tone_manifest}", "sid", cache_dir=cache_dir)
    assert sid.label_names == ("ann", "bo", "cy") and sid.fingerprint != corpus.fingerprint


def test_a_manifest_fingerprint_follows_labels_and_splits(tone_manifest, cache_dir):
    first = load_corpus(f"manifest:{tone_manifest}", "kws", cache_dir=cache_dir)
    assert load_corpus(f"manifest:{tone_manifest}", "kws", cache_dir=cache_dir).fingerprint == first.fingerprint
    tone_manifest.write_text(tone_manifest.read_text().replace("up,bo,train", "up,bo,validation"))
    assert load_corpus(f"manifest:{tone_manifest}", "kws", cache_dir=cache_dir).fingerprint != first.fingerprint


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda text: text.replace("path,label", "file,label"), "missing column(s) path"),
        (lambda text: text.replace("up,bo,train", "up,bo,dev"), "line 4: unknown split 'dev'; valid splits: train, validation, test"),
        (lambda text: text.replace("up,bo,train", "up,,train"), "line 4: empty speaker"),
        (lambda text: text.replace("audio/bo/up_2.wav", "audio/bo/missing.wav"), "line 4: audio file not found"),
        (lambda text: text + "audio/ann/up_0.wav,up,ann,train\n", "line 9: audio/ann/up_0.wav is already listed on line 2"),
    ],
)  # fmt: skip
def test_a_bad_manifest_is_refused_naming_the_line(edit, message, tone_manifest, cache_dir):
    tone_manifest.write_text(edit(tone_manifest.read_text()))
    with pytest.raises(CorpusError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_corpus(f"manifest:{tone_manifest}", "kws", cache_dir=cache_dir)


def test_a_corrupt_recording_is_named_when_its_features_are_computed(tone_manifest, cache_dir):
    (tone_manifest.parent / "audio/bo/up_2.wav").write_bytes(b"RIFF\x00\x00garbage")
    corpus = load_corpus(f"manifest:{tone_manifest}", "kws", cache_dir=cache_dir)
    with pytest.raises(AudioError, match="up_2.wav: not a readable audio file"):
        load_features(corpus, feature_spec_for(corpus, "logmel"), cache_dir, progress=False)


# --- your own data: Hugging Face datasets folders -------------------------------------------------------


def save_dataset(folder: Path, rows: list[list[str]], splits: bool = True, embed: bool = True) -> None:
    """A save_to_disk folder of FSDD rows: ClassLabel labels, speakers, and the audio as an Audio
    column holding the files' bytes, or (embed=False) a plain {bytes, path} column holding paths
    only, as datasets written without embedding have (save_to_disk embeds Audio columns' files)."""
    from datasets import Audio, ClassLabel, Dataset, DatasetDict

    def table(chosen):
        audio = [{"bytes": Path(p).read_bytes() if embed else None, "path": p if not embed else Path(p).name} for p, *_ in chosen]
        data = {"audio": audio, "label": [MODEL_ORDER.index(r[1]) for r in chosen], "speaker": [r[2] for r in chosen]}
        if not splits:
            data["split"] = [r[3] for r in chosen]
        dataset = Dataset.from_dict(data).cast_column("label", ClassLabel(names=MODEL_ORDER))
        return dataset.cast_column("audio", Audio()) if embed else dataset

    if splits:
        DatasetDict({name: table([r for r in rows if r[3] == name]) for name in ("train", "validation", "test")}).save_to_disk(folder)
    else:
        table(rows).save_to_disk(folder)


def test_a_datasets_folder_gives_the_same_clips_as_the_files(fsdd_root, corpus, waveforms, cache_dir, tmp_path):
    rows = fsdd_rows(fsdd_root)
    save_dataset(tmp_path / "ds", rows)
    hf = load_corpus(f"hf-dataset:{tmp_path / 'ds'}", "kws", cache_dir=cache_dir)
    assert hf.label_names == tuple(MODEL_ORDER)  # the ClassLabel's names, in its order
    assert hf.info["counts"] == corpus.info["counts"]
    hf_clips = load_features(hf, feature_spec_for(hf, "waveform"), cache_dir, progress=False)
    by_path = {Path(u.path).name: i for i, u in enumerate(corpus.utterances)}
    for position, utterance in enumerate(hf.utterances):
        row = [r for r in rows if r[3] == utterance.split][int(utterance.utt_id.split("/")[1])]
        source = by_path[Path(row[0]).name]
        assert np.array_equal(hf_clips[position], waveforms[source])
        assert hf.label_names[utterance.label] == corpus.label_names[corpus.labels[source]] == utterance.word
        assert utterance.speaker == corpus.utterances[source].speaker
    written = Path(hf.utterances[0].path).stat().st_mtime_ns
    again = load_corpus(f"hf-dataset:{tmp_path / 'ds'}", "kws", cache_dir=cache_dir)
    assert again.fingerprint == hf.fingerprint
    assert Path(again.utterances[0].path).stat().st_mtime_ns == written  # extracted once, then reused
    sid = load_corpus(f"hf-dataset:{tmp_path / 'ds'}", "sid", cache_dir=cache_dir)
    assert sid.label_names == SPEAKERS


def test_a_single_dataset_with_a_split_column_and_stored_paths(fsdd_root, cache_dir, tmp_path):
    rows = fsdd_rows(fsdd_root)[:10]
    save_dataset(tmp_path / "ds", rows, splits=False, embed=False)
    corpus = load_corpus(f"hf-dataset:{tmp_path / 'ds'}", "kws", cache_dir=cache_dir)
    assert [u.path for u in corpus.utterances if u.split == "train"] == [r[0] for r in rows if r[3] == "train"]
    Path(tmp_path / "gone.wav").write_bytes(Path(rows[0][0]).read_bytes())
    save_dataset(tmp_path / "moved", [[str(tmp_path / "gone.wav"), *rows[0][1:]]], splits=False, embed=False)
    (tmp_path / "gone.wav").unlink()
    with pytest.raises(CorpusError, match="split 'train' row 0: audio file not found: .*gone.wav"):
        load_corpus(f"hf-dataset:{tmp_path / 'moved'}", "kws", cache_dir=cache_dir)


def test_datasets_folders_with_other_split_names_are_refused(fsdd_root, cache_dir, tmp_path):
    from datasets import DatasetDict, load_from_disk

    save_dataset(tmp_path / "ds", fsdd_rows(fsdd_root)[:10])
    loaded = load_from_disk(tmp_path / "ds")
    DatasetDict({"train": loaded["train"], "dev": loaded["validation"]}).save_to_disk(tmp_path / "dev")
    with pytest.raises(CorpusError, match="unknown split\\(s\\) dev; valid splits: train, validation, test"):
        load_corpus(f"hf-dataset:{tmp_path / 'dev'}", "kws", cache_dir=cache_dir)
    with pytest.raises(CorpusError, match="not a datasets save_to_disk folder"):
        load_corpus(f"hf-dataset:{tmp_path}", "kws", cache_dir=cache_dir)


# --- the GPU benchmark script, tiny on the CPU --------------------------------------------------------------


def test_the_backbone_benchmark_times_a_training_and_an_unlearning_run_per_backbone(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        script = importlib.import_module("bench_backbones")
    finally:
        sys.path.pop(0)
    assert script.main(["--tiny", "--steps", "2", "--batch-size", "2", "--device", "cpu", "--json", str(tmp_path / "b.json")]) == 0
    report = json.loads((tmp_path / "b.json").read_text())
    runs = {(run["model"], run["phase"]): run for run in report["runs"]}
    assert set(runs) == {(name, phase) for name in script.transformer_names(tiny=True) for phase in ("train", "unlearn (neggrad+)")}
    for run in runs.values():
        assert run["steps"] == 2 and run["examples_per_second"] > 0 and run["peak_gpu_memory_mib"] is None
    assert {"whisper-tiny", "wav2vec2-base", "hubert-xlarge"} <= set(script.transformer_names(tiny=False))
