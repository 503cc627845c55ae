"""Pure-numpy streaming DSP: causal filter, R-peak detector, beat windows."""
