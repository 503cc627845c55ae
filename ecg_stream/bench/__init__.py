"""The latency benchmark behind ``ecg-stream bench``; no runtime module imports it."""
