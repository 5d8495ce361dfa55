"""Warnings for a pre-training run that has stopped learning what ELECTRA should.

Two failure modes are silent in the losses: the discriminator sitting at the all-original
baseline (its loss then equals the entropy of the replaced fraction, which looks like a
plateau) and collapsed token representations (every token's output nearly the same vector).
docs/validation.md shows both on small runs at temperature 1: once the generator has learned
the unigram frequencies, its samples carry no token-identity cue, and a small discriminator
that has not yet learned contextual cues falls back to the prior. An encoder in that state
fine-tunes worse than a random one, so the console says so as soon as it happens.

:class:`HealthMonitor` reads the logged metrics (``discriminator_auc``, ``representation_cosine``,
``pretrainer.ELECTRA_METRICS``) and returns the lines to print: one when a condition starts
(twice in a row, from twice the warm-up on), one when it clears. Early steps are excluded
because a healthy run passes through such states: an MLM encoder's token outputs reach a mean
cosine of ~0.9 right after warm-up and fall to ~0.2 within a hundred steps.
"""

from __future__ import annotations

import dataclasses

# A discriminator that ranks replaced tokens no better than this is at the baseline (0.5 is
# chance). Learning runs here reach 0.85-0.95 within a few hundred steps.
BASELINE_AUC = 0.6
# Mean cosine between token outputs above this is a collapse. A randomly initialised encoder
# gives 0.3-0.5 on the packaged corpus, a learning one stays there or below; the stuck runs of
# docs/validation.md reached 0.8-0.99.
COLLAPSE_COSINE = 0.8

_ADVICE = ("docs/validation.md says why and what helps (more steps, a lower learning rate, "
           "objective.temperature > 1, objective.replacements=uniform as a control)")


@dataclasses.dataclass
class HealthMonitor:
    """Tracks the two conditions across log intervals.

    Args:
      warmup_steps: no warning before twice this step.
      patience: consecutive checks a condition must hold before it is reported.
    """

    warmup_steps: float
    patience: int = 2
    _active: dict = dataclasses.field(default_factory=dict)
    _streak: dict = dataclasses.field(default_factory=dict)

    def check(self, step: int, metrics: dict) -> list[str]:
        """The warning lines for the metrics logged at ``step`` (often none)."""
        if step < 2 * self.warmup_steps:
            return []
        conditions = {}
        if "discriminator_auc" in metrics:
            auc = float(metrics["discriminator_auc"])
            conditions["baseline"] = (
                auc < BASELINE_AUC,
                f"warning: the discriminator is at the all-original baseline at step {step}: "
                f"replaced-token AUC {auc:.3f} (0.5 = chance); it is not learning to detect "
                f"replacements; {_ADVICE}",
                f"the discriminator left the baseline at step {step}: AUC {auc:.3f}")
        if "representation_cosine" in metrics:
            cosine = float(metrics["representation_cosine"])
            conditions["collapse"] = (
                cosine > COLLAPSE_COSINE,
                f"warning: token representations are collapsing at step {step}: mean cosine "
                f"between token outputs {cosine:.3f} (random init: 0.3-0.5); an encoder in this "
                f"state fine-tunes worse than random weights; {_ADVICE}",
                f"token representations recovered at step {step}: mean cosine {cosine:.3f}")
        lines = []
        for name, (bad, warning, recovery) in conditions.items():
            self._streak[name] = self._streak.get(name, 0) + 1 if bad else 0
            if self._streak[name] == self.patience and not self._active.get(name):
                lines.append(warning)
                self._active[name] = True
            elif not bad and self._active.get(name):
                lines.append(recovery)
                self._active[name] = False
        return lines
