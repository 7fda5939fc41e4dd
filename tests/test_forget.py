"""`speech-unlearn forget`: deletion requests end to end on FSDD and the embedded corpus, every kind
of bad request, sequential requests, the verification verdict and the `auto` method choice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from speech_unlearning.config import ConfigError
from speech_unlearning.data.corpus import CorpusError
from speech_unlearning.data.loaders import load_corpus
from speech_unlearning.experiments.choice_table import choice_table_from_runs
from speech_unlearning.forgetting.acceptance import AcceptanceThresholds
from speech_unlearning.forgetting.history import recorded_split, recorded_training_seconds
from speech_unlearning.forgetting.choice import CHOICE_FILE, load_choice_table, request_scenario
from speech_unlearning.forgetting.request import DeletionRequest, load_request_file, resolve_request
from speech_unlearning.forgetting.verify import verify_request
from speech_unlearning.io import sha256_file
from speech_unlearning.models.checkpoint import checkpoint_sha256, load_checkpoint, read_metadata

from cli_helpers import LENIENT, QUICK_METHOD, run_cli

TINY_KWS = ["--model", "kws-resnet", "--model-option", "channels=8", "--model-option", "blocks=1"]
# One epoch: these tests check the request pipeline; the verdict logic is tested with LookupModel below.
SHORT_RECIPE = ["--set", "epochs=1", "--set", "batch_size=128", "--set", "lr=0.01"]
# What `--method auto` runs for a KWS speaker request: the shipped table's choice.
SHIPPED_KWS_SPEAKER_CHOICE = json.loads(CHOICE_FILE.read_text())["choices"]["kws"]["speaker"]["method"]



def folder_bytes_hash(folder: Path) -> dict[str, str]:
    return {path.name: sha256_file(path) for path in sorted(folder.iterdir()) if path.is_file()}


def forget(checkpoint: Path, out: Path, cache_dir: Path, *request: str, extra: list[str] | None = None):
    argv = ["forget", "--checkpoint", str(checkpoint), "--out", str(out), "--cache-dir", str(cache_dir), "--no-progress"]
    return run_cli(argv + list(request) + (QUICK_METHOD + LENIENT if extra is None else extra))


# ---------------------------------------------------------------------------------------------
# FSDD: one small original model for the module


@pytest.fixture(scope="module")
def fsdd_original(fsdd_root, cache_dir, tmp_path_factory):
    """A kws-resnet trained briefly on FSDD digits, and the hash of every file of its folder."""
    out = tmp_path_factory.mktemp("forget-fsdd") / "original"
    argv = ["train", "--task", "kws", "--corpus", f"fsdd:{fsdd_root}", "--out", str(out), "--cache-dir", str(cache_dir)]
    status, _, stderr = run_cli(argv + TINY_KWS + SHORT_RECIPE + ["--no-progress"])
    assert status == 0, stderr
    return out, folder_bytes_hash(out), checkpoint_sha256(out)


@pytest.fixture(scope="module")
def speaker_request(fsdd_original, cache_dir, tmp_path_factory):
    """`--speaker jackson` applied to the original with the shipped method choice, shortened."""
    original, _, _ = fsdd_original
    out = tmp_path_factory.mktemp("forget-speaker") / "jackson"
    # A 2-second budget keeps the test short: the method stops after the step that crosses it.
    extra = ["--method", "auto", "--set", "epochs=1", "--budget-seconds", "2",
             "--request-id", "REQ-1"] + LENIENT
    status, stdout, stderr = forget(original, out, cache_dir, "--speaker", "jackson", extra=extra)
    return status, stdout, stderr, out


def test_speaker_request_writes_checkpoint_history_and_audit(speaker_request, fsdd_original, fsdd_kws):
    status, stdout, stderr, out = speaker_request
    assert status == 0, stderr
    jackson_train = [u for u in fsdd_kws.utterances if u.speaker == "jackson" and u.split == "train"]
    assert f"{len(jackson_train)} training item(s) of fsdd-kws to forget" in stdout
    assert "per speaker: jackson 400" in stdout and "per class: 0 40, 1 40" in stdout
    assert f"method: {SHIPPED_KWS_SPEAKER_CHOICE}" in stdout  # `auto` follows the shipped table

    audit = json.loads((out / "audit.json").read_text())
    # Lenient thresholds, which the model before unlearning meets too: applied and kept (exit 0),
    # but not called a pass, since the checks cannot show that anything was forgotten.
    assert audit["verdict"] == "nothing-to-forget" and audit["nothing_to_forget"] is True
    assert audit["request"]["id"] == "REQ-1"
    assert audit["request"]["speakers"] == ["jackson"]
    items = {item["utt_id"]: item for item in audit["forgotten_items"]}
    assert set(items) == {u.utt_id for u in jackson_train}
    for utterance in jackson_train[:25]:
        assert items[utterance.utt_id]["file_sha256"] == sha256_file(utterance.path)
        assert items[utterance.utt_id]["file"] == f"recordings/{Path(utterance.path).name}"
    # The weights files' hashes, exactly as `sha256sum` prints them.
    original, _, _ = fsdd_original
    assert audit["checkpoints"]["before"]["weights_sha256"] == sha256_file(original / "model.safetensors")
    assert audit["checkpoints"]["after"]["weights_sha256"] == sha256_file(out / "model.safetensors")
    assert audit["weights_changed"] is True
    assert audit["method"]["name"] == SHIPPED_KWS_SPEAKER_CHOICE and audit["method"]["config"]["epochs"] == 1
    assert audit["method"]["budget_seconds"] == 2 and audit["method"]["steps"] >= 1
    assert audit["method"]["choice"]["scenario"] == "speaker"
    assert audit["software"]["speech_unlearning"] and audit["wall_seconds"] > 0
    assert set(audit["metrics"]) == {"before", "after"}
    assert audit["thresholds"]["max_test_drop_pp"] == 100
    assert {check["category"] for check in audit["checks"]} == {"forgetting", "utility"}
    # A speaker in KWS keeps its keywords: the target is the unseen-speaker level, not chance.
    df_check = next(c for c in audit["checks"] if c["name"].startswith("Df accuracy"))
    assert df_check["target"] == audit["metrics"]["before"]["unseen_speaker_accuracy"]
    assert "unseen speakers" in " ".join(audit["notes"])
    assert "Verdict: NOTHING MEASURABLE TO FORGET" in (out / "audit.md").read_text()

    model, metadata = load_checkpoint(out)
    entry = metadata["history"][-1]
    assert len(metadata["history"]) == 1
    assert entry["request_id"] == "REQ-1" and entry["request_sha256"] == audit["request"]["sha256"]
    assert entry["kinds"] == ["speaker"] and entry["counts"]["total"] == len(jackson_train)
    assert entry["method"] == SHIPPED_KWS_SPEAKER_CHOICE and entry["verdict"] == "nothing-to-forget" and entry["timestamp"]
    # The history names no recording: keyed hashes and counts, found again with the corpus.
    assert entry["splits"][0]["n_items"] == len(items) and "forget_ids" not in entry["splits"][0]
    assert "jackson" not in json.dumps(metadata["history"]) and "jackson" not in json.dumps(metadata["split"])
    assert recorded_split(metadata, fsdd_kws, "test").forget_ids == tuple(sorted(items))
    assert recorded_split(metadata, fsdd_kws, "test").params["speakers"] == ["jackson"]
    assert metadata["split"]["kind"] == "speaker" and metadata["verification"]["verdict"] == "nothing-to-forget"
    assert metadata["verification"]["failed_verification"] is False


def test_keyword_request_forgets_a_class_with_chance_as_target(fsdd_original, cache_dir, tmp_path, fsdd_kws):
    original, _, _ = fsdd_original
    status, stdout, stderr = forget(original, tmp_path / "out", cache_dir, "--keyword", "3")
    assert status == 0, stderr
    audit = json.loads((tmp_path / "out" / "audit.json").read_text())
    n_three = int(np.sum(fsdd_kws.labels[fsdd_kws.indices("train")] == fsdd_kws.label_index("3")))
    assert audit["resolution"]["counts"]["per_class"] == {"3": n_three}
    df_check = next(c for c in audit["checks"] if c["name"] == "Df accuracy, keyword(s) 3")
    assert df_check["target"] == pytest.approx(0.1) and df_check["target_source"] == "chance, 1/10"
    assert any(c["name"] == "mean per-class accuracy, remaining classes" for c in audit["checks"])
    assert load_checkpoint(tmp_path / "out")[1]["split"]["params"]["classes"] == ["3"]  # keywords are not personal


def test_files_request_accepts_paths_and_ids(fsdd_original, fsdd_root, cache_dir, tmp_path):
    original, _, _ = fsdd_original
    listing = tmp_path / "delete.txt"
    absolute = (fsdd_root / "recordings" / "5_theo_20.wav").resolve()
    listing.write_text(f"# erasure ticket 77\nrecordings/0_george_10.wav\n\n{absolute}\n1_yweweler_11\n")
    status, stdout, stderr = forget(original, tmp_path / "out", cache_dir, "--files", str(listing))
    assert status == 0, stderr
    audit = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert sorted(item["utt_id"] for item in audit["forgotten_items"]) == ["0_george_10", "1_yweweler_11", "5_theo_20"]
    assert audit["forgotten_items"][0]["file_sha256"] == sha256_file(fsdd_root / "recordings" / "0_george_10.wav")
    assert load_checkpoint(tmp_path / "out")[1]["history"][-1]["kinds"] == ["files"]


def test_sequential_request_keeps_the_first_request_forgotten(speaker_request, cache_dir, tmp_path, monkeypatch, fsdd_kws):
    import speech_unlearning.methods as methods

    _, _, _, first = speaker_request
    seen = {}
    real_unlearn = methods.unlearn

    def spy(name, model, forget_set, retain_set, **kwargs):
        seen["forget"], seen["retain"] = forget_set.indices.copy(), retain_set.indices.copy()
        return real_unlearn(name, model, forget_set, retain_set, **kwargs)

    monkeypatch.setattr(methods, "unlearn", spy)
    request = tmp_path / "request.yaml"
    request.write_text("id: REQ-2\nreason: retire the wake word\nkeywords: [3]\nfiles: [2_jackson_30]\n")
    status, stdout, stderr = forget(first, tmp_path / "second", cache_dir, "--request", str(request))
    assert status == 0, stderr
    # 2_jackson_30 and jackson's 40 recordings of "3" went with the first request.
    assert "already forgotten by earlier requests (skipped): 41" in stdout

    jackson = {fsdd_kws.index_of[u.utt_id] for u in fsdd_kws.utterances if u.speaker == "jackson" and u.split == "train"}
    assert not jackson & set(seen["retain"].tolist()) and not jackson & set(seen["forget"].tolist())
    threes = set(np.flatnonzero(fsdd_kws.labels == fsdd_kws.label_index("3")).tolist())
    assert set(seen["forget"].tolist()) <= threes

    audit = json.loads((tmp_path / "second" / "audit.json").read_text())
    assert audit["earlier_requests"][0]["request_id"] == "REQ-1"
    rechecked = [c for c in audit["checks"] if c["category"] == "earlier requests"]
    assert {c["name"] for c in rechecked} == {"Df accuracy, speaker(s) jackson", "loss MIA, speaker(s) jackson"}
    assert "earlier request REQ-1: speaker(s) jackson" in audit["metrics"]["after"]["groups"]
    _, metadata = load_checkpoint(tmp_path / "second")
    assert [entry["request_id"] for entry in metadata["history"]] == ["REQ-1", "REQ-2"]
    assert set(recorded_split(metadata, fsdd_kws, "test").forget_ids) >= {fsdd_kws.utterances[i].utt_id for i in jackson}


def test_a_request_already_fully_forgotten_is_refused(speaker_request, cache_dir, tmp_path):
    _, _, _, first = speaker_request
    status, _, stderr = forget(first, tmp_path / "again", cache_dir, "--speaker", "jackson")
    assert status == 2 and "forgotten by earlier requests" in stderr and not (tmp_path / "again").exists()


def test_impossible_threshold_fails_with_a_report_and_no_checkpoint(fsdd_original, cache_dir, tmp_path):
    original, _, _ = fsdd_original
    impossible = QUICK_METHOD + ["--threshold", "max_test_drop_pp=-100"]  # Dtest accuracy must rise by 100 points
    request = _list(tmp_path, "4_theo_30\n4_theo_31\n")
    status, stdout, _ = forget(original, tmp_path / "out", cache_dir, *request, extra=impossible)
    assert status == 1 and "verdict: fail" in stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["audit.json", "audit.md"]
    audit = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert audit["verdict"] == "fail" and audit["checkpoints"]["after"] is None
    assert "Dtest accuracy (classes still served)" in audit["failed_checks"]

    status, _, _ = forget(original, tmp_path / "kept", cache_dir, *request, extra=impossible + ["--keep-failed"])
    assert status == 1
    _, metadata = load_checkpoint(tmp_path / "kept")
    assert metadata["verification"]["failed_verification"] is True
    assert metadata["history"][-1]["verdict"] == "fail"


def _yaml(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "request.yaml"
    path.write_text(text)
    return ["--request", str(path)]


def _list(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "items.txt"
    path.write_text(text)
    return ["--files", str(path)]


BAD_REQUESTS = {
    "unknown speaker": (lambda tmp: ["--speaker", "nobody"], "nobody"),
    "known and unknown speakers": (lambda tmp: ["--speaker", "jackson", "nobody"], "nobody"),
    "unknown keyword": (lambda tmp: ["--keyword", "eleven"], "eleven"),
    "unknown file": (lambda tmp: _list(tmp, "recordings/0_jackson_10.wav\n0_nobody_3\n"), "0_nobody_3"),
    "test recording": (lambda tmp: _list(tmp, "0_jackson_0\n"), "not in the training set"),
    "empty list": (lambda tmp: _list(tmp, "# nothing yet\n\n"), "empty request"),
    "no request at all": (lambda tmp: [], "empty request"),
    "whole training set": (
        lambda tmp: ["--speaker", "george", "jackson", "lucas", "nicolas", "theo", "yweweler"], "whole training set"),
    "outside the corpus root": (lambda tmp: _list(tmp, "../../../etc/passwd\n"), "outside the corpus root"),
    "absolute path outside the root": (lambda tmp: _list(tmp, f"{tmp}/x.wav\n"), "outside the corpus root"),
    "malformed yaml": (lambda tmp: _yaml(tmp, "speakers: [jackson\n"), "not valid YAML"),
    "misspelt yaml key": (lambda tmp: _yaml(tmp, "speakrs: [jackson]\n"), "speakrs"),
    "yaml with a non-name": (lambda tmp: _yaml(tmp, "speakers: [{name: jackson}]\n"), "speakers"),
    "request file and flags": (lambda tmp: _yaml(tmp, "speakers: [theo]\n") + ["--speaker", "lucas"], "--request"),
    "misspelt threshold": (lambda tmp: ["--speaker", "theo", "--threshold", "mia_tolerance=3"], "mia_tolerance"),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_exits_2_naming_the_culprit_and_writes_nothing(case, fsdd_original, cache_dir, tmp_path):
    original, before, _ = fsdd_original
    request, culprit = BAD_REQUESTS[case]
    out = tmp_path / "out"
    status, _, stderr = forget(original, out, cache_dir, *request(tmp_path))
    assert status == 2
    assert culprit in stderr, stderr
    assert not out.exists()
    assert folder_bytes_hash(original) == before


def test_ignore_unknown_drops_the_unknown_ids_and_says_so(fsdd_original, fsdd_root, cache_dir, tmp_path):
    original, _, _ = fsdd_original
    extra = ["--ignore-unknown", "--dry-run", "--data", f"fsdd:{fsdd_root}"]
    status, stdout, stderr = forget(original, tmp_path / "out", cache_dir, "--speaker", "jackson", "nobody", extra=extra)
    assert status == 0, stderr
    assert "400 training item(s)" in stdout and "ignored (--ignore-unknown): speaker 'nobody'" in stdout
    assert "dry run" in stdout and not (tmp_path / "out").exists()


def test_output_inside_the_checkpoint_is_refused(fsdd_original, cache_dir):
    original, before, _ = fsdd_original
    status, _, stderr = forget(original, original / "sub", cache_dir, "--speaker", "jackson")
    assert status == 2 and "never modified" in stderr
    assert folder_bytes_hash(original) == before


def test_the_original_checkpoint_is_never_modified(fsdd_original, speaker_request):
    original, before, original_sha = fsdd_original
    assert speaker_request[0] == 0
    assert folder_bytes_hash(original) == before and checkpoint_sha256(original) == original_sha


# ---------------------------------------------------------------------------------------------
# The embedded corpus (a small build, read through the Speech Commands and VoxCeleb1 loaders)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """A small embedded corpus, a kws-resnet trained on its KWS half, and its cache folder."""
    from speech_unlearning.data.embedded import EmbeddedConfig, build_embedded_corpus

    cache = tmp_path_factory.mktemp("forget-embedded")
    config = EmbeddedConfig(kws_speakers=16, unknown_per_speaker=2, sid_speakers=4, sid_sessions=4,
                            sid_utterances_per_session=3, sid_dev_sessions=1, sid_test_sessions=1,
                            background_noise_seconds=10.0, shards=2)  # fmt: skip
    root = build_embedded_corpus(cache, config, progress=False)
    kws_spec = f"speech-commands:{root / 'kws'}"
    out = cache / "original"
    argv = ["train", "--task", "kws", "--corpus", kws_spec, "--out", str(out), "--cache-dir", str(cache)]
    status, _, stderr = run_cli(argv + TINY_KWS + SHORT_RECIPE + ["--no-progress"])
    assert status == 0, stderr
    return {"root": root, "cache": cache, "original": out, "kws": load_corpus(kws_spec, "kws", cache_dir=cache),
            "sid": load_corpus(f"voxceleb1:{root / 'sid'}", "sid", cache_dir=cache)}  # fmt: skip


def test_embedded_speaker_keyword_and_file_requests(embedded, tmp_path):
    corpus, cache = embedded["kws"], embedded["cache"]
    train = [u for u in corpus.utterances if u.split == "train" and not u.speaker.startswith("noise")]
    speaker, recording = train[0].speaker, train[-1]
    listing = tmp_path / "items.txt"
    listing.write_text(str(Path(recording.path).relative_to(corpus.root)) + "\n")
    requests = {
        "speaker": ["--speaker", speaker],
        "keyword": ["--keyword", "yes", "--verify-retrain"],  # the retrained model's values become the targets
        "files": ["--files", str(listing)],
    }
    for kind, request in requests.items():
        status, stdout, stderr = forget(embedded["original"], tmp_path / kind, cache, *request)
        assert status == 0, f"{kind}: {stderr}"
        audit = json.loads((tmp_path / kind / "audit.json").read_text())
        assert ("retrained" in audit["metrics"]) == (kind == "keyword")
        forgotten = {item["utt_id"] for item in audit["forgotten_items"]}
        expected = {
            "speaker": {u.utt_id for u in train if u.speaker == speaker},
            "keyword": {u.utt_id for u in corpus.utterances if u.split == "train" and u.word == "yes"},
            "files": {recording.utt_id},
        }[kind]
        assert forgotten == expected, kind
        assert load_checkpoint(tmp_path / kind)[1]["history"][-1]["kinds"] == [kind]
    audit = json.loads((tmp_path / "keyword" / "audit.json").read_text())
    df_check = next(c for c in audit["checks"] if c["name"].startswith("Df accuracy"))
    assert df_check["target_source"] == "the retrained model's Df accuracy"
    assert df_check["target"] == audit["metrics"]["retrained"]["groups"]["this request: keyword(s) yes"]["df_accuracy"]
    assert audit["gap_to_retrain"]["avg_gap_pp"] >= 0


def test_data_with_other_labels_than_the_checkpoint_is_refused(embedded, fsdd_original, cache_dir, tmp_path):
    original, _, _ = fsdd_original
    extra = ["--data", f"speech-commands:{embedded['root'] / 'kws'}", "--dry-run"]
    status, _, stderr = forget(original, tmp_path / "out", cache_dir, "--keyword", "yes", extra=extra)
    assert status == 2 and "label" in stderr and not (tmp_path / "out").exists()


def test_speaker_id_requests_treat_speakers_as_classes(embedded):
    corpus = embedded["sid"]
    with pytest.raises(CorpusError, match="ask for --speaker"):
        resolve_request(corpus, DeletionRequest(keywords=("yes",)))
    resolution = resolve_request(corpus, DeletionRequest(speakers=("id10002",)))
    (split,) = resolution.splits(corpus)
    assert split.forgotten_labels(corpus) == [corpus.label_index("id10002")]
    assert request_scenario(resolution.kinds, corpus.task) == "class"


# ---------------------------------------------------------------------------------------------
# Request files and resolution details


def test_request_file_is_read_with_id_reason_and_file_list(tmp_path):
    (tmp_path / "more.txt").write_text("# more\nrecordings/1_theo_12.wav\n")
    path = tmp_path / "req.yaml"
    path.write_text("id: 42\nreason: erasure by the speaker\nkeywords: [3, '4']\nfiles: 0_theo_10\nfiles_from: more.txt\n")
    request = load_request_file(path)
    assert request.request_id == "42" and request.reason == "erasure by the speaker"
    assert request.keywords == ("3", "4") and request.files == ("0_theo_10", "recordings/1_theo_12.wav")
    reordered = DeletionRequest(keywords=("4", "3"), files=request.files[::-1], request_id="42", reason=request.reason)
    assert reordered.sha256 == request.sha256
    # The default id names the request, not its wording: a new reason keeps the id (and changes the hash).
    plain, reasoned = DeletionRequest(speakers=("a",)), DeletionRequest(speakers=("a",), reason="ticket 12")
    assert plain.effective_id == reasoned.effective_id and plain.effective_id.startswith("req-")
    assert plain.sha256 != reasoned.sha256 and plain.effective_id != DeletionRequest(speakers=("b",)).effective_id


def test_request_file_without_mapping_is_refused(tmp_path):
    path = tmp_path / "req.yaml"
    path.write_text("- jackson\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_request_file(path)


def test_overlapping_kinds_count_each_item_once(fsdd_kws):
    request = DeletionRequest(speakers=("theo",), keywords=("3",), files=("3_theo_10", "4_theo_10"))
    resolution = resolve_request(fsdd_kws, request)
    counts = resolution.counts(fsdd_kws)
    # theo's 3s belong to the keyword part; the listed files are all theo's.
    assert counts["per_kind"] == {"keyword": 240, "speaker": 400 - 40}
    assert counts["total"] == len(set(resolution.forget_ids)) == 240 + 360
    assert resolution.overlaps == {"speaker": 40, "files": 2}


# ---------------------------------------------------------------------------------------------
# Verification on a model with known outputs


class LookupModel(nn.Module):
    """Predicts the label stored in feature 0, except for rows listed in `wrong` (feature 1 = corpus row)."""

    def __init__(self, num_classes: int, wrong: set[int] = frozenset()):
        super().__init__()
        self.num_classes = num_classes
        self.wrong = torch.tensor(sorted(wrong), dtype=torch.long)
        self.scale = nn.Parameter(torch.tensor(8.0))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        labels, rows = inputs[:, 0].long(), inputs[:, 1].long()
        predicted = torch.where(torch.isin(rows, self.wrong), (labels + 1) % self.num_classes, labels)
        return self.scale * nn.functional.one_hot(predicted, self.num_classes).float()  # (B, C)


def _lookup_features(corpus) -> np.ndarray:
    return np.stack([corpus.labels, np.arange(len(corpus))], axis=1).astype(np.float32)  # (N, 2)


def _verify(corpus, request: DeletionRequest, after_wrong: set[int]):
    resolution = resolve_request(corpus, request)
    retain = np.setdiff1d(corpus.indices("train"), resolution.forget_positions(corpus))
    models = {"before": LookupModel(corpus.num_classes), "after": LookupModel(corpus.num_classes, after_wrong)}
    return verify_request(models, _lookup_features(corpus), corpus, resolution.splits(corpus), [], retain,
                          AcceptanceThresholds())  # fmt: skip


def test_a_keyword_still_recognised_fails_and_a_forgotten_one_passes(fsdd_kws):
    threes = set(np.flatnonzero(fsdd_kws.labels == fsdd_kws.label_index("3")).tolist())
    remembered = _verify(fsdd_kws, DeletionRequest(keywords=("3",)), set())
    assert remembered.verdict == "fail" and [c.name for c in remembered.failed] == ["Df accuracy, keyword(s) 3"]
    assert "standard errors at n = " in remembered.failed[0].rule  # the tolerance allows for the group's size
    forgotten = _verify(fsdd_kws, DeletionRequest(keywords=("3",)), threes)
    assert forgotten.verdict == "pass"
    assert forgotten.metrics["after"]["df_accuracy"] == 0.0
    assert forgotten.metrics["after"]["served_test_accuracy"] == 1.0


def test_a_speaker_answered_wrongly_on_purpose_fails_the_unseen_speaker_target(fsdd_kws):
    theo = set(np.flatnonzero((fsdd_kws.speakers == "theo")).tolist())
    # Both models score 100 % on unseen data, so Df accuracy must stay near 100 %: zero reveals the request.
    kept = _verify(fsdd_kws, DeletionRequest(speakers=("theo",)), set())
    assert kept.verdict == "nothing-to-forget" and kept.accepted  # the unchanged model met every check too
    sabotaged = _verify(fsdd_kws, DeletionRequest(speakers=("theo",)), theo)
    names = [c.name for c in sabotaged.failed]
    assert "Df accuracy, speaker(s) theo" in names and "Dtest accuracy, other speakers" not in names


def test_thresholds_are_validated_by_name():
    with pytest.raises(ConfigError, match="mia_tolerance_pp"):
        AcceptanceThresholds(mia_tolerance_pp=-1)
    with pytest.raises(ConfigError, match="noise_z"):
        AcceptanceThresholds(noise_z=-1)


def test_tolerances_widen_with_the_sampling_noise_of_small_groups():
    thresholds = AcceptanceThresholds()
    # 15 members + 15 non-members: an attack accuracy near 50 % is known to about +-18 pp at 95 %.
    assert thresholds.widened_pp(10.0, 0.5, 30) == pytest.approx(10.0 + 196 * (0.25 / 30) ** 0.5)
    assert thresholds.widened_pp(10.0, 0.5, 3000) < thresholds.widened_pp(10.0, 0.5, 30)
    assert thresholds.widened_pp(10.0, 1.0, 30) == 10.0  # a rate of 1 has no sampling noise
    assert AcceptanceThresholds(noise_z=0).widened_pp(10.0, 0.5, 30) == 10.0


def test_an_earlier_request_recorded_before_the_noise_widening_keeps_fixed_tolerances():
    from speech_unlearning.forgetting.acceptance import thresholds_from

    old = thresholds_from({"forget_tolerance_pp": 5.0, "mia_tolerance_pp": 10.0}, AcceptanceThresholds())
    assert old.noise_z == 0.0 and old.forget_tolerance_pp == 5.0
    recorded = thresholds_from({"noise_z": 1.0}, AcceptanceThresholds())
    assert recorded.noise_z == 1.0


# ---------------------------------------------------------------------------------------------
# `--method auto`


def test_shipped_choice_table_covers_every_scenario_with_a_registered_method():
    from speech_unlearning.methods import split_method_name

    table = load_choice_table(CHOICE_FILE)
    assert table["regenerate"] and table["provenance"]["status"] in ("default", "benchmark")
    needed = {("kws", "sample"), ("kws", "class"), ("kws", "speaker"), ("sid", "sample"), ("sid", "class")}
    assert needed <= {(task, scenario) for task, cells in table["choices"].items() for scenario in cells}
    for cells in table["choices"].values():
        for entry in cells.values():
            split_method_name(entry["method"])  # raises for an unknown name


def _fake_benchmark(run_dir: Path, rows: list[tuple], retrain_match: str = "epochs", no_ops: tuple = ()) -> None:
    """Finished tuning runs (task, scenario, method, avg gap, time ratio[, the run's method
    overrides]) on validation forget splits in a results database, each against a Retrain of the
    given kind that took 10 s (the methods in `no_ops` returned the Original unchanged); and, for
    each, a test-split evaluation that scores the opposite way (gap 50 - the tuning gap), which
    the choice must never read."""
    from speech_unlearning.experiments.plan import Run
    from speech_unlearning.experiments.store import ResultStore

    with ResultStore.in_folder(run_dir) as store:
        store.set_meta("config", {"name": "unit"})
        for seed, (task, scenario, method, gap, ratio, *overrides) in enumerate(rows):
            base = {"task": task, "model": "kws-resnet", "corpus": "fsdd", "seed": seed, "method": method}
            retrain = Run("retrain", {"task": task, "seed": seed, "train": {"match": retrain_match}})
            size = {"ratio": 0.05} if scenario == "sample" else {"count": 1}
            tune = Run("tune", {**base, "split": {"scenario": scenario, **size, "role": "validation"},
                                "retrain": retrain.key, "point": {"lr_scale": 1.0, "epoch_scale": 1.0}})
            unlearn = Run("unlearn", {**base, "split": {"scenario": scenario, **size, "role": "test"}})
            evaluation = Run("evaluate", {**unlearn.config, "subject": unlearn.key, "retrain": retrain.key})
            store.ensure([retrain, tune, unlearn, evaluation])
            store.mark_done(retrain, {}, {}, 10.0)
            store.mark_done(tune, {"avg_gap": gap, "overrides": overrides[0] if overrides else {},
                                   "unlearn_seconds": 10.0 * ratio, "no_op": method in no_ops}, {}, 10.0 * ratio)
            store.mark_done(evaluation, {"avg_gap_pp": 50.0 - gap, "metrics": {"time": {"ratio": ratio}}}, {}, 1.0)


def test_auto_from_keeps_two_configurations_of_a_method_apart_and_runs_the_better_one(
    tmp_path, fsdd_original, cache_dir
):
    _fake_benchmark(tmp_path / "runs", [
        ("kws", "speaker", "scrub", 9.0, 0.05), ("kws", "speaker", "scrub", 2.0, 0.05, {"lr": 1e-4}),
        ("kws", "speaker", "neggrad+", 6.0, 0.08),
    ])  # fmt: skip
    speaker = choice_table_from_runs(tmp_path / "runs")["choices"]["kws"]["speaker"]
    # Pooled, scrub would score 5.5; apart, its default scores 9 and the lr 1e-4 run 2.
    assert speaker["method"] == "scrub" and speaker["overrides"] == {"lr": 1e-4} and speaker["avg_gap_pp"] == 2.0
    assert speaker["candidates"]["scrub"]["avg_gap_pp"] == 9.0
    original, _, _ = fsdd_original
    extra = ["--method", "auto", "--auto-from", str(tmp_path / "runs"), "--dry-run"]
    status, stdout, stderr = forget(original, tmp_path / "out", cache_dir, "--speaker", "jackson", extra=extra)
    assert status == 0, stderr
    assert "method: scrub with {'lr': 0.0001}" in stdout


def test_auto_from_ranks_against_the_papers_retrain_when_a_folder_holds_both_kinds(tmp_path):
    _fake_benchmark(tmp_path / "runs", [("kws", "speaker", "scrub", 9.0, 0.5)])
    _fake_benchmark(tmp_path / "runs", [("kws", "speaker", "neggrad+", 1.0, 0.5)], retrain_match="steps")
    speaker = choice_table_from_runs(tmp_path / "runs")["choices"]["kws"]["speaker"]
    assert speaker["method"] == "scrub" and "neggrad+" not in speaker["candidates"]
    _fake_benchmark(tmp_path / "steps_only", [("kws", "speaker", "neggrad+", 1.0, 0.5)], retrain_match="steps")
    assert choice_table_from_runs(tmp_path / "steps_only")["choices"]["kws"]["speaker"]["method"] == "neggrad+"


def test_auto_from_never_chooses_a_configuration_that_returned_the_original_unchanged(tmp_path):
    _fake_benchmark(tmp_path / "runs", [("kws", "sample", "calibrated", 1.0, 0.01),
                                        ("kws", "sample", "neggrad+", 3.0, 0.05)], no_ops=("calibrated",))
    sample = choice_table_from_runs(tmp_path / "runs")["choices"]["kws"]["sample"]
    assert sample["method"] == "neggrad+"
    assert sample["candidates"]["calibrated"]["no_op_runs"] == 1 and sample["candidates"]["neggrad+"]["no_op_runs"] == 0
    status, _, stderr = run_cli(["forget", "--auto-from", str(tmp_path / "runs"), "--export-choice",
                                 str(tmp_path / "c.json"), "--max-time-ratio", "0.02"])
    assert status == 2 and "changed the model" in stderr and not (tmp_path / "c.json").exists()


@pytest.mark.parametrize("extra, named", [
    (["--export-choice", "c.json", "--max-time-ratio", "0"], "--max-time-ratio 0.0: must be positive"),
    (["--checkpoint", ".", "--dry-run", "--max-time-ratio", "0.5"], "--max-time-ratio applies to --export-choice only"),
])  # fmt: skip
def test_a_bad_max_time_ratio_is_refused_by_name(tmp_path, extra, named):
    _fake_benchmark(tmp_path / "runs", [("kws", "class", "gradascent", 4.0, 0.1)])
    extra = [str(tmp_path / e) if e in ("c.json", ".") else e for e in extra]
    status, _, stderr = run_cli(["forget", "--auto-from", str(tmp_path / "runs"), "--keyword", "3", *extra])
    assert status == 2 and named in stderr
    assert not (tmp_path / "c.json").exists()


def test_auto_from_a_folder_without_tuning_runs_asks_for_them(tmp_path):
    from speech_unlearning.experiments.plan import Run
    from speech_unlearning.experiments.store import ResultStore

    with ResultStore.in_folder(tmp_path / "runs") as store:  # test-split evaluations only
        run = Run("evaluate", {"task": "kws", "method": "scrub", "split": {"scenario": "class", "count": 1, "role": "test"}})
        store.ensure([run])
        store.mark_done(run, {"avg_gap_pp": 1.0}, {}, 1.0)
    status, _, stderr = run_cli(["forget", "--auto-from", str(tmp_path / "runs"), "--export-choice",
                                 str(tmp_path / "c.json")])
    assert status == 2 and "no finished tuning run" in stderr and "--tune" in stderr
    assert not (tmp_path / "c.json").exists()


def test_auto_from_a_folder_without_results_names_the_option_and_the_folder(tmp_path):
    status, _, stderr = run_cli(["forget", "--auto-from", str(tmp_path), "--export-choice", str(tmp_path / "c.json")])
    assert status == 2
    assert f"--auto-from: no results database in {tmp_path}" in stderr
    assert list(tmp_path.iterdir()) == []


def test_auto_from_picks_the_lowest_gap_within_the_time_limit(tmp_path, fsdd_original, cache_dir):
    _fake_benchmark(tmp_path / "runs", [
        ("kws", "speaker", "scrub", 9.0, 0.5), ("kws", "speaker", "scrub", 11.0, 0.5),
        ("kws", "speaker", "neggrad+", 6.0, 0.8), ("kws", "speaker", "salun", 2.0, 1.7),  # salun: too slow
        ("kws", "speaker", "gradascent", 8.0, 0.05), ("kws", "class", "gradascent", 4.0, 0.1),
    ])  # fmt: skip
    table = choice_table_from_runs(tmp_path / "runs")
    speaker = table["choices"]["kws"]["speaker"]
    assert speaker["method"] == "neggrad+" and speaker["avg_gap_pp"] == 6.0
    assert speaker["candidates"]["scrub"]["avg_gap_pp"] == 10.0
    assert speaker["candidates"]["salun"]["within_time_limit"] is False
    assert "validation" in table["provenance"]["source"]  # the test-split evaluations score the other way round
    assert table["provenance"]["preset"] == "unit"

    original, _, _ = fsdd_original
    extra = ["--method", "auto", "--auto-from", str(tmp_path / "runs"), "--dry-run"]
    # The default budget (10 % of the training time) admits only configurations that needed at
    # most that share of Retrain's time in tuning; a larger --budget-seconds admits slower ones.
    status, stdout, stderr = forget(original, tmp_path / "out", cache_dir, "--speaker", "jackson", extra=extra)
    assert status == 0, stderr
    assert "method: gradascent" in stdout
    trained = recorded_training_seconds(read_metadata(original))
    more = extra + ["--budget-seconds", str(0.9 * trained)]
    status, stdout, stderr = forget(original, tmp_path / "out", cache_dir, "--speaker", "jackson", extra=more)
    assert status == 0, stderr
    assert "method: neggrad+" in stdout

    status, stdout, _ = run_cli(["forget", "--auto-from", str(tmp_path / "runs"), "--export-choice", str(tmp_path / "c.json")])
    assert status == 0 and load_choice_table(tmp_path / "c.json")["choices"]["kws"]["class"]["method"] == "gradascent"
