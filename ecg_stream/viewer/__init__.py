"""The Qt edge: a live monitor that draws what arrives on the MQTT wire.

Import :mod:`ecg_stream.viewer.monitor` explicitly (it needs ``pip install 'ecg-stream[viewer]'``);
this package imports nothing itself, so the core never pulls in Qt.
"""
