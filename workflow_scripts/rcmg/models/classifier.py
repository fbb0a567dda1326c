"""An AudioSet classifier loaded through transformers (ASTForAudioClassification).

The evaluation's non-CLAP view (``evaluation.classifier``, e.g.
``MIT/ast-finetuned-audioset-10-10-0.4593``): for each clip the **pre-classifier
representation** (ASTModel's pooler output, the mean of the CLS and distillation tokens
after the last layer norm: what the classification head reads) and the per-class
**sigmoid** probabilities of its 527 AudioSet classes (the model is trained multi-label
with a binary cross-entropy per class, so a softmax across classes is not its output).
"""

from __future__ import annotations

import logging

import numpy as np

from rcmg.models.device import resolve_device
from rcmg.models.hf_loading import load_pretrained

log = logging.getLogger(__name__)

EMBEDDING = (
    "pooled last hidden state: mean of the CLS and distillation tokens after the final "
    "layer norm (ASTModel pooler_output), the input of the classification head"
)


class AudioClassifier:
    """``ASTForAudioClassification`` + its feature extractor, loaded once."""

    def __init__(self, model: str, device: str = "auto") -> None:
        from transformers import ASTFeatureExtractor, ASTForAudioClassification

        self.device = resolve_device(device)
        self.model_name = model
        self.feature_extractor = load_pretrained(ASTFeatureExtractor.from_pretrained, model)
        loaded = load_pretrained(ASTForAudioClassification.from_pretrained, model)
        self.model = loaded.to(self.device).eval()
        self.sampling_rate = int(self.feature_extractor.sampling_rate)
        self.dim = int(self.model.config.hidden_size)
        self.labels = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]
        log.info(
            "classifier %s on %s: %d-d, %d classes", model, self.device, self.dim, len(self.labels)
        )

    def embed(self, waves: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Clips at :attr:`sampling_rate` -> (embeddings ``[B, dim]``, sigmoid ``[B, C]``)."""
        import torch

        if not waves:
            return np.zeros((0, self.dim)), np.zeros((0, len(self.labels)))
        features = self.feature_extractor(
            [np.nan_to_num(np.asarray(w, np.float32)) for w in waves],
            sampling_rate=self.sampling_rate,
            return_tensors="pt",
        )
        values = features["input_values"].to(self.device)
        with torch.no_grad():
            hidden = self.model.audio_spectrogram_transformer(values).pooler_output
            logits = self.model.classifier(hidden)
        return (
            hidden.float().cpu().numpy().astype(np.float64),
            torch.sigmoid(logits).float().cpu().numpy().astype(np.float64),
        )
