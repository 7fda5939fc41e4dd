"""The embedded synthetic corpus: reproducible bytes, reuse, repair, layouts, audio format, loading.

Most tests use one SMALL corpus built once per module by a fresh subprocess; the default
configuration is only checked as a plan (sizes, speaker counts), never built here.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from speech_unlearning.cli.main import main as cli_main
from speech_unlearning.config import ConfigError, to_dict
from speech_unlearning.data import embedded, synth
from speech_unlearning.data.corpus import CorpusError
from speech_unlearning.data.embedded import (
    KEYWORDS,
    MANIFEST,
    EmbeddedConfig,
    build_embedded_corpus,
    embedded_corpus_is_current,
    read_manifest,
    verify_embedded_corpus,
)
from speech_unlearning.data.loaders import load_corpus
from speech_unlearning.data.speech_commands import published_split

SMALL = EmbeddedConfig(
    seed=3,
    kws_speakers=12,
    unknown_words=("bed", "bird", "cat"),
    unknown_per_speaker=2,
    background_noise_seconds=10.0,
    sid_speakers=3,
    sid_sessions=3,
    sid_utterances_per_session=2,
    shards=3,
)
SPEECH_COMMANDS_NAME = re.compile(r"^[0-9a-f]{8}_nohash_\d+\.wav$")
VOXCELEB_PATH = re.compile(r"^id\d{5}/[A-Za-z0-9_-]{11}/\d{5}\.wav$")


def build_in_subprocess(root: Path, config: EmbeddedConfig, workers: int) -> dict:
    """Build `config` at `root` in a fresh interpreter; returns the manifest."""
    script = (
        "import json, sys\n"
        "from speech_unlearning.config import from_mapping\n"
        "from speech_unlearning.data.embedded import EmbeddedConfig, build_embedded_corpus\n"
        "config = from_mapping(EmbeddedConfig, json.loads(sys.argv[1]))\n"
        "build_embedded_corpus(None, config, progress=False, root=sys.argv[2], workers=int(sys.argv[3]))\n"
    )
    subprocess.run(
        [sys.executable, "-c", script, json.dumps(config.record()), str(root), str(workers)],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return read_manifest(root)


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("embedded") / "small"
    build_in_subprocess(root, SMALL, workers=2)
    return root


@pytest.fixture
def small_copy(small_root, tmp_path) -> Path:
    """A private copy of the small corpus that a test may damage."""
    copy = tmp_path / "copy"
    shutil.copytree(small_root, copy)
    return copy


def wav_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.wav"))


# --- reproducibility, reuse, verification ------------------------------------------------------


def test_fresh_processes_build_byte_identical_corpora(small_root, tmp_path):
    # A different worker count deals the same fixed shards to processes differently.
    again = build_in_subprocess(tmp_path / "again", SMALL, workers=1)
    first = read_manifest(small_root)
    assert again["files"] == first["files"]
    assert again["corpus_hash"] == first["corpus_hash"]
    on_disk = {p.relative_to(small_root).as_posix() for p in small_root.rglob("*") if p.is_file()}
    assert on_disk - {MANIFEST} == set(first["files"])  # the manifest covers every file


def test_another_seed_gives_other_audio():
    jobs_a, _ = embedded.kws_clips(SMALL)
    jobs_b, _ = embedded.kws_clips(dataclasses.replace(SMALL, seed=SMALL.seed + 1))
    assert [j.relpath for j in jobs_a] != [j.relpath for j in jobs_b]  # other speaker hashes


def test_valid_corpus_is_reused_without_rendering(small_copy, monkeypatch):
    def must_not_render(*args, **kwargs):
        raise AssertionError("a valid corpus was rebuilt")

    monkeypatch.setattr(embedded.build, "render_all", must_not_render)
    manifest = small_copy / MANIFEST
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in [manifest, *wav_files(small_copy)[:20]]}
    assert build_embedded_corpus(None, SMALL, progress=False, root=small_copy) == small_copy
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in before} == before


def test_other_config_or_generator_is_not_current(small_root, monkeypatch):
    assert embedded_corpus_is_current(small_root, SMALL)
    assert not embedded_corpus_is_current(small_root, dataclasses.replace(SMALL, seed=SMALL.seed + 1))
    monkeypatch.setattr(embedded.verify, "GENERATOR_VERSION", embedded.GENERATOR_VERSION + 1)
    assert not embedded_corpus_is_current(small_root, SMALL)


def test_verify_names_each_damaged_file(small_copy):
    assert verify_embedded_corpus(small_copy) == []
    files = wav_files(small_copy / "kws")
    flipped, truncated, removed = files[0], files[1], files[2]
    data = bytearray(flipped.read_bytes())
    data[-1] ^= 0xFF  # same size, other content: only the full check can see it
    flipped.write_bytes(bytes(data))
    truncated.write_bytes(truncated.read_bytes()[:100])
    removed.unlink()
    extra = small_copy / "kws" / "yes" / "deadbeef_nohash_9.wav"
    extra.write_bytes(b"RIFF")

    problems = verify_embedded_corpus(small_copy, full=True)
    assert len(problems) == 4
    for path, reason in [(flipped, "sha256"), (truncated, "bytes"), (removed, "missing"), (extra, "not part")]:
        assert any(str(path) in p and reason in p for p in problems), (path, problems)
    quick = verify_embedded_corpus(small_copy, full=False)
    assert not any(str(flipped) in p for p in quick)


def test_verify_reports_a_missing_or_edited_manifest(small_copy):
    manifest = json.loads((small_copy / MANIFEST).read_text())
    first = sorted(manifest["files"])[0]
    manifest["files"][first]["sha256"] = "0" * 64
    (small_copy / MANIFEST).write_text(json.dumps(manifest))
    assert any("corpus hash" in p for p in verify_embedded_corpus(small_copy))
    (small_copy / MANIFEST).unlink()
    assert verify_embedded_corpus(small_copy) == [f"embedded corpus manifest not found: {small_copy / MANIFEST}"]


def test_damaged_corpus_is_rebuilt_identically(small_root, small_copy):
    victim = wav_files(small_copy / "sid")[0]
    victim.write_bytes(victim.read_bytes()[:-10])
    (small_copy.parent / ".tmp-copy-leftover").mkdir()  # an interrupted earlier build
    assert not embedded_corpus_is_current(small_copy, SMALL)
    build_embedded_corpus(None, SMALL, progress=False, root=small_copy)
    assert verify_embedded_corpus(small_copy) == []
    assert read_manifest(small_copy)["files"] == read_manifest(small_root)["files"]
    assert not list(small_copy.parent.glob(".tmp-*"))


def test_cli_verify_exits_1_naming_the_file(small_copy, capsys):
    assert cli_main(["corpus", "verify", "--root", str(small_copy)]) == 0
    victim = wav_files(small_copy / "kws")[5]
    victim.write_bytes(b"not audio")
    assert cli_main(["corpus", "verify", "--root", str(small_copy)]) == 1
    assert str(victim) in capsys.readouterr().err


def test_cli_build_reuses_a_cached_corpus(small_root, tmp_path, capsys):
    shutil.copytree(small_root, embedded.embedded_root(tmp_path))
    overrides = [f"{key}={','.join(map(str, v)) if isinstance(v, list) else v}" for key, v in SMALL.record().items()]
    argv = ["corpus", "build", "--cache-dir", str(tmp_path), "--no-progress"]
    assert cli_main(argv + [arg for o in overrides for arg in ("--set", o)]) == 0
    out = capsys.readouterr().out
    assert "reused" in out and str(embedded.embedded_root(tmp_path)) in out
    counts = read_manifest(small_root)["counts"]["kws"]
    assert f"kws: {counts['train'] + counts['validation'] + counts['test']} clips" in out


# --- layouts -----------------------------------------------------------------------------------


def list_entries(root: Path, name: str) -> list[str]:
    return (root / name).read_text().splitlines()


def test_speech_commands_layout_split_by_speaker(small_root):
    kws = small_root / "kws"
    words = {p.name for p in kws.iterdir() if p.is_dir() and p.name != "_background_noise_"}
    assert set(KEYWORDS) <= words and words - set(KEYWORDS) <= set(SMALL.unknown_words)
    clips = {p.relative_to(kws).as_posix() for p in wav_files(kws) if p.parent.name in words}
    assert all(SPEECH_COMMANDS_NAME.match(Path(c).name) for c in clips)
    validation, test = set(list_entries(kws, "validation_list.txt")), set(list_entries(kws, "testing_list.txt"))
    assert validation and test and validation <= clips and test <= clips and not validation & test
    train = clips - validation - test
    speakers = {
        split: {Path(c).name.split("_nohash_")[0] for c in members}
        for split, members in (("train", train), ("validation", validation), ("test", test))
    }
    assert all(speakers.values())
    assert not (speakers["train"] & speakers["validation"] or speakers["train"] & speakers["test"]
                or speakers["validation"] & speakers["test"])  # fmt: skip
    for split, keys in speakers.items():  # the lists agree with the dataset's own hash rule
        assert {published_split(key) for key in keys} == {split}
    noise = wav_files(kws / "_background_noise_")
    assert len(noise) >= 3 and all(soundfile.info(p).duration >= 10.0 for p in noise)


def test_voxceleb_layout_and_split_file(small_root):
    sid = small_root / "sid"
    lines = [line.split() for line in list_entries(sid, "iden_split.txt")]
    assert all(len(parts) == 2 and parts[0] in ("1", "2", "3") and VOXCELEB_PATH.match(parts[1]) for parts in lines)
    listed = {parts[1] for parts in lines}
    on_disk = {p.relative_to(sid / "wav").as_posix() for p in wav_files(sid)}
    assert listed == on_disk and len(lines) == len(listed)
    speakers = sorted({path.split("/")[0] for path in listed})
    assert speakers == [f"id{10001 + i}" for i in range(SMALL.sid_speakers)]
    for speaker in speakers:  # every speaker is in every split, whole sessions held out
        codes_of_session: dict[str, set[str]] = {}
        for code, path in lines:
            if path.startswith(speaker + "/"):
                codes_of_session.setdefault(path.split("/")[1], set()).add(code)
        assert len(codes_of_session) == SMALL.sid_sessions
        assert all(len(codes) == 1 for codes in codes_of_session.values())
        session_codes = sorted(next(iter(codes)) for codes in codes_of_session.values())
        expected = ["1"] * (SMALL.sid_sessions - SMALL.sid_dev_sessions - SMALL.sid_test_sessions)
        assert session_codes == expected + ["2"] * SMALL.sid_dev_sessions + ["3"] * SMALL.sid_test_sessions


def test_default_config_has_the_promised_size():
    config = EmbeddedConfig()
    kws_jobs, lists = embedded.kws_clips(config)
    sid_jobs, sid_lists = embedded.sid_clips(config)
    assert 2500 <= len(kws_jobs) <= 3500 and 1200 <= len(sid_jobs) <= 2000
    assert config.sid_speakers >= 40 and len(config.unknown_words) >= 10
    held_out = sum(len(text.splitlines()) for text in lists.values())
    assert 0.7 <= 1 - held_out / len(kws_jobs) <= 0.8
    voices = {(j.voice.variant, j.voice.accent) for j in sid_jobs}
    assert len(voices) == config.sid_speakers  # no two SID speakers share variant and accent


def test_some_held_out_kws_speakers_have_voices_unseen_in_training():
    jobs, lists = embedded.kws_clips(EmbeddedConfig())
    held_out = {line for text in lists.values() for line in text.splitlines()}
    train_variants = {j.voice.variant for j in jobs if j.relpath.removeprefix("kws/") not in held_out}
    held_out_variants = {j.voice.variant for j in jobs if j.relpath.removeprefix("kws/") in held_out}
    unseen = held_out_variants - train_variants
    assert unseen and len(train_variants) == len(EmbeddedConfig().variants) - EmbeddedConfig().kws_unseen_variants


# --- audio -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("task", "seconds"), [("kws", 1.0), ("sid", SMALL.sid_clip_seconds)])
def test_audio_is_16khz_mono_int16_of_fixed_length(small_root, task, seconds):
    files = [p for p in wav_files(small_root / task) if p.parent.name != "_background_noise_"]
    assert files
    for path in files:
        info = soundfile.info(path)
        expected = (16_000, 1, "PCM_16", int(seconds * 16_000))
        assert (info.samplerate, info.channels, info.subtype, info.frames) == expected
    audio, _ = soundfile.read(files[0], dtype="float32")
    assert 0.1 < np.abs(audio).max() < 1.0  # normalised, not silent, not clipped


# --- config and loader -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("kws_speakers", 2), ("unknown_words", ("yes", "bed")), ("unknown_per_speaker", 99), ("snr_min_db", 40.0),
     ("sid_test_sessions", 7), ("kws_unseen_variants", 99), ("sid_speakers", 1), ("shards", 0), ("rate_jitter", 0.9)],
)  # fmt: skip
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        EmbeddedConfig(**{field: value})


def test_unknown_voice_is_reported_before_building(tmp_path):
    with pytest.raises(ConfigError, match="no-such-variant"):
        config = dataclasses.replace(SMALL, variants=("m1", "no-such-variant"), kws_unseen_variants=1)
        build_embedded_corpus(tmp_path, config, progress=False)
    assert not embedded.embedded_root(tmp_path).exists()


def test_a_foreign_folder_is_never_replaced(tmp_path):
    foreign = tmp_path / "my-recordings"
    foreign.mkdir()
    (foreign / "keep.wav").write_bytes(b"precious")
    with pytest.raises(CorpusError, match="not an embedded corpus"):
        load_corpus(f"embedded:{foreign}", "kws", cache_dir=tmp_path, config=to_dict(SMALL), progress=False)
    assert (foreign / "keep.wav").read_bytes() == b"precious"


def test_loader_rejects_unknown_options(small_root):
    with pytest.raises(CorpusError, match="speakerz"):
        load_corpus(f"embedded:{small_root}", "kws", speakerz=3)


def test_loads_through_the_real_loaders(small_root, tmp_path):
    kws = load_corpus(f"embedded:{small_root}", "kws", cache_dir=tmp_path, progress=False)
    assert kws.name == "embedded-kws" and kws.num_classes == 12
    assert kws.label_names[:10] == KEYWORDS and set(kws.label_names[10:]) == {"_unknown_", "_silence_"}
    assert all(len(kws.indices(split)) for split in ("train", "validation", "test"))
    assert kws.info["corpus_hash"] == read_manifest(small_root)["corpus_hash"]
    sid = load_corpus(f"embedded:{small_root}", "sid", cache_dir=tmp_path, config=to_dict(SMALL), progress=False)
    assert sid.name == "embedded-sid" and sid.num_classes == SMALL.sid_speakers and sid.clip_seconds == 2.0
    assert len(sid) == SMALL.sid_speakers * SMALL.sid_sessions * SMALL.sid_utterances_per_session
    assert not list(tmp_path.iterdir())  # an existing corpus at PATH is read, nothing built in the cache


# --- signal helpers ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", synth.NOISE_KINDS)
def test_noise_is_unit_rms_and_seeded(kind):
    first = synth.make_noise(kind, 16_000, np.random.default_rng(5))
    again = synth.make_noise(kind, 16_000, np.random.default_rng(5))
    assert first.shape == (16_000,) and first.dtype == np.float32
    assert np.sqrt(np.mean(first.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-4)
    np.testing.assert_array_equal(first, again)


def band_power(signal: np.ndarray, low: float, high: float, sample_rate: int = 16_000) -> float:
    spectrum = np.abs(np.fft.rfft(signal)) ** 2
    freqs = np.fft.rfftfreq(signal.shape[0], 1 / sample_rate)
    return float(spectrum[(freqs >= low) & (freqs < high)].mean())


@pytest.mark.parametrize(("kind", "exponent"), [("white", 0.0), ("pink", 1.0), ("brown", 2.0)])
def test_colored_noise_has_the_promised_slope(kind, exponent):
    noise = synth.make_noise(kind, 64_000, np.random.default_rng(0))
    # Power per bin falls as f**-exponent: two octaves apart differ by 4**exponent.
    ratio = band_power(noise, 250, 500) / band_power(noise, 1000, 2000)
    assert ratio == pytest.approx(4**exponent, rel=0.25)


def test_mixing_reaches_the_requested_snr():
    time = np.arange(8_000) / 16_000
    speech = 0.3 * np.sin(2 * np.pi * 440 * time)
    noise = synth.make_noise("pink", 8_000, np.random.default_rng(1))
    for snr_db in (0.0, 7.5, 20.0):
        scaled = synth.noise_scale_for_snr(speech, snr_db) * noise
        measured = 10 * np.log10(np.mean(speech**2) / np.mean(scaled.astype(np.float64) ** 2))
        assert measured == pytest.approx(snr_db, abs=1e-3)


def test_telephone_channel_keeps_the_band_and_cuts_the_rest():
    channel = synth.Channel("telephone", low_hz=300.0, high_hz=3400.0)
    gain = channel.response(np.array([50.0, 1000.0, 7000.0]))
    assert gain[1] == pytest.approx(1.0, abs=0.01) and gain[0] < 0.01 and gain[2] < 0.1  # > 20 dB down
    with pytest.raises(ConfigError, match="kind"):
        synth.Channel("radio")


def test_trim_silence_drops_quiet_edges():
    audio = np.concatenate([np.zeros(100), [0.5, -0.2, 0.0, 0.3], np.full(50, 0.001)])
    np.testing.assert_array_equal(synth.trim_silence(audio), [0.5, -0.2, 0.0, 0.3])
    assert synth.trim_silence(np.zeros(10)).size == 0
