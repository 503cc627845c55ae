"""Change aversion: what ``replay`` and ``device`` + ``serve`` publish for 60 s of record 100.

``tests/golden/streams.json`` was captured with the code before the session refactor (and again
when classifier v3 replaced the model: only labels and probabilities changed; and when the
status's ``ingest`` came to omit ``interleaved`` false)
(``python -m tests.golden.stream_capture``); every beat (but its clock fields), every status
and the bytes of every ``samples`` message must stay the same.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.golden.stream_capture import GOLDEN, capture_replay, capture_serve, cut_record
from tests.helpers import MqttBroker

CHECKOUT = Path(__file__).resolve().parents[1]


@pytest.mark.mqtt
@pytest.mark.slow
def test_replay_and_serve_publish_what_they_published_before(
    mqtt_broker: MqttBroker, data_dir: Path, tmp_path: Path
) -> None:
    golden = json.loads(GOLDEN.read_text())
    stem = cut_record(data_dir, tmp_path)
    assert capture_replay(CHECKOUT, mqtt_broker.port, stem) == golden["replay"]
    assert capture_serve(CHECKOUT, mqtt_broker.port, stem) == golden["serve"]
