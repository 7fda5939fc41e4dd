"""The model registry: every CPU-testable entry trains on real FSDD clips; real sizes are checked on meta.

Parametrized over the registry, so a newly registered model is tested without new test code.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from speech_unlearning.config import ConfigError
from speech_unlearning.data.features import feature_spec_for, featurise, read_clip
from speech_unlearning.models import (
    cpu_testable_names,
    create_model,
    model_info,
    model_names,
    real_size_names,
    rebuild_model,
)
from speech_unlearning.registry import UnknownNameError

CPU_MODELS = cpu_testable_names()
REAL_MODELS = real_size_names()
TRANSFORMER_FAMILIES = ("whisper", "wav2vec2", "hubert")
CPU_TRANSFORMERS = [name for name in CPU_MODELS if model_info(name).family in TRANSFORMER_FAMILIES]

# Published parameter counts (encoder only for Whisper), with room for head / position-table details.
PUBLISHED_PARAMETERS = {
    "whisper-tiny": (7e6, 9e6),
    "whisper-base": (19e6, 22e6),
    "wav2vec2-base": (90e6, 100e6),
    "wav2vec2-large": (300e6, 330e6),
    "hubert-base": (90e6, 100e6),
    "hubert-large": (300e6, 330e6),
    "hubert-xlarge": (0.9e9, 1.05e9),
}
CLIPS_PER_DIGIT = 2
TRAIN_STEPS = 8


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """These batches are tiny: on a shared CPU, extra intra-op threads cost more than they save."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def fsdd_clips(fsdd_kws):
    """Twenty real FSDD training clips (2 per digit) as {input_kind: inputs} and their labels."""
    train = [fsdd_kws.utterances[i] for i in fsdd_kws.indices("train")]
    by_label = [[u for u in train if u.label == label] for label in range(fsdd_kws.num_classes)]
    chosen = [u for utterances in by_label for u in utterances[:CLIPS_PER_DIGIT]]
    inputs = {}
    # The real front end on just these clips; the full cached corpus would cost more than the tests.
    for kind in ("logmel", "waveform"):
        spec = feature_spec_for(fsdd_kws, kind)
        waveforms = np.stack([read_clip(u, spec) for u in chosen])  # (N, samples)
        inputs[kind] = torch.from_numpy(np.ascontiguousarray(featurise(waveforms, spec)))
    labels = torch.tensor([u.label for u in chosen])
    return inputs, labels, fsdd_kws.num_classes


def build(name: str, num_classes: int, **options) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(name, num_classes, **options)


def test_registry_has_small_and_tiny_models_for_the_cpu_suite():
    assert {"kws-resnet", "sid-xvector", "tiny-whisper", "tiny-wav2vec2", "tiny-hubert"} <= set(CPU_MODELS)
    assert set(CPU_MODELS).isdisjoint(REAL_MODELS)
    assert sorted(CPU_MODELS + REAL_MODELS) == model_names()


@pytest.mark.parametrize("name", CPU_MODELS)
def test_output_and_embedding_shapes(name, fsdd_clips):
    inputs, _, num_classes = fsdd_clips
    model = build(name, num_classes).eval()
    batch = inputs[model.input_kind][:4]
    with torch.no_grad():
        logits, embedding = model(batch), model.embed(batch)
    assert model.input_kind == model_info(name).input_kind
    assert logits.shape == (4, num_classes)
    assert embedding.shape == (4, model.embedding_dim)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", CPU_MODELS)
def test_every_trainable_parameter_gets_a_gradient(name, fsdd_clips):
    inputs, labels, num_classes = fsdd_clips
    model = build(name, num_classes).train()
    F.cross_entropy(model(inputs[model.input_kind]), labels).backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable
    silent = [n for n, p in trainable.items() if p.grad is None or not p.grad.abs().sum() > 0]
    assert silent == []


@pytest.mark.parametrize("name", CPU_MODELS)
def test_a_training_batch_of_one_clip_works(name, fsdd_clips):
    # A forget set can be a single recording; batch statistics must not make that fail.
    inputs, labels, num_classes = fsdd_clips
    model = build(name, num_classes).train()
    F.cross_entropy(model(inputs[model.input_kind][:1]), labels[:1]).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", CPU_MODELS)
def test_loss_decreases_on_real_clips(name, fsdd_clips):
    inputs, labels, num_classes = fsdd_clips
    model = build(name, num_classes).train()
    batch = inputs[model.input_kind]
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(TRAIN_STEPS):
        loss = F.cross_entropy(model(batch), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    # Full batch and a fixed seed: the curve is deterministic. A randomly initialised
    # Whisper encoder learns slowest (its conv outputs start ~50x smaller than the positional
    # table), hence the modest 5 % bar; the others fall by 25-80 % in these steps.
    assert losses[-1] < 0.95 * losses[0], losses


@pytest.mark.parametrize("name", CPU_MODELS)
def test_build_args_rebuild_the_same_architecture(name):
    model = build(name, 7)
    rebuilt = rebuild_model(model.build_args)
    assert rebuilt.build_args["options"] == model.build_args["options"]
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()} == shapes


def test_small_model_sizes():
    kws = sum(p.numel() for p in create_model("kws-resnet", 12).parameters())
    sid = sum(p.numel() for p in create_model("sid-xvector", 1251).parameters())
    assert 0.1e6 <= kws <= 0.3e6
    assert sid <= 1.3e6  # <= ~1 M body plus a 1,251-speaker head


def test_every_real_size_model_declares_its_published_size():
    assert set(REAL_MODELS) == set(PUBLISHED_PARAMETERS)


@pytest.mark.parametrize("name", REAL_MODELS)
def test_real_size_parameter_counts_on_meta_device(name):
    with torch.device("meta"):
        model = create_model(name, 12, pretrained=False)
    parameters = list(model.parameters())
    assert all(p.is_meta for p in parameters)  # nothing allocated, nothing downloaded
    low, high = PUBLISHED_PARAMETERS[name]
    assert low <= sum(p.numel() for p in parameters) <= high


def test_unknown_model_name_lists_the_valid_ones():
    with pytest.raises(UnknownNameError, match="kws-resnet"):
        create_model("kws-resnt", 10)


@pytest.mark.parametrize("name", model_names())
def test_unknown_option_is_named(name):
    with pytest.raises(ConfigError, match="chanels"):
        create_model(name, 10, chanels=3)


def test_bad_num_classes_is_refused():
    with pytest.raises(ConfigError, match="num_classes"):
        create_model("kws-resnet", 0)


def test_logmel_model_names_the_expected_input_shape():
    with pytest.raises(ValueError, match=r"\(batch, 40, frames\)"):
        create_model("kws-resnet", 10)(torch.zeros(2, 80, 101))


@pytest.mark.parametrize("name", CPU_TRANSFORMERS)
def test_freeze_options(name):
    default = build(name, 5)
    head = {n for n, _ in default.named_parameters() if n.startswith("head.")}
    front = {id(p) for p in default.feature_encoder_parameters()}

    both_off = build(name, 5, freeze_feature_encoder=False, freeze_backbone=False)
    frozen_front = build(name, 5, freeze_feature_encoder=True)
    frozen_backbone = build(name, 5, freeze_backbone=True)

    # Whisper's positional table is fixed sinusoids: never trainable.
    fixed = {n for n, _ in both_off.named_parameters() if n.endswith("embed_positions.weight")}
    assert {n for n, p in both_off.named_parameters() if not p.requires_grad} == fixed
    assert {n for n, p in frozen_backbone.named_parameters() if p.requires_grad} == head
    front_names = {n for n, p in default.named_parameters() if id(p) in front}
    assert front_names and all(not p.requires_grad for p in frozen_front.feature_encoder_parameters())
    assert {n for n, p in frozen_front.named_parameters() if not p.requires_grad} == front_names | fixed
    expected_default = model_info(name).family != "whisper"  # wav2vec2 / HuBERT freeze it by default
    assert all(p.requires_grad != expected_default for p in default.feature_encoder_parameters())


def test_whisper_log_mel_matches_the_feature_extractor(fsdd_clips):
    from transformers import WhisperFeatureExtractor

    waveform = fsdd_clips[0]["waveform"][:1]  # (1, 16000)
    ours = build("tiny-whisper", 2).whisper_frontend(waveform)[0].numpy()  # (80, 100)
    reference = WhisperFeatureExtractor()(waveform[0].numpy(), sampling_rate=16_000, return_tensors="np")
    reference = reference["input_features"][0]  # (80, 3000): padded to 30 s
    assert ours.shape == (80, 100)
    # Frames whose window stays inside the clip are identical; the last one sees the 30 s padding.
    np.testing.assert_allclose(ours[:, :99], reference[:, :99], atol=1e-4)


def test_whisper_follows_the_clip_length():
    model = build("tiny-whisper", 3, clip_seconds=1.5)
    assert model.backbone.config.max_source_positions == 75  # 150 mel frames / 2
    assert model(torch.randn(2, 24_000)).shape == (2, 3)
    with pytest.raises(ValueError, match="clip_seconds"):
        model(torch.randn(2, 16_000))


def save_tiny_pretrained(family: str, folder):
    """Save a small transformers model of `family` the way `save_pretrained` stores real checkpoints."""
    import transformers

    torch.manual_seed(1)
    if family == "whisper":
        config = transformers.WhisperConfig(
            d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
            encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=64, max_target_positions=16,
            pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
        )  # max_source_positions stays 1500 (30 s), as in the published checkpoints
        model = transformers.WhisperModel(config)
    else:
        config_class, model_class = {
            "wav2vec2": (transformers.Wav2Vec2Config, transformers.Wav2Vec2Model),
            "hubert": (transformers.HubertConfig, transformers.HubertModel),
        }[family]
        config = config_class(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            conv_dim=(16, 16), conv_stride=(5, 64), conv_kernel=(10, 64),
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
        )  # keeps the published SpecAugment settings, so the saved file has masked_spec_embed
        model = model_class(config)
    model.save_pretrained(folder)
    return model.eval()


@pytest.mark.parametrize("name", ["whisper-tiny", "wav2vec2-base", "hubert-base"])
def test_pretrained_weights_load_from_a_local_folder(name, tmp_path):
    family = model_info(name).family
    reference = save_tiny_pretrained(family, tmp_path / "saved")
    model = create_model(name, 4, source=str(tmp_path / "saved")).eval()
    waveform = torch.randn(2, 16_000) * 0.1
    if family == "whisper":
        # The encoder is copied whole, except that only the first 50 positions (1 s) are kept.
        loaded, saved = model.backbone.state_dict(), reference.get_encoder().state_dict()
        assert loaded.keys() == saved.keys()
        for key, tensor in loaded.items():
            expected = saved[key][:50] if key == "embed_positions.weight" else saved[key]
            assert torch.equal(tensor, expected), key
    else:
        with torch.no_grad():
            normalised = (waveform - waveform.mean(1, keepdim=True)) / waveform.std(1, unbiased=False, keepdim=True)
            expected = reference(normalised).last_hidden_state.mean(dim=1)  # (B, D)
            np.testing.assert_allclose(model.embed(waveform).numpy(), expected.numpy(), atol=1e-5)
        assert "masked_spec_embed" not in dict(model.named_parameters())
    assert model.build_args["pretrained_from"] == str(tmp_path / "saved")
    assert model.build_args["options"]["pretrained"] is False  # rebuilding never downloads
    rebuilt = rebuild_model(model.build_args)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_missing_pretrained_folder_is_named(tmp_path):
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(ValueError, match="no-such-model"):
        create_model("wav2vec2-base", 4, source=missing)
