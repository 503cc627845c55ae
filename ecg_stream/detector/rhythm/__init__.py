"""Causal rhythm analysis of labeled beats: atrial fibrillation, runs, rate and pauses."""
