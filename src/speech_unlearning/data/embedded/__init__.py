"""The embedded default corpus: synthetic speech made with espeak-ng, built once and cached.

It lets every command run with no download. Two sub-corpora share one root:

    ROOT/manifest.json   config, versions, every file's sha256 and size, the corpus hash
    ROOT/kws/            Speech Commands layout: <word>/<speaker-hash>_nohash_<n>.wav (1 s),
                         validation_list.txt, testing_list.txt, _background_noise_/*.wav
    ROOT/sid/            VoxCeleb1 layout: wav/idXXXXX/<session>/<nnnnn>.wav (2 s), iden_split.txt

and both are read back through the real loaders (`load_speech_commands(setup="superb12")` and
`load_voxceleb1`), so the default corpus exercises the same code as real data.

A synthetic speaker is a seeded combination of an espeak-ng voice variant (m1, f3, klatt, ...),
an English accent, a base pitch, a pitch range and a speaking rate. Each utterance jitters pitch
and rate, varies the intonation, sits at a random place in its clip, is mixed with background
noise (white / pink / brown / hum / babble) at a random SNR, may pass through a channel filter,
and is resampled from 22,050 Hz to 16 kHz. KWS speakers are split by the Speech Commands hash
rule (no speaker in two splits), and some voice variants are kept for held-out speakers only;
each SID speaker records several "sessions" (a session is one channel condition: noise kind,
SNR, filter), and whole sessions of every speaker are held out for dev and test, as VoxCeleb1
holds out videos.

Reproducibility: espeak-ng's output depends on the calls made before it in the same process,
while the same call sequence in a fresh process repeats bit for bit (once its breath-noise
generator is seeded per clip, see `synth.Espeak.synthesize`). The clips are therefore
decided up front, dealt into `config.shards` fixed shards, and each shard is rendered by a fresh
spawned process, so the files do not depend on the number of worker processes or on anything
the calling process did before.

The modules, in the order the data flows:

    config.py   EmbeddedConfig, the word and voice lists, GENERATOR_VERSION
    clips.py    config -> ClipJobs and split list files (seeded, no audio)
    render.py   ClipJobs -> WAV files, one fresh process per shard
    verify.py   the manifest; checking a folder against it; the reuse check
    build.py    build_embedded_corpus: reuse, or clips + render + manifest, replaced atomically
    loader.py   the registered `embedded` corpus loader
"""

from .build import build_embedded_corpus, embedded_root
from .clips import ClipJob, kws_clips, sid_clips
from .config import GENERATOR_VERSION, KEYWORDS, EmbeddedConfig
from .loader import load_embedded, stored_config
from .verify import MANIFEST, embedded_corpus_is_current, read_manifest, verify_embedded_corpus

__all__ = [
    "GENERATOR_VERSION",
    "KEYWORDS",
    "MANIFEST",
    "ClipJob",
    "EmbeddedConfig",
    "build_embedded_corpus",
    "embedded_corpus_is_current",
    "embedded_root",
    "kws_clips",
    "load_embedded",
    "read_manifest",
    "sid_clips",
    "stored_config",
    "verify_embedded_corpus",
]
