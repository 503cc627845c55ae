"""Offline evaluation: the protocol (docs/protocol.md) and the reports that apply it.

``matching`` is the protocol itself (pure numpy; its names are re-exported here). The reports
stream annotated records through the chain and score them; each is imported by name:
``detection`` (R peaks), ``classification`` (beat classes), ``stress`` (added noise).
"""

from ecg_stream.evaluation.matching import (
    EC57_LEARNING_S,
    MATCH_TOLERANCE_S,
    ClassScore,
    DetectionScore,
    Matching,
    Span,
    match_beats,
    score_classification,
    score_detection,
    scored_mask,
)

__all__ = [
    "EC57_LEARNING_S",
    "MATCH_TOLERANCE_S",
    "ClassScore",
    "DetectionScore",
    "Matching",
    "Span",
    "match_beats",
    "score_classification",
    "score_detection",
    "scored_mask",
]
