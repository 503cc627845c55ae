"""Causal rhythm analysis of labeled beats: atrial fibrillation, runs, rate and pauses."""

from ecg_stream.detector.rhythm.af import AfDecision, AfDetector, AfSettings
from ecg_stream.detector.rhythm.stage import RhythmInput, RhythmStage

__all__ = ["AfDecision", "AfDetector", "AfSettings", "RhythmInput", "RhythmStage"]
