"""speech_unlearning: machine unlearning for keyword-spotting and speaker-ID models.

Layers, each a subpackage, import only downwards:
data -> models -> training -> methods -> evaluation -> experiments -> cli.
"""

__version__ = "0.1.0"
